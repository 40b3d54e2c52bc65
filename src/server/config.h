#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "audit/config.h"

namespace drawbridge::server {

// DATA_DIR/server.yaml. Written by `server init`, editable by the operator.
struct ServerConfig {
  std::string trust_domain;
  std::string listen = "127.0.0.1:8443";
  std::string advertise;  // address clients dial; written into credentials
  int64_t certificate_lifetime_seconds = 3600;
  int64_t max_clock_skew_seconds = 60;
  int64_t max_token_lifetime_seconds = 300;
  int64_t idle_timeout_seconds = 3600;  // tunneled connection with no data either way
  // Dials per second each client identity may open (a token bucket of
  // dial_burst); 0 turns the limit off.
  int64_t dial_rate_per_second = 1000;
  int64_t dial_burst = 2000;
  // The plaintext /metrics, /healthz, /readyz listener (loopback by default), or
  // "off".
  std::string metrics_listen = "127.0.0.1:9464";
  // The data port for lanes (docs/tunnel.md "Lanes"): "auto" (the host of
  // `listen`, a port the system picks, advertised to agents and clients), a
  // HOST:PORT to open in a firewall, or "off" (tunnels ride gRPC streams only).
  std::string lane_listen = "auto";
  // Where identities, keys, used token ids and issued certificates live:
  // empty for the data directory's state.db (SQLite, one server), or a
  // postgres:// URI shared by replicas (docs/operations.md "Running replicas").
  std::string store;
  audit::AuditConfig audit;  // the `audit:` section (audit/config.h)
};

inline constexpr int64_t kMaxCertificateLifetimeSeconds = 24 * 3600;
// Short lifetimes exist for tests and drills; renewal at half-life must stay workable.
inline constexpr int64_t kMinCertificateLifetimeSeconds = 2;

absl::Status ValidateConfig(const ServerConfig& config);
absl::StatusOr<ServerConfig> LoadConfig(const std::string& path);
absl::Status SaveConfig(const std::string& path, const ServerConfig& config);

// Checks HOST:PORT ([V6]:PORT for IPv6) with a port in 1..65535 (0 allowed when
// `allow_zero_port`, meaning "pick one").
absl::Status ValidateHostPort(const std::string& address, bool allow_zero_port);

}  // namespace drawbridge::server

#include "server/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>

#include "common/files.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/credential.h"
#include "pki/identity.h"
#include "store/store.h"

namespace drawbridge::server {

absl::Status ValidateHostPort(const std::string& address, bool allow_zero_port) {
  auto colon = address.rfind(':');
  std::string host = pki::HostOf(address);
  if (colon == std::string::npos || host.empty()) {
    return absl::InvalidArgumentError(
        common::StrCat("address \"", address, "\" must be HOST:PORT (IPv6 as [ADDR]:PORT)"));
  }
  std::string_view port_text = std::string_view(address).substr(colon + 1);
  int port = -1;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port < 0 || port > 65535 ||
      (port == 0 && !allow_zero_port)) {
    return absl::InvalidArgumentError(
        common::StrCat("address \"", address, "\" has an invalid port"));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const ServerConfig& c) {
  RETURN_IF_ERROR(pki::ValidateTrustDomain(c.trust_domain));
  RETURN_IF_ERROR(ValidateHostPort(c.listen, /*allow_zero_port=*/true));
  RETURN_IF_ERROR(ValidateHostPort(c.advertise, /*allow_zero_port=*/true));
  if (c.metrics_listen != "off") {
    RETURN_IF_ERROR(ValidateHostPort(c.metrics_listen, /*allow_zero_port=*/true));
  }
  if (c.lane_listen != "off" && c.lane_listen != "auto") {
    RETURN_IF_ERROR(ValidateHostPort(c.lane_listen, /*allow_zero_port=*/true));
  }
  if (!c.store.empty() && !store::IsPostgresLocation(c.store)) {
    return absl::InvalidArgumentError(
        "store must be a postgres:// or postgresql:// URI (or absent: the data directory's "
        "state.db)");
  }
  if (c.certificate_lifetime_seconds < kMinCertificateLifetimeSeconds ||
      c.certificate_lifetime_seconds > kMaxCertificateLifetimeSeconds) {
    return absl::InvalidArgumentError(common::StrCat(
        "certificate_lifetime_seconds must be between ", kMinCertificateLifetimeSeconds, " and ",
        kMaxCertificateLifetimeSeconds, " (24 h)"));
  }
  if (c.max_clock_skew_seconds < 0 || c.max_clock_skew_seconds > 300) {
    return absl::InvalidArgumentError("max_clock_skew_seconds must be between 0 and 300");
  }
  if (c.max_token_lifetime_seconds < 1 || c.max_token_lifetime_seconds > 300) {
    return absl::InvalidArgumentError("max_token_lifetime_seconds must be between 1 and 300");
  }
  if (c.idle_timeout_seconds < 1 || c.idle_timeout_seconds > 7 * 86400) {
    return absl::InvalidArgumentError("idle_timeout_seconds must be between 1 and 604800");
  }
  if (c.dial_rate_per_second < 0 || c.dial_rate_per_second > 1000000) {
    return absl::InvalidArgumentError(
        "dial_rate_per_second must be between 0 (no limit) and 1000000");
  }
  if (c.dial_burst < 1 || c.dial_burst > 1000000) {
    return absl::InvalidArgumentError("dial_burst must be between 1 and 1000000");
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerConfig> LoadConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  ServerConfig c;
  bool has_audit = false;
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(common::StrCat(path, ": expected a YAML mapping"));
    }
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "trust_domain") {
        c.trust_domain = v.as<std::string>();
      } else if (key == "listen") {
        c.listen = v.as<std::string>();
      } else if (key == "advertise") {
        c.advertise = v.as<std::string>();
      } else if (key == "certificate_lifetime_seconds") {
        c.certificate_lifetime_seconds = v.as<int64_t>();
      } else if (key == "max_clock_skew_seconds") {
        c.max_clock_skew_seconds = v.as<int64_t>();
      } else if (key == "max_token_lifetime_seconds") {
        c.max_token_lifetime_seconds = v.as<int64_t>();
      } else if (key == "idle_timeout_seconds") {
        c.idle_timeout_seconds = v.as<int64_t>();
      } else if (key == "dial_rate_per_second") {
        c.dial_rate_per_second = v.as<int64_t>();
      } else if (key == "dial_burst") {
        c.dial_burst = v.as<int64_t>();
      } else if (key == "metrics_listen") {
        c.metrics_listen = v.as<std::string>();
      } else if (key == "lane_listen") {
        c.lane_listen = v.as<std::string>();
      } else if (key == "store") {
        c.store = v.as<std::string>();
      } else if (key == "audit") {
        auto audit = audit::ParseAuditConfig(v);
        if (!audit.ok()) {
          return absl::InvalidArgumentError(common::StrCat(path, ": ", audit.status().message()));
        }
        c.audit = std::move(*audit);
        has_audit = true;
      } else {
        return absl::InvalidArgumentError(common::StrCat(path, ": unknown setting \"", key, "\""));
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(common::StrCat(path, ": ", e.what()));
  }
  if (!has_audit) {
    ASSIGN_OR_RETURN(c.audit, audit::ParseAuditConfig(YAML::Node()));
  }
  if (c.advertise.empty()) {
    c.advertise = c.listen;
  }
  absl::Status s = ValidateConfig(c);
  if (!s.ok()) {
    return absl::InvalidArgumentError(common::StrCat(path, ": ", s.message()));
  }
  return c;
}

absl::Status SaveConfig(const std::string& path, const ServerConfig& c) {
  std::string text = common::StrCat(
      "# Drawbridge server configuration (see docs/operations.md).\n",
      "trust_domain: ", c.trust_domain, "\n", "# Address the gRPC/TLS 1.3 listener binds to.\n",
      "listen: \"", c.listen, "\"\n",
      "# Address written into credentials: what agents and clients dial.\n", "advertise: \"",
      c.advertise, "\"\n",
      "# Lifetime of issued certificates (at most 86400). Renewal starts at half-life.\n",
      "certificate_lifetime_seconds: ", c.certificate_lifetime_seconds, "\n",
      "max_clock_skew_seconds: ", c.max_clock_skew_seconds, "\n",
      "max_token_lifetime_seconds: ", c.max_token_lifetime_seconds, "\n",
      "# A tunneled connection with no data either way for this long is closed.\n",
      "idle_timeout_seconds: ", c.idle_timeout_seconds, "\n",
      "# Dials per second each client identity may open, in bursts of up to dial_burst\n",
      "# (0: no limit). Beyond it a dial is refused (HTTP 429) and recorded.\n",
      "dial_rate_per_second: ", c.dial_rate_per_second, "\n", "dial_burst: ", c.dial_burst, "\n",
      "# Prometheus /metrics, /healthz and /readyz over plain HTTP (keep it on loopback or\n",
      "# a management network), or \"off\".\n", "metrics_listen: \"", c.metrics_listen, "\"\n",
      "# The data port for tunneled bytes (lanes, mTLS 1.3): \"auto\" (host of listen, any\n",
      "# port, advertised to agents and clients), HOST:PORT, or \"off\" (gRPC streams only).\n",
      "lane_listen: \"", c.lane_listen, "\"\n",
      "# Identities, keys and issued certificates: absent for state.db in this directory,\n",
      "# or PostgreSQL shared by replicas (password in ~/.pgpass or passfile=, not here).\n",
      c.store.empty()
          ? std::string(
                "# store: \"postgresql://drawbridge@db.example/drawbridge?sslmode=verify-full\"\n")
          : common::StrCat("store: \"", c.store, "\"\n"),
      "# The tamper-evident audit trail (docs/audit.md): retention, SIEM export, alerts.\n",
      "audit:\n", "  retention_days: ", c.audit.retention.count() / 86400, "\n", "  # export:\n",
      "  #   - {type: jsonl, path: /var/log/drawbridge/audit.jsonl}\n",
      "  #   - {type: syslog, address: \"siem.example.com:6514\", tls: true}\n", "  # alerts:\n",
      "  #   webhook: \"https://alerts.example.com/drawbridge\"\n");
  return common::WriteFileAtomic(path, text, 0600);
}

}  // namespace drawbridge::server

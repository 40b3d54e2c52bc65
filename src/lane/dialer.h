#pragma once

#include <asio.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "enroll/cert_manager.h"
#include "lane/client_call.h"

namespace drawbridge::lane {

// Decides, per tunneled connection, whether a lane can carry it, and makes the
// LaneCall. Lanes are used only once the server has advertised its data port
// and a probe lane to that port succeeded: a port that a firewall or a load
// balancer does not pass costs no application connection, since every dial
// keeps using gRPC streams until the probe went through. A lane that fails to
// connect turns lanes off again until a new probe (every few seconds)
// succeeds.
//
// Pre-opened lanes: a TLS handshake with certificate checks costs milliseconds,
// too much for a dial's path, so the dialer keeps a few lanes connected and
// handshaken ahead of need, and a dial takes one. When none is ready (a burst
// of dials) the dial uses a gRPC stream rather than wait for a handshake, and
// the pool refills in the background. A pre-opened lane is retired after
// kPoolMaxAge (the server waits longer for its first frame), when our
// certificate is renewed, and when the server's word on the data port changes.
// Thread-safe.
class LaneDialer {
 public:
  // `io` runs the lanes; `certs` must outlive the dialer. Lanes go to the host
  // of `address` (HOST:PORT; empty: of the address the certificate manager's
  // channel leads to, which follows failover between the credential's addresses).
  LaneDialer(asio::io_context& io, const enroll::CertManager* certs, std::string instance_id,
             const std::string& address = "");
  ~LaneDialer();

  // The server's advertised data port (0: it has none). Any thread.
  void SetPort(int port);
  // Before the owner stops `io`: no new lanes, pooled ones closed, and a probe
  // in flight cancelled and waited for (up to `wait`), so that nothing is left
  // half-done holding itself when the io_context goes. Idempotent.
  void Shutdown(std::chrono::milliseconds wait);
  // A call for `method` ("Dial" or "Accept") over a pre-opened lane, or
  // nullptr when none is ready: the caller then uses a gRPC stream.
  std::shared_ptr<LaneCall> NewCall(const std::string& method);
  bool usable() const;
  // Pre-opened lanes ready to be taken now.
  size_t ready() const;

  // Each lane is a file descriptor here and on the server, on top of the
  // application's socket: lanes in use, pooled and connecting stay within
  // this budget (a sixteenth of RLIMIT_NOFILE, 16..1024); beyond it, dials use
  // gRPC streams, which share one connection.
  static int LaneBudget();
  static constexpr int kPoolSize = 4;  // lanes opened ahead of need
  static constexpr int kMaxPooled = 32;
  // Lanes pooled beyond kPoolSize after a burst are closed once idle this long.
  static constexpr auto kSurplusIdle =
      std::chrono::seconds(10);  // lanes kept for reuse after their stream
  static constexpr auto kPoolMaxAge = std::chrono::seconds(30);

 private:
  // The host lanes go to (see the constructor).
  std::string Host() const;
  // A target with a TLS context for the current certificate (rebuilt when it
  // is renewed); nullopt if the context cannot be built.
  std::optional<LaneTarget> TargetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Probe(int port, uint64_t attempt);
  void OnProbeDone(int port, uint64_t attempt, const grpc::Status& status);
  void OnLaneFailed(int port);
  // Starts connections until ready + connecting lanes make kPoolSize.
  void RefillLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropPoolLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every few seconds: retires lanes too old to be taken and the surplus of a
  // burst, and refills the pool.
  void Maintain();
  // A taken lane's stream ended: `lane` (nullptr if it was closed) goes back
  // into the pool if still current.
  void ReturnLane(std::shared_ptr<TlsLane> lane, uint64_t attempt, uint64_t generation);
  void OnPooledLaneConnected(uint64_t attempt, uint64_t generation,
                             absl::StatusOr<std::shared_ptr<TlsLane>> lane);

  struct PooledLane {
    std::shared_ptr<TlsLane> lane;
    uint64_t generation;  // of our certificate
    std::chrono::steady_clock::time_point opened;
  };

  asio::io_context& io_;
  const enroll::CertManager* const certs_;
  const std::string instance_id_;
  std::string host_;  // empty: follow certs_->CurrentAddress()
  std::string server_name_;
  mutable absl::Mutex mu_;
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  bool usable_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t probe_attempt_ ABSL_GUARDED_BY(mu_) = 0;  // a newer probe supersedes older ones
  std::shared_ptr<LaneCall> probe_call_ ABSL_GUARDED_BY(mu_);  // the latest probe
  int probes_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ssl_generation_ ABSL_GUARDED_BY(mu_) = 0;
  SslContext ssl_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<asio::steady_timer> retry_timer_ ABSL_GUARDED_BY(mu_);
  asio::steady_timer maintenance_timer_;
  std::deque<PooledLane> pool_ ABSL_GUARDED_BY(mu_);
  int connecting_ ABSL_GUARDED_BY(mu_) = 0;
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;  // taken by a call, not yet returned or closed
  const int budget_ = LaneBudget();
};

}  // namespace drawbridge::lane

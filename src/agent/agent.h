#pragma once

#include <asio.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "agent/local_audit.h"
#include "audit/record.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "lane/dialer.h"
#include "metrics/endpoint.h"
#include "policy/allowlist.h"
#include "tunnel/bridge_metrics.h"
#include "tunnel/socket_bridge.h"

namespace drawbridge::agent {

struct AgentOptions {
  pki::Credential credential;
  std::vector<std::string> allow;  // destinations, same syntax as policy rules
  std::string instance_id;         // default: random
  std::chrono::milliseconds dial_timeout{5000};
  // Reconnect backoff cap: full jitter in [0, cap] after an outage, so agents
  // are back within this long (plus a handshake) of a server restart and arrive
  // spread over it. 3 s keeps "back within 5 s" with room for a renewal.
  std::chrono::milliseconds max_backoff{3000};
  int io_threads = 2;
  // Carry tunnels on lanes when the server offers them (see ClientOptions).
  bool use_lanes = true;
  // Holds the agent's own audit log (local_audit.h). The CLI always sets it;
  // empty (some in-process tests) means no local log.
  std::string data_dir;
  // HOST:PORT for /metrics, /healthz, /readyz (plain HTTP, keep it on loopback);
  // empty: none.
  std::string metrics_listen;
};

// `drawbridge agent`: dials out to the server only. Holds one Control stream,
// reconnecting with exponential backoff and full jitter; for each OpenRequest it
// checks its own allowlist (deny by default), resolves the name once, checks
// every resolved address (DNS rebinding to loopback, link-local or metadata
// addresses is refused unless a rule names them), connects with a timeout, and
// either opens an Accept stream or reports the failure on the Control stream.
class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Start(AgentOptions options);
  ~Agent();

  // Stops dialing, cancels live connections and the Control stream.
  void Stop();
  const std::string& instance_id() const { return options_.instance_id; }
  // True once a Control stream is established (hello sent); for tests and ops.
  bool WaitConnected(std::chrono::milliseconds timeout);
  size_t active_connections() const { return bridges_.size(); }
  // Lanes are in use (the server offered them, a probe got through) and a
  // pre-opened one is ready for the next connection.
  bool lanes_ready() const { return lanes_ != nullptr && lanes_->ready() > 0; }
  int metrics_port() const { return endpoint_ ? endpoint_->port() : 0; }

  class ControlStream;  // internal

 private:
  explicit Agent(AgentOptions options, policy::Allowlist allowlist)
      : options_(std::move(options)), allowlist_(std::move(allowlist)) {}
  void ControlLoop();
  void HandleOpen(const v1::OpenRequest& request);
  void Connect(std::shared_ptr<v1::OpenRequest> request, policy::Destination destination,
               std::vector<asio::ip::tcp::endpoint> endpoints);
  void ReportFailure(const std::string& conn_id, v1::DialCode code, const std::string& message);
  // Opens the Accept stream for a connected socket, gated (see
  // SocketBridge::Options::gated); null when shutting down.
  std::shared_ptr<tunnel::SocketBridge> StartAccept(const std::string& conn_id,
                                                    asio::ip::tcp::socket socket,
                                                    const std::string& destination,
                                                    const std::string& address,
                                                    const std::string& client);
  void SetConnected(bool connected);
  // Appends to the local audit log (if any); `done` runs when it is durable.
  void Audit(audit::Record record, std::function<void(absl::Status)> done = nullptr);
  void AuditRefusal(const v1::OpenRequest& request, std::string_view activity, v1::DialCode code,
                    const std::string& reason);

  AgentOptions options_;
  policy::Allowlist allowlist_;
  std::unique_ptr<enroll::CertManager> certs_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  std::thread control_thread_;
  tunnel::BridgeSet bridges_;
  // After io_ (destroyed before it); its callbacks run on io_'s threads only.
  std::unique_ptr<lane::LaneDialer> lanes_;
  // After io_: destroyed first, while the executor its callbacks post to exists.
  std::unique_ptr<LocalAudit> audit_;
  metrics::Registry metrics_registry_;
  tunnel::BridgeMetrics metrics_{&metrics_registry_, "drawbridge_agent"};
  std::unique_ptr<metrics::Endpoint> endpoint_;  // last: scrapes read the above

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  // Set when a renewal succeeds: ends a reconnect wait at once, since a Control
  // stream refused for an expired certificate can succeed with the new one.
  bool renewed_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<ControlStream> control_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::agent

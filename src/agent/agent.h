#pragma once

#include <asio.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <set>
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
  std::string proxy;               // how to reach the server: enroll::CertManager::Options::proxy
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

// `drawbridge agent`: dials out to the server only. Holds one Control stream
// per server, reconnecting each with exponential backoff and full jitter; for
// each OpenRequest it checks its own allowlist (deny by default), resolves the
// name once, checks every resolved address (DNS rebinding to loopback,
// link-local or metadata addresses is refused unless a rule names them),
// connects with a timeout, and either opens an Accept stream to the server
// that asked or reports the failure on that server's Control stream.
//
// Servers: first the address in the credential (the seed link). Replicas
// sharing a PostgreSQL store tell the agent their set (ReplicaSet); the agent
// then keeps a link to each replica's own address, whichever replica a client
// reaches finds the agent on its own streams, and the seed link is closed
// while any of those is up (it is back when none is).
class Agent {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Start(AgentOptions options);
  ~Agent();

  // Stops dialing, cancels live connections and the Control streams.
  void Stop();
  const std::string& instance_id() const { return options_.instance_id; }
  // True once a Control stream is established (hello acknowledged); for tests
  // and ops.
  bool WaitConnected(std::chrono::milliseconds timeout);
  // Control streams established now (one per replica once the set is known).
  int connected_streams() const;
  size_t active_connections() const { return bridges_.size(); }
  // Lanes are in use (a server offered them, a probe got through) and a
  // pre-opened one is ready for the next connection.
  bool lanes_ready() const;
  int metrics_port() const { return endpoint_ ? endpoint_->port() : 0; }

  class ControlStream;  // internal
  struct Link;          // internal

 private:
  Agent(AgentOptions options, policy::Allowlist allowlist);
  // Creates a link (and its thread) for `address` (empty: the seed).
  Link* AddLinkLocked(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `link` should hold a Control stream now (see the class comment).
  bool WantedLocked(const Link& link) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ControlLoop(Link* link);
  // From a Control stream's reaction: never blocks.
  void OnReplicaSet(Link* from, const v1::ReplicaSet& set);
  void HandleOpen(Link* link, const v1::OpenRequest& request);
  void Connect(Link* link, std::shared_ptr<v1::OpenRequest> request,
               policy::Destination destination, std::vector<asio::ip::tcp::endpoint> endpoints);
  void ReportFailure(Link* link, const std::string& conn_id, v1::DialCode code,
                     const std::string& message);
  // Opens the Accept stream for a connected socket to `link`'s server, gated
  // (see SocketBridge::Options::gated); null when shutting down.
  std::shared_ptr<tunnel::SocketBridge> StartAccept(Link* link, const std::string& conn_id,
                                                    asio::ip::tcp::socket socket,
                                                    const std::string& destination,
                                                    const std::string& address,
                                                    const std::string& client);
  void SetConnected(Link* link, bool connected);
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
  tunnel::BridgeSet bridges_;
  // After io_: destroyed first, while the executor its callbacks post to exists.
  std::unique_ptr<LocalAudit> audit_;
  metrics::Registry metrics_registry_;
  tunnel::BridgeMetrics metrics_{&metrics_registry_, "drawbridge_agent"};

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int connected_ ABSL_GUARDED_BY(mu_) = 0;  // links with an established stream
  // +1 per successful renewal: ends reconnect waits at once, since a Control
  // stream refused for an expired certificate can succeed with the new one.
  uint64_t renewals_ ABSL_GUARDED_BY(mu_) = 0;
  // The replicas' own addresses from the latest ReplicaSet (empty: one server).
  std::set<std::string> replica_addresses_ ABSL_GUARDED_BY(mu_);
  // By address ("" for the seed). A link is never removed before the agent
  // stops (callbacks hold its address): one no longer wanted stays idle.
  // After io_: their lane dialers go first.
  std::map<std::string, std::unique_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<metrics::Endpoint> endpoint_;  // last: scrapes read the above
};

}  // namespace drawbridge::agent

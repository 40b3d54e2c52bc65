#pragma once

#include <grpcpp/alarm.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "server/agent_registry.h"
#include "server/client_watchers.h"
#include "server/dial_rate_limiter.h"
#include "server/services.h"
#include "server/session_info.h"

namespace drawbridge::server {

class TunnelSession;

struct TunnelOptions {
  std::chrono::milliseconds dial_timeout{10000};
  std::chrono::milliseconds eject_for{30000};       // a failing agent instance rests this long
  std::chrono::milliseconds idle_timeout{3600000};  // no data either way for this long: close
  double dial_rate_per_second = 0;                  // per client identity; 0: no limit
  double dial_burst = 1;
  // Whether the server can vouch for identities right now (a shared store it
  // cannot reach may hold revocations it has not seen): not OK refuses new
  // dials (fail closed); live tunnels go on. Null: always OK.
  std::function<absl::Status()> store_health;
};

// Tunnel.Control (agents), Tunnel.Dial (clients) and Tunnel.Accept (agents).
// Each Dial is routed to one agent instance, which connects and opens an Accept
// stream with the same conn_id; the two streams are then spliced frame by frame.
class TunnelService final : public v1::Tunnel::CallbackService {
 public:
  TunnelService(ServiceContext ctx, PolicyHolder* policy, std::shared_ptr<AgentRegistry> registry,
                TunnelOptions options)
      : ctx_(ctx),
        policy_(policy),
        registry_(std::move(registry)),
        options_(options),
        dial_limiter_(options.dial_rate_per_second, options.dial_burst) {
    StartRateLimitReporter();
  }
  ~TunnelService() override;

  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControlMessage>* Control(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::Frame, v1::Frame>* Dial(
      grpc::CallbackServerContext* context) override;
  grpc::ServerBidiReactor<v1::Frame, v1::Frame>* Accept(
      grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext* context,
                                                  const v1::WatchRequest* request) override;

  // A Dial or Accept stream that arrived on a lane (server/lane_listener.h)
  // rather than as a gRPC call: authenticates the certificate the lane's TLS
  // handshake verified (as for a gRPC call) and returns the reactor to bind to
  // the lane. Same sessions, routing, audit and ending as the gRPC streams.
  grpc::ServerBidiReactor<v1::Frame, v1::Frame>* OpenLaneStream(
      const std::string& method, std::string_view peer_certificate_pem,
      const std::string& instance_id, const std::string& peer);
  // The data port advertised to agents and clients (0: no lanes).
  void set_lane_port(int port) { lane_port_.store(port); }
  int lane_port() const { return lane_port_.load(); }

  // Sessions waiting for their agent's Accept stream, by conn_id, with the
  // agent instance asked to connect.
  void AddPending(const std::string& conn_id, std::shared_ptr<TunnelSession> session,
                  const AgentInstance* instance);
  std::shared_ptr<TunnelSession> TakePending(const std::string& conn_id);
  // Every session waiting for `instance` (its Control stream ended: none of
  // them will get an Accept stream from it).
  std::vector<std::shared_ptr<TunnelSession>> TakePendingOn(const AgentInstance* instance);

  const ServiceContext& ctx() const { return ctx_; }
  PolicyHolder* policy() const { return policy_; }
  AgentRegistry* registry() const { return registry_.get(); }
  ClientWatchers* watchers() const { return watchers_.get(); }
  const std::shared_ptr<ClientWatchers>& shared_watchers() const { return watchers_; }
  const TunnelOptions& options() const { return options_; }
  DialRateLimiter* dial_limiter() { return &dial_limiter_; }

  // Asks every connected agent to close its Control stream (server shutdown), so
  // that only tunneled connections hold up a graceful stop. Any thread.
  void SendGoaway();
  // A replica about to stop: tells every client's Watch stream (and each that
  // starts from now on) to move its next dials to a new connection, which the
  // load balancer sends to a ready replica. Dials still arriving are served as
  // usual. Any thread.
  void SendClientGoaway();
  bool draining() const { return draining_.load(); }

  // The live replicas (servers sharing a PostgreSQL store), told to every
  // connected agent now and to each agent that says hello from here on, so
  // that agents hold a Control stream to each (ReplicaSet). Never called on a
  // single server. Any thread.
  void SetReplicaSet(v1::ReplicaSet set);
  // The current set as a ControlMessage (no replicas: a single server).
  v1::ControlMessage ReplicaSetMessage() const;

  // Ends every live tunnel, Control and Watch stream of `identity` (only those
  // opened with `key_id` when it is not empty). Any thread; runs within
  // milliseconds.
  void Revoke(const std::string& identity, const std::string& key_id);

  // Shutdown grace expired: ends every tunnel with `reason` (both ends told, so
  // applications see a reset), then every Watch stream; `done` runs after. Any
  // thread.
  void EndAll(const std::string& reason, std::function<void()> done);
  // Blocks until every session has ended (routing or spliced) or `deadline`.
  void WaitForNoSessions(std::chrono::system_clock::time_point deadline) const;

  // Spliced connections, oldest first. Any thread; never blocks on I/O.
  std::vector<SessionInfo> ListSessions() const;
  // Ends the live connection `id` (hex conn_id); `done` gets what it was, or
  // nullopt if there is none. Any thread; `done` runs on a gRPC thread.
  void KillSession(const std::string& id, std::string reason,
                   std::function<void(std::optional<SessionInfo>)> done);
  // Ends every live connection `policy` no longer allows (client, agent and
  // destination checked as at dial time); `done` gets how many. Any thread.
  void EnforcePolicy(std::shared_ptr<const policy::Policy> policy, std::function<void(int)> done);

  // Live sessions, shared with the sessions themselves and with revocation
  // callbacks, so that neither depends on the service still existing.
  struct LiveSessions {
    absl::Mutex mu;
    absl::flat_hash_map<TunnelSession*, std::weak_ptr<TunnelSession>> map ABSL_GUARDED_BY(mu);
  };
  const std::shared_ptr<LiveSessions>& live() const { return live_; }

 private:
  // Runs `fn` on every live session from a gRPC callback (where streams may be
  // finished), then `done` with the number of sessions `fn` returned true for.
  void ForEachSession(std::function<bool(TunnelSession&)> fn, std::function<void(int)> done);

  ServiceContext ctx_;
  PolicyHolder* policy_;
  std::shared_ptr<AgentRegistry> registry_;
  std::shared_ptr<LiveSessions> live_ = std::make_shared<LiveSessions>();
  std::shared_ptr<ClientWatchers> watchers_ = std::make_shared<ClientWatchers>();
  TunnelOptions options_;
  std::atomic<int> lane_port_{0};
  std::atomic<bool> draining_{false};
  DialRateLimiter dial_limiter_;
  // Once a second, records how many dials the limiter refused without a record
  // of their own (DialRateLimiter::TakeUnrecorded).
  void StartRateLimitReporter();
  absl::Mutex reporter_mu_;
  bool reporter_stop_ ABSL_GUARDED_BY(reporter_mu_) = false;
  std::thread reporter_;
  std::unique_ptr<grpc::Alarm> goaway_alarm_;
  // Shared with the alarm that broadcasts it, which may outlive a call.
  struct ReplicaSetHolder {
    absl::Mutex mu;
    v1::ReplicaSet set ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<ReplicaSetHolder> replicas_ = std::make_shared<ReplicaSetHolder>();
  absl::Mutex replicas_alarm_mu_;
  std::unique_ptr<grpc::Alarm> replicas_alarm_ ABSL_GUARDED_BY(replicas_alarm_mu_);
  absl::Mutex mu_;
  struct Pending {
    std::weak_ptr<TunnelSession> session;
    const AgentInstance* instance;  // identity only, never dereferenced
  };
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::server

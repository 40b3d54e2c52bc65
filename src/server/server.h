#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "audit/alerts.h"
#include "audit/audit_log.h"
#include "audit/export.h"
#include "audit/webhook.h"
#include "common/clock.h"
#include "common/worker_pool.h"
#include "metrics/endpoint.h"
#include "metrics/metrics.h"
#include "pki/certs.h"
#include "server/agent_registry.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "server/enroller.h"
#include "server/identity_directory.h"
#include "server/lane_listener.h"
#include "server/membership.h"
#include "server/server_metrics.h"
#include "server/services.h"
#include "server/state_watcher.h"
#include "server/tunnel_service.h"
#include "store/store.h"

namespace drawbridge::server {

struct ServerOptions {
  std::string data_dir;
  std::string listen_override;  // empty: the config's `listen`
  std::string store_override;   // empty: the config's `store`
  // Empty: the config's `advertise`. Replicas started from copies of one data
  // directory each name their own address here (shown by `admin replicas list`).
  std::string advertise_override;
  // Test hook: overrides the configured certificate lifetime when > 0.
  int64_t certificate_lifetime_override_seconds = 0;
  // YAML (DESIGN §4). Empty: DATA_DIR/policy.yaml, where `admin policy set` keeps
  // it (deny everything while there is none).
  std::string policy_file;
  const common::Clock* clock = common::Clock::Real();
  int worker_threads = 2;
  std::chrono::milliseconds dial_timeout{10000};
  // HOST:PORT for /metrics, /healthz and /readyz; "" takes server.yaml's
  // `metrics_listen`; "off" (the default for embedded servers and tests) none.
  std::string metrics_listen = "off";
  // Test hook: overrides the configured idle timeout when > 0.
  std::chrono::milliseconds idle_timeout_override{0};
  // A connection that has not completed its TLS handshake in this long is
  // closed (gRPC's own default is 120 s, which lets half-open connections pile up).
  std::chrono::milliseconds handshake_timeout{10000};
  // "" takes server.yaml's `lane_listen`; "off", "auto" or HOST:PORT otherwise.
  std::string lane_listen_override;
};

// The broker: one TLS 1.3 gRPC port serving Enrollment (no client certificate
// needed), Admin and Diagnostics (client certificate required).
class Server final : public AdminBackend {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server() override;

  int port() const { return port_; }
  const ServerConfig& config() const { return config_; }
  IdentityDirectory* directory() { return directory_.get(); }
  const pki::CertificateAuthority& ca() const { return *pki_.ca; }

  // Re-reads the policy file. An invalid policy is rejected whole; the old stays.
  // Either way the attempt is audited; live connections the new policy no longer
  // allows are ended.
  absl::Status ReloadPolicy();

  // AdminBackend.
  std::vector<std::shared_ptr<AgentInstance>> Agents() override;
  std::vector<SessionInfo> Sessions() override;
  void KillSession(const std::string& id, const std::string& reason,
                   std::function<void(std::optional<SessionInfo>)> done) override;
  PolicySnapshot Policy() override;
  absl::StatusOr<int> SetPolicy(const std::string& yaml) override;
  AuditReader OwnAuditChain() override;
  std::vector<store::ReplicaRecord> Replicas() override;
  std::string ReplicaId() override;
  audit::AuditLog* audit_log() { return audit_.get(); }
  // The metrics listener's port (0 when off).
  int metrics_port() const { return endpoint_ ? endpoint_->port() : 0; }
  const metrics::Registry& metrics() const { return metrics_registry_; }
  audit::Exporter* exporter() { return exporter_.get(); }
  AgentRegistry* registry() { return registry_.get(); }

  // Stops accepting, lets in-flight calls finish up to `grace`, then cancels them.
  // A replica (shared store) first spends up to kClientMoveTime of the grace
  // moving clients' new dials elsewhere (TunnelService::SendClientGoaway).
  void Shutdown(std::chrono::milliseconds grace);
  static constexpr std::chrono::milliseconds kClientMoveTime{1000};
  void Wait();
  // The data port for lanes (0: none).
  int lane_port() const { return lanes_ ? lanes_->port() : 0; }

 private:
  Server() = default;

  // Raises the alerts `records` trigger: audit records, log lines, webhook posts.
  // On the audit writer thread.
  void OnAuditCommitted(const std::vector<audit::Record>& records);
  absl::Status StartMetrics(const ServerOptions& options, const DataDir& dir);
  // Puts `policy` in force, ends the live connections it no longer allows and
  // audits the change (`origin`: "reload", "admin"); returns how many ended.
  int ApplyPolicy(std::shared_ptr<const policy::Policy> policy, const std::string& text,
                  const std::string& origin) ABSL_EXCLUSIVE_LOCKS_REQUIRED(policy_write_mu_);
  // A shared store holds the policy of every replica: at start the stored one
  // is put in force (a policy file only seeds an empty store); later changes
  // made through other replicas arrive through RefreshSharedPolicy.
  absl::Status LoadSharedPolicy(bool have_policy_file);
  absl::Status RefreshSharedPolicy();

  ServerConfig config_;
  ServingPki pki_;
  // The metrics outlive everything that updates them (the audit writer included).
  std::atomic<uint64_t> audit_last_seq_{0};
  metrics::Registry metrics_registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  // Declared before everything that writes the audit log, so destroyed after it;
  // the log itself before the exporter and webhook its writer thread feeds.
  std::unique_ptr<audit::WebhookSender> webhook_;
  std::unique_ptr<audit::Exporter> exporter_;
  std::unique_ptr<audit::AlertEngine> alerts_;
  std::shared_ptr<audit::AuditLog> audit_;
  int port_ = 0;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<IdentityDirectory> directory_;
  std::unique_ptr<Enroller> enroller_;
  std::unique_ptr<common::WorkerPool> pool_;
  std::unique_ptr<EnrollmentService> enrollment_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<DiagnosticsService> diagnostics_;
  std::string policy_file_;
  std::string database_;
  std::string replica_id_;       // shared store: DATA_DIR/replica-id (membership, audit chain)
  absl::Mutex policy_write_mu_;  // serialises SetPolicy and ReloadPolicy
  std::string policy_text_ ABSL_GUARDED_BY(policy_write_mu_);  // the YAML in force
  const common::Clock* clock_ = common::Clock::Real();
  std::unique_ptr<PolicyHolder> policy_;
  std::shared_ptr<AgentRegistry> registry_ = std::make_shared<AgentRegistry>();
  std::unique_ptr<TunnelService> tunnel_;
  std::unique_ptr<grpc::Server> grpc_;
  // After tunnel_: its lanes call into the TunnelService.
  std::unique_ptr<LaneListener> lanes_;
  // Follows other replicas' identity and key changes (shared store only).
  std::unique_ptr<StateWatcher> state_watcher_;
  // Registered once listening; leaves first on shutdown.
  std::unique_ptr<Membership> membership_;
  std::atomic<bool> serving_{false};
  // Last: scrapes read everything above.
  std::unique_ptr<metrics::Endpoint> endpoint_;

  absl::Status StartLanes(const ServerOptions& options);
  // A kill for a session not on this replica: asks the others through the
  // store and waits up to kRemoteKillWait for the one holding it to answer.
  std::optional<SessionInfo> KillOnOtherReplica(const std::string& id, const std::string& reason);
  static constexpr std::chrono::milliseconds kRemoteKillWait{2000};
  // On every change of the shared state: ends the sessions here that a kill
  // request (from any replica) names, and answers the request.
  absl::Status ProcessSessionKills();
  // Shared store: this replica's address in the membership and the live set
  // told to agents (TunnelService::SetReplicaSet) as it changes.
  void StartReplicaSet(const ServerOptions& options);
};

}  // namespace drawbridge::server

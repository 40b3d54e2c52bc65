#include "server/server.h"

#include <grpcpp/security/server_credentials.h>

#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "audit/query.h"
#include "audit/shared_audit.h"
#include "common/encoding.h"
#include "common/files.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "nlohmann/json.hpp"
#include "pki/keys.h"

namespace drawbridge::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  RETURN_IF_ERROR(common::EnforceTls13Only());
  std::unique_ptr<Server> s(new Server());
  DataDir dir(options.data_dir);
  if (!common::PathExists(dir.config)) {
    return absl::NotFoundError(
        common::StrCat("no server configuration in ", options.data_dir,
                       "; create one with: drawbridge server init --data-dir ", options.data_dir,
                       " --trust-domain example.com"));
  }
  ASSIGN_OR_RETURN(s->config_, LoadConfig(dir.config));
  if (!options.listen_override.empty()) {
    RETURN_IF_ERROR(ValidateHostPort(options.listen_override, /*allow_zero_port=*/true));
    s->config_.listen = options.listen_override;
  }
  if (options.certificate_lifetime_override_seconds > 0) {
    s->config_.certificate_lifetime_seconds = options.certificate_lifetime_override_seconds;
  }
  ASSIGN_OR_RETURN(s->pki_, LoadServingPki(dir, s->config_, *options.clock));
  if (!options.advertise_override.empty()) {
    RETURN_IF_ERROR(ValidateHostPort(options.advertise_override, /*allow_zero_port=*/false));
  }
  if (!options.store_override.empty()) {
    s->config_.store = options.store_override;
    RETURN_IF_ERROR(ValidateConfig(s->config_));
  }
  if (!options.lane_listen_override.empty()) {
    s->config_.lane_listen = options.lane_listen_override;
    RETURN_IF_ERROR(ValidateConfig(s->config_));  // "off", "auto" or HOST:PORT
  }
  ASSIGN_OR_RETURN(s->store_,
                   store::OpenStore(s->config_.store.empty() ? dir.database : s->config_.store));
  RETURN_IF_ERROR(CheckSharedCa(dir, s->config_, s->store_.get()));

  // The audit trail lives in state.db, signed with the audit key; alert rules and
  // export targets follow every commit.
  const audit::AuditConfig& ac = s->config_.audit;
  if (!ac.webhook_url.empty()) {
    ASSIGN_OR_RETURN(s->webhook_, audit::WebhookSender::Start(ac.webhook_url, ac.webhook_ca_file));
  }
  s->alerts_ = std::make_unique<audit::AlertEngine>(ac.alert_rules);
  std::vector<std::string> rule_names;
  for (const auto& rule : ac.alert_rules) {
    rule_names.push_back(rule.name);
  }
  s->metrics_ = std::make_unique<ServerMetrics>(&s->metrics_registry_, rule_names);
  audit::AuditLog::Options audit_options;
  audit_options.checkpoint_every_records = ac.checkpoint_every_records;
  audit_options.checkpoint_every = ac.checkpoint_every;
  audit_options.retention = ac.retention;
  audit_options.signing_key = s->pki_.audit_key.get();
  audit_options.clock = options.clock;
  Server* raw = s.get();
  audit_options.on_committed = [raw](const std::vector<audit::Record>& records) {
    raw->OnAuditCommitted(records);
  };
  audit_options.on_storage_state = [raw](const absl::Status& storage) {
    // Dials and enrollments fail closed meanwhile (their records gate them);
    // every other record waits in memory and is written once storage recovers.
    raw->metrics_->audit_writable->Set(storage.ok() ? 1 : 0);
    if (storage.ok()) {
      common::LogInfo("audit.storage_recovered", {});
    } else {
      common::LogError("audit.storage_failed", {{"error", std::string(storage.message())}});
    }
  };
  audit::Exporter::Options export_options;
  if (s->store_->shared()) {
    // A replica's chain lives in the shared store beside the others', so that
    // `audit verify`/`audit query` see the whole deployment; its key is endorsed
    // by the CA. state.db keeps only this replica's export cursors.
    ASSIGN_OR_RETURN(s->replica_id_, LoadOrCreateReplicaId(dir));
    RETURN_IF_ERROR(audit::RegisterSharedAuditChain(
        s->config_.store, s->replica_id_, s->pki_.audit_key.get(),
        s->pki_.ca->material().intermediate_key.get(),
        pki::CertToPem(s->pki_.ca->material().intermediate_cert.get()), options.clock->NowUnix()));
    ASSIGN_OR_RETURN(s->audit_,
                     audit::OpenSharedAuditLog(s->config_.store, s->replica_id_, audit_options));
    export_options.source = audit::SharedChainSource(s->config_.store, s->replica_id_);
  } else {
    ASSIGN_OR_RETURN(s->audit_, audit::AuditLog::Open(dir.database, audit_options));
  }
  s->metrics_->audit_writable->Set(1);
  ASSIGN_OR_RETURN(s->exporter_,
                   audit::Exporter::Start(dir.database, ac.export_targets, export_options));
  s->exporter_->Notify();  // ship what earlier runs left behind
  ASSIGN_OR_RETURN(s->directory_, IdentityDirectory::Load(s->store_.get()));
  s->enroller_ = std::make_unique<Enroller>(s->config_, s->pki_.ca.get(), s->directory_.get(),
                                            s->store_.get(), options.clock);
  s->pool_ = std::make_unique<common::WorkerPool>(options.worker_threads);
  ServiceContext ctx{s->config_.trust_domain, s->directory_.get(), s->enroller_.get(),
                     s->pool_.get(),          options.clock,       s->audit_,
                     s->metrics_.get()};
  s->enrollment_ = std::make_unique<EnrollmentService>(ctx);
  s->admin_ = std::make_unique<AdminService>(ctx, s.get());
  s->diagnostics_ = std::make_unique<DiagnosticsService>(ctx);
  s->database_ = dir.database;
  s->policy_file_ = options.policy_file.empty() ? dir.policy : options.policy_file;
  s->policy_ = std::make_unique<PolicyHolder>(policy::Policy::DenyAll());
  s->clock_ = options.clock;
  const bool have_policy_file = !options.policy_file.empty() || common::PathExists(s->policy_file_);
  if (s->store_->shared()) {
    RETURN_IF_ERROR(s->LoadSharedPolicy(have_policy_file));
  } else if (have_policy_file) {
    RETURN_IF_ERROR(s->ReloadPolicy());
  } else {
    common::LogWarn("policy.empty",
                    {{"effect", "no policy yet: every dial is denied"},
                     {"fix", "give --policy FILE, or `drawbridge admin policy set -f FILE`"}});
  }
  s->tunnel_ = std::make_unique<TunnelService>(
      ctx, s->policy_.get(), s->registry_,
      TunnelOptions{
          .dial_timeout = options.dial_timeout,
          .idle_timeout = options.idle_timeout_override.count() > 0
                              ? options.idle_timeout_override
                              : std::chrono::milliseconds(s->config_.idle_timeout_seconds * 1000),
          .dial_rate_per_second = static_cast<double>(s->config_.dial_rate_per_second),
          .dial_burst = static_cast<double>(s->config_.dial_burst),
          // Set before the listener starts, so before any dial reads it.
          .store_health = [raw] {
            return raw->state_watcher_ ? raw->state_watcher_->health() : absl::OkStatus();
          }});

  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = s->pki_.ca->TrustBundlePem();
  tls.pem_key_cert_pairs.push_back({s->pki_.server_key_pem, s->pki_.server_chain_pem});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(s->config_.listen, grpc::SslServerCredentials(tls), &s->port_);
  builder.RegisterService(s->enrollment_.get());
  builder.RegisterService(s->admin_.get());
  builder.RegisterService(s->diagnostics_.get());
  builder.RegisterService(s->tunnel_.get());
  TunnelService* tunnel = s->tunnel_.get();
  s->directory_->SetRevocationListener(
      [tunnel](const std::string& identity, const std::string& key_id) {
        tunnel->Revoke(identity, key_id);
      });
  s->state_watcher_ = std::make_unique<StateWatcher>(s->store_.get(), s->directory_.get(), [raw] {
    RETURN_IF_ERROR(raw->RefreshSharedPolicy());
    return raw->ProcessSessionKills();
  });
  // Agents keep their control stream alive with pings; allow them every 10 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // And we ping them: an agent or client whose host vanished without a FIN
  // (network cut, power loss) is noticed in 30 s, and its tunnels are reset,
  // instead of waiting for TCP to give up.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(options.handshake_timeout.count()));
  // Registered before the listener starts, so that no call sees it unset.
  s->membership_ = std::make_unique<Membership>(
      s->store_.get(), s->replica_id_,
      options.advertise_override.empty() ? s->config_.advertise : options.advertise_override,
      options.clock->NowUnix());
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->port_ == 0) {
    return absl::UnavailableError(
        common::StrCat("cannot listen on ", s->config_.listen, " (address in use or not local?)"));
  }
  RETURN_IF_ERROR(s->StartLanes(options));
  if (s->store_->shared()) {
    s->StartReplicaSet(options);
  }
  s->serving_ = true;
  RETURN_IF_ERROR(s->StartMetrics(options, dir));
  s->audit_->Append(
      audit::MakeRecord(audit::EventClass::kApiActivity, "server_start", audit::kOutcomeSuccess,
                        std::string(audit::kActorSystem), "",
                        {{"listen", s->config_.listen},
                         {"port", s->port_},
                         {"lane_port", s->lane_port()},
                         {"trust_domain", s->config_.trust_domain},
                         {"alert_rules", s->alerts_->rules().size()},
                         {"export_targets", s->config_.audit.export_targets.size()}}));
  common::LogInfo("server.listening", {{"address", s->config_.listen},
                                       {"port", common::StrCat(s->port_)},
                                       {"lane_port", common::StrCat(s->lane_port())},
                                       {"trust_domain", s->config_.trust_domain},
                                       {"certificate_lifetime_seconds",
                                        common::StrCat(s->config_.certificate_lifetime_seconds)}});
  return s;
}

absl::Status Server::StartLanes(const ServerOptions& options) {
  const std::string setting =
      options.lane_listen_override.empty() ? config_.lane_listen : options.lane_listen_override;
  if (setting == "off") {
    return absl::OkStatus();
  }
  std::string address = setting;
  if (setting == "auto") {
    // The gRPC listener's host, any port: agents and clients learn it from the
    // server (Control's first heartbeat, Watch's ready event).
    address = config_.listen.substr(0, config_.listen.rfind(':')) + ":0";
  }
  auto ssl = lane::MakeServerContext(pki_.server_chain_pem, pki_.server_key_pem,
                                     pki_.ca->TrustBundlePem());
  absl::StatusOr<std::unique_ptr<LaneListener>> listener =
      ssl.ok() ? LaneListener::Start({.address = address,
                                      .ssl = *ssl,
                                      .service = tunnel_.get(),
                                      .handshake_timeout = options.handshake_timeout})
               : absl::StatusOr<std::unique_ptr<LaneListener>>(ssl.status());
  if (!listener.ok()) {
    if (setting != "auto") {
      return listener.status();  // an address the operator chose must work
    }
    common::LogWarn("lane.unavailable", {{"address", address},
                                         {"error", std::string(listener.status().message())},
                                         {"fallback", "tunnels ride gRPC streams"}});
    return absl::OkStatus();
  }
  lanes_ = std::move(*listener);
  tunnel_->set_lane_port(lanes_->port());
  return absl::OkStatus();
}

absl::Status Server::ReloadPolicy() {
  absl::MutexLock lock(&policy_write_mu_);
  auto text = common::ReadFile(policy_file_);
  absl::StatusOr<std::shared_ptr<const policy::Policy>> parsed =
      text.ok() ? policy::Policy::Parse(*text) : text.status();
  if (!parsed.ok()) {
    common::LogError("policy.rejected", {{"file", policy_file_},
                                         {"error", std::string(parsed.status().message())},
                                         {"effect", "the previous policy stays in force"}});
    if (audit_) {
      audit_
          ->AppendSync(audit::MakeRecord(audit::EventClass::kApiActivity, "policy_reload",
                                         audit::kOutcomeFailure, std::string(audit::kActorSystem),
                                         "",
                                         {{"file", policy_file_},
                                          {"error", std::string(parsed.status().message())},
                                          {"effect", "the previous policy stays in force"}}))
          .IgnoreError();  // a failed commit is logged by the audit log itself
    }
    return absl::InvalidArgumentError(
        common::StrCat(policy_file_, ": ", parsed.status().message()));
  }
  if (store_->shared()) {
    // The file becomes every replica's policy: through the store.
    absl::Status stored = store_->SetPolicy({*text, clock_->NowUnix()});
    if (!stored.ok()) {
      common::LogError("policy.rejected", {{"file", policy_file_},
                                           {"error", std::string(stored.message())},
                                           {"effect", "the previous policy stays in force"}});
      return stored;
    }
  }
  ApplyPolicy(*parsed, *text, "reload");
  return absl::OkStatus();
}

absl::Status Server::LoadSharedPolicy(bool have_policy_file) {
  absl::StatusOr<store::PolicyRecord> stored = store_->GetPolicy();
  if (stored.ok()) {
    auto parsed = policy::Policy::Parse(stored->yaml);
    if (!parsed.ok()) {
      return absl::FailedPreconditionError(
          common::StrCat("the policy in the store does not parse (set by a newer release?): ",
                         parsed.status().message()));
    }
    absl::MutexLock lock(&policy_write_mu_);
    ApplyPolicy(*parsed, stored->yaml, "store");
    if (have_policy_file) {
      common::LogWarn("policy.file_not_applied",
                      {{"file", policy_file_},
                       {"effect", "the policy in the shared store is in force"},
                       {"fix",
                        "SIGHUP (or `admin policy set`) puts a file's policy in force on "
                        "every replica"}});
    }
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(stored.status())) {
    return stored.status();
  }
  if (have_policy_file) {
    return ReloadPolicy();  // the first replica's file seeds the store
  }
  common::LogWarn("policy.empty",
                  {{"effect", "no policy yet: every dial is denied"},
                   {"fix", "`drawbridge admin policy set -f FILE` (reaches every replica)"}});
  return absl::OkStatus();
}

absl::Status Server::RefreshSharedPolicy() {
  ASSIGN_OR_RETURN(store::PolicyRecord stored, [&]() -> absl::StatusOr<store::PolicyRecord> {
    auto got = store_->GetPolicy();
    return absl::IsNotFound(got.status()) ? store::PolicyRecord{} : got;
  }());
  absl::MutexLock lock(&policy_write_mu_);
  if (stored.yaml.empty() || stored.yaml == policy_text_) {
    return absl::OkStatus();
  }
  auto parsed = policy::Policy::Parse(stored.yaml);
  if (!parsed.ok()) {
    common::LogError("policy.rejected", {{"origin", "replica"},
                                         {"error", std::string(parsed.status().message())},
                                         {"effect", "the previous policy stays in force"}});
    policy_text_ = stored.yaml;  // said once, not on every poll
    return absl::OkStatus();
  }
  ApplyPolicy(*parsed, stored.yaml, "replica");
  return absl::OkStatus();
}

int Server::ApplyPolicy(std::shared_ptr<const policy::Policy> policy, const std::string& text,
                        const std::string& origin) {
  policy_->Set(policy);
  policy_text_ = text;
  int ended = 0;
  if (tunnel_) {
    // Connections opened under the old policy that the new one refuses end now.
    absl::Notification done;
    tunnel_->EnforcePolicy(policy, [&](int n) {
      ended = n;
      done.Notify();
    });
    done.WaitForNotification();
  }
  std::vector<std::string> rule_names;
  for (const auto& rule : policy->rules()) {
    rule_names.push_back(rule.name);
  }
  common::LogInfo("policy.loaded", {{"file", policy_file_},
                                    {"origin", origin},
                                    {"rules", common::StrCat(rule_names.size())},
                                    {"connections_ended", common::StrCat(ended)}});
  if (audit_) {
    audit_
        ->AppendSync(audit::MakeRecord(audit::EventClass::kApiActivity, "policy_reload",
                                       audit::kOutcomeSuccess, std::string(audit::kActorSystem), "",
                                       {{"file", policy_file_},
                                        {"origin", origin},
                                        {"rules", rule_names},
                                        {"sha256", common::HexEncode(pki::Sha256(text))},
                                        {"connections_ended", ended}}))
        .IgnoreError();
  }
  return ended;
}

std::vector<std::shared_ptr<AgentInstance>> Server::Agents() { return registry_->Snapshot(); }

std::vector<SessionInfo> Server::Sessions() { return tunnel_->ListSessions(); }

namespace {

// A session as a kill request's answer carries it between replicas.
std::string SessionToJson(const SessionInfo& s) {
  return nlohmann::json{{"id", s.id},
                        {"client", s.client},
                        {"client_peer", s.client_peer},
                        {"agent", s.agent},
                        {"agent_instance", s.agent_instance},
                        {"destination", s.destination},
                        {"resolved_address", s.resolved_address},
                        {"bytes_up", s.bytes_up},
                        {"bytes_down", s.bytes_down},
                        {"started_unix_ms", s.started_unix_ms}}
      .dump();
}

SessionInfo SessionFromJson(const std::string& text) {
  SessionInfo s;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return s;
  }
  auto str = [&](const char* key) { return j.value(key, std::string()); };
  s.id = str("id");
  s.client = str("client");
  s.client_peer = str("client_peer");
  s.agent = str("agent");
  s.agent_instance = str("agent_instance");
  s.destination = str("destination");
  s.resolved_address = str("resolved_address");
  s.bytes_up = j.value("bytes_up", uint64_t{0});
  s.bytes_down = j.value("bytes_down", uint64_t{0});
  s.started_unix_ms = j.value("started_unix_ms", int64_t{0});
  return s;
}

// Ends session `id` on this server; blocks until it is done (never call from
// a gRPC reaction).
std::optional<SessionInfo> KillLocalSession(TunnelService* tunnel, const std::string& id,
                                            const std::string& reason) {
  absl::Notification done;
  std::optional<SessionInfo> killed;
  tunnel->KillSession(id, reason, [&](std::optional<SessionInfo> s) {
    killed = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return killed;
}

}  // namespace

void Server::KillSession(const std::string& id, const std::string& reason,
                         std::function<void(std::optional<SessionInfo>)> done) {
  if (!store_->shared()) {
    tunnel_->KillSession(id, reason, std::move(done));
    return;
  }
  // A replica: the session may live on another one. We run on an admin
  // worker, where blocking is fine.
  if (std::optional<SessionInfo> local = KillLocalSession(tunnel_.get(), id, reason)) {
    done(std::move(local));
    return;
  }
  done(KillOnOtherReplica(id, reason));
}

std::optional<SessionInfo> Server::KillOnOtherReplica(const std::string& id,
                                                      const std::string& reason) {
  const int64_t now = clock_->NowUnix();
  if (absl::Status s = store_->RequestSessionKill({id, reason, now, "", ""}); !s.ok()) {
    common::LogWarn("session.kill_request_failed",
                    {{"id", id}, {"error", std::string(s.message())}});
    return std::nullopt;
  }
  common::LogInfo("session.kill_requested", {{"id", id}, {"reason", reason}});
  // Every replica looks at once (the state version moved); the one holding the
  // session answers within one round trip of its watcher.
  const auto deadline = std::chrono::steady_clock::now() + kRemoteKillWait;
  while (std::chrono::steady_clock::now() < deadline) {
    auto request = store_->GetSessionKill(id);
    if (request.ok() && !request->done_by.empty()) {
      SessionInfo killed = SessionFromJson(request->session_json);
      common::LogInfo("session.killed_elsewhere", {{"id", id}, {"replica", request->done_by}});
      return killed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

absl::Status Server::ProcessSessionKills() {
  const int64_t now = clock_->NowUnix();
  ASSIGN_OR_RETURN(std::vector<store::SessionKillRecord> pending,
                   store_->PendingSessionKills(now - kRemoteKillWait.count() / 1000 - 5));
  for (const auto& request : pending) {
    std::optional<SessionInfo> killed =
        KillLocalSession(tunnel_.get(), request.conn_id, request.reason);
    if (!killed) {
      continue;  // not ours
    }
    absl::Status s =
        store_->CompleteSessionKill(request.conn_id, ReplicaId(), SessionToJson(*killed));
    common::LogInfo("session.killed", {{"id", request.conn_id},
                                       {"origin", "replica"},
                                       {"client", killed->client},
                                       {"destination", killed->destination},
                                       {"answered", s.ok() ? "yes" : std::string(s.message())}});
  }
  return absl::OkStatus();
}

PolicySnapshot Server::Policy() {
  auto policy = policy_->Get();
  PolicySnapshot snap;
  snap.yaml = policy->ToYaml();
  snap.source = store_->shared() ? "the shared store (every replica)" : policy_file_;
  for (const auto& rule : policy->rules()) {
    snap.rule_names.push_back(rule.name);
  }
  snap.sha256 = common::HexEncode(pki::Sha256(snap.yaml));
  return snap;
}

absl::StatusOr<int> Server::SetPolicy(const std::string& yaml) {
  absl::MutexLock lock(&policy_write_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<const policy::Policy> parsed, policy::Policy::Parse(yaml));
  if (store_->shared()) {
    // In the store first: every replica applies it from there.
    RETURN_IF_ERROR(store_->SetPolicy({yaml, clock_->NowUnix()}));
  } else {
    // Kept in the policy file first, so a restart or SIGHUP keeps what was set.
    RETURN_IF_ERROR(common::WriteFileAtomic(policy_file_, yaml, 0600));
  }
  return ApplyPolicy(parsed, yaml, "admin");
}

AdminBackend::AuditReader Server::OwnAuditChain() {
  if (store_->shared()) {
    return {[conninfo = config_.store, replica = replica_id_] {
              return audit::LastSharedAuditSeq(conninfo, replica);
            },
            [conninfo = config_.store, replica = replica_id_](const audit::QueryFilter& filter) {
              return audit::QuerySharedAuditLog(conninfo, filter, replica);
            }};
  }
  return {[database = database_] { return audit::LastAuditSeq(database); },
          [database = database_](const audit::QueryFilter& filter) {
            return audit::QueryAuditLog(database, filter);
          }};
}

std::vector<store::ReplicaRecord> Server::Replicas() {
  if (!membership_) {
    return {};
  }
  // Asked of the store itself when it is shared (a replica that just left is
  // gone at once); the last heartbeat's view if the store does not answer.
  if (store_->shared()) {
    if (auto live = store_->ListReplicas(Membership::kDropAfter); live.ok()) {
      return *live;
    }
  }
  return membership_->Live();
}

std::string Server::ReplicaId() { return membership_ ? membership_->id() : ""; }

absl::Status Server::StartMetrics(const ServerOptions& options, const DataDir& dir) {
  metrics::Registry& r = metrics_registry_;
  r.AddGaugeFunction(
      "drawbridge_replicas_live",
      "Servers sharing this one's store with a heartbeat in the last 3 s", {},
      [this] { return membership_ ? static_cast<double>(membership_->Live().size()) : 0.0; });
  if (store_->shared()) {
    r.AddGaugeFunction(
        "drawbridge_shared_store_up",
        "1 while the shared store (PostgreSQL) answers; 0 while it does not (new "
        "dials and enrollments are refused)",
        {}, [this] { return state_watcher_ && state_watcher_->health().ok() ? 1.0 : 0.0; });
  }
  AgentRegistry* agents = registry_.get();
  r.AddGaugeFunction("drawbridge_agents_connected", "Agent identities with a Control stream", {},
                     [agents] {
                       std::set<std::string> ids;
                       for (const auto& a : agents->Snapshot()) {
                         ids.insert(a->identity());
                       }
                       return static_cast<double>(ids.size());
                     });
  r.AddGaugeFunction("drawbridge_control_streams", "Agent instances with a Control stream", {},
                     [agents] { return static_cast<double>(agents->Snapshot().size()); });
  // Certificates whose expiry an operator must watch: the listener's (re-issued
  // at start when under 30 days) and the intermediate CA that signs every leaf.
  auto leaf = pki::CertFromPem(pki_.server_chain_pem);
  int64_t tls_not_after = 0;
  if (leaf.ok()) {
    if (auto info = pki::InspectCertificate(leaf->get()); info.ok()) {
      tls_not_after = info->not_after;
    }
  }
  int64_t ca_not_after = 0;
  if (auto info = pki::InspectCertificate(pki_.ca->material().intermediate_cert.get()); info.ok()) {
    ca_not_after = info->not_after;
  }
  const common::Clock* clock = options.clock;
  r.AddGaugeFunction("drawbridge_certificate_expiry_seconds", "Seconds until a certificate expires",
                     {{"certificate", "server_tls"}}, [clock, tls_not_after] {
                       return static_cast<double>(tls_not_after - clock->NowUnix());
                     });
  r.AddGaugeFunction("drawbridge_certificate_expiry_seconds", "Seconds until a certificate expires",
                     {{"certificate", "intermediate_ca"}}, [clock, ca_not_after] {
                       return static_cast<double>(ca_not_after - clock->NowUnix());
                     });
  r.AddGaugeFunction("drawbridge_audit_last_seq", "Newest audit record seq committed", {},
                     [this] { return static_cast<double>(audit_last_seq_.load()); });
  const auto& targets = config_.audit.export_targets;
  for (size_t i = 0; i < targets.size(); ++i) {
    r.AddGaugeFunction("drawbridge_audit_export_lag_records",
                       "Audit records committed but not yet delivered to an export target",
                       {{"target", targets[i].Name()}}, [this, i] {
                         auto status = exporter_->Status();
                         uint64_t last = audit_last_seq_.load();
                         return i < status.size() && last > status[i].exported_seq
                                    ? static_cast<double>(last - status[i].exported_seq)
                                    : 0.0;
                       });
  }

  std::string listen =
      options.metrics_listen.empty() ? config_.metrics_listen : options.metrics_listen;
  if (listen == "off") {
    return absl::OkStatus();
  }
  metrics::Endpoint::Options eo;
  eo.listen = listen;
  eo.registry = &metrics_registry_;
  std::string database = dir.database;
  // "store": state.db can be read. A replica's state is in the shared store,
  // which "shared_store" covers (the watcher's health), without a connection
  // per probe.
  const bool shared = store_->shared();
  eo.ready = {
      {"store",
       [database, shared] {
         return shared ? absl::OkStatus() : audit::LastAuditSeq(database).status();
       }},
      {"audit", [this] { return audit_->StorageStatus(); }},
      {"ca",
       [clock, ca_not_after] {
         return ca_not_after > clock->NowUnix()
                    ? absl::OkStatus()
                    : absl::FailedPreconditionError("the intermediate CA has expired");
       }},
      {"shared_store",
       [this] { return state_watcher_ ? state_watcher_->health() : absl::OkStatus(); }},
      {"listening",
       [this] {
         return serving_.load() ? absl::OkStatus()
                                : absl::UnavailableError("the gRPC listener is shutting down");
       }},
  };
  ASSIGN_OR_RETURN(endpoint_, metrics::Endpoint::Start(std::move(eo)));
  return absl::OkStatus();
}

void Server::OnAuditCommitted(const std::vector<audit::Record>& records) {
  exporter_->Notify();
  if (!records.empty()) {
    audit_last_seq_.store(records.back().seq);
    metrics_->audit_records->Inc(records.size());
  }
  for (const audit::Alert& alert : alerts_->Observe(records)) {
    common::LogWarn("alert", {{"rule", alert.rule},
                              {"severity", alert.severity},
                              {"key", alert.key},
                              {"count", common::StrCat(alert.count)},
                              {"summary", alert.summary}});
    if (metrics::Counter* c = metrics_->Alert(alert.rule)) {
      c->Inc();
    }
    audit::Record record = alert.ToRecord();
    if (webhook_) {
      nlohmann::json body = record.details;
      body["source"] = "drawbridge";
      body["trust_domain"] = config_.trust_domain;
      body["time"] = audit::FormatTimeUtc(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
      webhook_->Post(body.dump());
    }
    audit_->Append(std::move(record));  // on the writer thread: never blocks
  }
}

void Server::StartReplicaSet(const ServerOptions& options) {
  std::string advertise =
      options.advertise_override.empty() ? config_.advertise : options.advertise_override;
  if (options.advertise_override.empty()) {
    common::LogWarn("replica.no_advertise",
                    {{"advertise", advertise},
                     {"effect",
                      "agents reach this replica only through the shared address in "
                      "their credentials, not with a stream of their own"},
                     {"fix", "give each replica --advertise HOST:PORT of its own listener"}});
  }
  if (absl::EndsWith(advertise, ":0")) {
    advertise = common::StrCat(advertise.substr(0, advertise.size() - 1), port_);
    membership_->SetAdvertise(advertise);
  }
  TunnelService* tunnel = tunnel_.get();
  membership_->SetOnChange(
      [tunnel, self = membership_->id()](const std::vector<store::ReplicaRecord>& live) {
        v1::ReplicaSet set;
        for (const auto& r : live) {
          v1::Replica* replica = set.add_replicas();
          replica->set_id(r.id);
          replica->set_address(r.advertise);
        }
        set.set_self(self);
        tunnel->SetReplicaSet(std::move(set));
      });
}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

void Server::Shutdown(std::chrono::milliseconds grace) {
  serving_ = false;  // /readyz says so at once
  if (store_ && store_->shared() && tunnel_ && grpc_ && grace.count() > 0) {
    // A replica: first the clients move their next dials elsewhere (a balancer
    // that watches /readyz sends their new connections to the others) while
    // this one still serves what arrives with its agents connected; only then
    // do the agents go, which leaves this replica unable to serve a dial.
    tunnel_->SendClientGoaway();
    common::LogInfo("server.draining",
                    {{"clients_move_within_ms", common::StrCat(kClientMoveTime.count())}});
    std::this_thread::sleep_for(std::min(grace, kClientMoveTime));
  }
  if (membership_) {
    membership_->Stop();  // the others (and their agents) stop counting on us
  }
  if (state_watcher_) {
    state_watcher_->Stop();
  }
  if (directory_) {
    directory_->SetRevocationListener(nullptr);
  }
  if (grpc_) {
    const auto deadline = std::chrono::system_clock::now() + grace;
    // gRPC stops taking calls at once and waits for the live ones; its own
    // deadline is a backstop a little after ours.
    if (lanes_) {
      lanes_->StopAccepting();
    }
    std::thread stop_grpc([this, deadline] {
      grpc_->Shutdown(deadline + std::chrono::seconds(2));
      grpc_->Wait();
    });
    if (tunnel_) {
      tunnel_->SendGoaway();
      // Tunnels may finish within the grace; those still live then are ended by
      // us rather than cancelled by gRPC, so both ends are told to reset their
      // sockets (an error, never a clean end) before the Watch streams close.
      tunnel_->WaitForNoSessions(deadline);
      absl::Notification ended;
      tunnel_->EndAll("server shutdown", [&ended] { ended.Notify(); });
      ended.WaitForNotificationWithTimeout(absl::Seconds(1));
    }
    stop_grpc.join();
    lanes_.reset();  // after EndAll: lanes still open are reset with their threads
    grpc_.reset();
  }
  pool_.reset();  // finishes queued work before the services go away
  if (audit_) {
    audit_->Flush();  // what the last calls recorded, and the alerts it raised
  }
}

void Server::Wait() {
  if (grpc_) {
    grpc_->Wait();
  }
}

}  // namespace drawbridge::server

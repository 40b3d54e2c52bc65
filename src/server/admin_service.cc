#include <thread>

#include "absl/strings/cord.h"
#include "absl/synchronization/notification.h"
#include "audit/query.h"
#include "common/clock.h"
#include "common/ip.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/identity.h"
#include "pki/keys.h"
#include "pki/workload_trust.h"
#include "server/audit_events.h"
#include "server/services.h"

namespace drawbridge::server {
namespace {

void FillKey(const store::KeyRecord& k, v1::KeyInfo* out) {
  out->set_key_id(k.key_id);
  out->set_identity(k.identity);
  out->set_algorithm(k.algorithm);
  out->set_created_unix(k.created_at);
  out->set_removed_unix(k.removed_at);
  if (k.algorithm == pki::kWorkloadTrustAlgorithm) {
    if (auto t = pki::ParseWorkloadTrust(k.public_key_pem); t.ok()) {
      v1::WorkloadTrust* w = out->mutable_workload_trust();
      w->set_issuer(t->issuer);
      w->set_subject(t->subject);
      w->set_audience(t->audience);
      w->set_jwks_uri(t->jwks_uri);
      w->set_jwks_json(t->jwks_json);
      w->set_ca_bundle_pem(t->ca_bundle_pem);
    }
  }
}

pki::WorkloadTrust FromProto(const v1::WorkloadTrust& t) {
  return {t.issuer(), t.subject(), t.audience(), t.jwks_uri(), t.jwks_json(), t.ca_bundle_pem()};
}

// A workload trust is kept as one of the identity's keys (pki/workload_trust.h).
absl::StatusOr<store::KeyRecord> NewTrustRecord(const std::string& identity,
                                                const v1::WorkloadTrust& proto, int64_t now) {
  pki::WorkloadTrust trust = FromProto(proto);
  RETURN_IF_ERROR(pki::ValidateWorkloadTrust(trust));
  return store::KeyRecord{
      pki::WorkloadTrustKeyId(trust),  identity, std::string(pki::kWorkloadTrustAlgorithm),
      pki::WorkloadTrustToJson(trust), now,      0};
}

// Validates a PEM public key from the admin CLI; returns its key record.
absl::StatusOr<store::KeyRecord> NewKeyRecord(const std::string& identity,
                                              const std::string& public_key_pem, int64_t now) {
  auto key = pki::PublicKeyFromPem(public_key_pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError("public key must be a PEM ECDSA P-256 or Ed25519 public key");
  }
  ASSIGN_OR_RETURN(pki::KeyAlgorithm alg, pki::AlgorithmOf(key->get()));
  ASSIGN_OR_RETURN(std::string key_id, pki::KeyIdOf(key->get()));
  ASSIGN_OR_RETURN(std::string canonical_pem, pki::PublicKeyToPem(key->get()));
  return store::KeyRecord{key_id, identity, std::string(pki::JoseName(alg)), canonical_pem, now, 0};
}

absl::StatusOr<std::string> CanonicalIdentity(const std::string& text) {
  ASSIGN_OR_RETURN(pki::Identity id, pki::ParseIdentity(text));
  return id.ToString();
}

}  // namespace

// The audit view of an identity: status, CIDRs and keys (ids and state, never
// key material). null if it does not exist.
nlohmann::json AdminService::IdentitySnapshot(const std::string& identity) const {
  auto record = ctx_.directory->GetIdentity(identity);
  if (!record.ok()) {
    return nullptr;
  }
  nlohmann::json keys = nlohmann::json::array();
  for (const auto& k : ctx_.directory->ListKeys(identity)) {
    keys.push_back(
        {{"key_id", k.key_id}, {"algorithm", k.algorithm}, {"removed", k.removed_at != 0}});
  }
  return {{"enabled", record->enabled}, {"cidrs", record->cidrs}, {"keys", keys}};
}

absl::StatusOr<Caller> AdminService::AuthorizeAdmin(grpc::CallbackServerContext* context,
                                                    const char* method, audit::Record* refusal) {
  const std::string peer = context->peer();
  auto caller =
      AuthenticateCaller(*context->auth_context(), ctx_.trust_domain, *ctx_.directory, *ctx_.clock);
  if (caller.ok() && caller->identity.kind != pki::IdentityKind::kAdmin) {
    absl::Status denied = absl::PermissionDeniedError("the admin API requires an admin/* identity");
    denied.SetPayload(kCallerIdentityPayload, absl::Cord(caller->identity.ToString()));
    caller = denied;
  }
  if (!caller.ok()) {
    common::LogWarn(
        "admin.denied",
        {{"method", method}, {"peer", peer}, {"reason", std::string(caller.status().message())}});
    *refusal = AuthFailureRecord(common::StrCat("Admin/", method), peer, caller.status());
  }
  return caller;
}

template <typename Fn>
grpc::ServerUnaryReactor* AdminService::Run(grpc::CallbackServerContext* context,
                                            const char* method, std::string target, Fn fn,
                                            AdminKind kind) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const std::string peer = context->peer();
  audit::Record refusal;
  auto caller = AuthorizeAdmin(context, method, &refusal);
  if (!caller.ok()) {
    // Answered once the refusal is on record.
    grpc::Status status = ToGrpcStatus(caller.status());
    AuditAppend(ctx_.audit.get(), std::move(refusal),
                [reactor, status](absl::Status) { reactor->Finish(status); });
    return reactor;
  }
  ctx_.pool->Post([this, reactor, method, peer, kind, target = std::move(target), who = *caller,
                   fn = std::move(fn)]() mutable {
    // The identity the call is about: the first word of the target.
    const std::string identity = target.substr(0, target.find(' '));
    nlohmann::json before = kind == AdminKind::kChange ? IdentitySnapshot(identity) : nullptr;
    nlohmann::json details = {{"method", method}, {"target", target}, {"peer", peer}};
    absl::Status status;
    if constexpr (std::is_invocable_v<Fn&, int64_t, nlohmann::json*>) {
      status = fn(ctx_.clock->NowUnix(), &details);
    } else {
      status = fn(ctx_.clock->NowUnix());
    }
    common::LogInfo("admin.call", {{"method", method},
                                   {"admin", who.identity.ToString()},
                                   {"target", target},
                                   {"result", status.ok() ? "ok" : std::string(status.message())}});
    if (!status.ok()) {
      details["error"] = std::string(status.message());
    }
    if (kind == AdminKind::kChange) {
      details["before"] = before;
      details["after"] = IdentitySnapshot(identity);
    }
    audit::Record record =
        audit::MakeRecord(kind == AdminKind::kChange ? audit::EventClass::kAccountChange
                                                     : audit::EventClass::kApiActivity,
                          kind == AdminKind::kRead ? "admin_read" : "admin_change",
                          status.ok() ? audit::kOutcomeSuccess : audit::kOutcomeFailure,
                          who.identity.ToString(), PeerIp(peer), std::move(details));
    // A change is reported done only once it is on record.
    AuditAppend(ctx_.audit.get(), std::move(record), [reactor, status](absl::Status audited) {
      if (!audited.ok() && status.ok()) {
        common::LogError("admin.audit_failed", {{"error", std::string(audited.message())}});
      }
      reactor->Finish(ToGrpcStatus(status));
    });
  });
  return reactor;
}

void AdminService::FillIdentity(const store::IdentityRecord& r, v1::IdentityInfo* out) const {
  out->set_identity(r.identity);
  auto id = pki::ParseIdentity(r.identity);
  if (id.ok()) {
    out->set_spiffe_id(id->SpiffeId(ctx_.trust_domain));
  }
  out->set_enabled(r.enabled);
  for (const auto& c : r.cidrs) {
    out->add_cidrs(c);
  }
  out->set_created_unix(r.created_at);
  out->set_updated_unix(r.updated_at);
  for (const auto& k : ctx_.directory->ListKeys(r.identity)) {
    FillKey(k, out->add_keys());
  }
}

grpc::ServerUnaryReactor* AdminService::CreateIdentity(grpc::CallbackServerContext* context,
                                                       const v1::CreateIdentityRequest* request,
                                                       v1::CreateIdentityResponse* response) {
  return Run(
      context, "CreateIdentity", request->identity(),
      [this, request, response](int64_t now) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        store::IdentityRecord record{identity, true, {}, now, now};
        for (const auto& text : request->cidrs()) {
          ASSIGN_OR_RETURN(common::Cidr cidr, common::ParseCidr(text));
          record.cidrs.push_back(cidr.ToString());
        }
        ASSIGN_OR_RETURN(store::KeyRecord key,
                         request->has_workload_trust()
                             ? NewTrustRecord(identity, request->workload_trust(), now)
                             : NewKeyRecord(identity, request->public_key_pem(), now));
        RETURN_IF_ERROR(ctx_.directory->CreateIdentity(record, key));
        FillIdentity(record, response->mutable_identity());
        FillKey(key, response->mutable_key());
        return absl::OkStatus();
      },
      AdminKind::kChange);
}

grpc::ServerUnaryReactor* AdminService::ListIdentities(grpc::CallbackServerContext* context,
                                                       const v1::ListIdentitiesRequest* request,
                                                       v1::ListIdentitiesResponse* response) {
  return Run(
      context, "ListIdentities", request->kind(),
      [this, request, response](int64_t) -> absl::Status {
        const std::string& kind = request->kind();
        if (!kind.empty() && kind != "agent" && kind != "client" && kind != "admin") {
          return absl::InvalidArgumentError("kind must be agent, client or admin");
        }
        for (const auto& r : ctx_.directory->ListIdentities()) {
          if (kind.empty() || common::StartsWith(r.identity, kind + "/")) {
            FillIdentity(r, response->add_identities());
          }
        }
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::GetIdentity(grpc::CallbackServerContext* context,
                                                    const v1::GetIdentityRequest* request,
                                                    v1::IdentityInfo* response) {
  return Run(
      context, "GetIdentity", request->identity(),
      [this, request, response](int64_t) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        ASSIGN_OR_RETURN(auto record, ctx_.directory->GetIdentity(identity));
        FillIdentity(record, response);
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::SetIdentityEnabled(
    grpc::CallbackServerContext* context, const v1::SetIdentityEnabledRequest* request,
    v1::IdentityInfo* response) {
  return Run(
      context, request->enabled() ? "EnableIdentity" : "DisableIdentity", request->identity(),
      [this, request, response](int64_t now) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        RETURN_IF_ERROR(ctx_.directory->SetEnabled(identity, request->enabled(), now));
        ASSIGN_OR_RETURN(auto record, ctx_.directory->GetIdentity(identity));
        FillIdentity(record, response);
        return absl::OkStatus();
      },
      AdminKind::kChange);
}

grpc::ServerUnaryReactor* AdminService::AddKey(grpc::CallbackServerContext* context,
                                               const v1::AddKeyRequest* request,
                                               v1::KeyInfo* response) {
  return Run(
      context, "AddKey", request->identity(),
      [this, request, response](int64_t now) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        ASSIGN_OR_RETURN(store::KeyRecord key,
                         request->has_workload_trust()
                             ? NewTrustRecord(identity, request->workload_trust(), now)
                             : NewKeyRecord(identity, request->public_key_pem(), now));
        RETURN_IF_ERROR(ctx_.directory->AddKey(key));
        FillKey(key, response);
        return absl::OkStatus();
      },
      AdminKind::kChange);
}

grpc::ServerUnaryReactor* AdminService::ListKeys(grpc::CallbackServerContext* context,
                                                 const v1::ListKeysRequest* request,
                                                 v1::ListKeysResponse* response) {
  return Run(
      context, "ListKeys", request->identity(),
      [this, request, response](int64_t) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        RETURN_IF_ERROR(ctx_.directory->GetIdentity(identity).status());
        for (const auto& k : ctx_.directory->ListKeys(identity)) {
          FillKey(k, response->add_keys());
        }
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::RemoveKey(grpc::CallbackServerContext* context,
                                                  const v1::RemoveKeyRequest* request,
                                                  v1::KeyInfo* response) {
  return Run(
      context, "RemoveKey", common::StrCat(request->identity(), " ", request->key_id()),
      [this, request, response](int64_t now) -> absl::Status {
        ASSIGN_OR_RETURN(std::string identity, CanonicalIdentity(request->identity()));
        RETURN_IF_ERROR(ctx_.directory->RemoveKey(identity, request->key_id(), now));
        ASSIGN_OR_RETURN(auto key, ctx_.directory->GetKey(request->key_id()));
        FillKey(key, response);
        return absl::OkStatus();
      },
      AdminKind::kChange);
}

namespace {

void FillSession(const SessionInfo& i, v1::SessionInfo* out) {
  out->set_id(i.id);
  out->set_client(i.client);
  out->set_client_peer(i.client_peer);
  out->set_agent(i.agent);
  out->set_agent_instance(i.agent_instance);
  out->set_destination(i.destination);
  out->set_resolved_address(i.resolved_address);
  out->set_bytes_up(i.bytes_up);
  out->set_bytes_down(i.bytes_down);
  out->set_started_unix_ms(i.started_unix_ms);
}

nlohmann::json SessionJson(const SessionInfo& i) {
  return {{"id", i.id},
          {"client", i.client},
          {"agent", i.agent},
          {"agent_instance", i.agent_instance},
          {"destination", i.destination},
          {"bytes_up", i.bytes_up},
          {"bytes_down", i.bytes_down}};
}

void FillPolicy(const PolicySnapshot& p, v1::PolicyInfo* out) {
  out->set_yaml(p.yaml);
  out->set_source(p.source);
  for (const auto& name : p.rule_names) {
    out->add_rule_names(name);
  }
  out->set_sha256(p.sha256);
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::ListAgents(grpc::CallbackServerContext* context,
                                                   const v1::ListAgentsRequest*,
                                                   v1::ListAgentsResponse* response) {
  return Run(
      context, "ListAgents", "",
      [this, response](int64_t) -> absl::Status {
        const int64_t now_ms = common::SteadyNowMs();  // ejected_until_ms is steady time
        for (const auto& a : backend_->Agents()) {
          v1::AgentInfo* out = response->add_agents();
          out->set_identity(a->identity());
          out->set_instance_id(a->instance_id());
          out->set_peer(a->peer());
          out->set_version(a->version());
          out->set_connected_since_unix(a->connected_since());
          out->set_active_streams(a->active_streams.load());
          for (const auto& entry : a->advertised()) {
            out->add_allowlist(entry);
          }
          out->set_key_id(a->key_id());
          out->set_ejected(a->ejected_until_ms.load() > now_ms);
        }
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::ListReplicas(grpc::CallbackServerContext* context,
                                                     const v1::ListReplicasRequest*,
                                                     v1::ListReplicasResponse* response) {
  return Run(
      context, "ListReplicas", "",
      [this, response](int64_t) -> absl::Status {
        const std::string self = backend_->ReplicaId();
        for (const auto& r : backend_->Replicas()) {
          v1::ReplicaInfo* out = response->add_replicas();
          out->set_id(r.id);
          out->set_advertise(r.advertise);
          out->set_started_at_unix(r.started_at);
          out->set_heartbeat_age_ms(r.heartbeat_age_ms);
          out->set_self(r.id == self);
        }
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::ListSessions(grpc::CallbackServerContext* context,
                                                     const v1::ListSessionsRequest*,
                                                     v1::ListSessionsResponse* response) {
  return Run(
      context, "ListSessions", "",
      [this, response](int64_t) -> absl::Status {
        for (const auto& i : backend_->Sessions()) {
          FillSession(i, response->add_sessions());
        }
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::KillSession(grpc::CallbackServerContext* context,
                                                    const v1::KillSessionRequest* request,
                                                    v1::KillSessionResponse* response) {
  return Run(
      context, "KillSession", request->id().substr(0, 64),
      [this, request, response](int64_t, nlohmann::json* details) -> absl::Status {
        std::string id = common::ToLower(request->id());
        if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
          return absl::InvalidArgumentError(
              "session id must be 32 hex digits, as `admin sessions list` shows it");
        }
        // Blocking here is fine: this runs on a worker, the kill on a gRPC thread.
        absl::Notification done;
        std::optional<SessionInfo> killed;
        backend_->KillSession(id, "ended by an administrator", [&](std::optional<SessionInfo> s) {
          killed = std::move(s);
          done.Notify();
        });
        done.WaitForNotification();
        if (!killed) {
          return absl::NotFoundError(
              common::StrCat("no live session ", id, " (it may have ended already)"));
        }
        FillSession(*killed, response->mutable_session());
        (*details)["session"] = SessionJson(*killed);
        return absl::OkStatus();
      },
      AdminKind::kOperation);
}

grpc::ServerUnaryReactor* AdminService::GetPolicy(grpc::CallbackServerContext* context,
                                                  const v1::GetPolicyRequest*,
                                                  v1::PolicyInfo* response) {
  return Run(
      context, "GetPolicy", "",
      [this, response](int64_t) -> absl::Status {
        FillPolicy(backend_->Policy(), response);
        return absl::OkStatus();
      },
      AdminKind::kRead);
}

grpc::ServerUnaryReactor* AdminService::SetPolicy(grpc::CallbackServerContext* context,
                                                  const v1::SetPolicyRequest* request,
                                                  v1::PolicyInfo* response) {
  return Run(
      context, "SetPolicy", "",
      [this, request, response](int64_t, nlohmann::json* details) -> absl::Status {
        PolicySnapshot before = backend_->Policy();
        (*details)["before"] = {{"rules", before.rule_names}, {"sha256", before.sha256}};
        ASSIGN_OR_RETURN(int ended, backend_->SetPolicy(request->yaml()));
        PolicySnapshot after = backend_->Policy();
        (*details)["after"] = {{"rules", after.rule_names}, {"sha256", after.sha256}};
        (*details)["connections_ended"] = ended;
        FillPolicy(after, response);
        response->set_connections_ended(ended);
        return absl::OkStatus();
      },
      AdminKind::kOperation);
}

namespace {

// Streams audit records after a seq, then (with follow) new ones as they commit.
// Reads run on a thread of the stream's own (an admin's tail may last hours; the
// worker pool is for short tasks). That thread is the only one that starts writes
// and finishes the stream, and Finish is the last thing it does with the reactor.
class TailAuditReactor final : public grpc::ServerWriteReactor<v1::AuditBatch> {
 public:
  TailAuditReactor(AdminBackend::AuditReader chain, v1::TailAuditRequest request)
      : state_(std::make_shared<State>()) {
    std::thread([this, chain = std::move(chain), request = std::move(request)] {
      Run(chain, request);
    }).detach();
  }
  // An immediate refusal.
  explicit TailAuditReactor(const grpc::Status& status) { Finish(status); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    state_->writing = false;
    state_->write_ok = ok;
  }
  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    state_->cancelled = true;
  }
  void OnDone() override { delete this; }

 private:
  struct State {
    absl::Mutex mu;
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool write_ok ABSL_GUARDED_BY(mu) = true;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
  };
  static constexpr size_t kBatch = 500;

  void Run(const AdminBackend::AuditReader& chain, const v1::TailAuditRequest& request) {
    uint64_t after = request.after_seq();
    if (after == 0 && request.last() > 0) {
      auto last = chain.last_seq();
      if (!last.ok()) {
        Finish(ToGrpcStatus(last.status()));
        return;
      }
      after = *last > request.last() ? *last - request.last() : 0;
    }
    for (;;) {
      audit::QueryFilter filter;
      filter.after_seq = after;
      filter.limit = kBatch;
      auto records = chain.query(filter);
      if (!records.ok()) {
        Finish(ToGrpcStatus(records.status()));
        return;
      }
      State& st = *state_;
      if (!records->empty()) {
        batch_.Clear();
        for (const auto& r : *records) {
          batch_.add_records_json(audit::ToJsonLine(r));
        }
        after = records->back().seq;
        {
          absl::MutexLock lock(&st.mu);
          st.writing = true;
        }
        StartWrite(&batch_);
        bool write_ok;
        {
          absl::MutexLock lock(&st.mu);
          auto written = [&st]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) { return !st.writing; };
          st.mu.Await(absl::Condition(&written));
          write_ok = st.write_ok;
        }
        if (!write_ok) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away"));
          return;
        }
        continue;  // there may be more
      }
      if (!request.follow()) {
        Finish(grpc::Status::OK);
        return;
      }
      bool cancelled;
      {
        absl::MutexLock lock(&st.mu);
        st.mu.AwaitWithTimeout(absl::Condition(&st.cancelled), absl::Milliseconds(250));
        cancelled = st.cancelled;
      }
      if (cancelled) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "tail ended by the reader"));
        return;
      }
    }
  }

  std::shared_ptr<State> state_;  // shared with Run, which may outlive OnDone's caller frame
  v1::AuditBatch batch_;
};

}  // namespace

grpc::ServerWriteReactor<v1::AuditBatch>* AdminService::TailAudit(
    grpc::CallbackServerContext* context, const v1::TailAuditRequest* request) {
  audit::Record refusal;
  auto caller = AuthorizeAdmin(context, "TailAudit", &refusal);
  if (!caller.ok()) {
    AuditAppend(ctx_.audit.get(), std::move(refusal));
    return new TailAuditReactor(ToGrpcStatus(caller.status()));
  }
  AuditAppend(
      ctx_.audit.get(),
      audit::MakeRecord(audit::EventClass::kApiActivity, "admin_read", audit::kOutcomeSuccess,
                        caller->identity.ToString(), PeerIp(context->peer()),
                        {{"method", "TailAudit"},
                         {"after_seq", request->after_seq()},
                         {"last", request->last()},
                         {"follow", request->follow()},
                         {"peer", context->peer()}}));
  return new TailAuditReactor(backend_->OwnAuditChain(), *request);
}

}  // namespace drawbridge::server

#include "absl/strings/cord.h"
#include "common/ip.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/identity.h"
#include "pki/keys.h"
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

template <typename Fn>
grpc::ServerUnaryReactor* AdminService::Run(grpc::CallbackServerContext* context,
                                            const char* method, std::string target, Fn fn,
                                            AdminKind kind) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
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
    audit::Record record =
        AuthFailureRecord(common::StrCat("Admin/", method), peer, caller.status());
    grpc::Status status = ToGrpcStatus(caller.status());
    AuditAppend(ctx_.audit.get(), std::move(record),
                [reactor, status](absl::Status) { reactor->Finish(status); });
    return reactor;
  }
  ctx_.pool->Post([this, reactor, method, peer, kind, target = std::move(target), who = *caller,
                   fn = std::move(fn)]() mutable {
    // The identity the call is about: the first word of the target.
    const std::string identity = target.substr(0, target.find(' '));
    nlohmann::json before = kind == AdminKind::kChange ? IdentitySnapshot(identity) : nullptr;
    absl::Status status = fn(ctx_.clock->NowUnix());
    common::LogInfo("admin.call", {{"method", method},
                                   {"admin", who.identity.ToString()},
                                   {"target", target},
                                   {"result", status.ok() ? "ok" : std::string(status.message())}});
    nlohmann::json details = {{"method", method}, {"target", target}, {"peer", peer}};
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
                          kind == AdminKind::kChange ? "admin_change" : "admin_read",
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
                         NewKeyRecord(identity, request->public_key_pem(), now));
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
                         NewKeyRecord(identity, request->public_key_pem(), now));
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

}  // namespace drawbridge::server

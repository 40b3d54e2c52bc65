#include "common/log.h"
#include "common/random.h"
#include "common/strings.h"
#include "server/audit_events.h"
#include "server/services.h"

namespace drawbridge::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) {
    return grpc::Status::OK;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerUnaryReactor* EnrollmentService::Enroll(grpc::CallbackServerContext* context,
                                                    const v1::EnrollRequest* request,
                                                    v1::EnrollResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::string peer = context->peer();
  // Signature checks, the replay cache write and signing block: off the reaction.
  ctx_.pool->Post([this, reactor, request, response, peer] {
    EnrollmentRefusal refusal;
    auto result = request->workload_token().empty()
                      ? ctx_.enroller->Enroll(request->token(), request->csr_der(),
                                              common::IpFromGrpcPeer(peer), &refusal)
                      : ctx_.enroller->EnrollWorkload(request->identity(),
                                                      request->workload_token(), request->csr_der(),
                                                      common::IpFromGrpcPeer(peer), &refusal);
    if (!result.ok()) {
      // A reference ties the caller's message to the operator's log line and
      // the audit record.
      std::string ref = common::RandomHex(6);
      if (ctx_.metrics) {
        ctx_.metrics->Enrollment(refusal.reason_code)->Inc();
      }
      common::LogWarn("enroll.refused", {{"ref", ref},
                                         {"identity", refusal.identity},
                                         {"peer", peer},
                                         {"reason", refusal.detail}});
      grpc::Status refused(static_cast<grpc::StatusCode>(refusal.code),
                           common::StrCat(refusal.public_message, " (ref ", ref, ")"));
      // The refusal is answered once it is on record (invariant 6), and even if
      // recording failed: the caller gets nothing either way.
      AuditAppend(
          ctx_.audit.get(),
          audit::MakeRecord(audit::EventClass::kAuthentication, "enroll", audit::kOutcomeFailure,
                            refusal.identity.empty() ? "unknown" : refusal.identity, PeerIp(peer),
                            {{"reason_code", refusal.reason_code},
                             {"reason", refusal.detail},
                             {"ref", ref},
                             {"peer", peer}}),
          [reactor, refused](absl::Status) { reactor->Finish(refused); });
      return;
    }
    if (ctx_.metrics) {
      ctx_.metrics->Enrollment("ok")->Inc();
    }
    common::LogInfo("enroll.ok", {{"identity", result->identity},
                                  {"key_id", result->key_id},
                                  {"serial", result->serial},
                                  {"not_after", common::StrCat(result->not_after)},
                                  {"peer", peer}});
    response->set_certificate_chain_pem(result->chain_pem);
    response->set_trust_bundle_pem(result->trust_bundle_pem);
    response->set_not_after_unix(result->not_after);
    response->set_spiffe_id(result->spiffe_id);
    response->set_serial(result->serial);
    // Both records gate the certificate: if the log cannot be written they are
    // dropped, the certificate is withheld, and the refusal is recorded instead.
    constexpr auto kGate = audit::AuditLog::Retention::kDropOnFailure;
    AuditAppend(ctx_.audit.get(),
                audit::MakeRecord(
                    audit::EventClass::kAuthentication, "enroll", audit::kOutcomeSuccess,
                    result->identity, PeerIp(peer),
                    {{"identity", result->identity}, {"key_id", result->key_id}, {"peer", peer}}),
                nullptr, kGate);
    // The certificate is handed out only once its issue is durable: a crash
    // cannot leave a certificate in use that the audit trail does not know.
    audit::AuditLog* log = ctx_.audit.get();
    AuditAppend(
        log,
        audit::MakeRecord(audit::EventClass::kAuthentication, "issue_certificate",
                          audit::kOutcomeSuccess, result->identity, PeerIp(peer),
                          {{"identity", result->identity},
                           {"key_id", result->key_id},
                           {"serial", result->serial},
                           {"spiffe_id", result->spiffe_id},
                           {"not_after", audit::FormatTimeUtc(result->not_after * 1000)}}),
        [reactor, log, identity = result->identity, serial = result->serial, peer](absl::Status s) {
          if (!s.ok()) {
            common::LogError("enroll.audit_failed", {{"error", std::string(s.message())}});
            AuditAppend(log, audit::MakeRecord(audit::EventClass::kAuthentication, "enroll",
                                               audit::kOutcomeFailure, identity, PeerIp(peer),
                                               {{"reason_code", "audit_unavailable"},
                                                {"reason", std::string(s.message())},
                                                {"withheld_serial", serial},
                                                {"peer", peer}}));
            reactor->Finish(grpc::Status(
                grpc::StatusCode::UNAVAILABLE,
                common::StrCat("enrollment failed: ", kAuditUnavailableMessage, "; retry")));
            return;
          }
          reactor->Finish(grpc::Status::OK);
        },
        kGate);
  });
  return reactor;
}

}  // namespace drawbridge::server

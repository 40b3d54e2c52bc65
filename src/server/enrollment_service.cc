#include "common/log.h"
#include "common/random.h"
#include "common/strings.h"
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
    auto result = ctx_.enroller->Enroll(request->token(), request->csr_der(),
                                        common::IpFromGrpcPeer(peer), &refusal);
    if (!result.ok()) {
      // A reference ties the caller's message to the operator's log line.
      std::string ref = common::RandomHex(6);
      common::LogWarn("enroll.refused", {{"ref", ref},
                                         {"identity", refusal.identity},
                                         {"peer", peer},
                                         {"reason", refusal.detail}});
      reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(refusal.code),
                                   common::StrCat(refusal.public_message, " (ref ", ref, ")")));
      return;
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
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace drawbridge::server

#include "server/audit_events.h"

#include "common/ip.h"
#include "common/log.h"
#include "server/auth.h"
#include "server/identity_directory.h"

namespace drawbridge::server {

std::string PeerIp(const std::string& grpc_peer) {
  auto ip = common::IpFromGrpcPeer(grpc_peer);
  return ip ? ip->ToString() : "";
}

void AuditAppend(audit::AuditLog* log, audit::Record record, std::function<void(absl::Status)> done,
                 audit::AuditLog::Retention retention) {
  if (log == nullptr) {
    if (done) {
      done(absl::OkStatus());
    }
    return;
  }
  log->Append(std::move(record), std::move(done), retention);
}

audit::Record AuthFailureRecord(const std::string& rpc, const std::string& grpc_peer,
                                const absl::Status& refusal) {
  // A verified certificate of a disabled identity or removed key names who it
  // was; without one the caller is unknown.
  auto identity = refusal.GetPayload(kCallerIdentityPayload);
  return audit::MakeRecord(audit::EventClass::kAuthentication, "authenticate",
                           audit::kOutcomeFailure, identity ? std::string(*identity) : "unknown",
                           PeerIp(grpc_peer),
                           {{"rpc", rpc},
                            {"peer", grpc_peer},
                            {"reason_code", ReasonCodeOf(refusal)},
                            {"reason", std::string(refusal.message())}});
}

}  // namespace drawbridge::server

#include "server/auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/cord.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/certs.h"

namespace drawbridge::server {

absl::StatusOr<Caller> AuthenticateCaller(const grpc::AuthContext& auth,
                                          const std::string& trust_domain,
                                          const IdentityDirectory& directory,
                                          const common::Clock& clock) {
  std::vector<grpc::string_ref> pems = auth.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (!auth.IsPeerAuthenticated() || pems.empty()) {
    return absl::UnauthenticatedError(
        "a client certificate is required: enroll first (only Enroll works without one)");
  }
  std::string_view pem(pems.front().data(), pems.front().size());
  ASSIGN_OR_RETURN(common::X509Ptr cert, pki::CertFromPem(pem));
  ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(cert.get()));
  if (info.uri_sans.size() != 1) {
    return absl::UnauthenticatedError("client certificate must carry exactly one SPIFFE ID");
  }
  auto identity = pki::ParseSpiffeId(info.uri_sans.front(), trust_domain);
  if (!identity.ok()) {
    return absl::UnauthenticatedError("client certificate identity is not in this trust domain");
  }
  if (info.not_after <= clock.NowUnix()) {
    return absl::UnauthenticatedError("client certificate has expired: renew it");
  }
  Caller caller{*identity, info.uri_sans.front(), info.key_id, info.serial, info.not_after};
  absl::Status active = directory.CheckActive(identity->ToString(), info.key_id);
  if (!active.ok()) {
    // The certificate is genuine, so the identity is known: audit names it.
    active.SetPayload(kCallerIdentityPayload, absl::Cord(identity->ToString()));
    return active;
  }
  return caller;
}

}  // namespace drawbridge::server

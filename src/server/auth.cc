#include "server/auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/cord.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/certs.h"

namespace drawbridge::server {

namespace {

// What the peer's certificate says, by its PEM. Parsing it on every RPC cost
// ~40% of the server's CPU per dial (OpenSSL 3 decodes the public key through
// its provider framework); a connection presents the same certificate for its
// lifetime. The cache holds only facts derived from the exact bytes (TLS has
// already verified them); expiry and whether the identity and key are still
// active are checked on every call. Bounded: cleared when full.
class PeerCertificateCache {
 public:
  absl::StatusOr<pki::CertificateInfo> Inspect(std::string_view pem) {
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(absl::string_view(pem.data(), pem.size()));
      if (it != entries_.end()) {
        return it->second;
      }
    }
    ASSIGN_OR_RETURN(common::X509Ptr cert, pki::CertFromPem(pem));
    ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(cert.get()));
    absl::MutexLock lock(&mu_);
    if (entries_.size() >= kMaxEntries) {
      entries_.clear();
    }
    entries_.emplace(std::string(pem), info);
    return info;
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, pki::CertificateInfo> entries_ ABSL_GUARDED_BY(mu_);
};

PeerCertificateCache& PeerCertificates() {
  static auto* cache = new PeerCertificateCache();  // never destroyed: used by RPC threads
  return *cache;
}

}  // namespace

absl::StatusOr<Caller> AuthenticateCaller(const grpc::AuthContext& auth,
                                          const std::string& trust_domain,
                                          const IdentityDirectory& directory,
                                          const common::Clock& clock) {
  std::vector<grpc::string_ref> pems = auth.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (!auth.IsPeerAuthenticated() || pems.empty()) {
    return AuthenticateCertificate("", trust_domain, directory, clock);
  }
  return AuthenticateCertificate(std::string_view(pems.front().data(), pems.front().size()),
                                 trust_domain, directory, clock);
}

absl::StatusOr<Caller> AuthenticateCertificate(std::string_view pem,
                                               const std::string& trust_domain,
                                               const IdentityDirectory& directory,
                                               const common::Clock& clock) {
  if (pem.empty()) {
    return absl::UnauthenticatedError(
        "a client certificate is required: enroll first (only Enroll works without one)");
  }
  ASSIGN_OR_RETURN(pki::CertificateInfo info, PeerCertificates().Inspect(pem));
  if (info.uri_sans.size() != 1) {
    return absl::UnauthenticatedError("client certificate must carry exactly one SPIFFE ID");
  }
  auto identity = pki::ParseSpiffeId(info.uri_sans.front(), trust_domain);
  if (!identity.ok()) {
    return absl::UnauthenticatedError("client certificate identity is not in this trust domain");
  }
  // TLS checked the dates once, at the handshake; a connection outlives its
  // certificate, and our clock can move, so every call checks them again.
  const int64_t now = clock.NowUnix();
  if (info.not_after <= now) {
    return absl::UnauthenticatedError("client certificate has expired: renew it");
  }
  if (info.not_before > now) {
    return absl::UnauthenticatedError(
        "client certificate is not valid yet (the server's and this host's clocks disagree)");
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

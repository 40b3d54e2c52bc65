#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/ip.h"
#include "pki/certs.h"
#include "server/config.h"
#include "server/identity_directory.h"
#include "server/jwks_cache.h"
#include "store/store.h"

namespace drawbridge::server {

struct EnrollmentResult {
  std::string identity;
  std::string key_id;
  std::string spiffe_id;
  std::string serial;
  std::string chain_pem;
  std::string trust_bundle_pem;
  int64_t not_after = 0;
};

// Why an enrollment was refused, in two voices: `detail` for the operator's log
// (full reason), `public_message` for the caller (enough to fix a honest
// mistake, nothing that helps an attacker who does not hold the key).
struct EnrollmentRefusal {
  absl::StatusCode code;
  std::string detail;
  std::string public_message;
  std::string identity;     // claimed identity, if the token parsed
  std::string reason_code;  // "expired", "replayed", "source_not_allowed", ... (docs/audit.md)
};

// Checks an enrollment request exactly as DESIGN §2 says and issues the
// certificate. Blocking (signature checks, database writes): call it from a
// worker thread, never from a gRPC reaction. Thread-safe.
class Enroller {
 public:
  // Records a refusal (code, reason code, operator detail, caller's message)
  // and returns the status to answer with.
  using Refuse = std::function<absl::Status(absl::StatusCode, std::string_view reason_code,
                                            std::string detail, std::string public_message)>;
  Enroller(const ServerConfig& config, const pki::CertificateAuthority* ca,
           IdentityDirectory* directory, store::Store* store, const common::Clock* clock)
      : config_(config), ca_(ca), directory_(directory), store_(store), clock_(clock) {}

  // On refusal, the status message is the operator detail and `refusal` (if
  // given) receives both voices.
  absl::StatusOr<EnrollmentResult> Enroll(std::string_view token, std::string_view csr_der,
                                          std::optional<common::IpAddress> peer,
                                          EnrollmentRefusal* refusal = nullptr);

  // Enrollment with a workload identity token (docs/enrollment.md, "Workload
  // identity"): `identity` must hold an active workload trust whose issuer
  // signed `token` (a key from its JWKS) for the trust's subject and audience.
  // The certificate is bound to the CSR's key, as in Enroll. The token is a
  // bearer token its issuer reuses until it rotates it, so it is not single-use;
  // its lifetime is capped at kMaxWorkloadTokenLifetime instead.
  absl::StatusOr<EnrollmentResult> EnrollWorkload(std::string_view identity, std::string_view token,
                                                  std::string_view csr_der,
                                                  std::optional<common::IpAddress> peer,
                                                  EnrollmentRefusal* refusal = nullptr);

  static constexpr int64_t kMaxWorkloadTokenLifetime = 24 * 3600;

  // For tests: where issuers' keys are fetched from.
  void SetJwksFetcherForTesting(JwksCache::Fetcher fetch) {
    jwks_ = std::make_unique<JwksCache>(clock_, std::move(fetch));
  }

 private:
  // Issues and records the certificate for the CSR's key, once the caller is
  // authenticated and authorized; both ways of enrolling end here.
  absl::StatusOr<EnrollmentResult> Issue(const std::string& subject, const store::KeyRecord& key,
                                         EVP_PKEY* tls_key, int64_t now, const Refuse& refuse);

  ServerConfig config_;
  const pki::CertificateAuthority* ca_;
  IdentityDirectory* directory_;
  store::Store* store_;
  const common::Clock* clock_;
  std::unique_ptr<JwksCache> jwks_ = std::make_unique<JwksCache>(clock_);
};

}  // namespace drawbridge::server

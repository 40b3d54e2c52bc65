#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/ip.h"
#include "pki/certs.h"
#include "server/config.h"
#include "server/identity_directory.h"
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
  Enroller(const ServerConfig& config, const pki::CertificateAuthority* ca,
           IdentityDirectory* directory, store::Store* store, const common::Clock* clock)
      : config_(config), ca_(ca), directory_(directory), store_(store), clock_(clock) {}

  // On refusal, the status message is the operator detail and `refusal` (if
  // given) receives both voices.
  absl::StatusOr<EnrollmentResult> Enroll(std::string_view token, std::string_view csr_der,
                                          std::optional<common::IpAddress> peer,
                                          EnrollmentRefusal* refusal = nullptr);

 private:
  ServerConfig config_;
  const pki::CertificateAuthority* ca_;
  IdentityDirectory* directory_;
  store::Store* store_;
  const common::Clock* clock_;
};

}  // namespace drawbridge::server

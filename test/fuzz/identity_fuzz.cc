// Identity strings come from certificates (URI SANs), tokens ("sub") and admin
// requests. A parsed identity has exactly one spelling, so printing it must give
// back the input byte for byte.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "pki/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  absl::StatusOr<pki::Identity> identity = pki::ParseIdentity(input);
  if (identity.ok()) {
    DB_FUZZ_CHECK(identity->ToString() == input);
    absl::StatusOr<pki::Identity> again = pki::ParseIdentity(identity->ToString());
    DB_FUZZ_CHECK(again.ok() && *again == *identity);
  }

  absl::StatusOr<pki::Identity> spiffe = pki::ParseSpiffeId(input, "example.com");
  if (spiffe.ok()) {
    DB_FUZZ_CHECK(spiffe->SpiffeId("example.com") == input);
  }

  if (pki::ValidateTrustDomain(input).ok()) {
    // A valid trust domain never contains '/', so it cannot blur into the path.
    DB_FUZZ_CHECK(input.find('/') == std::string_view::npos);
    pki::Identity probe{pki::IdentityKind::kAgent, "probe"};
    absl::StatusOr<pki::Identity> round = pki::ParseSpiffeId(probe.SpiffeId(input), input);
    DB_FUZZ_CHECK(round.ok() && *round == probe);
  }
  return 0;
}

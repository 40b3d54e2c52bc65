// Certificate requests arrive from unenrolled clients; certificates and bundles
// arrive from peers, credential files and `drawbridge check`. The same bytes are
// tried as a DER CSR, as PEM text, and as a DER certificate wrapped in PEM here so
// that mutations reach the X.509 parser and InspectCertificate directly.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"
#include "pki/certs.h"
#include "pki/keys.h"

namespace drawbridge::fuzz {
namespace {

void InspectAll(std::string_view pem) {
  absl::StatusOr<std::vector<common::X509Ptr>> certs = pki::CertsFromPem(pem);
  if (certs.ok()) {
    DB_FUZZ_CHECK(!certs->empty());
    for (const common::X509Ptr& cert : *certs) {
      (void)pki::InspectCertificate(cert.get());
    }
  }
  absl::StatusOr<common::X509Ptr> first = pki::CertFromPem(pem);
  if (first.ok()) {
    (void)pki::InspectCertificate(first->get());
  }
}

std::string WrapDerAsPem(std::string_view der) {
  std::string body = common::Base64Encode(der);
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (size_t i = 0; i < body.size(); i += 64) {
    pem += body.substr(i, 64);
    pem += '\n';
  }
  pem += "-----END CERTIFICATE-----\n";
  return pem;
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  absl::StatusOr<common::PKeyPtr> key = pki::PublicKeyFromCsrDer(input);
  if (key.ok()) {
    // The CA issues only for the algorithms we allow.
    DB_FUZZ_CHECK(pki::AlgorithmOf(key->get()).ok());
  }

  fuzz::InspectAll(input);
  if (!input.empty()) {
    fuzz::InspectAll(fuzz::WrapDerAsPem(input));
  }
  return 0;
}

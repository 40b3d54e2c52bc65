#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/openssl_util.h"

namespace drawbridge::pki {

// What we read back from a certificate (ours or a peer's).
struct CertificateInfo {
  std::string serial;  // lower-case hex
  std::string subject_cn;
  std::string key_id;  // subject OU "key:<id>" of leaf certificates, else empty
  std::string issuer_cn;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;
  int64_t not_before = 0;
  int64_t not_after = 0;
  bool is_ca = false;
};

absl::StatusOr<common::X509Ptr> CertFromPem(std::string_view pem);
absl::StatusOr<std::vector<common::X509Ptr>> CertsFromPem(std::string_view pem);
std::string CertToPem(X509* cert);
absl::StatusOr<CertificateInfo> InspectCertificate(X509* cert);

// PKCS#10 for `key` with an empty subject (the CA ignores the subject; the
// request only proves possession of the key).
absl::StatusOr<std::string> CreateCsrDer(EVP_PKEY* key);
// Parses a CSR, checks its self-signature and returns its public key.
absl::StatusOr<common::PKeyPtr> PublicKeyFromCsrDer(std::string_view der);

// What a leaf certificate says. Only the intermediate signs leaves.
struct LeafSpec {
  EVP_PKEY* public_key = nullptr;
  std::string common_name;
  std::string key_id;     // credential key the enrollment was signed with
  std::string spiffe_id;  // URI SAN; empty for none
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  int64_t not_before = 0;
  int64_t not_after = 0;
  bool server_auth = false;
  bool client_auth = false;
};

// The built-in two-level CA: an offline-capable root and an intermediate that
// issues every leaf. Thread-safe after construction.
class CertificateAuthority {
 public:
  struct Material {
    common::X509Ptr root_cert;
    common::PKeyPtr root_key;  // may be null when loaded for serving
    common::X509Ptr intermediate_cert;
    common::PKeyPtr intermediate_key;
  };

  // Generates a root (10 years) and an intermediate (5 years), ECDSA P-256.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> CreateNew(
      std::string_view trust_domain, const common::Clock& clock);
  // Checks that the intermediate is signed by the root and matches its key.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> FromMaterial(Material material);

  absl::StatusOr<common::X509Ptr> Issue(const LeafSpec& spec) const;

  // Root certificate(s) to pin.
  std::string TrustBundlePem() const;
  // Leaf followed by the intermediate, as a TLS peer presents it.
  std::string ChainPem(X509* leaf) const;
  const Material& material() const { return material_; }

 private:
  explicit CertificateAuthority(Material m) : material_(std::move(m)) {}
  Material material_;
};

// Verifies `leaf` with optional `intermediates` up to one of `roots_pem` at unix
// time `at`. Used by tests and by `drawbridge check`.
absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                         std::string_view roots_pem, int64_t at);

}  // namespace drawbridge::pki

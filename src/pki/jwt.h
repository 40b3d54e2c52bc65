#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "pki/keys.h"

namespace drawbridge::pki {

// Claims of an enrollment token (compact JWS). See docs/enrollment.md.
struct EnrollmentClaims {
  std::string subject;             // "sub": KIND/NAME
  std::string audience;            // "aud": the trust domain
  int64_t issued_at = 0;           // "iat"
  int64_t not_before = 0;          // "nbf" (optional on the wire; 0 = absent)
  int64_t expires_at = 0;          // "exp"
  std::string token_id;            // "jti": single use
  std::string tls_key_thumbprint;  // "cnf": {"jkt": RFC 7638 thumbprint of the TLS key}
};

struct ParsedToken {
  KeyAlgorithm algorithm = KeyAlgorithm::kEs256;
  std::string key_id;  // header "kid"
  EnrollmentClaims claims;
  std::string signing_input;  // header.payload as sent
  std::string signature;      // raw bytes
};

// Largest token accepted; anything bigger is refused before decoding.
inline constexpr size_t kMaxTokenBytes = 8192;

absl::StatusOr<std::string> SignEnrollmentToken(EVP_PKEY* key, std::string_view key_id,
                                                const EnrollmentClaims& claims);

// Decodes a compact JWS without trusting it: exactly three base64url parts,
// JSON objects with the right member types, `alg` on the allowlist (ES256, EdDSA;
// never "none" or HMAC), `typ` JWT if present, no `crit`, `jku`, `jwk`, `x5u` or
// `x5c` (the key is chosen by `kid` from our own store only). Every failure is
// InvalidArgument.
absl::StatusOr<ParsedToken> ParseEnrollmentToken(std::string_view compact);

// Verifies the signature with the registered key (which must be of the token's
// algorithm). PermissionDenied on mismatch.
absl::Status VerifyTokenSignature(const ParsedToken& token, EVP_PKEY* key);

}  // namespace drawbridge::pki

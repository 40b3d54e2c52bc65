#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/openssl_util.h"

// Workload identity tokens: JWTs an external issuer (a Kubernetes API server, a
// cloud's OIDC provider) signs for a workload, verified with the issuer's
// published keys (JWKS). See docs/enrollment.md, "Workload identity".
//
// Everything here parses untrusted input (the token comes from the network, the
// JWKS from an HTTPS server we do not control): sizes are bounded before
// decoding and every failure is InvalidArgument, naming the caller's own input
// only.
namespace drawbridge::pki {

// The only signature algorithms accepted. Never "none", never HMAC (an HS256
// token "signed" with the issuer's public key as the secret is refused before
// any key is looked at), and each one only with its own key type.
enum class WorkloadAlgorithm { kRs256, kEs256 };

inline constexpr size_t kMaxWorkloadTokenBytes = 16 * 1024;
inline constexpr size_t kMaxJwksBytes = 64 * 1024;
inline constexpr size_t kMaxJwksKeys = 32;
inline constexpr int kMinRsaBits = 2048;

struct WorkloadClaims {
  std::string issuer;                  // "iss"
  std::string subject;                 // "sub"
  std::vector<std::string> audiences;  // "aud": a string or an array of strings
  int64_t expires_at = 0;              // "exp" (required)
  int64_t not_before = 0;              // "nbf" (0 = absent)
  int64_t issued_at = 0;               // "iat" (0 = absent)
};

struct ParsedWorkloadToken {
  WorkloadAlgorithm algorithm = WorkloadAlgorithm::kRs256;
  std::string key_id;  // header "kid" (required: the JWKS key is chosen by it)
  WorkloadClaims claims;
  std::string signing_input;  // header.payload as sent
  std::string signature;      // raw bytes
};

// Decodes without trusting: three base64url parts, JSON objects, `alg` RS256 or
// ES256, `kid` present, no `crit`/`jku`/`jwk`/`x5u`/`x5c` (keys come from the
// configured JWKS only), `iss`, `sub`, `aud` and `exp` present and well-typed.
absl::StatusOr<ParsedWorkloadToken> ParseWorkloadToken(std::string_view compact);

// One verification key from a JWKS.
struct Jwk {
  std::string key_id;
  WorkloadAlgorithm algorithm;  // from `kty` (RSA → RS256, EC P-256 → ES256), checked against `alg`
  std::shared_ptr<EVP_PKEY> key;
};

// A JWKS document ({"keys":[...]}) by key id. Keys that cannot verify
// signatures for us are skipped, not errors: `use` other than "sig", a `kty` or
// curve we do not take (a JWKS may publish encryption keys too), an `alg` other
// than RS256/ES256. A key we do take must be well formed (RSA at least 2048
// bits, EC points on P-256) or the document is refused; so is a repeated kid.
absl::StatusOr<std::map<std::string, Jwk>> ParseJwks(std::string_view json_text);

// Verifies with a key of the token's own algorithm; PermissionDenied if the key
// is of another type (an RS256 token against an EC key, and the reverse) or the
// signature does not match.
absl::Status VerifyWorkloadSignature(const ParsedWorkloadToken& token, const Jwk& key);

std::string_view WorkloadAlgorithmName(WorkloadAlgorithm alg);

}  // namespace drawbridge::pki

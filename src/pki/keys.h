#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/openssl_util.h"

namespace drawbridge::pki {

// Signing algorithms we accept, by their JOSE names. Nothing else is ever
// accepted: not "none", not HMAC, not RSA.
enum class KeyAlgorithm { kEs256, kEdDsa };

std::string_view JoseName(KeyAlgorithm alg);
absl::StatusOr<KeyAlgorithm> ParseJoseName(std::string_view name);

absl::StatusOr<common::PKeyPtr> GenerateKey(KeyAlgorithm alg);

// The algorithm a key is for: EC P-256 → ES256, Ed25519 → EdDSA; any other key
// type or curve is an error.
absl::StatusOr<KeyAlgorithm> AlgorithmOf(EVP_PKEY* key);

// Unencrypted PKCS#8 PEM. Callers keep it in memory or in a 0600 file only.
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);
absl::StatusOr<std::string> PublicKeyToPem(EVP_PKEY* key);
absl::StatusOr<common::PKeyPtr> PrivateKeyFromPem(std::string_view pem);
absl::StatusOr<common::PKeyPtr> PublicKeyFromPem(std::string_view pem);
absl::StatusOr<common::PKeyPtr> PublicKeyFromDer(std::string_view der);
absl::StatusOr<std::string> PublicKeyToDer(EVP_PKEY* key);

// RFC 7638 JWK thumbprint (SHA-256, base64url). Used as the `cnf.jkt` binding of
// a TLS key in enrollment tokens, and (truncated) as credential key ids.
absl::StatusOr<std::string> JwkThumbprint(EVP_PKEY* key);

// Key id of a credential key: the first 96 bits of its thumbprint as 24 lower-case
// hex digits (never starts with '-', so it is safe as a command-line argument).
absl::StatusOr<std::string> KeyIdOf(EVP_PKEY* key);

// JOSE signatures: ES256 produces the 64-byte r||s form (RFC 7518 §3.4), not DER.
absl::StatusOr<std::string> SignJose(EVP_PKEY* key, std::string_view data);
// Checks that `key` is of algorithm `alg` before verifying, so a token cannot pick
// the algorithm its key is checked with.
absl::Status VerifyJose(EVP_PKEY* key, KeyAlgorithm alg, std::string_view data,
                        std::string_view signature);

std::string Sha256(std::string_view data);

}  // namespace drawbridge::pki

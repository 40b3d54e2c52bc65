#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::pki {

// An identity's trust in an external token issuer: a workload that presents a
// token from `issuer` for `subject` with `audience` may enroll as the identity.
// Kept in the store as one of the identity's keys (algorithm kWorkloadTrustAlgorithm,
// this document in place of a public key), so it is listed, removed and revoked
// like one: removing it ends the certificates it issued.
struct WorkloadTrust {
  std::string issuer;    // exact "iss"; https://...
  std::string subject;   // exact "sub", e.g. system:serviceaccount:NS:SA
  std::string audience;  // must be one of the token's "aud"
  // Where the issuer's keys come from; exactly one of jwks_uri and jwks_json,
  // or neither: then from the issuer's OIDC discovery document
  // (ISSUER/.well-known/openid-configuration).
  std::string jwks_uri;       // https://...
  std::string jwks_json;      // the JWKS itself (offline clusters); rotated by the admin
  std::string ca_bundle_pem;  // roots for the issuer's HTTPS; empty: the system roots
};

inline constexpr std::string_view kWorkloadTrustAlgorithm = "OIDC";

// Checks every field (https URLs without user info, sizes, a JWKS that parses
// and holds a signing key, a CA bundle that holds certificates).
absl::Status ValidateWorkloadTrust(const WorkloadTrust& trust);
// Canonical JSON, and its strict parse (validated).
std::string WorkloadTrustToJson(const WorkloadTrust& trust);
absl::StatusOr<WorkloadTrust> ParseWorkloadTrust(std::string_view json_text);
// "oidc-" and 24 hex digits of a hash of issuer, subject and audience: the same
// trust added twice is the same key.
std::string WorkloadTrustKeyId(const WorkloadTrust& trust);

}  // namespace drawbridge::pki

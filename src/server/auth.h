#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "pki/identity.h"
#include "server/identity_directory.h"

namespace drawbridge::server {

// Who is calling, derived only from the client certificate that gRPC's TLS
// handshake already verified against our CA (DESIGN §7.2).
struct Caller {
  pki::Identity identity;
  std::string spiffe_id;
  std::string key_id;
  std::string serial;
  int64_t not_after = 0;
};

// Payload of an AuthenticateCaller refusal whose certificate verified: the
// identity it carried (for audit records; the caller's message never has it).
inline constexpr char kCallerIdentityPayload[] = "drawbridge.dev/caller_identity";

// Fails with Unauthenticated when there is no usable certificate, and with
// PermissionDenied when the identity or its key is disabled or removed now.
// In-memory only; safe to call from a gRPC reaction.
absl::StatusOr<Caller> AuthenticateCaller(const grpc::AuthContext& auth,
                                          const std::string& trust_domain,
                                          const IdentityDirectory& directory,
                                          const common::Clock& clock);

// The same for a certificate (PEM) that a TLS handshake outside gRPC (a lane)
// verified against our CA; "" when the peer presented none.
absl::StatusOr<Caller> AuthenticateCertificate(std::string_view verified_pem,
                                               const std::string& trust_domain,
                                               const IdentityDirectory& directory,
                                               const common::Clock& clock);

}  // namespace drawbridge::server

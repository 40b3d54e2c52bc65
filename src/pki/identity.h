#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::pki {

enum class IdentityKind { kAgent, kClient, kAdmin };

std::string_view KindName(IdentityKind kind);

// KIND/NAME, e.g. agent/acme-gitlab. NAME matches [a-z0-9][a-z0-9._-]{0,62}.
struct Identity {
  IdentityKind kind = IdentityKind::kAgent;
  std::string name;

  std::string ToString() const;
  // spiffe://TRUST_DOMAIN/KIND/NAME (the URI SAN of its certificates).
  std::string SpiffeId(std::string_view trust_domain) const;
  bool operator==(const Identity&) const = default;
};

absl::StatusOr<Identity> ParseIdentity(std::string_view text);

// Accepts only spiffe://<trust_domain>/KIND/NAME for exactly our trust domain.
absl::StatusOr<Identity> ParseSpiffeId(std::string_view uri, std::string_view trust_domain);

// A trust domain is a lower-case DNS-like name: [a-z0-9._-]{1,255}, starting and
// ending with a letter or digit.
absl::Status ValidateTrustDomain(std::string_view trust_domain);

}  // namespace drawbridge::pki

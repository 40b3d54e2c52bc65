#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ip.h"
#include "policy/destination.h"
#include "policy/pattern.h"

namespace drawbridge::policy {

// Address ranges an agent must not reach through a name alone: a DNS answer pointing
// there is the classic rebinding attack on the agent's own host or its cloud metadata.
enum class SpecialRange {
  kNone,
  kLoopback,     // 127.0.0.0/8, ::1
  kLinkLocal,    // 169.254.0.0/16, fe80::/10
  kUnspecified,  // 0.0.0.0/8 ("this host" on Linux), ::
  kMetadata,     // 169.254.169.254, 100.100.100.200 (Alibaba), fd00:ec2::254 (AWS IPv6)
};

// IPv4-mapped IPv6 is classified as the IPv4 address it carries.
SpecialRange ClassifyAddress(const common::IpAddress& ip);
// "a loopback address", "a cloud metadata address", ...
std::string_view SpecialRangeName(SpecialRange range);

// The agent's local allowlist (DESIGN §1, §3): customer-controlled, deny-by-default,
// the same entry syntax as policy destinations (pattern.h). The server cannot widen it.
class Allowlist {
 public:
  static constexpr size_t kMaxEntries = 10000;

  // An empty allowlist is valid and allows nothing.
  static absl::StatusOr<Allowlist> Parse(const std::vector<std::string>& entries);

  Allowlist() = default;

  // Whether some entry names `d`: host patterns for names, CIDR entries for IP literals.
  bool AllowsName(const Destination& d) const;

  // The check between resolving `requested` and connecting to `resolved`:
  // `requested` must be allowed, and an address in a SpecialRange is refused unless a
  // CIDR/IP entry explicitly contains it for this port. For an IP-literal destination
  // `resolved` must be that address (its CIDR entry already names it explicitly).
  // Refusals are PermissionDenied with an operator-facing message.
  absl::Status CheckResolved(const Destination& requested, const common::IpAddress& resolved) const;
  // Every address must pass (one bad answer taints the whole name); none is NotFound.
  absl::Status CheckResolved(const Destination& requested,
                             const std::vector<common::IpAddress>& resolved) const;

  const std::vector<DestinationPattern>& entries() const { return entries_; }
  // Canonical entry texts, e.g. for advertising to the server.
  std::vector<std::string> ToStrings() const;

 private:
  std::vector<DestinationPattern> entries_;
};

}  // namespace drawbridge::policy

#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/ip.h"
#include "policy/destination.h"

namespace drawbridge::policy {

// One destination entry of a policy rule or an agent allowlist, "HOST:PORTS":
//
//   gitlab.corp.example:443    exact host name (normalised like a Destination)
//   *.git.corp.example:22      one or more whole labels in front of git.corp.example;
//                              not git.corp.example itself, never part of a label
//   10.20.0.0/16:443           CIDR (a bare address is a /32 or /128)
//   [2001:db8::/32]:443        IPv6 CIDR or address, always in brackets
//
// PORTS is a number, a range "8000-8100" or "*" (any port). A host of just "*" and a
// CIDR of length 0 are refused: they would match everything, and policy is
// deny-by-default. IP-literal destinations match only CIDR patterns and named
// destinations only host patterns; names are never resolved to match a CIDR.
class DestinationPattern {
 public:
  enum class Kind { kHost, kWildcard, kCidr };

  static absl::StatusOr<DestinationPattern> Parse(std::string_view text);

  bool Matches(const Destination& d) const { return MatchesHost(d) && MatchesPort(d.port); }
  // The host/address half alone (Explain uses the halves to describe near misses).
  bool MatchesHost(const Destination& d) const;
  bool MatchesPort(uint16_t port) const { return port >= port_min_ && port <= port_max_; }

  // Canonical text; Parse(ToString()) gives an equal pattern.
  std::string ToString() const;

  Kind kind() const { return kind_; }
  bool is_cidr() const { return kind_ == Kind::kCidr; }
  // The exact name, or for a wildcard the part after "*." (empty for a CIDR).
  const std::string& host() const { return host_; }
  // Only meaningful when is_cidr().
  const common::Cidr& cidr() const { return cidr_; }
  uint16_t port_min() const { return port_min_; }
  uint16_t port_max() const { return port_max_; }

 private:
  DestinationPattern() = default;

  Kind kind_ = Kind::kHost;
  std::string host_;
  std::string dotted_suffix_;  // "." + host_ for wildcards
  common::Cidr cidr_;
  uint16_t port_min_ = 1;
  uint16_t port_max_ = 65535;
};

}  // namespace drawbridge::policy

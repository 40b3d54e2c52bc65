#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/ip.h"

namespace drawbridge::policy {

// Where a connection should go, in the one spelling every check compares: a host name
// in lower case without a trailing dot, or an IP literal in canonical text (IPv4-mapped
// IPv6 is IPv4). A name is never resolved here; IP literals and names are different
// kinds of destination and are matched by different kinds of rule (DESIGN §4).
struct Destination {
  std::string host;                     // normalised name, or ip->ToString()
  std::optional<common::IpAddress> ip;  // set iff the host is an IP literal
  uint16_t port = 0;                    // 1..65535

  bool is_ip() const { return ip.has_value(); }
  // "host:port", "10.0.0.1:443" or "[2001:db8::1]:22"; ParseDestination gives it back.
  std::string ToString() const;
  bool operator==(const Destination&) const = default;
};

// Parses "host:port", "1.2.3.4:443" or "[::1]:22". IPv6 literals need brackets; zone
// ids ("%eth0") are refused. Names must be ASCII [a-z0-9._-] (after lower-casing), with
// labels of 1..63 characters and at most 253 in total. A name whose last label is
// numeric ("127.1", "0x7f.1", "010.0.0.1") is refused: resolvers read those as IPv4
// addresses that inet_pton does not accept, so they would dodge the CIDR rules.
absl::StatusOr<Destination> ParseDestination(std::string_view text);

// The same checks for a host and a port given apart (SOCKS5, CONNECT after splitting).
// `host` may be a name, an IPv4 literal, or an IPv6 literal with or without brackets.
absl::StatusOr<Destination> MakeDestination(std::string_view host, int port);

// A destination for an address the caller already holds as bytes (SOCKS5 ATYP 1/4).
// IPv4-mapped IPv6 is normalised to IPv4. `port` must be non-zero for a valid one.
Destination DestinationFromIp(const common::IpAddress& ip, uint16_t port);

// Normalises and validates a host *name* (not an IP literal): lower case, one trailing
// dot removed, the character/label/length rules above. The error says what is wrong
// with `host` and is meant for operators.
absl::StatusOr<std::string> NormalizeHostName(std::string_view host);

// IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4; anything else is returned as is.
common::IpAddress CanonicalIp(const common::IpAddress& ip);

}  // namespace drawbridge::policy

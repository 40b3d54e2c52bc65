#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::common {

// An IPv4 or IPv6 address. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// normalised to IPv4 so that one host has one spelling in every check.
struct IpAddress {
  bool is_v4 = true;
  std::array<uint8_t, 16> bytes{};  // v4 uses the first 4

  std::string ToString() const;
  bool operator==(const IpAddress&) const = default;
};

// Parses a numeric address only (never resolves): "10.0.0.1", "::1", "[::1]".
std::optional<IpAddress> ParseIp(std::string_view text);

// A CIDR block, "10.0.0.0/8" or "2001:db8::/32". A bare address is a /32 or /128.
struct Cidr {
  IpAddress base;
  int prefix_len = 0;

  bool Contains(const IpAddress& ip) const;
  std::string ToString() const;
};

absl::StatusOr<Cidr> ParseCidr(std::string_view text);

// Extracts the address from a gRPC peer string ("ipv4:1.2.3.4:5678",
// "ipv6:[::1]:5678", "ipv6:%5B::1%5D:5678").
std::optional<IpAddress> IpFromGrpcPeer(std::string_view peer);

}  // namespace drawbridge::common

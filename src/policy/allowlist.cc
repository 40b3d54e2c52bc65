#include "policy/allowlist.h"

#include <cstring>

#include "common/strings.h"

namespace drawbridge::policy {
namespace {

bool InV4(const common::IpAddress& ip, uint8_t a, uint8_t b, uint8_t c, uint8_t d, int len) {
  common::Cidr cidr;
  cidr.base.is_v4 = true;
  cidr.base.bytes[0] = a;
  cidr.base.bytes[1] = b;
  cidr.base.bytes[2] = c;
  cidr.base.bytes[3] = d;
  cidr.prefix_len = len;
  return cidr.Contains(ip);
}

}  // namespace

SpecialRange ClassifyAddress(const common::IpAddress& address) {
  common::IpAddress ip = CanonicalIp(address);
  if (ip.is_v4) {
    if (InV4(ip, 169, 254, 169, 254, 32) || InV4(ip, 100, 100, 100, 200, 32)) {
      return SpecialRange::kMetadata;
    }
    if (InV4(ip, 127, 0, 0, 0, 8)) {
      return SpecialRange::kLoopback;
    }
    if (InV4(ip, 169, 254, 0, 0, 16)) {
      return SpecialRange::kLinkLocal;
    }
    if (InV4(ip, 0, 0, 0, 0, 8)) {
      return SpecialRange::kUnspecified;
    }
    return SpecialRange::kNone;
  }
  static constexpr uint8_t kAwsMetadata[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                               0,    0,    0,    0,    0, 0, 0x02, 0x54};
  if (std::memcmp(ip.bytes.data(), kAwsMetadata, 16) == 0) {
    return SpecialRange::kMetadata;
  }
  bool zero15 = true;
  for (size_t i = 0; i < 15; ++i) {
    zero15 = zero15 && ip.bytes[i] == 0;
  }
  if (zero15 && ip.bytes[15] == 1) {
    return SpecialRange::kLoopback;
  }
  if (zero15 && ip.bytes[15] == 0) {
    return SpecialRange::kUnspecified;
  }
  if (ip.bytes[0] == 0xfe && (ip.bytes[1] & 0xc0) == 0x80) {
    return SpecialRange::kLinkLocal;
  }
  return SpecialRange::kNone;
}

std::string_view SpecialRangeName(SpecialRange range) {
  switch (range) {
    case SpecialRange::kNone:
      return "an ordinary address";
    case SpecialRange::kLoopback:
      return "a loopback address";
    case SpecialRange::kLinkLocal:
      return "a link-local address";
    case SpecialRange::kUnspecified:
      return "an unspecified address";
    case SpecialRange::kMetadata:
      return "a cloud metadata address";
  }
  return "a special address";
}

absl::StatusOr<Allowlist> Allowlist::Parse(const std::vector<std::string>& entries) {
  if (entries.size() > kMaxEntries) {
    return absl::InvalidArgumentError(common::StrCat(
        "allowlist: ", entries.size(), " entries is more than the limit of ", kMaxEntries));
  }
  Allowlist list;
  list.entries_.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    absl::StatusOr<DestinationPattern> p = DestinationPattern::Parse(entries[i]);
    if (!p.ok()) {
      return absl::InvalidArgumentError(
          common::StrCat("allowlist entry ", i, ": ", p.status().message()));
    }
    list.entries_.push_back(*std::move(p));
  }
  return list;
}

bool Allowlist::AllowsName(const Destination& d) const {
  for (const DestinationPattern& p : entries_) {
    if (p.Matches(d)) {
      return true;
    }
  }
  return false;
}

absl::Status Allowlist::CheckResolved(const Destination& requested,
                                      const common::IpAddress& resolved) const {
  if (!AllowsName(requested)) {
    return absl::PermissionDeniedError(common::StrCat("destination ", requested.ToString(),
                                                      " is not named by this agent's allowlist"));
  }
  Destination as_ip = DestinationFromIp(resolved, requested.port);
  if (requested.ip.has_value()) {
    if (!(*as_ip.ip == CanonicalIp(*requested.ip))) {
      return absl::PermissionDeniedError(common::StrCat("destination ", requested.ToString(),
                                                        " is an IP literal but was resolved to ",
                                                        as_ip.host));
    }
    // The entry that allowed the literal is a CIDR containing it: explicit by definition.
    return absl::OkStatus();
  }
  SpecialRange range = ClassifyAddress(*as_ip.ip);
  if (range == SpecialRange::kNone) {
    return absl::OkStatus();
  }
  for (const DestinationPattern& p : entries_) {
    if (p.is_cidr() && p.Matches(as_ip)) {
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(common::StrCat(
      "destination ", requested.ToString(), " resolved to ", as_ip.host, ", ",
      SpecialRangeName(range),
      " not named by any allowlist entry; if the agent should reach it, add the entry \"",
      as_ip.ToString(), "\""));
}

absl::Status Allowlist::CheckResolved(const Destination& requested,
                                      const std::vector<common::IpAddress>& resolved) const {
  if (resolved.empty()) {
    return absl::NotFoundError(
        common::StrCat("destination ", requested.ToString(), " resolved to no addresses"));
  }
  for (const common::IpAddress& ip : resolved) {
    absl::Status s = CheckResolved(requested, ip);
    if (!s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> Allowlist::ToStrings() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const DestinationPattern& p : entries_) {
    out.push_back(p.ToString());
  }
  return out;
}

}  // namespace drawbridge::policy

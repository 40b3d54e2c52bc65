#include "common/ip.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include "common/strings.h"

namespace drawbridge::common {

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
  }
  return buf;
}

std::optional<IpAddress> ParseIp(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  // inet_pton stops at a NUL: "1.2.3.4\0junk" must not parse as 1.2.3.4.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string s(text);
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    ip.is_v4 = true;
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(ip.bytes.data(), kMapped, 12) == 0) {
      IpAddress v4;
      v4.is_v4 = true;
      std::memcpy(v4.bytes.data(), ip.bytes.data() + 12, 4);
      return v4;
    }
    ip.is_v4 = false;
    return ip;
  }
  return std::nullopt;
}

bool Cidr::Contains(const IpAddress& ip) const {
  if (ip.is_v4 != base.is_v4) {
    return false;
  }
  int full = prefix_len / 8;
  if (std::memcmp(ip.bytes.data(), base.bytes.data(), static_cast<size_t>(full)) != 0) {
    return false;
  }
  int rest = prefix_len % 8;
  if (rest == 0) {
    return true;
  }
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.bytes[full] & mask) == (base.bytes[full] & mask);
}

std::string Cidr::ToString() const { return StrCat(base.ToString(), "/", prefix_len); }

absl::StatusOr<Cidr> ParseCidr(std::string_view text) {
  auto slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  auto ip = ParseIp(addr);
  if (!ip) {
    return absl::InvalidArgumentError(StrCat("invalid CIDR \"", text, "\": bad address"));
  }
  int max = ip->is_v4 ? 32 : 128;
  int len = max;
  if (slash != std::string_view::npos) {
    std::string_view num = text.substr(slash + 1);
    // Digits only, no sign and no leading zeros: one spelling per prefix length.
    bool digits = !num.empty() && num.size() <= 3 &&
                  num.find_first_not_of("0123456789") == std::string_view::npos &&
                  (num.size() == 1 || num[0] != '0');
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), len);
    if (!digits || ec != std::errc() || ptr != num.data() + num.size() || len < 0 || len > max) {
      return absl::InvalidArgumentError(
          StrCat("invalid CIDR \"", text, "\": prefix length must be 0..", max));
    }
  }
  Cidr c{*ip, len};
  // Zero the host bits so that ToString() is canonical.
  for (int bit = len; bit < max; ++bit) {
    c.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return c;
}

std::optional<IpAddress> IpFromGrpcPeer(std::string_view peer) {
  std::string p = ReplaceAll(ReplaceAll(ReplaceAll(peer, "%5B", "["), "%5D", "]"), "%25", "%");
  std::string_view v(p);
  if (v.rfind("ipv4:", 0) == 0) {
    v.remove_prefix(5);
    auto colon = v.rfind(':');
    return ParseIp(v.substr(0, colon));
  }
  if (v.rfind("ipv6:", 0) == 0) {
    v.remove_prefix(5);
    auto close = v.rfind(']');
    if (v.empty() || v.front() != '[' || close == std::string_view::npos) {
      return std::nullopt;
    }
    std::string_view inner = v.substr(1, close - 1);
    auto zone = inner.find('%');  // link-local zone ids are not part of the address
    return ParseIp(inner.substr(0, zone));
  }
  return std::nullopt;
}

}  // namespace drawbridge::common

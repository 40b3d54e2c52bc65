#include "policy/destination.h"

#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "policy/internal/text.h"

namespace drawbridge::policy {
namespace {

using internal::Quote;

constexpr size_t kMaxHostLength = 253;
constexpr size_t kMaxLabelLength = 63;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }

// True for a last label that inet_aton (and so getaddrinfo) reads as a number:
// decimal, octal or 0x-hex. Real top-level domains are never numeric.
bool IsNumericLabel(std::string_view label) {
  if (label.size() >= 2 && label[0] == '0' && label[1] == 'x') {
    for (char c : label.substr(2)) {
      if (!IsHexDigit(c)) {
        return false;
      }
    }
    return true;
  }
  for (char c : label) {
    if (!IsDigit(c)) {
      return false;
    }
  }
  return !label.empty();
}

absl::StatusOr<uint16_t> ParsePort(std::string_view text, std::string_view whole) {
  bool ok = !text.empty() && text.size() <= 5;
  int value = 0;
  for (char c : text) {
    ok = ok && IsDigit(c);
    if (ok) {
      value = value * 10 + (c - '0');
    }
  }
  if (!ok || value < 1 || value > 65535) {
    return absl::InvalidArgumentError(common::StrCat(
        "destination ", Quote(whole), ": port ", Quote(text), " must be a number from 1 to 65535"));
  }
  return static_cast<uint16_t>(value);
}

// `host` is what stood before the port; `bracketed` says it was written as [ADDR].
absl::StatusOr<Destination> Build(std::string_view host, bool bracketed, uint16_t port,
                                  std::string_view whole) {
  if (host.find('%') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(whole),
                       ": zone ids (%...) are not supported; name a routable address"));
  }
  if (host.find_first_of("[]") != std::string_view::npos) {
    return absl::InvalidArgumentError(common::StrCat(
        "destination ", Quote(whole), ": misplaced '[' or ']'; write IPv6 as [ADDR]:PORT"));
  }
  if (bracketed || host.find(':') != std::string_view::npos) {
    std::optional<common::IpAddress> ip = common::ParseIp(host);
    if (!ip || host.find(':') == std::string_view::npos) {
      return absl::InvalidArgumentError(common::StrCat("destination ", Quote(whole), ": ",
                                                       Quote(host), " is not an IPv6 address"));
    }
    return DestinationFromIp(*ip, port);
  }
  if (std::optional<common::IpAddress> ip = common::ParseIp(host)) {
    return DestinationFromIp(*ip, port);
  }
  absl::StatusOr<std::string> name = NormalizeHostName(host);
  if (!name.ok()) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(whole), ": ", name.status().message()));
  }
  return Destination{*std::move(name), std::nullopt, port};
}

}  // namespace

std::string Destination::ToString() const {
  if (ip && !ip->is_v4) {
    return common::StrCat("[", host, "]:", port);
  }
  return common::StrCat(host, ":", port);
}

common::IpAddress CanonicalIp(const common::IpAddress& ip) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  common::IpAddress out;
  if (ip.is_v4) {
    out.is_v4 = true;
    std::memcpy(out.bytes.data(), ip.bytes.data(), 4);
  } else if (std::memcmp(ip.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
    out.is_v4 = true;
    std::memcpy(out.bytes.data(), ip.bytes.data() + 12, 4);
  } else {
    out = ip;
  }
  return out;
}

Destination DestinationFromIp(const common::IpAddress& ip, uint16_t port) {
  common::IpAddress canonical = CanonicalIp(ip);
  return Destination{canonical.ToString(), canonical, port};
}

absl::StatusOr<std::string> NormalizeHostName(std::string_view host) {
  std::string name = common::ToLower(host);
  if (!name.empty() && name.back() == '.') {
    name.pop_back();
  }
  if (name.empty()) {
    return absl::InvalidArgumentError(common::StrCat("host ", Quote(host), " is empty"));
  }
  if (name.size() > kMaxHostLength) {
    return absl::InvalidArgumentError(
        common::StrCat("host ", Quote(host), " is longer than ", kMaxHostLength, " characters"));
  }
  for (char c : name) {
    if (internal::IsLowerAlnum(c) || c == '.' || c == '-' || c == '_') {
      continue;
    }
    if (c == ' ') {
      return absl::InvalidArgumentError(common::StrCat("host ", Quote(host), " contains a space"));
    }
    if (c == '%') {
      return absl::InvalidArgumentError(common::StrCat(
          "host ", Quote(host), ": zone ids (%...) are not supported; name a routable address"));
    }
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      return absl::InvalidArgumentError(common::StrCat(
          "host ", Quote(host),
          " contains a control or non-ASCII byte; write international names in their "
          "xn-- (punycode) form"));
    }
    return absl::InvalidArgumentError(common::StrCat(
        "host ", Quote(host), " contains '", c, "'; host names use only a-z, 0-9, '.', '-', '_'"));
  }
  std::vector<std::string_view> labels = common::Split(name, '.');
  for (std::string_view label : labels) {
    if (label.empty()) {
      return absl::InvalidArgumentError(
          common::StrCat("host ", Quote(host), " has an empty label (\"..\" or a leading dot)"));
    }
    if (label.size() > kMaxLabelLength) {
      return absl::InvalidArgumentError(common::StrCat(
          "host ", Quote(host), " has a label longer than ", kMaxLabelLength, " characters"));
    }
  }
  if (IsNumericLabel(labels.back())) {
    return absl::InvalidArgumentError(common::StrCat(
        "host ", Quote(host),
        " is not a valid name or IP address (it ends in a number); write IPv4 as four decimal "
        "numbers without leading zeros, e.g. 10.0.0.1"));
  }
  return name;
}

absl::StatusOr<Destination> ParseDestination(std::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError("destination is empty; expected HOST:PORT");
  }
  if (text.find('%') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(text),
                       ": zone ids (%...) are not supported; name a routable address"));
  }
  std::string_view host;
  std::string_view port_text;
  bool bracketed = false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(
          common::StrCat("destination ", Quote(text), ": missing ']' after the IPv6 address"));
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return absl::InvalidArgumentError(common::StrCat(
          "destination ", Quote(text), ": expected [IPV6]:PORT, e.g. [2001:db8::1]:22"));
    }
    port_text = rest.substr(1);
    bracketed = true;
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(common::StrCat(
          "destination ", Quote(text), ": missing port; expected HOST:PORT, e.g. gitlab.corp:443"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError(common::StrCat(
          "destination ", Quote(text), ": IPv6 addresses need brackets, e.g. [::1]:22"));
    }
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(text), ": host is empty; expected HOST:PORT"));
  }
  ASSIGN_OR_RETURN(uint16_t port, ParsePort(port_text, text));
  return Build(host, bracketed, port, text);
}

absl::StatusOr<Destination> MakeDestination(std::string_view host, int port) {
  std::string whole = common::StrCat(host, ":", port);
  if (port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(whole), ": port must be a number from 1 to 65535"));
  }
  bool bracketed = false;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') {
      return absl::InvalidArgumentError(
          common::StrCat("destination ", Quote(whole), ": missing ']' after the IPv6 address"));
    }
    host = host.substr(1, host.size() - 2);
    bracketed = true;
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        common::StrCat("destination ", Quote(whole), ": host is empty"));
  }
  return Build(host, bracketed, static_cast<uint16_t>(port), whole);
}

}  // namespace drawbridge::policy

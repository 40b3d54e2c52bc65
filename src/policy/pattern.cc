#include "policy/pattern.h"

#include <optional>

#include "common/strings.h"
#include "policy/internal/text.h"

namespace drawbridge::policy {
namespace {

using internal::Quote;

absl::Status PatternError(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat("destination pattern ", Quote(text), ": ", why));
}

std::optional<int> ParsePortNumber(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return std::nullopt;
  }
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    value = value * 10 + (c - '0');
  }
  if (value < 1 || value > 65535) {
    return std::nullopt;
  }
  return value;
}

bool IsFullLength(const common::Cidr& c) { return c.prefix_len == (c.base.is_v4 ? 32 : 128); }

}  // namespace

absl::StatusOr<DestinationPattern> DestinationPattern::Parse(std::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        "destination pattern is empty; expected HOST:PORT, e.g. gitlab.corp.example:443");
  }
  if (text.find('%') != std::string_view::npos) {
    return PatternError(text, "zone ids (%...) are not supported");
  }
  std::string_view host;
  std::string_view ports;
  bool bracketed = false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return PatternError(text, "missing ']' after the IPv6 address");
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return PatternError(text,
                          "expected [IPV6]:PORT or [IPV6/LEN]:PORT, e.g. [2001:db8::/32]:443");
    }
    ports = rest.substr(1);
    bracketed = true;
    if (host.find(':') == std::string_view::npos) {
      return PatternError(text, "brackets are only for IPv6 addresses");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return PatternError(text, "missing port; expected HOST:PORT, e.g. gitlab.corp.example:443");
    }
    host = text.substr(0, colon);
    ports = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return PatternError(text, "IPv6 addresses need brackets, e.g. [2001:db8::/32]:443");
    }
  }
  if (host.empty()) {
    return PatternError(text, "host is empty");
  }
  if (host.find_first_of("[]") != std::string_view::npos) {
    return PatternError(text, "misplaced '[' or ']'; write IPv6 as [ADDR]:PORT");
  }

  DestinationPattern p;
  // Ports first, so every host branch below can return the finished pattern.
  if (ports == "*") {
    p.port_min_ = 1;
    p.port_max_ = 65535;
  } else if (size_t dash = ports.find('-'); dash != std::string_view::npos) {
    std::optional<int> lo = ParsePortNumber(ports.substr(0, dash));
    std::optional<int> hi = ParsePortNumber(ports.substr(dash + 1));
    if (!lo || !hi || *lo > *hi) {
      return PatternError(text, common::StrCat("port range ", Quote(ports),
                                               " must be LOW-HIGH with 1 <= LOW <= HIGH <= 65535"));
    }
    p.port_min_ = static_cast<uint16_t>(*lo);
    p.port_max_ = static_cast<uint16_t>(*hi);
  } else {
    std::optional<int> port = ParsePortNumber(ports);
    if (!port) {
      return PatternError(text, common::StrCat("port ", Quote(ports),
                                               " must be a number from 1 to 65535, a range "
                                               "LOW-HIGH, or *"));
    }
    p.port_min_ = p.port_max_ = static_cast<uint16_t>(*port);
  }

  if (bracketed || host.find('/') != std::string_view::npos || common::ParseIp(host)) {
    absl::StatusOr<common::Cidr> cidr = common::ParseCidr(host);
    if (!cidr.ok()) {
      return PatternError(text, internal::Message(cidr.status()));
    }
    // ParseCidr silently clears host bits; an operator who wrote 10.20.1.0/16 more
    // likely mistyped the length than meant the whole /16, so say so instead.
    std::optional<common::IpAddress> written = common::ParseIp(host.substr(0, host.find('/')));
    if (!written || !(*written == cidr->base)) {
      return PatternError(text, common::StrCat("address has bits set beyond the prefix length; "
                                               "did you mean ",
                                               cidr->ToString(), "?"));
    }
    if (cidr->prefix_len == 0) {
      return PatternError(text, common::StrCat(cidr->ToString(),
                                               " would match every address; name the networks "
                                               "you mean"));
    }
    p.kind_ = Kind::kCidr;
    p.cidr_ = *cidr;
    return p;
  }

  if (host.front() == '*') {
    if (host == "*") {
      return PatternError(text,
                          "a host of just '*' would match every name; name the domain, e.g. "
                          "*.corp.example:443");
    }
    if (host.substr(0, 2) != "*." || host.find('*', 1) != std::string_view::npos) {
      return PatternError(
          text, "'*' may only stand for whole labels at the left, as in *.corp.example:443");
    }
    absl::StatusOr<std::string> suffix = NormalizeHostName(host.substr(2));
    if (!suffix.ok()) {
      return PatternError(text, internal::Message(suffix.status()));
    }
    p.kind_ = Kind::kWildcard;
    p.host_ = *std::move(suffix);
    p.dotted_suffix_ = common::StrCat(".", p.host_);
    return p;
  }
  if (host.find('*') != std::string_view::npos) {
    return PatternError(
        text, "'*' may only stand for whole labels at the left, as in *.corp.example:443");
  }
  absl::StatusOr<std::string> name = NormalizeHostName(host);
  if (!name.ok()) {
    return PatternError(text, internal::Message(name.status()));
  }
  p.kind_ = Kind::kHost;
  p.host_ = *std::move(name);
  return p;
}

bool DestinationPattern::MatchesHost(const Destination& d) const {
  switch (kind_) {
    case Kind::kCidr:
      return d.ip.has_value() && cidr_.Contains(*d.ip);
    case Kind::kHost:
      return !d.ip.has_value() && d.host == host_;
    case Kind::kWildcard:
      // Labels are never empty, so a longer name ending in ".suffix" has at least one
      // whole label in front of it.
      return !d.ip.has_value() && d.host.size() > dotted_suffix_.size() &&
             d.host.compare(d.host.size() - dotted_suffix_.size(), dotted_suffix_.size(),
                            dotted_suffix_) == 0;
  }
  return false;
}

std::string DestinationPattern::ToString() const {
  std::string out;
  switch (kind_) {
    case Kind::kHost:
      out = host_;
      break;
    case Kind::kWildcard:
      out = common::StrCat("*.", host_);
      break;
    case Kind::kCidr: {
      std::string addr = IsFullLength(cidr_) ? cidr_.base.ToString() : cidr_.ToString();
      out = cidr_.base.is_v4 ? addr : common::StrCat("[", addr, "]");
      break;
    }
  }
  out += ':';
  if (port_min_ == 1 && port_max_ == 65535) {
    out += '*';
  } else if (port_min_ == port_max_) {
    common::StrAppend(&out, port_min_);
  } else {
    common::StrAppend(&out, port_min_, "-", port_max_);
  }
  return out;
}

}  // namespace drawbridge::policy

#include "common/http_proxy.h"

#include <cctype>
#include <cstdlib>

#include "common/encoding.h"
#include "common/ip.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::common {
namespace {

absl::Status BadUrl(std::string_view why) {
  return absl::InvalidArgumentError(StrCat("proxy URL: ", why));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return std::nullopt;
    }
    int hi = HexValue(s[i + 1]);
    int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::optional<uint16_t> ParsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) {
    return std::nullopt;
  }
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

bool SplitHostOptionalPort(std::string_view hostport, std::string* host,
                           std::optional<uint16_t>* port) {
  std::string_view rest;
  if (!hostport.empty() && hostport.front() == '[') {
    size_t close = hostport.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    *host = std::string(hostport.substr(1, close - 1));
    rest = hostport.substr(close + 1);
  } else {
    size_t colon = hostport.rfind(':');
    if (colon != std::string_view::npos && hostport.find(':') != colon) {
      *host = std::string(hostport);  // a bare IPv6 address
      return ParseIp(*host).has_value();
    }
    *host = std::string(hostport.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : hostport.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') {
      return false;
    }
    *port = ParsePort(rest.substr(1));
    if (!*port) {
      return false;
    }
  }
  return !host->empty();
}

bool ValidHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  if (ParseIp(host)) {
    return true;
  }
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<HttpProxy> ParseHttpProxyUrl(std::string_view url) {
  if (url.size() > 2048) {
    return BadUrl("longer than 2 KiB");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 32 || c == 127) {
      return BadUrl("contains spaces or control characters");
    }
  }
  std::string_view rest = url;
  const std::string scheme_end = "://";
  size_t scheme_at = rest.find(scheme_end);
  if (scheme_at != std::string_view::npos) {
    std::string scheme = ToLower(rest.substr(0, scheme_at));
    if (scheme == "https") {
      return BadUrl("https:// proxies (TLS to the proxy) are not supported; use http://");
    }
    if (scheme != "http") {
      return BadUrl(StrCat("scheme \"", scheme.substr(0, 16), "\" is not supported; use http://"));
    }
    rest.remove_prefix(scheme_at + scheme_end.size());
  }
  // Nothing after the authority but an optional "/".
  size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    if (slash + 1 != rest.size()) {
      return BadUrl("must be http://[USER:PASSWORD@]HOST[:PORT] with no path");
    }
    rest = rest.substr(0, slash);
  }
  HttpProxy proxy;
  size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    size_t colon = userinfo.find(':');
    auto user = PercentDecode(userinfo.substr(0, colon));
    auto pass = colon == std::string_view::npos ? std::optional<std::string>("")
                                                : PercentDecode(userinfo.substr(colon + 1));
    if (!user || !pass || user->empty()) {
      return BadUrl("the user info is not USER[:PASSWORD] (percent-encode special characters)");
    }
    if (user->find(':') != std::string::npos) {
      return BadUrl("the user name cannot hold ':'");
    }
    proxy.authorization = StrCat("Basic ", Base64Encode(StrCat(*user, ":", *pass)));
  }
  std::optional<uint16_t> port;
  if (!SplitHostOptionalPort(rest, &proxy.host, &port) || !ValidHostName(proxy.host)) {
    return BadUrl("needs a host name or address and an optional port from 1 to 65535");
  }
  proxy.port = port.value_or(3128);
  bool v6 = proxy.host.find(':') != std::string::npos;
  proxy.display = StrCat("http://", v6 ? "[" : "", proxy.host, v6 ? "]" : "", ":", proxy.port);
  return proxy;
}

bool NoProxyMatches(std::string_view list, std::string_view host_in, uint16_t port) {
  std::string host = ToLower(host_in);
  if (!host.empty() && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  while (!host.empty() && host.back() == '.') {
    host.pop_back();
  }
  std::optional<IpAddress> host_ip = ParseIp(host);
  std::string normalized(list);
  for (char& c : normalized) {
    if (c == ' ' || c == '\t') {
      c = ',';
    }
  }
  for (std::string_view raw : Split(normalized, ',')) {
    if (raw.empty()) {
      continue;
    }
    if (raw == "*") {
      return true;
    }
    std::string entry = ToLower(raw);
    // A CIDR or an address, possibly with a port.
    if (entry.find('/') != std::string::npos) {
      auto cidr = ParseCidr(entry);
      if (cidr.ok() && host_ip && cidr->Contains(*host_ip)) {
        return true;
      }
      continue;
    }
    std::string name;
    std::optional<uint16_t> entry_port;
    if (!SplitHostOptionalPort(entry, &name, &entry_port)) {
      continue;
    }
    if (entry_port && *entry_port != port) {
      continue;
    }
    if (auto ip = ParseIp(name)) {
      if (host_ip && *ip == *host_ip) {
        return true;
      }
      continue;
    }
    while (!name.empty() && name.front() == '.') {
      name.erase(0, 1);
    }
    while (!name.empty() && name.front() == '*') {  // "*.example.com"
      name.erase(0, 1);
      if (!name.empty() && name.front() == '.') {
        name.erase(0, 1);
      }
    }
    if (name.empty() || host_ip) {
      continue;
    }
    if (host == name || (host.size() > name.size() &&
                         host.compare(host.size() - name.size(), name.size(), name) == 0 &&
                         host[host.size() - name.size() - 1] == '.')) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::optional<HttpProxy>> ProxyFor(std::string_view server_address,
                                                  std::string_view flag, const EnvLookup& env) {
  if (flag == "direct") {
    return std::optional<HttpProxy>();
  }
  std::string host;
  std::optional<uint16_t> port;
  if (!SplitHostOptionalPort(server_address, &host, &port) || !port) {
    return absl::InvalidArgumentError(
        StrCat("server address \"", server_address.substr(0, 200), "\" is not HOST:PORT"));
  }
  if (!flag.empty()) {
    ASSIGN_OR_RETURN(HttpProxy proxy, ParseHttpProxyUrl(flag));
    return std::optional<HttpProxy>(std::move(proxy));
  }
  std::optional<std::string> url = env("HTTPS_PROXY");
  if (!url || url->empty()) {
    url = env("https_proxy");
  }
  if (!url || url->empty()) {
    return std::optional<HttpProxy>();
  }
  std::optional<std::string> no_proxy = env("NO_PROXY");
  if (!no_proxy || no_proxy->empty()) {
    no_proxy = env("no_proxy");
  }
  if (no_proxy && NoProxyMatches(*no_proxy, host, *port)) {
    return std::optional<HttpProxy>();
  }
  auto proxy = ParseHttpProxyUrl(*url);
  if (!proxy.ok()) {
    return absl::InvalidArgumentError(StrCat("HTTPS_PROXY: ", proxy.status().message()));
  }
  return std::optional<HttpProxy>(std::move(*proxy));
}

EnvLookup ProcessEnvironment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read at startup
    return v == nullptr ? std::nullopt : std::optional<std::string>(v);
  };
}

std::string ConnectRequest(std::string_view target_host, uint16_t target_port,
                           const HttpProxy& proxy) {
  bool v6 = target_host.find(':') != std::string_view::npos;
  std::string authority = StrCat(v6 ? "[" : "", target_host, v6 ? "]" : "", ":", target_port);
  std::string request = StrCat("CONNECT ", authority, " HTTP/1.1\r\nHost: ", authority, "\r\n");
  if (!proxy.authorization.empty()) {
    request += StrCat("Proxy-Authorization: ", proxy.authorization, "\r\n");
  }
  request += "\r\n";
  return request;
}

absl::Status CheckConnectResponse(std::string_view head, const HttpProxy& proxy) {
  if (head.size() > kMaxConnectResponse) {
    return absl::InvalidArgumentError(
        StrCat("proxy ", proxy.display, ": answer to CONNECT longer than 8 KiB"));
  }
  size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (!StartsWith(line, "HTTP/1.") || line.size() < 12 || line[8] != ' ' ||
      !std::isdigit(static_cast<unsigned char>(line[9])) ||
      !std::isdigit(static_cast<unsigned char>(line[10])) ||
      !std::isdigit(static_cast<unsigned char>(line[11])) ||
      (line.size() > 12 && line[12] != ' ')) {
    return absl::InvalidArgumentError(
        StrCat("proxy ", proxy.display, ": malformed answer to CONNECT"));
  }
  const int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (status >= 200 && status < 300) {
    return absl::OkStatus();
  }
  // The reason phrase is the proxy's text: printable ASCII only, bounded.
  std::string reason;
  for (char c : line.substr(std::min<size_t>(line.size(), 13)).substr(0, 80)) {
    reason += (c >= 32 && c < 127) ? c : '?';
  }
  std::string hint;
  if (status == 407) {
    hint = proxy.authorization.empty()
               ? ": the proxy wants a user and password (http://USER:PASSWORD@HOST:PORT)"
               : ": check the proxy's user and password";
  } else if (status == 403) {
    hint = ": the proxy does not allow this destination";
  }
  return absl::UnavailableError(StrCat("proxy ", proxy.display, " refused CONNECT: ", status,
                                       reason.empty() ? "" : " ", reason, hint));
}

}  // namespace drawbridge::common

#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// Egress through an HTTP CONNECT proxy (docs/enrollment.md, "Behind an HTTP
// proxy"): which proxy, if any, to use for a server address, and the CONNECT
// exchange itself. gRPC channels and lanes both go through here.
namespace drawbridge::common {

struct HttpProxy {
  std::string host;
  uint16_t port = 0;
  // "Basic base64(user:pass)" when the URL carries user info, else empty.
  std::string authorization;
  // http://HOST:PORT, without credentials: for logs and messages.
  std::string display;
};

// http://[USER[:PASS]@]HOST[:PORT][/] (port 3128 if absent, as squid's);
// user and password percent-decoded. https:// proxies (TLS to the proxy) and
// other schemes are InvalidArgument, as is anything else malformed. Messages
// never repeat the password.
absl::StatusOr<HttpProxy> ParseHttpProxyUrl(std::string_view url);

// Whether NO_PROXY-style `list` (comma or space separated) exempts `host`:
// "*" exempts everything; an IP address or CIDR matches addresses; a name
// matches itself and its subdomains ("example.com" and ".example.com" both
// match "a.example.com"). An entry may end in ":PORT" to apply to that port only.
bool NoProxyMatches(std::string_view list, std::string_view host, uint16_t port);

// HOST and optional PORT (1-65535) of "HOST[:PORT]" or "[V6][:PORT]"; a bare
// IPv6 address has no port. False if malformed. (Also checks credentials'
// server addresses: pki::ValidateServerAddress.)
bool SplitHostOptionalPort(std::string_view hostport, std::string* host,
                           std::optional<uint16_t>* port);
// A DNS name (letters, digits, '-', '.', '_'; at most 253 bytes) or an IP address.
bool ValidHostName(std::string_view host);

// What the flag and the environment say for `server_address` (HOST:PORT):
// `flag` is a proxy URL, "direct" (never a proxy, whatever the environment),
// or empty: then HTTPS_PROXY (or https_proxy), unless NO_PROXY (or no_proxy)
// exempts the host. nullopt: connect directly.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;
absl::StatusOr<std::optional<HttpProxy>> ProxyFor(std::string_view server_address,
                                                  std::string_view flag, const EnvLookup& env);
EnvLookup ProcessEnvironment();

// The CONNECT request for HOST:PORT.
std::string ConnectRequest(std::string_view target_host, uint16_t target_port,
                           const HttpProxy& proxy);
// The most a proxy's answer head may take; a proxy that says more is refused.
inline constexpr size_t kMaxConnectResponse = 8192;
// Checks the proxy's answer head (through the blank line): OK for any 2xx;
// otherwise Unavailable naming the status ("407 Proxy Authentication
// Required: check the proxy's user and password", ...). Malformed is
// InvalidArgument.
absl::Status CheckConnectResponse(std::string_view head, const HttpProxy& proxy);

}  // namespace drawbridge::common

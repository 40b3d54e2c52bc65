#include "client/proxy_protocol.h"

namespace drawbridge::client {

ProxyProtocol DetectProtocol(uint8_t first_byte) {
  if (first_byte == 0x05) {
    return ProxyProtocol::kSocks5;
  }
  if (first_byte >= 'A' && first_byte <= 'Z') {
    return ProxyProtocol::kHttpConnect;
  }
  return ProxyProtocol::kUnknown;
}

std::string_view UnknownProtocolReason(uint8_t first_byte) {
  if (DetectProtocol(first_byte) != ProxyProtocol::kUnknown) {
    return {};
  }
  if (first_byte == 0x04) {
    return "SOCKS4/4a is not supported; use SOCKS5 (socks5h://) or HTTP CONNECT";
  }
  if (first_byte == 0x16) {
    // A TLS handshake record: the application was told "https://" for the proxy URL.
    return "received a TLS handshake; the proxy port speaks plain HTTP CONNECT or SOCKS5, "
           "configure the proxy URL as http:// or socks5h://";
  }
  if (first_byte >= 'a' && first_byte <= 'z') {
    return "request starts with a lower-case letter; HTTP methods are upper case and only "
           "CONNECT is supported";
  }
  return "first byte is neither SOCKS5 (0x05) nor the start of an HTTP CONNECT request";
}

std::string_view ProxyProtocolName(ProxyProtocol protocol) {
  switch (protocol) {
    case ProxyProtocol::kHttpConnect:
      return "http-connect";
    case ProxyProtocol::kSocks5:
      return "socks5";
    case ProxyProtocol::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view TunnelResultName(TunnelResult result) {
  switch (result) {
    case TunnelResult::kOk:
      return "ok";
    case TunnelResult::kDeniedByPolicy:
      return "denied_by_policy";
    case TunnelResult::kConnectionRefused:
      return "connection_refused";
    case TunnelResult::kAgentUnreachable:
      return "agent_unreachable";
    case TunnelResult::kTimeout:
      return "timeout";
    case TunnelResult::kNoAgent:
      return "no_agent";
    case TunnelResult::kBadRequest:
      return "bad_request";
    case TunnelResult::kRateLimited:
      return "rate_limited";
    case TunnelResult::kInternal:
      break;
  }
  return "internal";
}

bool IsValidTargetHostName(std::string_view host) {
  if (!host.empty() && host.back() == '.') {
    host.remove_suffix(1);  // the absolute (FQDN) spelling
  }
  if (host.empty() || host.size() > 253) {
    return false;
  }
  size_t label_len = 0;
  for (char ch : host) {
    if (ch == '.') {
      if (label_len == 0) {
        return false;
      }
      label_len = 0;
      continue;
    }
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_';
    if (!ok || ++label_len > 63) {
      return false;
    }
  }
  return label_len > 0;
}

}  // namespace drawbridge::client

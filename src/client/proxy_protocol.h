#pragma once

// The protocol layer of `drawbridge client`'s proxy port: one TCP port serves both
// HTTP CONNECT (client/http_connect.h) and SOCKS5 (client/socks5.h), told apart by the
// first byte the application sends.
//
// Everything here is pure and I/O-free: parsers take whatever bytes arrived (any
// split, down to one byte at a time) and say how many of them belonged to the
// handshake, so that the rest can be forwarded as tunnel payload. Reply builders
// return the exact bytes to write. The socket side (Asio) lives elsewhere.
//
// Contract shared by both parsers:
//   * `Feed` never reads past `bytes` and always sets `*consumed <= bytes.size()`.
//   * kNeedMore consumes every byte given (the parser keeps what it needs).
//   * On completion `*consumed` stops exactly after the handshake; the caller keeps
//     `bytes.substr(*consumed)` as the first tunnel payload (e.g. an eager TLS
//     ClientHello).
//   * On kError `*consumed` stops after the offending byte; the connection is to be
//     closed after writing the parser's error reply, so the rest does not matter.
//   * Once kDone or kError is reached the parser is final: further calls return the
//     same state and consume nothing.
//   * Error reasons never echo client input: bytes sent by an application may be
//     secrets, and reasons end up in logs and in replies.

#include <cstdint>
#include <string_view>

namespace drawbridge::client {

enum class ProxyProtocol { kUnknown, kHttpConnect, kSocks5 };

// 0x05 → SOCKS5; an ASCII upper-case letter (the first byte of every HTTP method a
// client sends) → HTTP; anything else, SOCKS4 (0x04) included → kUnknown: close.
ProxyProtocol DetectProtocol(uint8_t first_byte);

// Why `first_byte` was refused, for the operator's log line (SOCKS4, a TLS handshake,
// ...). Empty when DetectProtocol(first_byte) is not kUnknown.
std::string_view UnknownProtocolReason(uint8_t first_byte);

std::string_view ProxyProtocolName(ProxyProtocol protocol);

// How an attempt to open the tunnel ended; both protocols reply from it.
//
//   result                 HTTP                          SOCKS5 REP
//   kOk                    200 Connection established    0x00 succeeded
//   kDeniedByPolicy        403 Forbidden                 0x02 not allowed by ruleset
//   kConnectionRefused     502 Bad Gateway               0x05 connection refused
//   kAgentUnreachable      502 Bad Gateway               0x04 host unreachable
//   kTimeout               504 Gateway Timeout           0x04 host unreachable
//   kNoAgent               503 Service Unavailable       0x01 general failure
//   kBadRequest            400 Bad Request               0x01 general failure
//   kInternal              500 Internal Server Error     0x01 general failure
//   kRateLimited           429 Too Many Requests         0x01 general failure
//
// SOCKS5 timeouts are 0x04, not 0x06: "TTL expired" is about IP TTLs, and clients
// print it as such (curl: "TTL expired"), which sends operators the wrong way.
enum class TunnelResult {
  kOk,
  kDeniedByPolicy,     // server policy or the agent's allowlist refused the destination
  kConnectionRefused,  // the agent reached the host, which refused (RST)
  kAgentUnreachable,   // the agent could not reach the host (no route, DNS failure)
  kTimeout,            // no answer in time (server, agent or destination)
  kNoAgent,            // no healthy agent serves the destination
  kBadRequest,         // the handshake itself was malformed
  kInternal,           // a bug or resource exhaustion on our side
  kRateLimited,        // the server's per-identity dial rate limit
};

std::string_view TunnelResultName(TunnelResult result);

// A destination host name as both parsers accept it: 1..253 characters (254 with
// one trailing dot), dot-separated labels of 1..63 characters from [A-Za-z0-9_-].
// IPv4 literals pass (policy parses IP literals itself); ':' never does, so that
// "host:port" stays unambiguous and IPv6 needs brackets (HTTP) or ATYP 4 (SOCKS5).
bool IsValidTargetHostName(std::string_view host);

}  // namespace drawbridge::client

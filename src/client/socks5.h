#pragma once

// SOCKS5 (RFC 1928) as `drawbridge client` speaks it: CONNECT only, "no
// authentication" only. An incremental parser of the greeting and the request, and
// the reply builders. See client/proxy_protocol.h for the contract shared with the
// HTTP CONNECT parser.
//
// Conversation, from the caller's side:
//   1. Feed bytes until kGreetingDone; write Socks5MethodReply() ({5, 0}).
//   2. Keep feeding (starting with the bytes after *consumed: clients may send the
//      request without waiting) until kDone; target() names the destination.
//   3. Open the tunnel; write Socks5Reply(result); on kOk the tunnel starts, and the
//      bytes after the request's *consumed are its first payload.
//   On kError at any point: write ErrorReply() (it may be empty) and close.
//
// Refused, with the reply ErrorReply() gives:
//   greeting VER != 5                         nothing (the peer does not speak SOCKS5)
//   NMETHODS == 0, or 0x00 not offered        {5, 0xFF} no acceptable methods
//   request VER != 5, RSV != 0                REP 0x01 general failure
//   CMD BIND (2), UDP ASSOCIATE (3), other    REP 0x07 command not supported
//   ATYP other than 1, 3, 4                   REP 0x08 address type not supported
//   empty domain, a byte outside [A-Za-z0-9._-] (NUL included), or a name failing
//   IsValidTargetHostName                     REP 0x01 general failure
//   DST.PORT 0                                REP 0x01 general failure (there is no
//                                             "bad port" code; 0 is never a service)

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "client/proxy_protocol.h"

namespace drawbridge::client {

// REP field of a SOCKS5 reply (RFC 1928 §6).
enum class Socks5ReplyCode : uint8_t {
  kSucceeded = 0x00,
  kGeneralFailure = 0x01,
  kNotAllowedByRuleset = 0x02,
  kNetworkUnreachable = 0x03,
  kHostUnreachable = 0x04,
  kConnectionRefused = 0x05,
  kTtlExpired = 0x06,
  kCommandNotSupported = 0x07,
  kAddressTypeNotSupported = 0x08,
};

class Socks5Parser {
 public:
  enum class State { kNeedMore, kGreetingDone, kDone, kError };
  enum class AddressType : uint8_t { kIpv4 = 0x01, kDomain = 0x03, kIpv6 = 0x04 };

  // Consumes the next bytes of the connection. kGreetingDone is returned once, with
  // *consumed ending after the greeting; the next call continues with the request.
  // On kDone, *consumed ends exactly after the request; later bytes are payload.
  State Feed(std::string_view bytes, size_t* consumed);

  State state() const { return state_; }

  // Valid once kDone. target() is normalised "host:port": IPv4 dotted quad, IPv6 in
  // its canonical text form in brackets ("[2001:db8::1]:443"; IPv4-mapped IPv6 is
  // written as IPv4), a domain name as sent. host() is the same without port and
  // brackets.
  const std::string& target() const { return target_; }
  const std::string& host() const { return host_; }
  uint16_t port() const { return port_; }
  AddressType address_type() const { return address_type_; }

  // Valid once kError. error_code() is the REP code of a request error (general
  // failure for greeting errors, which have no REP field). ErrorReply() is the exact
  // bytes to write before closing; empty when the peer does not speak SOCKS5.
  Socks5ReplyCode error_code() const { return error_code_; }
  std::string error_reason() const { return error_reason_; }
  std::string ErrorReply() const { return error_reply_; }

 private:
  enum class Phase {
    kGreetingVersion,
    kGreetingMethodCount,
    kGreetingMethods,
    kRequestVersion,
    kRequestCommand,
    kRequestReserved,
    kRequestAddressType,
    kRequestDomainLength,
    kRequestAddress,
    kRequestPort,
  };

  void Step(uint8_t c);
  void FinishRequest();
  void FailGreeting(std::string reply, std::string_view reason);
  void FailRequest(Socks5ReplyCode code, std::string_view reason);

  State state_ = State::kNeedMore;
  Phase phase_ = Phase::kGreetingVersion;
  size_t methods_left_ = 0;
  bool no_auth_offered_ = false;
  AddressType address_type_ = AddressType::kIpv4;
  size_t address_left_ = 0;
  std::string address_;  // raw DST.ADDR bytes (without the domain length)
  size_t port_bytes_ = 0;
  uint16_t port_ = 0;
  std::string host_;
  std::string target_;
  Socks5ReplyCode error_code_ = Socks5ReplyCode::kSucceeded;
  std::string error_reason_;
  std::string error_reply_;
};

// {5, 0}: "no authentication required", sent after kGreetingDone.
std::string Socks5MethodReply();
// {5, 0xFF}: "no acceptable methods", sent before closing.
std::string Socks5NoAcceptableMethodsReply();

// The REP code for a tunnel result (table in client/proxy_protocol.h).
Socks5ReplyCode Socks5ReplyCodeFor(TunnelResult result);

// A 10-byte reply {5, REP, 0, ATYP 1, BND.ADDR 0.0.0.0, BND.PORT 0}. The bound
// address is not meaningful through a tunnel, and clients ignore it for CONNECT.
std::string Socks5Reply(TunnelResult result);
std::string Socks5Reply(Socks5ReplyCode code);

}  // namespace drawbridge::client

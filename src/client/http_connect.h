#pragma once

// HTTP CONNECT (RFC 9110 §9.3.6, RFC 9112) as `drawbridge client` speaks it: an
// incremental parser of the request head and the reply builders. See
// client/proxy_protocol.h for the contract shared with the SOCKS5 parser.
//
// Accepted:  "CONNECT host:port HTTP/1.1\r\n" (or HTTP/1.0), header lines, "\r\n".
//   * host is a host name (IsValidTargetHostName), an IPv4 literal or a bracketed
//     IPv6 literal ("[2001:db8::1]:443"); port is 1..65535 in decimal.
//   * Lines must end in CRLF. A bare LF is refused (400) rather than tolerated:
//     parsers that disagree on line ends are how request smuggling starts, and every
//     real CONNECT client sends CRLF.
//   * Header fields are checked for syntax (token name, ':' with no whitespace before
//     it, no control characters, no obsolete line folding) and counted, but neither
//     names nor values are stored: Proxy-Authorization and friends may carry secrets,
//     and nothing in them changes what we do. Host is not required.
//   * The method is case-sensitive (RFC 9110 §9.1): "connect" is answered 405.
//
// Refused, with the status error_status() returns:
//   400  malformed request line or header, bare LF/CR, control or non-ASCII bytes,
//        request line over kMaxRequestLine, absolute-form ("http://...") or
//        origin-form ("/") targets, missing/zero/out-of-range port, bad host
//   405  any method other than CONNECT (the reply carries "Allow: CONNECT")
//   431  head over kMaxHead bytes, or more than kMaxHeaders header fields
//   505  a well-formed HTTP version other than 1.0 and 1.1
//
// A parser error is final as soon as it is seen, so an early reply may be written
// while the client is still sending: the socket layer should half-close and drain
// briefly before closing, or the kernel's RST may destroy the reply in flight.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "client/proxy_protocol.h"

namespace drawbridge::client {

class HttpConnectParser {
 public:
  enum class State { kNeedMore, kDone, kError };

  static constexpr size_t kMaxRequestLine = 4 * 1024;  // without its CRLF
  static constexpr size_t kMaxHead = 16 * 1024;        // request line to final CRLF
  static constexpr int kMaxHeaders = 100;

  // Consumes the next bytes of the connection. On kDone, *consumed ends exactly after
  // the blank line ending the head; later bytes are tunnel payload.
  State Feed(std::string_view bytes, size_t* consumed);

  State state() const { return state_; }

  // Valid once kDone. target() is "host:port" exactly as sent ("[::1]:443" for IPv6);
  // host() is the host without IPv6 brackets; port() is the parsed port.
  // Empty (0) before kDone, even once the request line has been read: nothing may act
  // on a request whose head has not been checked to its end.
  const std::string& target() const { return done_.target; }
  const std::string& host() const { return done_.host; }
  uint16_t port() const { return done_.port; }
  // "HTTP/1.1" or "HTTP/1.0".
  const std::string& http_version() const { return done_.version; }

  // Valid once kError: the HTTP status to answer with and a one-line reason fit for
  // the reply body and the log (it never quotes the request).
  int error_status() const { return error_status_; }
  std::string error_reason() const { return error_reason_; }
  // HttpConnectReply(error_status(), error_reason()).
  std::string ErrorReply() const;

 private:
  enum class Phase {
    kRequestLine,
    kRequestLineLf,
    kLineStart,  // start of a header line, or of the final empty line
    kHeaderName,
    kHeaderValue,
    kHeaderLf,
    kFinalLf,
  };

  struct Request {
    std::string target;
    std::string host;
    std::string version;
    uint16_t port = 0;
  };

  void Step(uint8_t c);
  void ParseRequestLine();
  void Fail(int status, std::string_view reason);

  State state_ = State::kNeedMore;
  Phase phase_ = Phase::kRequestLine;
  size_t head_size_ = 0;
  int header_count_ = 0;
  std::string request_line_;  // cleared once parsed
  Request pending_;           // from the request line, published when the head is complete
  Request done_;
  int error_status_ = 0;
  std::string error_reason_;
};

// The reply to a CONNECT once the tunnel attempt has ended (see TunnelResult for the
// status of each result). kOk gives "HTTP/1.1 200 Connection established\r\n\r\n" and
// the tunnel starts right after it; every other result is an error reply with
// Content-Type text/plain, Content-Length, "Connection: close" and a one-line body,
// after which the connection is closed.
std::string HttpConnectReply(TunnelResult result);

// An error reply with an explicit status and message (parser errors). A status
// outside 400..599 is answered as 500. 405 adds "Allow: CONNECT". Control characters
// in `message` are replaced so that it can never split the reply.
std::string HttpConnectReply(int status, std::string_view message);

}  // namespace drawbridge::client

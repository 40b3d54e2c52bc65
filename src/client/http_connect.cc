#include "client/http_connect.h"

#include <charconv>
#include <vector>

#include "common/ip.h"
#include "common/strings.h"

namespace drawbridge::client {
namespace {

// tchar (RFC 9110 §5.6.2): the bytes of a method or a header field name.
bool IsTchar(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsControl(uint8_t c) { return c < 0x20 || c == 0x7f; }

bool IsToken(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char ch : s) {
    if (!IsTchar(static_cast<uint8_t>(ch))) {
      return false;
    }
  }
  return true;
}

// "1".."65535", decimal digits only.
bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) {
    return false;
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value == 0 || value > 65535) {
    return false;
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

// Parses an authority-form CONNECT target; returns an error reason, empty on success.
std::string_view ParseAuthority(std::string_view target, std::string* host, uint16_t* port) {
  if (target.find("://") != std::string_view::npos || target.front() == '/') {
    return "CONNECT target must be host:port, not a URL or path";
  }
  if (target.find('@') != std::string_view::npos) {
    return "CONNECT target must be host:port, without user info";
  }
  std::string_view host_part;
  std::string_view port_part;
  if (target.front() == '[') {
    size_t close = target.find(']');
    if (close == std::string_view::npos) {
      return "CONNECT target has '[' without ']'";
    }
    host_part = target.substr(1, close - 1);
    std::string_view rest = target.substr(close + 1);
    if (rest.empty()) {
      return "CONNECT target has no port; expected host:port";
    }
    if (rest.front() != ':') {
      return "CONNECT target must be [IPv6]:port";
    }
    port_part = rest.substr(1);
    if (host_part.find(':') == std::string_view::npos || !common::ParseIp(host_part)) {
      return "CONNECT target in brackets is not an IPv6 address";
    }
  } else {
    size_t colon = target.rfind(':');
    if (colon == std::string_view::npos) {
      return "CONNECT target has no port; expected host:port";
    }
    host_part = target.substr(0, colon);
    port_part = target.substr(colon + 1);
    if (host_part.find(':') != std::string_view::npos) {
      return "IPv6 CONNECT target must be in brackets, e.g. [2001:db8::1]:443";
    }
    if (!IsValidTargetHostName(host_part)) {
      return "CONNECT target host is not a valid host name or address";
    }
  }
  if (port_part.empty()) {
    return "CONNECT target has no port; expected host:port";
  }
  if (!ParsePort(port_part, port)) {
    return "CONNECT target port must be a number from 1 to 65535";
  }
  host->assign(host_part);
  return {};
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "Connection established";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 500 ? "Client Error" : "Server Error";
  }
}

}  // namespace

HttpConnectParser::State HttpConnectParser::Feed(std::string_view bytes, size_t* consumed) {
  *consumed = 0;
  if (state_ != State::kNeedMore) {
    return state_;
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    *consumed = i + 1;
    if (++head_size_ > kMaxHead) {
      Fail(431, "request head larger than 16384 bytes");
      return state_;
    }
    Step(static_cast<uint8_t>(bytes[i]));
    if (state_ != State::kNeedMore) {
      return state_;
    }
  }
  return state_;
}

void HttpConnectParser::Step(uint8_t c) {
  switch (phase_) {
    case Phase::kRequestLine:
      if (c == '\r') {
        phase_ = Phase::kRequestLineLf;
      } else if (c == '\n') {
        Fail(400, "request line ends with a bare LF; HTTP requires CRLF");
      } else if (c >= 0x80) {
        Fail(400, "non-ASCII byte in the request line");
      } else if (IsControl(c)) {
        Fail(400, "control character in the request line");
      } else if (request_line_.size() >= kMaxRequestLine) {
        Fail(400, "request line longer than 4096 bytes");
      } else {
        request_line_.push_back(static_cast<char>(c));
      }
      return;

    case Phase::kRequestLineLf:
      if (c != '\n') {
        Fail(400, "CR not followed by LF in the request line");
        return;
      }
      ParseRequestLine();
      phase_ = Phase::kLineStart;
      return;

    case Phase::kLineStart:
      if (c == '\r') {
        phase_ = Phase::kFinalLf;
      } else if (c == '\n') {
        Fail(400, "header line ends with a bare LF; HTTP requires CRLF");
      } else if (c == ' ' || c == '\t') {
        Fail(400, "obsolete header line folding is not supported");
      } else if (c == ':') {
        Fail(400, "header field with an empty name");
      } else if (IsTchar(c)) {
        phase_ = Phase::kHeaderName;
      } else if (IsControl(c)) {
        Fail(400, "control character in a header field");
      } else {
        Fail(400, "invalid character in a header field name");
      }
      return;

    case Phase::kHeaderName:
      if (c == ':') {
        phase_ = Phase::kHeaderValue;
      } else if (IsTchar(c)) {
        // still in the name
      } else if (c == '\r' || c == '\n') {
        Fail(400, "header line without ':'");
      } else if (c == ' ' || c == '\t') {
        // RFC 9112 §5.1: whitespace before the colon must be rejected.
        Fail(400, "whitespace between a header field name and ':'");
      } else if (IsControl(c)) {
        Fail(400, "control character in a header field");
      } else {
        Fail(400, "invalid character in a header field name");
      }
      return;

    case Phase::kHeaderValue:
      if (c == '\r') {
        phase_ = Phase::kHeaderLf;
      } else if (c == '\n') {
        Fail(400, "header line ends with a bare LF; HTTP requires CRLF");
      } else if (IsControl(c) && c != '\t') {
        Fail(400, "control character in a header field");
      }
      // Values (SP, HTAB, VCHAR, obs-text) are not kept: they may be credentials.
      return;

    case Phase::kHeaderLf:
      if (c != '\n') {
        Fail(400, "CR not followed by LF in a header line");
        return;
      }
      if (++header_count_ > kMaxHeaders) {
        Fail(431, "more than 100 header fields");
        return;
      }
      phase_ = Phase::kLineStart;
      return;

    case Phase::kFinalLf:
      if (c != '\n') {
        Fail(400, "CR not followed by LF at the end of the request head");
        return;
      }
      state_ = State::kDone;
      done_ = std::move(pending_);
      pending_ = Request{};
      return;
  }
}

void HttpConnectParser::ParseRequestLine() {
  std::string line = std::move(request_line_);
  request_line_.clear();
  std::vector<std::string_view> parts = common::Split(line, ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[2].empty()) {
    Fail(400, "malformed request line; expected \"CONNECT host:port HTTP/1.1\"");
    return;
  }
  std::string_view method = parts[0];
  std::string_view target = parts[1];
  std::string_view version = parts[2];
  if (!IsToken(method)) {
    Fail(400, "malformed request method");
    return;
  }
  if (method != "CONNECT") {
    Fail(405,
         "only CONNECT is supported; this proxy tunnels TCP and does not forward plain "
         "HTTP requests");
    return;
  }
  bool version_syntax_ok = version.size() == 8 && common::StartsWith(version, "HTTP/") &&
                           version[5] >= '0' && version[5] <= '9' && version[6] == '.' &&
                           version[7] >= '0' && version[7] <= '9';
  if (!version_syntax_ok) {
    Fail(400, "malformed HTTP version in the request line");
    return;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    Fail(505, "only HTTP/1.1 and HTTP/1.0 are supported");
    return;
  }
  std::string host;
  uint16_t port = 0;
  std::string_view error = ParseAuthority(target, &host, &port);
  if (!error.empty()) {
    Fail(400, error);
    return;
  }
  pending_.target.assign(target);
  pending_.host = std::move(host);
  pending_.port = port;
  pending_.version.assign(version);
}

void HttpConnectParser::Fail(int status, std::string_view reason) {
  state_ = State::kError;
  error_status_ = status;
  error_reason_.assign(reason);
  request_line_.clear();
  pending_ = Request{};
}

std::string HttpConnectParser::ErrorReply() const {
  return HttpConnectReply(error_status_, error_reason_);
}

std::string HttpConnectReply(TunnelResult result) {
  switch (result) {
    case TunnelResult::kOk:
      return "HTTP/1.1 200 Connection established\r\n\r\n";
    case TunnelResult::kDeniedByPolicy:
      return HttpConnectReply(403, "the destination is not allowed for this client by policy");
    case TunnelResult::kConnectionRefused:
      return HttpConnectReply(502, "the destination refused the connection");
    case TunnelResult::kAgentUnreachable:
      return HttpConnectReply(502, "the agent could not reach the destination");
    case TunnelResult::kTimeout:
      return HttpConnectReply(504, "timed out connecting to the destination");
    case TunnelResult::kNoAgent:
      return HttpConnectReply(503, "no agent is available for the destination");
    case TunnelResult::kBadRequest:
      return HttpConnectReply(400, "malformed CONNECT request");
    case TunnelResult::kRateLimited:
      return HttpConnectReply(429,
                              "too many new connections from this client: the server's "
                              "per-identity dial rate limit; retry shortly");
    case TunnelResult::kInternal:
      break;
  }
  return HttpConnectReply(500, "internal error");
}

std::string HttpConnectReply(int status, std::string_view message) {
  if (status < 400 || status > 599) {
    status = 500;
  }
  std::string body = common::StrCat("drawbridge: ", message, "\n");
  // Only the final newline may be a control character: the message cannot add lines.
  for (size_t i = 0; i + 1 < body.size(); ++i) {
    if (IsControl(static_cast<uint8_t>(body[i]))) {
      body[i] = ' ';
    }
  }
  std::string reply = common::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\n");
  if (status == 405) {
    reply.append("Allow: CONNECT\r\n");
  }
  common::StrAppend(&reply, "Content-Type: text/plain; charset=utf-8\r\n",
                    "Content-Length: ", body.size(), "\r\n", "Connection: close\r\n\r\n", body);
  return reply;
}

}  // namespace drawbridge::client

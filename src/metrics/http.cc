#include "metrics/http.h"

#include "common/strings.h"

namespace drawbridge::metrics {
namespace {

bool IsToken(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

absl::StatusOr<HttpRequest> ParseHttpRequestHead(std::string_view head) {
  auto bad = [](std::string_view why) {
    return absl::InvalidArgumentError(common::StrCat("bad HTTP request: ", why));
  };
  if (head.size() > kMaxRequestHead) {
    return bad("head too large");
  }
  if (head.size() < 4 || head.substr(head.size() - 4) != "\r\n\r\n") {
    return bad("incomplete head");
  }
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad("request line must be METHOD PATH VERSION");
  }
  HttpRequest r;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || method.size() > 16) {
    return bad("method");
  }
  for (char c : method) {
    if (!IsToken(c)) {
      return bad("method");
    }
  }
  if (target.empty() || target[0] != '/' || target.size() > 2048) {
    return bad("target must be an absolute path");
  }
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return bad("target has control or non-ASCII characters");
    }
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return bad("version must be HTTP/1.0 or HTTP/1.1");
  }
  // Header lines: NAME ":" VALUE, no obsolete line folding, no NUL.
  size_t pos = eol + 2;
  while (pos < head.size() - 2) {
    size_t end = head.find("\r\n", pos);
    std::string_view h = head.substr(pos, end - pos);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return bad("header line without a name");
    }
    for (char c : h.substr(0, colon)) {
      if (!IsToken(c)) {
        return bad("header name");
      }
    }
    for (char c : h.substr(colon + 1)) {
      if (c == '\0' || c == '\r' || c == '\n') {
        return bad("header value");
      }
    }
    pos = end + 2;
  }
  r.method = std::string(method);
  r.path = std::string(target.substr(0, target.find('?')));
  return r;
}

std::string HttpResponse(int status, std::string_view reason, std::string_view content_type,
                         std::string_view body) {
  return common::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", content_type,
                        "\r\nContent-Length: ", body.size(),
                        "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n", body);
}

}  // namespace drawbridge::metrics

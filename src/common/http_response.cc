#include "common/http_response.h"

#include <cctype>
#include <optional>

#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::common {
namespace {

absl::Status Bad(std::string_view why) {
  return absl::InvalidArgumentError(StrCat("malformed HTTP response: ", why));
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Takes one CRLF- (or LF-) terminated line off the front of `rest`.
absl::StatusOr<std::string_view> TakeLine(std::string_view* rest) {
  size_t end = rest->find('\n');
  if (end == std::string_view::npos) {
    return Bad("truncated before the end of a line");
  }
  if (end > kMaxHttpHeaderLine) {
    return Bad("line longer than 8 KiB");
  }
  std::string_view line = rest->substr(0, end);
  rest->remove_prefix(end + 1);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  return line;
}

// A decimal or hex number of at most `digits` digits; nullopt otherwise.
std::optional<size_t> ParseNumber(std::string_view s, int base, size_t digits) {
  if (s.empty() || s.size() > digits) {
    return std::nullopt;
  }
  size_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    v = v * static_cast<size_t>(base) + static_cast<size_t>(d);
  }
  return v;
}

absl::StatusOr<std::string> DecodeChunked(std::string_view rest, size_t max_body) {
  std::string body;
  for (;;) {
    ASSIGN_OR_RETURN(std::string_view size_line, TakeLine(&rest));
    size_line = Trim(size_line.substr(0, size_line.find(';')));  // chunk extensions ignored
    auto size = ParseNumber(size_line, 16, 8);
    if (!size) {
      return Bad("bad chunk size");
    }
    if (*size == 0) {
      return body;  // trailers, if any, are ignored
    }
    if (body.size() + *size > max_body) {
      return Bad(StrCat("body larger than ", max_body, " bytes"));
    }
    if (rest.size() < *size + 1) {
      return Bad("truncated chunk");
    }
    body.append(rest.substr(0, *size));
    rest.remove_prefix(*size);
    if (StartsWith(rest, "\r\n")) {
      rest.remove_prefix(2);
    } else if (StartsWith(rest, "\n")) {
      rest.remove_prefix(1);
    } else {
      return Bad("chunk not followed by CRLF");
    }
  }
}

}  // namespace

absl::StatusOr<HttpResponse> ParseHttpResponse(std::string_view raw, size_t max_body) {
  std::string_view rest = raw;
  ASSIGN_OR_RETURN(std::string_view status_line, TakeLine(&rest));
  // HTTP/1.x SP 3DIGIT [SP reason]
  if (!StartsWith(status_line, "HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return Bad("bad status line");
  }
  auto status = ParseNumber(status_line.substr(9, 3), 10, 3);
  if (!status || *status < 100) {
    return Bad("bad status code");
  }
  HttpResponse out;
  out.status = static_cast<int>(*status);
  std::optional<size_t> content_length;
  bool chunked = false;
  for (size_t n = 0;; ++n) {
    if (n > kMaxHttpHeaderLines) {
      return Bad("more than 64 header lines");
    }
    ASSIGN_OR_RETURN(std::string_view line, TakeLine(&rest));
    if (line.empty()) {
      break;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Bad("header line without a name");
    }
    std::string name = ToLower(line.substr(0, colon));
    std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-length") {
      auto len = ParseNumber(value, 10, 12);
      if (!len || (content_length && *content_length != *len)) {
        return Bad("bad or conflicting Content-Length");
      }
      content_length = len;
    } else if (name == "transfer-encoding") {
      if (ToLower(value) != "chunked") {
        return Bad("unsupported Transfer-Encoding");
      }
      chunked = true;
    }
  }
  if (chunked) {
    ASSIGN_OR_RETURN(out.body, DecodeChunked(rest, max_body));
    out.delimited = true;
    return out;
  }
  if (content_length) {
    if (*content_length > max_body) {
      return Bad(StrCat("body larger than ", max_body, " bytes"));
    }
    if (rest.size() < *content_length) {
      return Bad("body shorter than its Content-Length");
    }
    out.body = std::string(rest.substr(0, *content_length));
    out.delimited = true;
    return out;
  }
  if (rest.size() > max_body) {
    return Bad(StrCat("body larger than ", max_body, " bytes"));
  }
  out.body = std::string(rest);
  return out;
}

}  // namespace drawbridge::common

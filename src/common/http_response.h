#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::common {

struct HttpResponse {
  int status = 0;
  std::string body;
  // Whether the body's end was marked (Content-Length, the last chunk) rather
  // than being wherever the connection closed: only then is a connection cut
  // without TLS close_notify no truncation.
  bool delimited = false;
};

// The most header bytes a response may carry before its body (64 lines of 8 KiB).
inline constexpr size_t kMaxHttpHeaderLine = 8192;
inline constexpr size_t kMaxHttpHeaderLines = 64;

// Parses a whole HTTP/1.x response as read until the server closed the
// connection: status line, headers, then a body framed by Content-Length, by
// chunked transfer coding, or by the close. Untrusted input: at most 64 header
// lines of 8 KiB and a body of at most max_body bytes; a truncated body, a
// conflicting Content-Length, an unknown Transfer-Encoding and anything else
// malformed is InvalidArgument.
absl::StatusOr<HttpResponse> ParseHttpResponse(std::string_view raw, size_t max_body);

}  // namespace drawbridge::common

#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// The little HTTP/1.x the metrics endpoint speaks. Pure functions, no sockets: the
// request parser reads untrusted bytes and has a fuzz target (metrics_http_fuzz).
namespace drawbridge::metrics {

inline constexpr size_t kMaxRequestHead = 8192;

struct HttpRequest {
  std::string method;  // "GET"
  std::string path;    // "/metrics" (the query string, if any, is dropped)
};

// Parses a request head (request line and headers, up to and including the blank
// line). InvalidArgument for anything that is not `METHOD SP /PATH SP HTTP/1.x`
// followed by well-formed header lines; the head may be at most kMaxRequestHead.
absl::StatusOr<HttpRequest> ParseHttpRequestHead(std::string_view head);

// A whole response with Content-Length and Connection: close.
std::string HttpResponse(int status, std::string_view reason, std::string_view content_type,
                         std::string_view body);

}  // namespace drawbridge::metrics

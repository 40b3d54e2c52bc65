#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// A small blocking HTTPS GET for documents the server needs from elsewhere
// (OIDC discovery and JWKS). Run on worker threads only.
namespace drawbridge::server {

// GETs an https:// URL, verifying the server against ca_pem (the system roots
// when empty) and the URL's host name; the whole exchange is bounded by
// `timeout` per step and the response by max_body. A status other than 200 is
// an error naming it.
absl::StatusOr<std::string> HttpsGet(const std::string& url, const std::string& ca_pem,
                                     std::chrono::milliseconds timeout, size_t max_body);

}  // namespace drawbridge::server

#include "server/https_fetch.h"

#include "audit/internal/conn.h"
#include "audit/webhook.h"
#include "common/http_response.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::server {
namespace {

constexpr size_t kMaxHeaderBytes = common::kMaxHttpHeaderLine * common::kMaxHttpHeaderLines;

}  // namespace

absl::StatusOr<std::string> HttpsGet(const std::string& url, const std::string& ca_pem,
                                     std::chrono::milliseconds timeout, size_t max_body) {
  if (!common::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(common::StrCat("not an https:// URL: ", url.substr(0, 200)));
  }
  ASSIGN_OR_RETURN(audit::WebhookUrl parsed, audit::ParseWebhookUrl(url));
  audit::internal::ConnOptions options;
  options.address = parsed.address;
  options.tls = true;
  options.ca_pem = ca_pem;
  options.timeout = timeout;
  ASSIGN_OR_RETURN(std::unique_ptr<audit::internal::Conn> conn,
                   audit::internal::Conn::Dial(options));
  std::string host = parsed.address;
  RETURN_IF_ERROR(conn->WriteAll(common::StrCat("GET ", parsed.path, " HTTP/1.1\r\nHost: ", host,
                                                "\r\nAccept: application/json\r\n"
                                                "User-Agent: drawbridge\r\n"
                                                "Connection: close\r\n\r\n")));
  std::string raw;
  const size_t limit = 2 * max_body + kMaxHeaderBytes;  // headers, chunk framing
  bool closed_cleanly = true;
  for (;;) {
    auto piece = conn->ReadSome();
    if (!piece.ok()) {
      // Many servers (Python's among them) close without TLS close_notify;
      // that is no truncation if the response marked its own end.
      closed_cleanly = false;
      if (raw.empty()) {
        return piece.status();
      }
      break;
    }
    if (piece->empty()) {
      break;
    }
    raw += *piece;
    if (raw.size() > limit) {
      return absl::ResourceExhaustedError(
          common::StrCat(url.substr(0, 200), ": response larger than ", limit, " bytes"));
    }
  }
  auto response = common::ParseHttpResponse(raw, max_body);
  if (!response.ok()) {
    return absl::UnavailableError(
        common::StrCat(url.substr(0, 200), ": ", response.status().message()));
  }
  if (!closed_cleanly && !response->delimited) {
    return absl::UnavailableError(
        common::StrCat(url.substr(0, 200), ": the connection broke before the response's end"));
  }
  if (response->status != 200) {
    return absl::UnavailableError(
        common::StrCat(url.substr(0, 200), " answered HTTP ", response->status));
  }
  return std::move(response->body);
}

}  // namespace drawbridge::server

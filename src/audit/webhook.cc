#include "audit/webhook.h"

#include "audit/internal/conn.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::audit {

absl::StatusOr<WebhookUrl> ParseWebhookUrl(const std::string& url) {
  WebhookUrl out;
  std::string rest;
  if (common::StartsWith(url, "http://")) {
    rest = url.substr(7);
  } else if (common::StartsWith(url, "https://")) {
    out.tls = true;
    rest = url.substr(8);
  } else {
    return absl::InvalidArgumentError("webhook URL must start with http:// or https://");
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  out.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty() || authority.find('@') != std::string::npos ||
      out.path.find('#') != std::string::npos) {
    return absl::InvalidArgumentError("webhook URL needs a host, and no user info or fragment");
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 32 || c == 127) {
      return absl::InvalidArgumentError("webhook URL contains spaces or control characters");
    }
  }
  bool has_port = authority.back() != ']' && authority.rfind(':') != std::string::npos;
  out.address = has_port ? authority : common::StrCat(authority, out.tls ? ":443" : ":80");
  std::string port;
  RETURN_IF_ERROR(internal::SplitHostPort(out.address, &out.host, &port));
  return out;
}

absl::StatusOr<std::unique_ptr<WebhookSender>> WebhookSender::Start(const std::string& url,
                                                                    std::string ca_file) {
  ASSIGN_OR_RETURN(WebhookUrl parsed, ParseWebhookUrl(url));
  std::unique_ptr<WebhookSender> w(new WebhookSender(std::move(parsed), std::move(ca_file)));
  w->thread_ = std::thread([raw = w.get()] { raw->Loop(); });
  return w;
}

WebhookSender::~WebhookSender() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void WebhookSender::Post(std::string json_body) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= kMaxQueue) {
    queue_.pop_front();
    ++stats_.failed;
    common::LogError("alert.webhook_dropped",
                     {{"reason", "webhook queue full; the alert stays in the audit log"}});
  }
  queue_.push_back(std::move(json_body));
}

WebhookSender::Stats WebhookSender::GetStats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

absl::Status WebhookSender::PostOnce(const std::string& body) {
  ASSIGN_OR_RETURN(auto conn, internal::Conn::Dial(internal::ConnOptions{
                                  .address = url_.address,
                                  .tls = url_.tls,
                                  .ca_file = ca_file_,
                                  .server_name = url_.host,
                              }));
  std::string host =
      url_.host.find(':') != std::string::npos ? common::StrCat("[", url_.host, "]") : url_.host;
  RETURN_IF_ERROR(conn->WriteAll(common::StrCat(
      "POST ", url_.path, " HTTP/1.1\r\nHost: ", host,
      "\r\nUser-Agent: drawbridge\r\nContent-Type: application/json\r\nContent-Length: ",
      body.size(), "\r\nConnection: close\r\n\r\n", body)));
  std::string response;
  while (response.find("\r\n") == std::string::npos && response.size() < 4096) {
    ASSIGN_OR_RETURN(std::string more, conn->ReadSome());
    if (more.empty()) {
      break;
    }
    response += more;
  }
  // "HTTP/1.1 204 No Content"
  if (response.size() < 12 || !common::StartsWith(response, "HTTP/1.") || response[9] != '2') {
    return absl::UnavailableError(
        common::StrCat("webhook answered \"",
                       response.substr(0, std::min<size_t>(response.find('\r'), 64)), "\""));
  }
  return absl::OkStatus();
}

void WebhookSender::Loop() {
  internal::BlockSigpipeInThisThread();
  for (;;) {
    std::string body;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) {
        return;
      }
      body = std::move(queue_.front());
      queue_.pop_front();
    }
    absl::Status s;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      s = PostOnce(body);
      if (s.ok()) {
        break;
      }
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        break;
      }
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(500 << attempt));
    }
    absl::MutexLock lock(&mu_);
    if (s.ok()) {
      ++stats_.delivered;
    } else {
      ++stats_.failed;
      common::LogError("alert.webhook_failed", {{"url_host", url_.address},
                                                {"error", std::string(s.message())},
                                                {"effect", "the alert stays in the audit log"}});
    }
  }
}

}  // namespace drawbridge::audit

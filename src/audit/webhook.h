#pragma once

#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

// Delivers alerts to an HTTP(S) webhook: one POST of a JSON object per alert, on
// a thread of its own, retried with backoff. The alert is already in the audit
// log when it gets here, so a webhook that stays down costs notifications, never
// records: after kMaxQueue undelivered alerts the oldest are dropped (and logged).
namespace drawbridge::audit {

struct WebhookUrl {
  bool tls = false;
  std::string address;  // HOST:PORT
  std::string host;     // for the Host header and TLS verification
  std::string path;     // "/..." with query
};

// http://HOST[:PORT]/PATH or https://...; no user info, no fragment.
absl::StatusOr<WebhookUrl> ParseWebhookUrl(const std::string& url);

class WebhookSender {
 public:
  static constexpr size_t kMaxQueue = 1000;
  static constexpr int kAttempts = 4;

  static absl::StatusOr<std::unique_ptr<WebhookSender>> Start(const std::string& url,
                                                              std::string ca_file = "");
  ~WebhookSender();  // tries what is queued once more, then stops

  void Post(std::string json_body);

  struct Stats {
    uint64_t delivered = 0;
    uint64_t failed = 0;  // given up after kAttempts, or dropped
  };
  Stats GetStats() const;

 private:
  WebhookSender(WebhookUrl url, std::string ca_file)
      : url_(std::move(url)), ca_file_(std::move(ca_file)) {}
  void Loop();
  absl::Status PostOnce(const std::string& body);

  const WebhookUrl url_;
  const std::string ca_file_;
  mutable absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace drawbridge::audit

#include "server/dial_rate_limiter.h"

#include <algorithm>

namespace drawbridge::server {
namespace {
constexpr int64_t kRecordEveryMs = 1000;
constexpr int64_t kSweepEveryMs = 60000;
}  // namespace

DialRateLimiter::DialRateLimiter(double rate_per_second, double burst)
    : rate_(std::max(0.0, rate_per_second)), burst_(std::max(1.0, burst)) {}

DialRateLimiter::Decision DialRateLimiter::Check(const std::string& identity, int64_t now_ms) {
  Decision d;
  if (!enabled()) {
    return d;
  }
  absl::MutexLock lock(&mu_);
  DropIdleLocked(now_ms);
  auto [it, inserted] = buckets_.try_emplace(identity);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = burst_;
    b.updated_ms = now_ms;
  }
  // A clock that steps back refills nothing, and never drains the bucket.
  const int64_t elapsed_ms = std::max<int64_t>(0, now_ms - b.updated_ms);
  b.tokens = std::min(burst_, b.tokens + rate_ * static_cast<double>(elapsed_ms) / 1000.0);
  b.updated_ms = std::max(b.updated_ms, now_ms);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return d;
  }
  d.allowed = false;
  if (now_ms - b.last_recorded_ms >= kRecordEveryMs) {
    d.record = true;
    d.unrecorded = b.unrecorded;
    b.unrecorded = 0;
    b.last_recorded_ms = now_ms;
  } else {
    ++b.unrecorded;
  }
  return d;
}

std::vector<std::pair<std::string, uint64_t>> DialRateLimiter::TakeUnrecorded(int64_t now_ms) {
  std::vector<std::pair<std::string, uint64_t>> out;
  absl::MutexLock lock(&mu_);
  for (auto& [identity, b] : buckets_) {
    if (b.unrecorded > 0 && now_ms - b.last_recorded_ms >= kRecordEveryMs) {
      out.emplace_back(identity, b.unrecorded);
      b.unrecorded = 0;
      b.last_recorded_ms = now_ms;
    }
  }
  return out;
}

void DialRateLimiter::DropIdleLocked(int64_t now_ms) {
  if (now_ms < next_sweep_ms_) {
    return;
  }
  next_sweep_ms_ = now_ms + kSweepEveryMs;
  // Full for a minute and nothing left to report: as good as new.
  const double full_after_ms = burst_ / rate_ * 1000.0;
  absl::erase_if(buckets_, [&](const auto& entry) {
    const Bucket& b = entry.second;
    return b.unrecorded == 0 &&
           static_cast<double>(now_ms - b.updated_ms) >= full_after_ms + kSweepEveryMs;
  });
}

}  // namespace drawbridge::server

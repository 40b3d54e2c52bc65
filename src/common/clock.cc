#include "common/clock.h"

namespace drawbridge::common {
namespace {

class RealClock : public Clock {
 public:
  std::chrono::system_clock::time_point Now() const override {
    return std::chrono::system_clock::now();
  }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

std::chrono::system_clock::time_point FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::Advance(std::chrono::system_clock::duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void FakeClock::Set(std::chrono::system_clock::time_point t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace drawbridge::common

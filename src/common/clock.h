#pragma once

#include <chrono>
#include <cstdint>

#include "absl/synchronization/mutex.h"

namespace drawbridge::common {

// Wall-clock time source. Everything that compares against certificate or token
// lifetimes takes a Clock so that tests can move time without sleeping.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;

  int64_t NowUnix() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Now().time_since_epoch()).count();
  }

  // The process-wide real clock.
  static Clock* Real();
};

// Milliseconds on a clock that never steps (CLOCK_MONOTONIC), for rates, timeouts
// and "until" times that a wall-clock jump (NTP, an operator) must not stretch or
// cut short. Not comparable across processes or with wall-clock times.
inline int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A clock that only moves when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(std::chrono::system_clock::time_point start) : now_(start) {}
  std::chrono::system_clock::time_point Now() const override;
  void Advance(std::chrono::system_clock::duration d);
  void Set(std::chrono::system_clock::time_point t);

 private:
  mutable absl::Mutex mu_;
  std::chrono::system_clock::time_point now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::common

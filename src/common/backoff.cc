#include "common/backoff.h"

#include <algorithm>
#include <cstdint>

#include "common/random.h"

namespace drawbridge::common {

JitteredBackoff::JitteredBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap)
    : initial_(std::max(initial, std::chrono::milliseconds(1))),
      cap_(std::max(cap, initial_)),
      ceiling_(initial_) {}

std::chrono::milliseconds JitteredBackoff::Next() {
  const auto delay =
      std::chrono::milliseconds(RandomUniform(static_cast<uint64_t>(ceiling_.count()) + 1));
  ceiling_ = std::min(cap_, ceiling_ * 2);
  return delay;
}

}  // namespace drawbridge::common

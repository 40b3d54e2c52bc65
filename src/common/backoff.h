#pragma once

#include <chrono>

namespace drawbridge::common {

// Capped exponential backoff with full jitter: each delay is uniform in
// [0, ceiling], and the ceiling doubles from `initial` up to `cap` after every
// delay. Full jitter spreads a fleet that lost the server at the same instant
// over the whole window, so a restarted server is not met by every peer at once;
// the cap bounds how long a peer stays away once the server is back (the worst
// case is `cap` plus one handshake). Not thread-safe: one per retry loop.
class JitteredBackoff {
 public:
  JitteredBackoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap);

  // The delay before the next attempt.
  std::chrono::milliseconds Next();
  // After a success: the next failure starts again from `initial`.
  void Reset() { ceiling_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds ceiling_;
};

}  // namespace drawbridge::common

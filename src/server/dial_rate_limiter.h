#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace drawbridge::server {

// Per-identity limit on Dial calls: a token bucket per client identity (rate
// tokens per second, up to burst), so that one client flooding Dial cannot take
// the server's threads, the agents' connection slots or the audit log's
// throughput from everyone else.
//
// Refusals are reported, not recorded one by one: a flood would otherwise turn
// into an audit-log flood. The first refusal of an identity, and then at most one
// per second, is to be recorded (Decision::record), carrying how many refusals
// since the last recorded one went unrecorded.
//
// Keys are authenticated identities, so the map is bounded by the identity
// directory; buckets full again for a minute are dropped. Thread-safe.
class DialRateLimiter {
 public:
  // rate_per_second 0 turns the limit off.
  DialRateLimiter(double rate_per_second, double burst);

  struct Decision {
    bool allowed = true;
    bool record = false;      // a refusal to put in the audit log and the server log
    uint64_t unrecorded = 0;  // refusals since the last recorded one (with record)
  };
  // now_ms: a steady clock (never the wall clock, which may step).
  Decision Check(const std::string& identity, int64_t now_ms);

  // Identities with refusals not yet recorded whose last record is a second old
  // or more, with their counts (now taken as recorded): a flood's tail, for a
  // periodic summary record, so that every refusal is counted in the audit log.
  std::vector<std::pair<std::string, uint64_t>> TakeUnrecorded(int64_t now_ms);

  bool enabled() const { return rate_ > 0; }
  double rate_per_second() const { return rate_; }
  double burst() const { return burst_; }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
    int64_t last_recorded_ms = INT64_MIN / 2;  // never
    uint64_t unrecorded = 0;
  };
  void DropIdleLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double rate_;
  const double burst_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  int64_t next_sweep_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace drawbridge::server

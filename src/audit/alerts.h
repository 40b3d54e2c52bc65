#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/record.h"

// Alert rules over the audit stream. A rule counts the records it matches per
// group key (the actor, the source address, ...) in a fixed window that opens at
// the first matching record; when the count reaches the threshold it fires once,
// and stays quiet for that key until the window has passed. So a burst raises
// exactly one alert per rule, key and window, however long it lasts.
//
// Windows run on record time (time_unix_ms), not the wall clock: evaluation is
// deterministic, and replaying a log raises the same alerts.
namespace drawbridge::audit {

struct AlertRule {
  std::string name;  // [a-z0-9_]{1,64}
  // What a record must be to count (empty / 0: anything).
  int class_uid = 0;
  std::string activity;
  std::string outcome;
  std::vector<std::string> reason_codes;  // details.reason_code, any of these
  // The field whose value separates the counts: "actor", "source_address", or
  // "details.NAME". Records where it is empty do not count.
  std::string group_by = "actor";
  uint64_t threshold = 1;
  std::chrono::seconds window{300};
  std::string severity = "high";  // low | medium | high | critical
};

// The rules a server has unless its config says otherwise (docs/audit.md).
std::vector<AlertRule> DefaultAlertRules();

// Checks names, fields and limits; InvalidArgument naming the rule otherwise.
absl::Status ValidateAlertRule(const AlertRule& rule);

// An alert, ready to become an audit record (ToRecord) and a webhook payload.
struct Alert {
  std::string rule;
  std::string severity;
  std::string group_by;
  std::string key;  // the group key's value
  uint64_t count = 0;
  int64_t window_seconds = 0;
  int64_t window_start_ms = 0;
  uint64_t first_seq = 0;  // the records that made it fire
  uint64_t last_seq = 0;
  std::string summary;  // one sentence for people

  Record ToRecord() const;
};

// Not thread-safe by itself; AlertEngine serialises Observe.
class AlertEngine {
 public:
  // At most this many open windows per rule; the oldest is forgotten beyond it,
  // so a flood of distinct source addresses cannot grow memory without bound.
  static constexpr size_t kMaxKeysPerRule = 10000;

  explicit AlertEngine(std::vector<AlertRule> rules);

  // Feeds committed records in seq order; returns the alerts they raise. Alert
  // records (Detection Finding) are never counted, so alerts cannot feed alerts.
  std::vector<Alert> Observe(const std::vector<Record>& records);

  const std::vector<AlertRule>& rules() const { return rules_; }

 private:
  struct Window {
    int64_t start_ms = 0;
    uint64_t count = 0;
    uint64_t first_seq = 0;
    bool fired = false;
  };
  absl::Mutex mu_;
  const std::vector<AlertRule> rules_;
  std::vector<absl::flat_hash_map<std::string, Window>> windows_ ABSL_GUARDED_BY(mu_);
};

// The value of `group_by` in `r` ("" if missing or not a scalar).
std::string GroupKey(const Record& r, const std::string& group_by);

}  // namespace drawbridge::audit

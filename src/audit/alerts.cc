#include "audit/alerts.h"

#include <algorithm>

#include "common/strings.h"

namespace drawbridge::audit {
namespace {

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool RuleMatches(const AlertRule& rule, const Record& r) {
  if (rule.class_uid != 0 && r.class_uid != rule.class_uid) {
    return false;
  }
  if (!rule.activity.empty() && r.activity != rule.activity) {
    return false;
  }
  if (!rule.outcome.empty() && r.outcome != rule.outcome) {
    return false;
  }
  if (!rule.reason_codes.empty()) {
    std::string code = GroupKey(r, "details.reason_code");
    if (std::find(rule.reason_codes.begin(), rule.reason_codes.end(), code) ==
        rule.reason_codes.end()) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::vector<AlertRule> DefaultAlertRules() {
  std::vector<AlertRule> rules;
  rules.push_back(AlertRule{.name = "failed_auth_per_identity",
                            .class_uid = kClassAuthentication,
                            .outcome = std::string(kOutcomeFailure),
                            .group_by = "actor",
                            .threshold = 5,
                            .window = std::chrono::seconds(300),
                            .severity = "high"});
  rules.push_back(AlertRule{.name = "failed_auth_per_source",
                            .class_uid = kClassAuthentication,
                            .outcome = std::string(kOutcomeFailure),
                            .group_by = "source_address",
                            .threshold = 10,
                            .window = std::chrono::seconds(300),
                            .severity = "high"});
  rules.push_back(AlertRule{.name = "denied_connections_per_client",
                            .class_uid = kClassNetworkActivity,
                            .activity = "deny",
                            .group_by = "actor",
                            .threshold = 10,
                            .window = std::chrono::seconds(300),
                            .severity = "medium"});
  rules.push_back(AlertRule{.name = "revoked_credential_used",
                            .reason_codes = {"identity_disabled", "key_removed"},
                            .group_by = "actor",
                            .threshold = 1,
                            .window = std::chrono::seconds(300),
                            .severity = "critical"});
  rules.push_back(AlertRule{.name = "enrollment_from_unexpected_address",
                            .reason_codes = {"source_not_allowed"},
                            .group_by = "actor",
                            .threshold = 1,
                            .window = std::chrono::seconds(300),
                            .severity = "high"});
  return rules;
}

absl::Status ValidateAlertRule(const AlertRule& rule) {
  auto bad = [&](std::string_view what) {
    return absl::InvalidArgumentError(
        common::StrCat("alert rule \"", rule.name.substr(0, 64), "\": ", what));
  };
  if (!ValidName(rule.name)) {
    return bad("name must match [a-z0-9_]{1,64}");
  }
  if (rule.class_uid != 0 && !ClassFromUid(rule.class_uid).has_value()) {
    return bad("unknown event class");
  }
  if (rule.class_uid == kClassDetectionFinding) {
    return bad("alerts cannot be raised on alerts");
  }
  if (!rule.outcome.empty() && rule.outcome != kOutcomeSuccess && rule.outcome != kOutcomeFailure) {
    return bad("outcome must be success or failure");
  }
  if (rule.group_by != "actor" && rule.group_by != "source_address" &&
      !(common::StartsWith(rule.group_by, "details.") && rule.group_by.size() > 8)) {
    return bad("group_by must be actor, source_address or details.FIELD");
  }
  if (rule.threshold < 1 || rule.threshold > 1000000) {
    return bad("threshold must be between 1 and 1000000");
  }
  if (rule.window.count() < 1 || rule.window.count() > 7 * 86400) {
    return bad("window_seconds must be between 1 and 604800");
  }
  static const char* kSeverities[] = {"low", "medium", "high", "critical"};
  if (std::find(std::begin(kSeverities), std::end(kSeverities), rule.severity) ==
      std::end(kSeverities)) {
    return bad("severity must be low, medium, high or critical");
  }
  return absl::OkStatus();
}

std::string GroupKey(const Record& r, const std::string& group_by) {
  if (group_by == "actor") {
    return r.actor;
  }
  if (group_by == "source_address") {
    return r.source_address;
  }
  if (!common::StartsWith(group_by, "details.") || !r.details.is_object()) {
    return "";
  }
  auto it = r.details.find(group_by.substr(8));
  if (it == r.details.end()) {
    return "";
  }
  if (it->is_string()) {
    return it->get<std::string>();
  }
  if (it->is_number() || it->is_boolean()) {
    return it->dump();
  }
  return "";
}

Record Alert::ToRecord() const {
  nlohmann::json details = {{"rule", rule},
                            {"severity", severity},
                            {"group_by", group_by},
                            {"key", key},
                            {"count", count},
                            {"window_seconds", window_seconds},
                            {"window_start", FormatTimeUtc(window_start_ms)},
                            {"first_seq", first_seq},
                            {"last_seq", last_seq},
                            {"summary", summary}};
  return MakeRecord(EventClass::kDetectionFinding, "alert", kOutcomeSuccess,
                    std::string(kActorSystem), group_by == "source_address" ? key : std::string(),
                    std::move(details));
}

AlertEngine::AlertEngine(std::vector<AlertRule> rules)
    : rules_(std::move(rules)), windows_(rules_.size()) {}

std::vector<Alert> AlertEngine::Observe(const std::vector<Record>& records) {
  absl::MutexLock lock(&mu_);
  std::vector<Alert> alerts;
  for (const Record& r : records) {
    if (r.class_uid == kClassDetectionFinding) {
      continue;
    }
    for (size_t i = 0; i < rules_.size(); ++i) {
      const AlertRule& rule = rules_[i];
      if (!RuleMatches(rule, r)) {
        continue;
      }
      std::string key = GroupKey(r, rule.group_by);
      if (key.empty()) {
        continue;
      }
      const int64_t window_ms = rule.window.count() * 1000;
      auto& windows = windows_[i];
      auto it = windows.find(key);
      if (it == windows.end() || r.time_unix_ms - it->second.start_ms >= window_ms) {
        if (it == windows.end() && windows.size() >= kMaxKeysPerRule) {
          // Forget windows that have closed; if none has, the oldest one.
          for (auto w = windows.begin(); w != windows.end();) {
            auto next = std::next(w);
            if (r.time_unix_ms - w->second.start_ms >= window_ms) {
              windows.erase(w);
            }
            w = next;
          }
          if (windows.size() >= kMaxKeysPerRule) {
            auto oldest = std::min_element(windows.begin(), windows.end(), [](auto& a, auto& b) {
              return a.second.start_ms < b.second.start_ms;
            });
            windows.erase(oldest);
          }
        }
        it = windows.insert_or_assign(key, Window{r.time_unix_ms, 0, r.seq, false}).first;
      }
      Window& w = it->second;
      ++w.count;
      if (w.fired || w.count < rule.threshold) {
        continue;
      }
      w.fired = true;
      Alert a;
      a.rule = rule.name;
      a.severity = rule.severity;
      a.group_by = rule.group_by;
      a.key = key;
      a.count = w.count;
      a.window_seconds = rule.window.count();
      a.window_start_ms = w.start_ms;
      a.first_seq = w.first_seq;
      a.last_seq = r.seq;
      a.summary = common::StrCat(rule.name, ": ", w.count, " matching event(s) for ", rule.group_by,
                                 " ", key.substr(0, 200), " within ", rule.window.count(),
                                 " s (last: ", r.activity, " ", r.outcome, ", seq ", r.seq, ")");
      alerts.push_back(std::move(a));
    }
  }
  return alerts;
}

}  // namespace drawbridge::audit

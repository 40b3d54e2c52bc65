#include "audit/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::audit {
namespace {

absl::Status Bad(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(common::StrCat("audit.", where, ": ", what));
}

absl::Status ExpectMap(const YAML::Node& n, std::string_view where) {
  return n.IsMap() ? absl::OkStatus() : Bad(where, "expected a mapping");
}

// Scalar conversions with the setting's name in the error.
template <typename T>
absl::StatusOr<T> As(const YAML::Node& n, std::string_view where) {
  if (!n.IsScalar()) {
    return Bad(where, "expected a single value");
  }
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    return Bad(where, "has the wrong type");
  }
}

absl::StatusOr<ExportTarget> ParseTarget(const YAML::Node& n, std::string_view where) {
  RETURN_IF_ERROR(ExpectMap(n, where));
  ExportTarget t;
  if (!n["type"]) {
    return Bad(where, "`type` is required (jsonl, stdout or syslog)");
  }
  ASSIGN_OR_RETURN(std::string type, As<std::string>(n["type"], common::StrCat(where, ".type")));
  if (type == "jsonl") {
    t.type = ExportTarget::Type::kJsonl;
  } else if (type == "stdout") {
    t.type = ExportTarget::Type::kStdout;
  } else if (type == "syslog") {
    t.type = ExportTarget::Type::kSyslog;
  } else {
    return Bad(where, "type must be jsonl, stdout or syslog");
  }
  for (const auto& kv : n) {
    std::string key = kv.first.as<std::string>();
    std::string at = common::StrCat(where, ".", key);
    if (key == "type") {
      continue;
    } else if (key == "path" && t.type == ExportTarget::Type::kJsonl) {
      ASSIGN_OR_RETURN(t.path, As<std::string>(kv.second, at));
    } else if (key == "max_bytes" && t.type == ExportTarget::Type::kJsonl) {
      ASSIGN_OR_RETURN(t.max_bytes, As<uint64_t>(kv.second, at));
    } else if (key == "max_files" && t.type == ExportTarget::Type::kJsonl) {
      ASSIGN_OR_RETURN(t.max_files, As<int>(kv.second, at));
    } else if (key == "address" && t.type == ExportTarget::Type::kSyslog) {
      ASSIGN_OR_RETURN(t.address, As<std::string>(kv.second, at));
    } else if (key == "tls" && t.type == ExportTarget::Type::kSyslog) {
      ASSIGN_OR_RETURN(t.tls, As<bool>(kv.second, at));
    } else if (key == "ca_file" && t.type == ExportTarget::Type::kSyslog) {
      ASSIGN_OR_RETURN(t.ca_file, As<std::string>(kv.second, at));
    } else if (key == "server_name" && t.type == ExportTarget::Type::kSyslog) {
      ASSIGN_OR_RETURN(t.server_name, As<std::string>(kv.second, at));
    } else if (key == "app_name" && t.type == ExportTarget::Type::kSyslog) {
      ASSIGN_OR_RETURN(t.app_name, As<std::string>(kv.second, at));
    } else {
      return Bad(at, common::StrCat("unknown setting for a ", type, " target"));
    }
  }
  if (absl::Status s = ValidateExportTarget(t); !s.ok()) {
    return Bad(where, std::string(s.message()));
  }
  return t;
}

absl::Status ParseRule(const YAML::Node& n, std::string_view where, std::vector<AlertRule>* rules) {
  RETURN_IF_ERROR(ExpectMap(n, where));
  if (!n["name"]) {
    return Bad(where, "`name` is required");
  }
  ASSIGN_OR_RETURN(std::string name, As<std::string>(n["name"], common::StrCat(where, ".name")));
  // A rule named like an existing one (a default) changes it; otherwise it is new.
  auto it = std::find_if(rules->begin(), rules->end(),
                         [&](const AlertRule& r) { return r.name == name; });
  AlertRule rule = it != rules->end() ? *it : AlertRule{.name = name};
  bool enabled = true;
  for (const auto& kv : n) {
    std::string key = kv.first.as<std::string>();
    std::string at = common::StrCat(where, ".", key);
    if (key == "name") {
      continue;
    } else if (key == "enabled") {
      ASSIGN_OR_RETURN(enabled, As<bool>(kv.second, at));
    } else if (key == "class") {
      ASSIGN_OR_RETURN(std::string c, As<std::string>(kv.second, at));
      rule.class_uid = ClassUidFromText(c);
      if (rule.class_uid == 0) {
        return Bad(at, "unknown event class");
      }
    } else if (key == "activity") {
      ASSIGN_OR_RETURN(rule.activity, As<std::string>(kv.second, at));
    } else if (key == "outcome") {
      ASSIGN_OR_RETURN(rule.outcome, As<std::string>(kv.second, at));
    } else if (key == "reason_codes") {
      if (!kv.second.IsSequence()) {
        return Bad(at, "expected a list");
      }
      rule.reason_codes.clear();
      for (const auto& c : kv.second) {
        ASSIGN_OR_RETURN(std::string code, As<std::string>(c, at));
        rule.reason_codes.push_back(code);
      }
    } else if (key == "group_by") {
      ASSIGN_OR_RETURN(rule.group_by, As<std::string>(kv.second, at));
    } else if (key == "threshold") {
      ASSIGN_OR_RETURN(rule.threshold, As<uint64_t>(kv.second, at));
    } else if (key == "window_seconds") {
      ASSIGN_OR_RETURN(int64_t s, As<int64_t>(kv.second, at));
      rule.window = std::chrono::seconds(s);
    } else if (key == "severity") {
      ASSIGN_OR_RETURN(rule.severity, As<std::string>(kv.second, at));
    } else {
      return Bad(at, "unknown setting for an alert rule");
    }
  }
  if (absl::Status s = ValidateAlertRule(rule); !s.ok()) {
    return Bad(where, std::string(s.message()));
  }
  if (it != rules->end()) {
    if (enabled) {
      *it = rule;
    } else {
      rules->erase(it);
    }
  } else if (enabled) {
    rules->push_back(rule);
  }
  return absl::OkStatus();
}

}  // namespace

int ClassUidFromText(const std::string& text) {
  auto normal = [](std::string_view s) {
    std::string out = common::ToLower(common::StripWhitespace(s));
    std::replace(out.begin(), out.end(), '_', ' ');
    return out;
  };
  for (int uid : {kClassDetectionFinding, kClassAccountChange, kClassAuthentication,
                  kClassNetworkActivity, kClassApiActivity}) {
    if (text == common::StrCat(uid) || normal(text) == normal(ClassName(uid))) {
      return uid;
    }
  }
  return 0;
}

absl::StatusOr<AuditConfig> ParseAuditConfig(const YAML::Node& node) {
  AuditConfig c;
  bool default_rules = true;
  std::vector<YAML::Node> rule_nodes;
  if (!node || node.IsNull()) {
    c.alert_rules = DefaultAlertRules();
    return c;
  }
  RETURN_IF_ERROR(ExpectMap(node, "audit"));
  try {
    for (const auto& kv : node) {
      std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "retention_days") {
        ASSIGN_OR_RETURN(int64_t days, As<int64_t>(v, key));
        if (days < 0 || days > 3650) {
          return Bad(key, "must be between 0 (keep forever) and 3650");
        }
        c.retention = std::chrono::seconds(days * 86400);
      } else if (key == "checkpoint_every_records") {
        ASSIGN_OR_RETURN(c.checkpoint_every_records, As<uint64_t>(v, key));
        if (c.checkpoint_every_records < 1 || c.checkpoint_every_records > 1000000) {
          return Bad(key, "must be between 1 and 1000000");
        }
      } else if (key == "checkpoint_every_seconds") {
        ASSIGN_OR_RETURN(int64_t s, As<int64_t>(v, key));
        if (s < 1 || s > 86400) {
          return Bad(key, "must be between 1 and 86400");
        }
        c.checkpoint_every = std::chrono::seconds(s);
      } else if (key == "export") {
        if (!v.IsSequence()) {
          return Bad(key, "expected a list of targets");
        }
        std::set<std::string> names;
        for (size_t i = 0; i < v.size(); ++i) {
          ASSIGN_OR_RETURN(ExportTarget t, ParseTarget(v[i], common::StrCat("export[", i, "]")));
          if (!names.insert(t.Name()).second) {
            return Bad(common::StrCat("export[", i, "]"), "the same target is listed twice");
          }
          c.export_targets.push_back(std::move(t));
        }
      } else if (key == "alerts") {
        RETURN_IF_ERROR(ExpectMap(v, "alerts"));
        for (const auto& a : v) {
          std::string akey = a.first.as<std::string>();
          std::string at = common::StrCat("alerts.", akey);
          if (akey == "webhook") {
            ASSIGN_OR_RETURN(c.webhook_url, As<std::string>(a.second, at));
          } else if (akey == "webhook_ca_file") {
            ASSIGN_OR_RETURN(c.webhook_ca_file, As<std::string>(a.second, at));
          } else if (akey == "default_rules") {
            ASSIGN_OR_RETURN(default_rules, As<bool>(a.second, at));
          } else if (akey == "rules") {
            if (!a.second.IsSequence()) {
              return Bad(at, "expected a list of rules");
            }
            for (const auto& r : a.second) {
              rule_nodes.push_back(r);
            }
          } else {
            return Bad(at, "unknown setting");
          }
        }
      } else {
        return Bad(key, "unknown setting");
      }
    }
    if (default_rules) {
      c.alert_rules = DefaultAlertRules();
    }
    for (size_t i = 0; i < rule_nodes.size(); ++i) {
      RETURN_IF_ERROR(
          ParseRule(rule_nodes[i], common::StrCat("alerts.rules[", i, "]"), &c.alert_rules));
    }
  } catch (const YAML::Exception& e) {
    return Bad("", e.what());
  }
  return c;
}

}  // namespace drawbridge::audit

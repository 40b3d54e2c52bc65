#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/alerts.h"
#include "audit/export.h"

namespace YAML {
class Node;
}  // namespace YAML

// The `audit:` section of server.yaml (docs/audit.md has the full reference):
//
//   audit:
//     retention_days: 30
//     checkpoint_every_records: 1000
//     checkpoint_every_seconds: 60
//     export:
//       - {type: jsonl, path: /var/log/drawbridge/audit.jsonl, max_bytes: 104857600, max_files: 5}
//       - {type: stdout}
//       - {type: syslog, address: "siem.corp:6514", tls: true, ca_file: /etc/siem-ca.pem}
//     alerts:
//       webhook: "https://alerts.corp/hook"
//       webhook_ca_file: /etc/alerts-ca.pem
//       default_rules: true
//       rules:
//         - {name: failed_auth_per_identity, threshold: 3}     # overrides a default
//         - name: ssh_denied
//           class: network_activity
//           activity: deny
//           group_by: actor
//           threshold: 3
//           window_seconds: 60
namespace drawbridge::audit {

struct AuditConfig {
  std::chrono::seconds retention{30 * 86400};  // 0: keep forever
  uint64_t checkpoint_every_records = 1000;
  std::chrono::seconds checkpoint_every{60};
  std::vector<ExportTarget> export_targets;
  std::string webhook_url;  // empty: alerts go to the audit log and the server log only
  std::string webhook_ca_file;
  std::vector<AlertRule> alert_rules;  // defaults merged with the configured rules
};

// Parses the section; an absent (null) node gives the defaults. Unknown keys,
// wrong types and invalid values are InvalidArgument naming the setting.
absl::StatusOr<AuditConfig> ParseAuditConfig(const YAML::Node& node);

// Resolves an event class given as a name ("network_activity", "Network Activity")
// or uid ("4001"); 0 if unknown.
int ClassUidFromText(const std::string& text);

}  // namespace drawbridge::audit

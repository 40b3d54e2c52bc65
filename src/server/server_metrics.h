#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "drawbridge/v1/tunnel.pb.h"
#include "metrics/metrics.h"

namespace drawbridge::server {

// The server's metrics (docs/operations.md lists them). Labels are closed sets
// known at start: dial results, enrollment reason codes, alert rule names,
// export targets. Nothing is labelled by connection, identity or destination.
class ServerMetrics {
 public:
  ServerMetrics(metrics::Registry* registry, const std::vector<std::string>& alert_rules);

  metrics::Registry* registry() const { return registry_; }

  metrics::Gauge* tunnels_active;
  metrics::Counter* bytes_up;        // client -> destination
  metrics::Counter* bytes_down;      // destination -> client
  metrics::Histogram* dial_seconds;  // Dial stream opened -> result, successful dials
  metrics::Counter* audit_records;
  metrics::Gauge* audit_writable;  // 0 while commits fail (fail closed)

  metrics::Counter* Dial(v1::DialCode code) const;
  // "ok" or an enrollment reason code; anything else counts as "other".
  metrics::Counter* Enrollment(const std::string& result) const;
  // Null for a rule not known at start (cannot happen: rules are fixed by config).
  metrics::Counter* Alert(const std::string& rule) const;

 private:
  metrics::Registry* registry_;
  std::array<metrics::Counter*, v1::DialCode_ARRAYSIZE> dials_{};
  std::map<std::string, metrics::Counter*> enrollments_;
  std::map<std::string, metrics::Counter*> alerts_;
};

}  // namespace drawbridge::server

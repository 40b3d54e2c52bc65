#include "server/server_metrics.h"

#include "tunnel/dial_code.h"

namespace drawbridge::server {
namespace {

// Enrollment results: "ok" and every reason code the enroller gives.
constexpr const char* kEnrollmentResults[] = {"ok",
                                              "malformed_token",
                                              "unknown_key",
                                              "key_identity_mismatch",
                                              "bad_signature",
                                              "wrong_audience",
                                              "expired",
                                              "not_yet_valid",
                                              "lifetime_too_long",
                                              "unknown_identity",
                                              "identity_disabled",
                                              "key_removed",
                                              "source_not_allowed",
                                              "bad_csr",
                                              "cnf_mismatch",
                                              "replayed",
                                              "no_workload_trust",
                                              "issuer_unavailable",
                                              "storage_unavailable",
                                              "internal",
                                              "other"};

}  // namespace

ServerMetrics::ServerMetrics(metrics::Registry* r, const std::vector<std::string>& alert_rules)
    : registry_(r) {
  tunnels_active = r->AddGauge("drawbridge_tunnels_active", "Tunneled connections open now");
  bytes_up = r->AddCounter("drawbridge_tunnel_bytes_total",
                           "Bytes relayed through tunnels, by direction", {{"direction", "up"}});
  bytes_down =
      r->AddCounter("drawbridge_tunnel_bytes_total", "Bytes relayed through tunnels, by direction",
                    {{"direction", "down"}});
  dial_seconds = r->AddHistogram("drawbridge_dial_duration_seconds",
                                 "From a client's Dial to the agent's connection being ready",
                                 metrics::LatencyBuckets());
  audit_records =
      r->AddCounter("drawbridge_audit_records_total", "Audit records committed by this process");
  audit_writable = r->AddGauge(
      "drawbridge_audit_writable",
      "1 while the audit log commits; 0 while it cannot (new dials and enrollments refused)");
  for (int c = v1::DialCode_MIN; c <= v1::DialCode_MAX; ++c) {
    if (v1::DialCode_IsValid(c)) {
      dials_[c] = r->AddCounter("drawbridge_dials_total", "Dials by result",
                                {{"result", tunnel::DialCodeName(static_cast<v1::DialCode>(c))}});
    }
  }
  for (const char* result : kEnrollmentResults) {
    enrollments_[result] = r->AddCounter("drawbridge_enrollments_total", "Enrollments by result",
                                         {{"result", result}});
  }
  for (const auto& rule : alert_rules) {
    alerts_[rule] =
        r->AddCounter("drawbridge_alerts_total", "Alerts raised, by rule", {{"rule", rule}});
  }
}

metrics::Counter* ServerMetrics::Dial(v1::DialCode code) const {
  return v1::DialCode_IsValid(code) && dials_[code] ? dials_[code] : dials_[v1::DIAL_INTERNAL];
}

metrics::Counter* ServerMetrics::Enrollment(const std::string& result) const {
  auto it = enrollments_.find(result);
  return it != enrollments_.end() ? it->second : enrollments_.at("other");
}

metrics::Counter* ServerMetrics::Alert(const std::string& rule) const {
  auto it = alerts_.find(rule);
  return it != alerts_.end() ? it->second : nullptr;
}

}  // namespace drawbridge::server

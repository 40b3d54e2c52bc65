#include "tunnel/bridge_metrics.h"

#include "tunnel/dial_code.h"

namespace drawbridge::tunnel {

BridgeMetrics::BridgeMetrics(metrics::Registry* r, const std::string& prefix) {
  active = r->AddGauge(prefix + "_connections_active", "Bridged connections open now");
  bytes_up = r->AddCounter(prefix + "_bytes_total",
                           "Bytes bridged by connections that have ended, by direction",
                           {{"direction", "up"}});
  bytes_down = r->AddCounter(prefix + "_bytes_total",
                             "Bytes bridged by connections that have ended, by direction",
                             {{"direction", "down"}});
  for (int c = v1::DialCode_MIN; c <= v1::DialCode_MAX; ++c) {
    if (v1::DialCode_IsValid(c)) {
      dials_[c] = r->AddCounter(prefix + "_dials_total", "Dials by result",
                                {{"result", DialCodeName(static_cast<v1::DialCode>(c))}});
    }
  }
}

metrics::Counter* BridgeMetrics::Dial(v1::DialCode code) const {
  return v1::DialCode_IsValid(code) && dials_[code] ? dials_[code] : dials_[v1::DIAL_INTERNAL];
}

}  // namespace drawbridge::tunnel

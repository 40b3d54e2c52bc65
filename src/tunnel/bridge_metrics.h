#pragma once

#include <array>
#include <string>

#include "drawbridge/v1/tunnel.pb.h"
#include "metrics/metrics.h"

namespace drawbridge::tunnel {

// What an agent or a client counts about the connections it bridges, under
// PREFIX_ (drawbridge_agent_, drawbridge_client_). Closed label sets only.
class BridgeMetrics {
 public:
  BridgeMetrics(metrics::Registry* registry, const std::string& prefix);

  metrics::Gauge* active;        // bridged connections open now
  metrics::Counter* bytes_up;    // client -> destination
  metrics::Counter* bytes_down;  // destination -> client
  metrics::Counter* Dial(v1::DialCode code) const;

 private:
  std::array<metrics::Counter*, v1::DialCode_ARRAYSIZE> dials_{};
};

}  // namespace drawbridge::tunnel

#pragma once

#include "drawbridge/v1/tunnel.pb.h"

namespace drawbridge::tunnel {

// gRPC metadata naming the calling process (agent or client instance) on
// Control, Accept, Dial and Watch, so that the server can address it again.
inline constexpr char kInstanceHeader[] = "drawbridge-instance";

// The stable name of a dial result, as logs and audit records (`reason_code`)
// carry it: "ok", "denied_policy", "denied_agent", "refused", "unreachable",
// "timeout", "no_agent", "bad_request", "internal".
const char* DialCodeName(v1::DialCode code);

}  // namespace drawbridge::tunnel

#pragma once

#include "absl/status/status.h"

namespace drawbridge::common {

// Makes every TLS context this process creates (gRPC's included) refuse any
// protocol but TLS 1.3 (DESIGN §7.4).
//
// Why this way: gRPC 1.51's C++ API has no setter for the minimum TLS version and
// its OpenSSL backend calls SSL_CTX_set_min_proto_version(TLS1_2) itself. The
// SSL_OP_NO_TLSv1_2 style options are checked independently of that minimum, so we
// install them through OpenSSL's "system_default" configuration, which OpenSSL
// applies to every new SSL_CTX. Must run before the first TLS context is created;
// idempotent.
absl::Status EnforceTls13Only();

}  // namespace drawbridge::common

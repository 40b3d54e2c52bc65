#pragma once

#include "absl/status/status.h"

namespace drawbridge::common {

// Forbids core dumps and ptrace attachment by other unprivileged processes, so
// that in-memory TLS keys cannot be read back from a dump (DESIGN §7.5).
absl::Status MakeNonDumpable();

}  // namespace drawbridge::common

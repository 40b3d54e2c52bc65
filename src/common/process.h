#pragma once

#include "absl/status/status.h"

namespace drawbridge::common {

// Forbids core dumps and ptrace attachment by other unprivileged processes, so
// that in-memory TLS keys cannot be read back from a dump (DESIGN §7.5).
absl::Status MakeNonDumpable();

}  // namespace drawbridge::common

namespace drawbridge::common {

// Process-wide settings for the relay path, called once at startup before any
// thread exists:
// - malloc keeps buffers up to 4 MiB on its heaps and trims them only above
//   32 MiB free. glibc's default (a dynamic threshold from 128 KiB) maps and
//   unmaps frame-sized buffers, and the page faults cost ~10% CPU per byte
//   relayed (measured with iperf3 through client, server and agent). Two
//   arenas bound what stays cached, and a background thread returns free
//   memory to the OS every 10 s.
// - Release builds turn off absl::Mutex deadlock detection (Debian's absl keeps
//   it on, and its lock-graph bookkeeping showed up in relay profiles); debug
//   and sanitizer builds keep it.
void TuneProcessForRelay();

}  // namespace drawbridge::common

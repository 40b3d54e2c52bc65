#include "common/process.h"

#include <malloc.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/strings.h"

namespace drawbridge::common {

absl::Status MakeNonDumpable() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return absl::InternalError(StrCat("prctl(PR_SET_DUMPABLE): ", std::strerror(errno)));
  }
  struct rlimit no_core = {0, 0};
  if (::setrlimit(RLIMIT_CORE, &no_core) != 0) {
    return absl::InternalError(StrCat("setrlimit(RLIMIT_CORE): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void TuneProcessForRelay() {
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 32 << 20);
  // Each arena may keep up to the trim threshold at its top, which malloc_trim
  // does not return for thread arenas: two arenas bound what stays after a load
  // (after 4-stream iperf3 the server kept ~100 MiB with glibc's 16, ~45 MiB
  // with 2, at the same throughput).
  ::mallopt(M_ARENA_MAX, 2);
  // The rest of what is free goes back every 10 s: malloc_trim returns the free
  // pages inside every arena to the OS. Costs a few ms per call.
  std::thread([] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      ::malloc_trim(0);
    }
  }).detach();
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace drawbridge::common

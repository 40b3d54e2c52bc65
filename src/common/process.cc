#include "common/process.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

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

}  // namespace drawbridge::common

#include "cli/util.h"

#include <csignal>
#include <ctime>

namespace drawbridge::cli {

int Fail(const absl::Status& status) { return Fail(std::string(status.message())); }

int Fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

std::string FormatTime(int64_t unix_seconds) {
  if (unix_seconds == 0) {
    return "-";
  }
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

namespace {
sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForSignal(bool hangup) {
  sigset_t set = TerminationSignals();
  while (true) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig != SIGHUP || hangup) {
      return sig;
    }
  }
}

int WaitForTerminationSignal() { return WaitForSignal(false); }

}  // namespace drawbridge::cli

#pragma once

#include <cstdio>
#include <string>

#include "absl/status/status.h"

namespace drawbridge::cli {

// Prints "error: <message>" to stderr and returns the failure exit code.
int Fail(const absl::Status& status);
int Fail(const std::string& message);

// "2026-11-23 18:00:00Z" for people; "-" for 0.
std::string FormatTime(int64_t unix_seconds);

// Blocks SIGINT/SIGTERM in this thread (call before starting threads) and returns
// a function that waits for one of them.
void BlockTerminationSignals();
int WaitForTerminationSignal();  // SIGINT or SIGTERM (SIGHUP too if `hangup` is set)
int WaitForSignal(bool hangup);

}  // namespace drawbridge::cli

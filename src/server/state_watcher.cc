#include "server/state_watcher.h"

#include "common/log.h"
#include "common/strings.h"

namespace drawbridge::server {

StateWatcher::StateWatcher(store::Store* store, IdentityDirectory* directory,
                           std::function<absl::Status()> also, std::chrono::milliseconds recheck)
    : store_(store), directory_(directory), also_(std::move(also)), recheck_(recheck) {
  if (store_->shared()) {
    thread_ = std::thread([this] { Run(); });
  }
}

StateWatcher::~StateWatcher() { Stop(); }

void StateWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
}

absl::Status StateWatcher::health() const {
  absl::MutexLock lock(&mu_);
  return health_;
}

void StateWatcher::Run() {
  // Not known yet: the first round refreshes, covering changes made between
  // the directory's load and this thread's start.
  absl::StatusOr<int64_t> seen = absl::UnknownError("not read yet");
  bool failing = false;
  while (!stop_) {
    store_->WaitForChange(recheck_);
    if (stop_) {
      break;
    }
    absl::StatusOr<int64_t> version = store_->StateVersion();
    absl::Status status = version.status();
    if (version.ok() && (!seen.ok() || *version != *seen)) {
      absl::StatusOr<int> revoked = directory_->Refresh();
      status = revoked.status();
      if (status.ok() && also_) {
        status = also_();
      }
      if (revoked.ok()) {
        const bool first = !seen.ok();
        seen = version;
        ++refreshes_;
        if (!first) {
          common::Log(
              *revoked > 0 ? common::LogLevel::kInfo : common::LogLevel::kDebug, "state.changed",
              {{"version", common::StrCat(*version)}, {"revocations", common::StrCat(*revoked)}});
        }
      }
    }
    // One line when the store stops answering and one when it is back, not one
    // per poll.
    if (!status.ok() && !failing) {
      common::LogWarn(
          "state.watch_failed",
          {{"error", std::string(status.message())},
           {"effect", "changes made on other replicas are not seen until it recovers"}});
    } else if (status.ok() && failing) {
      common::LogInfo("state.watch_recovered", {});
    }
    failing = !status.ok();
    absl::MutexLock lock(&mu_);
    health_ = status;
  }
}

}  // namespace drawbridge::server

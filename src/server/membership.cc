#include "server/membership.h"

#include <set>

#include "absl/time/time.h"
#include "common/log.h"
#include "common/random.h"
#include "common/strings.h"

namespace drawbridge::server {

Membership::Membership(store::Store* store, std::string advertise, int64_t started_at)
    : store_(store) {
  self_.id = common::RandomHex(8);
  self_.advertise = std::move(advertise);
  self_.started_at = started_at;
  if (!store_->shared()) {
    absl::MutexLock lock(&mu_);
    live_ = {self_};
    return;
  }
  Beat();  // registered before the constructor returns
  thread_ = std::thread([this] { Run(); });
}

Membership::~Membership() { Stop(); }

void Membership::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) {
      return;
    }
    stop_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  if (store_->shared()) {
    if (absl::Status s = store_->RemoveReplica(self_.id); s.ok()) {
      common::LogInfo("replica.left", {{"replica", self_.id}, {"advertise", self_.advertise}});
    } else {
      common::LogWarn("replica.leave_failed",
                      {{"error", std::string(s.message())},
                       {"effect", "the others drop this replica once its heartbeat is 3 s old"}});
    }
  }
}

std::vector<store::ReplicaRecord> Membership::Live() const {
  absl::MutexLock lock(&mu_);
  return live_;
}

void Membership::Run() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::FromChrono(kHeartbeatEvery))) {
    mu_.Unlock();
    Beat();
    mu_.Lock();
  }
}

void Membership::Beat() {
  absl::Status beat = store_->HeartbeatReplica(self_);
  absl::StatusOr<std::vector<store::ReplicaRecord>> live = store_->ListReplicas(kDropAfter);
  if (!beat.ok() || !live.ok()) {
    return;  // the state watcher reports the store's health; keep the last view
  }
  absl::MutexLock lock(&mu_);
  std::set<std::string> before, after;
  for (const auto& r : live_) {
    before.insert(r.id);
  }
  for (const auto& r : *live) {
    after.insert(r.id);
    if (!before.contains(r.id) && r.id != self_.id) {
      common::LogInfo("replica.joined", {{"replica", r.id}, {"advertise", r.advertise}});
    }
  }
  for (const auto& r : live_) {
    if (!after.contains(r.id) && r.id != self_.id) {
      common::LogInfo("replica.dropped", {{"replica", r.id}, {"advertise", r.advertise}});
    }
  }
  live_ = std::move(*live);
}

}  // namespace drawbridge::server

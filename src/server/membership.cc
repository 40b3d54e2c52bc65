#include "server/membership.h"

#include <map>

#include "absl/time/time.h"
#include "common/log.h"
#include "common/random.h"
#include "common/strings.h"

namespace drawbridge::server {

Membership::Membership(store::Store* store, std::string id, std::string advertise,
                       int64_t started_at)
    : store_(store), id_(id.empty() ? common::RandomHex(8) : std::move(id)) {
  {
    absl::MutexLock lock(&mu_);
    self_.id = id_;
    self_.advertise = std::move(advertise);
    self_.started_at = started_at;
    if (!store_->shared()) {
      live_ = {self_};
      return;
    }
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
    if (absl::Status s = store_->RemoveReplica(id_); s.ok()) {
      common::LogInfo("replica.left", {{"replica", id_}});
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

void Membership::SetOnChange(OnChange on_change) {
  std::vector<store::ReplicaRecord> live;
  {
    absl::MutexLock lock(&mu_);
    if (!store_->shared()) {
      return;
    }
    on_change_ = on_change;
    live = live_;
  }
  on_change(live);
}

void Membership::SetAdvertise(std::string advertise) {
  absl::MutexLock lock(&mu_);
  self_.advertise = std::move(advertise);
}

void Membership::Beat() {
  store::ReplicaRecord self;
  {
    absl::MutexLock lock(&mu_);
    self = self_;
  }
  absl::Status beat = store_->HeartbeatReplica(self);
  absl::StatusOr<std::vector<store::ReplicaRecord>> live = store_->ListReplicas(kDropAfter);
  if (!beat.ok() || !live.ok()) {
    return;  // the state watcher reports the store's health; keep the last view
  }
  OnChange notify;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, std::string> before, after;  // id -> advertised address
    for (const auto& r : live_) {
      before[r.id] = r.advertise;
    }
    for (const auto& r : *live) {
      after[r.id] = r.advertise;
      if (!before.contains(r.id) && r.id != id_) {
        common::LogInfo("replica.joined", {{"replica", r.id}, {"advertise", r.advertise}});
      }
    }
    for (const auto& r : live_) {
      if (!after.contains(r.id) && r.id != id_) {
        common::LogInfo("replica.dropped", {{"replica", r.id}, {"advertise", r.advertise}});
      }
    }
    live_ = *live;
    if (before != after) {
      notify = on_change_;
    }
  }
  if (notify) {
    notify(*live);
  }
}

}  // namespace drawbridge::server

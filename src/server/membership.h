#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace drawbridge::server {

// This server's place among the servers sharing its store (replicas on
// PostgreSQL): it registers when it starts, sends a heartbeat every second
// (stamped with the store's clock), and leaves when stopped; a replica that
// sent none for kDropAfter (a crash, a partition) no longer counts. On a store
// that is not shared the membership is this server alone and nothing is
// written.
class Membership {
 public:
  static constexpr std::chrono::milliseconds kHeartbeatEvery{1000};
  static constexpr std::chrono::milliseconds kDropAfter{3000};

  // `id`: the replica's stable id (DATA_DIR/replica-id); empty: a random one.
  Membership(store::Store* store, std::string id, std::string advertise, int64_t started_at);
  ~Membership();  // Stop()
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  // Leaves (best effort: a store that is down forgets us after kDropAfter
  // anyway) and stops the heartbeat. Idempotent.
  void Stop();

  // `on_change` gets the live set now and after every heartbeat that finds it
  // changed (a replica joined, left, was dropped or moved), on the heartbeat
  // thread, with no lock held. Only on a shared store; at most once.
  using OnChange = std::function<void(const std::vector<store::ReplicaRecord>&)>;
  void SetOnChange(OnChange on_change) ABSL_LOCKS_EXCLUDED(mu_);
  // The listener got its port (the configured address said port 0): written
  // at the next heartbeat.
  void SetAdvertise(std::string advertise) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& id() const { return id_; }
  // The live replicas as of the last heartbeat, ordered by id (this one
  // included once registered).
  std::vector<store::ReplicaRecord> Live() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();
  // One heartbeat and a fresh view; logs replicas that joined or left.
  void Beat();

  store::Store* store_;
  const std::string id_;  // random, new at each start
  store::ReplicaRecord self_ ABSL_GUARDED_BY(mu_);
  OnChange on_change_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<store::ReplicaRecord> live_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace drawbridge::server

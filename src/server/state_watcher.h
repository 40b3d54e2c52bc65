#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/identity_directory.h"
#include "store/store.h"

namespace drawbridge::server {

// Keeps this server's IdentityDirectory in step with changes other servers
// make to a shared store (replicas on PostgreSQL): it waits for a change
// notification, or at most `recheck` (a lost notification is covered by the
// poll), compares the store's state version and refreshes the directory when it
// moved; the directory's revocation listener then ends the live streams of
// identities disabled and keys removed elsewhere. One thread; nothing to do
// for a store that is not shared.
class StateWatcher {
 public:
  // `also` runs after each directory refresh (the server reloads the shared
  // policy there).
  StateWatcher(store::Store* store, IdentityDirectory* directory,
               std::function<absl::Status()> also = nullptr,
               std::chrono::milliseconds recheck = std::chrono::milliseconds(250));
  ~StateWatcher();  // stops and joins
  StateWatcher(const StateWatcher&) = delete;
  StateWatcher& operator=(const StateWatcher&) = delete;

  // Refreshes done because the version moved (for tests and metrics).
  uint64_t refreshes() const { return refreshes_.load(); }
  // The outcome of the last look at the store: not OK while it cannot be
  // reached (then this server may miss other replicas' revocations).
  absl::Status health() const ABSL_LOCKS_EXCLUDED(mu_);
  // Stops following (joins the thread); health() stays answerable.
  void Stop();

 private:
  void Run();

  store::Store* store_;
  IdentityDirectory* directory_;
  std::function<absl::Status()> also_;
  const std::chrono::milliseconds recheck_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refreshes_{0};
  mutable absl::Mutex mu_;
  absl::Status health_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace drawbridge::server

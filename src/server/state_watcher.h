#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

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
  StateWatcher(store::Store* store, IdentityDirectory* directory,
               std::chrono::milliseconds recheck = std::chrono::milliseconds(250));
  ~StateWatcher();  // stops and joins
  StateWatcher(const StateWatcher&) = delete;
  StateWatcher& operator=(const StateWatcher&) = delete;

  // Refreshes done because the version moved (for tests and metrics).
  uint64_t refreshes() const { return refreshes_.load(); }

 private:
  void Run();

  store::Store* store_;
  IdentityDirectory* directory_;
  const std::chrono::milliseconds recheck_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refreshes_{0};
  std::thread thread_;
};

}  // namespace drawbridge::server

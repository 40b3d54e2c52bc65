#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace drawbridge::server {

// Status payload type URL carrying a machine-readable refusal reason
// ("identity_disabled", "key_removed", ...), for audit records and alert rules.
inline constexpr char kReasonCodePayload[] = "drawbridge.dev/reason_code";

// The reason code of a refusal: its payload, or "unauthenticated" /
// "permission_denied" from the status code; "" for OK.
std::string ReasonCodeOf(const absl::Status& status);

// Identities and their keys, cached in memory over the Store so that the
// per-stream check ("is this identity and key still enabled?") never touches the
// database inside a gRPC reaction. All mutations go through here: the Store is
// written first (durable), then the cache. Thread-safe.
class IdentityDirectory {
 public:
  static absl::StatusOr<std::unique_ptr<IdentityDirectory>> Load(store::Store* store);

  // OK only if `identity` exists and is enabled and `key_id` is its active key.
  // PermissionDenied with the reason otherwise (and a reason code, see
  // ReasonCodeOf). Never blocks on I/O.
  absl::Status CheckActive(const std::string& identity, const std::string& key_id) const;

  // On a shared store (replicas), an identity or key missing from the cache is
  // looked up in the store before NotFound: another replica may have just
  // created it. These may block on the store; CheckActive never does.
  absl::StatusOr<store::IdentityRecord> GetIdentity(const std::string& identity);
  absl::StatusOr<store::KeyRecord> GetKey(const std::string& key_id);
  std::vector<store::IdentityRecord> ListIdentities() const;
  std::vector<store::KeyRecord> ListKeys(const std::string& identity) const;

  absl::Status CreateIdentity(const store::IdentityRecord& identity, const store::KeyRecord& key);
  absl::Status SetEnabled(const std::string& identity, bool enabled, int64_t now);
  absl::Status AddKey(const store::KeyRecord& key);
  absl::Status RemoveKey(const std::string& identity, const std::string& key_id, int64_t now);

  // Called after an identity is disabled (key_id empty) or a key removed, once the
  // change is durable; the listener ends live streams (DESIGN §7.3).
  using RevocationListener =
      std::function<void(const std::string& identity, const std::string& key_id)>;
  void SetRevocationListener(RevocationListener listener);

  // Re-reads every identity and key from the store (changed by another server
  // sharing it), replaces the cache, and tells the revocation listener about
  // each identity that became disabled and each key that was removed since the
  // last look. Serialised with this server's own changes. Returns how many
  // revocations it passed on.
  absl::StatusOr<int> Refresh();

 private:
  explicit IdentityDirectory(store::Store* store) : store_(store) {}

  void NotifyRevoked(const std::string& identity, const std::string& key_id);

  store::Store* store_;
  absl::Mutex listener_mu_;
  RevocationListener listener_ ABSL_GUARDED_BY(listener_mu_);
  absl::Mutex write_mu_;  // serialises store-then-cache updates
  mutable absl::Mutex mu_;
  std::map<std::string, store::IdentityRecord> identities_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, store::KeyRecord> keys_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::server

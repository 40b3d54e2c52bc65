#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace drawbridge::store {

// Server state. Identities are "KIND/NAME" strings here; the store does not
// interpret them. Times are unix seconds.
struct IdentityRecord {
  std::string identity;
  bool enabled = true;
  std::vector<std::string> cidrs;  // empty: any source address
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

struct KeyRecord {
  std::string key_id;
  std::string identity;
  std::string algorithm;  // JOSE name
  std::string public_key_pem;
  int64_t created_at = 0;
  int64_t removed_at = 0;  // 0 while active
};

struct CertificateRecord {
  std::string serial;
  std::string identity;
  std::string key_id;
  int64_t not_before = 0;
  int64_t not_after = 0;
};

// The access policy (YAML, DESIGN §4) as the servers sharing a store enforce
// it.
struct PolicyRecord {
  std::string yaml;
  int64_t updated_at = 0;
};

// One server among those sharing a store.
struct ReplicaRecord {
  std::string id;                // random, new at each start
  std::string advertise;         // HOST:PORT agents and clients dial
  int64_t started_at = 0;        // unix seconds
  int64_t heartbeat_age_ms = 0;  // set by ListReplicas: since its last heartbeat
};

// `admin sessions kill` for a session that may live on another replica: a
// request every replica sees; the one holding the session ends it and records
// what it was.
struct SessionKillRecord {
  std::string conn_id;  // 32 hex digits
  std::string reason;
  int64_t requested_at = 0;  // unix seconds
  std::string done_by;       // the replica that ended it; empty while pending
  std::string session_json;  // the session as it was when ended
};

// The server's durable state. Implementations are thread-safe. Every write is
// durable when the call returns (a crash after OK loses nothing).
class Store {
 public:
  virtual ~Store() = default;

  // AlreadyExists if the identity or key id is taken. Atomic: both or neither.
  virtual absl::Status CreateIdentity(const IdentityRecord& identity, const KeyRecord& key) = 0;
  virtual absl::StatusOr<IdentityRecord> GetIdentity(const std::string& identity) = 0;
  virtual absl::StatusOr<std::vector<IdentityRecord>> ListIdentities() = 0;
  virtual absl::Status SetIdentityEnabled(const std::string& identity, bool enabled,
                                          int64_t now) = 0;

  virtual absl::Status AddKey(const KeyRecord& key) = 0;
  virtual absl::StatusOr<KeyRecord> GetKey(const std::string& key_id) = 0;
  virtual absl::StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& identity) = 0;
  // NotFound unless the key belongs to `identity`; FailedPrecondition if removed already.
  virtual absl::Status RemoveKey(const std::string& identity, const std::string& key_id,
                                 int64_t now) = 0;

  // Marks an enrollment token id as used until `expires_at`. AlreadyExists if it
  // was used before (replay). Forgets ids whose expiry is before `now`, since
  // those tokens are refused on time alone.
  virtual absl::Status ConsumeTokenId(const std::string& token_id, int64_t expires_at,
                                      int64_t now) = 0;

  virtual absl::Status RecordCertificate(const CertificateRecord& cert) = 0;
  virtual absl::StatusOr<CertificateRecord> GetCertificate(const std::string& serial) = 0;

  // The policy servers sharing this store enforce (a single server keeps its
  // policy in its policy file instead). NotFound until one is set. Setting it
  // moves the state version, so every server sharing the store picks it up.
  virtual absl::StatusOr<PolicyRecord> GetPolicy() = 0;
  virtual absl::Status SetPolicy(const PolicyRecord& policy) = 0;

  // Membership of the servers sharing this store. A heartbeat registers
  // `self` or refreshes it, stamped with the store's own clock (replicas'
  // clocks may differ); RemoveReplica is a clean leave. ListReplicas returns
  // those whose last heartbeat is at most `max_age` old, ordered by id.
  virtual absl::Status HeartbeatReplica(const ReplicaRecord& self) = 0;
  virtual absl::Status RemoveReplica(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<ReplicaRecord>> ListReplicas(
      std::chrono::milliseconds max_age) = 0;

  // Session kill requests (see SessionKillRecord). Requesting moves the state
  // version, so every replica looks at once; a newer request for the same
  // conn_id replaces an older one. Pending lists those not done, requested at
  // or after `since`. Completing is first-wins: FailedPrecondition if the
  // request is done already (or gone). Get: NotFound if there is none.
  virtual absl::Status RequestSessionKill(const SessionKillRecord& request) = 0;
  virtual absl::StatusOr<std::vector<SessionKillRecord>> PendingSessionKills(int64_t since) = 0;
  virtual absl::Status CompleteSessionKill(const std::string& conn_id, const std::string& replica,
                                           const std::string& session_json) = 0;
  virtual absl::StatusOr<SessionKillRecord> GetSessionKill(const std::string& conn_id) = 0;

  // The deployment's CA for servers sharing the store (`server init` of a
  // second replica joins it): certificates and the CA keys sealed under the
  // KEK, which itself is never stored; by name (see server/data_dir.cc).
  // Put is first-wins and all-or-nothing: AlreadyExists if any is present.
  // Get: NotFound while there is none.
  virtual absl::Status PutPkiMaterial(const std::map<std::string, std::string>& items) = 0;
  virtual absl::StatusOr<std::map<std::string, std::string>> GetPkiMaterial() = 0;

  // Every key of every identity (to refresh a cache in one query).
  virtual absl::StatusOr<std::vector<KeyRecord>> ListAllKeys() = 0;

  // True when other servers may change this store (PostgreSQL): then a server
  // must watch for their changes (StateVersion, WaitForChange). False for the
  // embedded SQLite database, which only its own server writes.
  virtual bool shared() const = 0;
  // A number that changes whenever an identity or key changes, through any
  // server sharing the store: polling it is one cheap query.
  virtual absl::StatusOr<int64_t> StateVersion() = 0;
  // Blocks up to `timeout` for word that another server changed identities or
  // keys; true if some arrived (or may have been missed: the notification
  // channel was re-established). For one caller thread at a time. A store that
  // is not shared sleeps and returns false.
  virtual bool WaitForChange(std::chrono::milliseconds timeout) = 0;
};

// Opens (creating and migrating if needed) the SQLite database at `path`
// (":memory:" for tests). WAL mode, synchronous=FULL.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

// Opens the PostgreSQL database named by `conninfo` (a postgres:// or
// postgresql:// URI, or libpq key=value pairs), applying the schema
// migrations it lacks. Shared by every replica that opens the same database.
// Unavailable when PostgreSQL cannot be reached.
absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo);

// A postgres:// or postgresql:// URI opens PostgreSQL; anything else is the
// path of a SQLite database.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& location);
bool IsPostgresLocation(std::string_view location);

// `conninfo` with any password replaced by ***, for logs and errors.
std::string RedactConninfo(std::string_view conninfo);

}  // namespace drawbridge::store

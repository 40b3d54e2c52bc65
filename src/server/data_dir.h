#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "pki/certs.h"
#include "pki/key_encryption.h"
#include "server/config.h"
#include "store/store.h"

namespace drawbridge::server {

// The server's data directory (mode 0700):
//   server.yaml                 configuration
//   state.db                    SQLite state (identities, public keys, used token ids, certs)
//   kek                         key-encryption key (unless $DRAWBRIDGE_KEK_FILE)
//   ca/root.crt ca/intermediate.crt
//   ca/root.key.sealed ca/intermediate.key.sealed   AES-256-GCM under the KEK
//   tls/server.crt tls/server.key.sealed            the listener's certificate
//   audit/audit.key.sealed      the audit log's signing key (checkpoints, head)
//   audit/audit.pub             its public key, for `drawbridge audit verify`
//   policy.yaml                 the policy, when no --policy file is given
//                               (`drawbridge admin policy set` writes it)
//   admin.json                  the first admin credential (move it somewhere safe)
// The audit log itself lives in state.db (tables audit_*).
struct DataDir {
  explicit DataDir(std::string dir);
  std::string dir;
  std::string config;
  std::string database;
  std::string kek;
  std::string root_cert;
  std::string root_key;
  std::string intermediate_cert;
  std::string intermediate_key;
  std::string server_cert;
  std::string server_key;
  std::string admin_credential;
  std::string audit_key;
  std::string audit_public_key;
  std::string policy;      // where the policy is kept when the server runs without --policy
  std::string replica_id;  // this replica's id on a shared store (names its audit chain)
};

inline constexpr char kBootstrapAdmin[] = "admin/admin";

struct InitOptions {
  std::string data_dir;
  std::string trust_domain;
  std::string listen = "127.0.0.1:8443";
  std::string advertise;  // default: listen (or localhost:PORT if listen is a wildcard)
  std::string store;      // server.yaml's `store` (empty: DATA_DIR/state.db)
  const common::Clock* clock = common::Clock::Real();
};

// Creates everything listed above. Refuses a directory that already has content.
absl::Status InitDataDir(const InitOptions& options);

// A server on a shared store checks at start that its CA is the store's (a
// data directory initialised apart from the deployment would issue
// certificates nobody else trusts), and publishes it if the store has none
// yet (a store from before replicas joined by `server init`).
absl::Status CheckSharedCa(const DataDir& dir, const ServerConfig& config, store::Store* store);

// The replica id of the data directory (file replica-id), created at the first
// start on a shared store: stable across restarts, so a replica's audit chain
// goes on where it stopped. InvalidArgument if the file holds something else
// than 1-64 of [a-z0-9-].
absl::StatusOr<std::string> LoadOrCreateReplicaId(const DataDir& dir);

// What a running server needs from the data directory.
struct ServingPki {
  std::unique_ptr<pki::CertificateAuthority> ca;
  std::string server_chain_pem;
  std::string server_key_pem;  // in memory only
  common::PKeyPtr audit_key;   // signs audit checkpoints and the head
};

// Unseals the CA, server and audit keys (creating the audit key if missing). Re-issues the server
// certificate when it has less than 30 days left or no longer covers the configured addresses.
absl::StatusOr<ServingPki> LoadServingPki(const DataDir& dir, const ServerConfig& config,
                                          const common::Clock& clock);

}  // namespace drawbridge::server

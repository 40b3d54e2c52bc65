#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/internal/chain.h"
#include "store/pg_conn.h"

// The audit chains of replicas in PostgreSQL (tables of migration 7): rows keyed
// by replica id, one chain per replica, side by side.
namespace drawbridge::audit::internal {

// A chain's registration: the replica's audit public key, endorsed by the CA.
struct ChainInfo {
  std::string replica_id;
  std::string public_key_pem;
  std::string endorser_cert_pem;  // the intermediate CA certificate that signed
  std::string endorsement;        // base64url JOSE signature over EndorsementMessage
  int64_t created_at = 0;
};

std::string EndorsementMessage(const std::string& replica_id, const std::string& public_key_pem);

// Registers (or re-endorses) a chain. FailedPrecondition if the replica id is
// registered with another public key: its chain is signed with that key.
absl::Status RegisterChain(store::PgSession* pg, const ChainInfo& info);

// The writer of `replica_id`'s chain (registered first). It holds a session
// advisory lock on the chain: a second process writing the same chain (two
// replicas started from one data directory) is refused.
std::unique_ptr<ChainWriter> PostgresChainWriter(const std::string& conninfo,
                                                 const std::string& replica_id);

// Every chain of a database, read in one REPEATABLE READ snapshot.
class PostgresChains {
 public:
  // NotFound if the database holds no audit chains table.
  static absl::StatusOr<std::unique_ptr<PostgresChains>> Open(const std::string& conninfo);
  ~PostgresChains();
  absl::StatusOr<std::vector<ChainInfo>> List();
  // Valid while this object lives.
  std::unique_ptr<ChainReader> Reader(const std::string& replica_id);

 private:
  explicit PostgresChains(std::string conninfo) : pg_(std::move(conninfo)) {}
  store::PgSession pg_;
};

// A reader of one chain on a connection of its own (the exporter's).
std::unique_ptr<ChainReader> PostgresChainReader(const std::string& conninfo,
                                                 const std::string& replica_id);

}  // namespace drawbridge::audit::internal

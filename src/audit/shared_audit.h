#pragma once

#include <openssl/evp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/audit_log.h"
#include "audit/export.h"
#include "audit/query.h"
#include "audit/verify.h"

// The audit trail of replicas sharing a PostgreSQL store (docs/audit.md
// "Replicas"). Each replica keeps its own hash chain there, keyed by its
// replica id (DATA_DIR/replica-id), with its own audit key, checkpoints and
// signed head exactly as a single node's chain in state.db; every record's
// details name the replica ("replica": id), under the hash. A replica
// registers its chain at start: its audit public key, endorsed by the
// deployment's intermediate CA, so that whoever holds the root certificate can
// tell the chain's key is the replica's and not one an intruder in the
// database put there.
namespace drawbridge::audit {

// Registers this replica's chain (or renews the endorsement of the same key).
// FailedPrecondition if the store holds a chain of that id with another key.
absl::Status RegisterSharedAuditChain(const std::string& conninfo, const std::string& replica_id,
                                      EVP_PKEY* audit_key, EVP_PKEY* endorser_key,
                                      const std::string& endorser_cert_pem, int64_t now_unix);

// The replica's chain as an AuditLog (options.replica_id is set to `replica_id`).
// A record is acknowledged once its transaction has committed in PostgreSQL.
absl::StatusOr<std::unique_ptr<AuditLog>> OpenSharedAuditLog(const std::string& conninfo,
                                                             const std::string& replica_id,
                                                             AuditLog::Options options);

// For Exporter::Options::source: the replica's own chain.
std::function<absl::StatusOr<std::unique_ptr<internal::ChainReader>>()> SharedChainSource(
    std::string conninfo, std::string replica_id);

struct ChainVerifyResult {
  std::string replica_id;
  // The chain's audit key is endorsed by an intermediate CA that chains to the
  // given roots (false, with key_problem, when not; never checked with
  // chain_only).
  bool key_endorsed = false;
  std::string key_problem;
  VerifyResult result;  // with the chain's registered key (or chain only)
  bool ok() const { return result.ok && (key_endorsed || !result.signatures_checked); }
};

// Verifies every replica's chain in one snapshot. `roots_pem`: the deployment's
// root certificate(s) (ca.crt), which the endorsements must chain to; empty with
// `chain_only` (hash chains only). NotFound if the store holds no chains.
absl::StatusOr<std::vector<ChainVerifyResult>> VerifySharedAuditLog(const std::string& conninfo,
                                                                    const std::string& roots_pem,
                                                                    bool chain_only);

// Records of every replica's chain matching `filter`, merged by time (then
// replica, then seq); `filter.after_seq` applies per chain. With `only_replica`,
// that replica's chain alone, in seq order.
absl::StatusOr<std::vector<Record>> QuerySharedAuditLog(const std::string& conninfo,
                                                        const QueryFilter& filter,
                                                        const std::string& only_replica = "");

// The newest seq of the replica's chain (0 when empty).
absl::StatusOr<uint64_t> LastSharedAuditSeq(const std::string& conninfo,
                                            const std::string& replica_id);

}  // namespace drawbridge::audit

#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/record.h"
#include "common/clock.h"

namespace drawbridge::audit {

namespace internal {
struct AuditLogState;
class ChainWriter;
}  // namespace internal

// The tamper-evident audit log: records in a SHA-256 hash chain in SQLite (tables
// audit_*, so the file may be the server's state.db or a file of its own) or, for
// a replica on a shared store, in PostgreSQL (one chain per replica), with
// checkpoints and a head signed by the audit key.
//
// Durability: a record is acknowledged (on_durable(OK)) only after the transaction
// holding it has committed: in SQLite with synchronous=FULL in WAL mode, i.e.
// after fsync; in PostgreSQL with synchronous_commit on. One
// writer thread commits everything queued so far in one transaction (group commit),
// so the cost of the fsync and of signing the head is shared by the whole batch.
//
// Signing: with a signing key, every commit rewrites one signed "head" row (last seq
// and hash, and the retention anchor), and a signed checkpoint row is written for
// every record whose seq is a multiple of checkpoint_every_records, and for the
// last record once checkpoint_every has passed since the last checkpoint. The head
// lets VerifyAuditLog detect truncation of the tail at once, not only past the next
// checkpoint. Without a key nothing is signed and only the chain protects the log
// (edits, deletions, insertions and reordering inside it are still detected;
// truncation of the tail and rewriting of the whole chain are not).
//
// What no offline check can detect (documented in verify.h): replacing the whole
// database with an older copy of itself (a rollback), or deleting it. Ship records
// off the host (SIEM export) for that.
//
// Open refuses a log whose signed head does not match its last record (truncated or
// altered tail) or that was signed with another key: appending to it would sign the
// damage into a new, valid-looking head.
//
// Thread-safe. Destruction commits everything queued, then stops the writer.
class AuditLog {
 public:
  struct Options {
    // A signed checkpoint at every seq that is a multiple of this (0: none by count).
    uint64_t checkpoint_every_records = 1000;
    // ...and at the last record when this long has passed since the last checkpoint.
    std::chrono::seconds checkpoint_every{60};
    // Records older than this are pruned at Open and once a day (0: keep forever).
    std::chrono::milliseconds retention = std::chrono::hours(24 * 30);
    // ES256 or EdDSA; not owned, must outlive the log. Null: no checkpoints, no head.
    EVP_PKEY* signing_key = nullptr;
    // Not owned; null means the real clock.
    const common::Clock* clock = nullptr;
    // Append blocks while this many records wait for the writer (see Append).
    size_t max_queue = 100000;
    // Called on the writer thread after each commit with the records it made
    // durable (seq and hashes set), before their on_durable callbacks. Alert rules
    // and exporters hang off this; it must not block, and may call Append.
    std::function<void(const std::vector<Record>&)> on_committed;
    // Called on the writer thread when commits start failing (with the error) and
    // when they succeed again (OK). Must not block.
    std::function<void(const absl::Status&)> on_storage_state;
    // After a failed commit, the writer waits this long before trying again.
    std::chrono::milliseconds retry_after_failure{250};
    // Set for a replica's chain in a shared store: every record's details carry
    // "replica": this id, covered by the hash.
    std::string replica_id;
  };

  // What becomes of a record whose commit fails (disk full, I/O error).
  enum class Retention {
    // The record stays queued, in order, and is committed once storage works
    // again; on_durable (if any) hears of the first failure. For facts: a
    // connection closed, a request was refused, a change was made.
    kKeepUntilDurable,
    // on_durable gets the error and the record is dropped: for records that gate
    // an action the caller then refuses (the refusal is what gets recorded).
    kDropOnFailure,
  };

  struct Stats {
    uint64_t records = 0;      // committed by this instance
    uint64_t commits = 0;      // group-commit transactions that held records
    uint64_t checkpoints = 0;  // checkpoints written by this instance
    uint64_t failed = 0;       // records refused, or dropped after a failed commit
    uint64_t retried = 0;      // commits retried for records kept until durable
  };

  // The chain in the SQLite file at `path` (created if missing).
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path, Options options);
  // The chain in `storage` (see audit/shared_audit.h for a replica's chain in
  // PostgreSQL).
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(
      std::unique_ptr<internal::ChainWriter> storage, Options options);

  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Queues `record`; the writer assigns seq, prev_hash and hash and commits it. The
  // time is taken here (UTC, never earlier than the previous record's). Calls
  // on_durable exactly once, on the writer thread, after the commit: OK, or
  // InvalidArgument if the record is malformed (see NormalizeForAppend; secrets are
  // redacted, not refused), or the storage error. on_durable must not block; it may
  // be null.
  //
  // When max_queue records are waiting, Append blocks until the writer catches up:
  // dropping a record would break invariant 6 (every allow/deny/enrollment/admin
  // change is in the chain), so the backlog pushes back on producers instead. The
  // writer itself (an on_durable calling Append) never blocks.
  //
  // A commit that fails for a storage reason (disk full, I/O error) does not lose
  // records kept until durable (see Retention): the writer retries every
  // retry_after_failure until storage works again, while records that gate an
  // action fail at once, so the caller fails closed. Only a log destroyed while
  // storage still fails drops what it kept (logged as audit_records_lost).
  void Append(Record record, std::function<void(absl::Status)> on_durable = nullptr,
              Retention retention = Retention::kKeepUntilDurable);

  // Append and wait for durability. Not callable from on_durable (that would wait
  // for itself): returns FailedPrecondition there.
  absl::Status AppendSync(Record record);

  // Waits until every record queued before the call is durable and its on_durable
  // has returned. No-op on the writer thread.
  void Flush();

  // Deletes records older than `before_unix_ms`, but only up to the newest signed
  // checkpoint whose record is older (any record without a key), so that the
  // retained chain starts at a trustworthy anchor. Returns the number deleted.
  absl::StatusOr<uint64_t> Prune(int64_t before_unix_ms);

  // Writes a checkpoint at the last record now (no-op without a key or records).
  absl::Status Checkpoint();

  Stats GetStats() const;

  // OK while commits succeed; Unavailable with the storage error after a failed
  // commit, until one succeeds again.
  absl::Status StorageStatus() const;

  // Caps the database at `max_pages` pages (SQLite's max_page_count; never below
  // its current size), so tests can make commits fail as on a full disk. SQLite
  // only (Unimplemented otherwise).
  absl::Status LimitPagesForTesting(int64_t max_pages);

 private:
  struct Pending {
    Record record;
    std::function<void(absl::Status)> on_durable;
    Retention retention = Retention::kKeepUntilDurable;
    bool told_failure = false;  // on_durable already heard of a failed commit
  };

  AuditLog(std::unique_ptr<internal::AuditLogState> state, Options options);
  void WriterLoop();
  void CommitBatch(std::deque<Pending>* batch);
  // Time-based checkpoint and daily pruning; on the writer thread.
  void Maintenance();
  absl::Status CheckpointIfDue(int64_t now_ms);
  absl::Status CheckpointLocked(int64_t now_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NowMs() const;

  const Options options_;
  const common::Clock* const clock_;

  // The database, the chain's tail and the signing state; used by the writer
  // thread and by Prune/Checkpoint, serialised by db_mu_.
  mutable absl::Mutex db_mu_;
  std::unique_ptr<internal::AuditLogState> state_ ABSL_GUARDED_BY(db_mu_);

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  int64_t last_time_ms_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;  // tickets handed out
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;      // tickets whose on_durable returned
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  absl::Status storage_ ABSL_GUARDED_BY(mu_);  // the last commit's outcome

  std::thread writer_;
};

}  // namespace drawbridge::audit

#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "audit/internal/db.h"
#include "audit/record.h"

// The storage seam of the audit trail: one hash chain, written by AuditLog and
// read by verification, queries and export, in SQLite (one node: the chain in
// state.db) or in PostgreSQL (replicas: one chain per replica, side by side).
// The chain's rules (hashing, signing, what a checkpoint or the head means)
// live above this seam; below it is only where the rows are.
namespace drawbridge::audit::internal {

// A record row as stored, before the strict parse (ParseRawRecord).
struct RawRecord {
  int64_t seq = 0;
  int64_t time_ms = 0;
  int64_t class_uid = 0;
  std::string class_name, activity, outcome, actor, source_address, details, prev_hash, hash;
  // False when a column holds a value of another type than declared (SQLite
  // stores what it is given; PostgreSQL's columns enforce their types).
  bool types_ok = true;
};

// The record a row holds, strictly: details a strict JSON object stored byte
// for byte in canonical form (so what a query shows is exactly what the hash
// covers). DataLoss naming the problem otherwise.
absl::StatusOr<Record> ParseRawRecord(const RawRecord& raw);

// Where a chain stands when a writer opens it.
struct ChainTail {
  Anchor anchor;  // records <= anchor.seq were pruned
  uint64_t last_seq = 0;
  std::string last_hash = std::string(kGenesisHash);
  int64_t last_time_ms = 0;
  std::optional<CheckpointRow> last_checkpoint;
  std::optional<HeadRow> head;
};

// Writes one chain. Used by one thread at a time (AuditLog serialises).
class ChainWriter {
 public:
  virtual ~ChainWriter() = default;
  // For messages: "audit log /var/lib/drawbridge/state.db".
  virtual std::string Describe() const = 0;
  // Creates what is missing and reads the tail.
  virtual absl::StatusOr<ChainTail> Load() = 0;

  struct Batch {
    // Records with seq, hashes and time set, and their canonical details.
    std::vector<std::pair<const Record*, std::string>> records;
    std::vector<CheckpointRow> checkpoints;
    std::optional<HeadRow> head;
  };
  // Writes the batch in one transaction; durable when this returns OK.
  virtual absl::Status Commit(const Batch& batch) = 0;

  // The newest record older than `before_ms` that can anchor the rest: with
  // `signed_only`, one a signed checkpoint vouches for (same hash).
  virtual absl::StatusOr<std::optional<Anchor>> FindPrunePoint(int64_t before_ms,
                                                               bool signed_only) = 0;
  // Deletes records <= anchor.seq and checkpoints before it, records the anchor
  // and writes `head` (if any), in one transaction. Returns the records deleted.
  virtual absl::StatusOr<uint64_t> Prune(const Anchor& anchor,
                                         const std::optional<HeadRow>& head) = 0;

  // Makes commits fail as on a full disk (SQLite only).
  virtual absl::Status LimitPagesForTesting(int64_t max_pages) {
    (void)max_pages;
    return absl::UnimplementedError("not supported by this audit storage");
  }
};

// Reads one chain.
class ChainReader {
 public:
  virtual ~ChainReader() = default;
  virtual absl::StatusOr<Anchor> ReadAnchor() = 0;
  virtual absl::StatusOr<std::optional<HeadRow>> ReadHead() = 0;
  // In seq order; `well_formed` is false for a row of the wrong column types.
  virtual absl::Status ForEachCheckpoint(
      const std::function<void(const CheckpointRow&, bool well_formed)>& fn) = 0;

  struct Range {
    int64_t from_ms = std::numeric_limits<int64_t>::min();  // time_ms >= from_ms
    int64_t to_ms = std::numeric_limits<int64_t>::max();    // time_ms < to_ms
    uint64_t after_seq = 0;                                 // seq > after_seq
  };
  // In seq order until `fn` returns false.
  virtual absl::Status ForEachRecord(const Range& range,
                                     const std::function<bool(const RawRecord&)>& fn) = 0;
  // Records after `after_seq`, at most `limit`, parsed strictly.
  absl::StatusOr<std::vector<Record>> ReadAfter(uint64_t after_seq, size_t limit);
  // The newest seq (0 when empty).
  virtual absl::StatusOr<uint64_t> LastSeq() = 0;
};

// SQLite: the tables audit_* of the file at `path` (state.db, agent-audit.db).
absl::StatusOr<std::unique_ptr<ChainWriter>> OpenSqliteChainWriter(const std::string& path);
// Read-only. NotFound if the file or its audit tables are missing. With
// `snapshot` every read sees the state of one moment (a read transaction).
absl::StatusOr<std::unique_ptr<ChainReader>> OpenSqliteChainReader(const std::string& path,
                                                                   bool snapshot);
// Over a connection the caller keeps open (the exporter's, which also holds
// its cursors); no snapshot.
std::unique_ptr<ChainReader> SqliteChainReaderOn(sqlite3* db);

}  // namespace drawbridge::audit::internal

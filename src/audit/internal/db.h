#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "audit/record.h"

// The audit tables and the SQLite glue shared by AuditLog, VerifyAuditLog and
// QueryAuditLog. Not part of the module's contract.
namespace drawbridge::audit::internal {

inline constexpr int kSchemaVersion = 1;

// All tables are prefixed audit_ so that the log can share the server's state.db.
extern const char kSchema[];

// The columns of a record row, in order.
inline constexpr char kRecordColumns[] =
    "seq, time_ms, class_uid, class_name, activity, outcome, actor, source_address, details, "
    "prev_hash, hash";

// A prepared statement; finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status Prepared() const;
  Stmt& Bind(int i, const std::string& v);
  Stmt& Bind(int i, int64_t v);
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step();
  // Ready to bind and step again.
  void Reset();
  // Step that must end with SQLITE_DONE.
  absl::Status Run(std::string_view what);
  std::string Text(int col) const;
  int64_t Int(int col) const;
  int Type(int col) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

// Read-only opens never create the file (NotFound if it is missing).
absl::StatusOr<DbPtr> OpenDb(const std::string& path, bool read_only);
absl::Status Exec(sqlite3* db, const std::string& sql);
absl::Status SqliteError(sqlite3* db, std::string_view what);

// Whether the database holds an audit log at all; FailedPrecondition if it is of a
// schema version this binary does not know.
absl::StatusOr<bool> HasAuditTables(sqlite3* db);

struct Anchor {
  uint64_t seq = 0;  // records <= seq were pruned
  std::string hash = std::string(kGenesisHash);
};
absl::StatusOr<Anchor> ReadAnchor(sqlite3* db);

struct CheckpointRow {
  uint64_t seq = 0;
  std::string hash;
  int64_t time_ms = 0;
  std::string signature;  // base64url
};

// The signed head: the last record and the retention anchor as of the last commit.
struct HeadRow {
  uint64_t seq = 0;
  std::string hash;
  uint64_t anchor_seq = 0;
  std::string anchor_hash;
  int64_t time_ms = 0;
  std::string signature;  // base64url
};
absl::StatusOr<std::optional<HeadRow>> ReadHead(sqlite3* db);

// What the audit key signs.
std::string CheckpointMessage(uint64_t seq, const std::string& hash, int64_t time_ms);
std::string HeadMessage(const HeadRow& head);

}  // namespace drawbridge::audit::internal

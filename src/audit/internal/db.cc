#include "audit/internal/db.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::audit::internal {

const char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS audit_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_records(
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  class_uid INTEGER NOT NULL,
  class_name TEXT NOT NULL,
  activity TEXT NOT NULL,
  outcome TEXT NOT NULL,
  actor TEXT NOT NULL,
  source_address TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_records_by_time ON audit_records(time_ms);
CREATE TABLE IF NOT EXISTS audit_checkpoints(
  seq INTEGER PRIMARY KEY,
  hash TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  anchor_seq INTEGER NOT NULL,
  anchor_hash TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  signature TEXT NOT NULL);
)sql";

Stmt::Stmt(sqlite3* db, const std::string& sql) : db_(db) {
  rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

absl::Status Stmt::Prepared() const {
  if (rc_ != SQLITE_OK) {
    return absl::InternalError(common::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
  }
  return absl::OkStatus();
}

Stmt& Stmt::Bind(int i, const std::string& v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}

int Stmt::Step() { return sqlite3_step(stmt_); }

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

absl::Status Stmt::Run(std::string_view what) {
  int rc = Step();
  if (rc != SQLITE_DONE) {
    return SqliteError(db_, what);
  }
  return absl::OkStatus();
}

std::string Stmt::Text(int col) const {
  const unsigned char* t = sqlite3_column_text(stmt_, col);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
           : std::string();
}

int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

int Stmt::Type(int col) const { return sqlite3_column_type(stmt_, col); }

absl::Status SqliteError(sqlite3* db, std::string_view what) {
  return absl::InternalError(common::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return absl::InternalError(common::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

namespace {

// Percent-encodes what a URI filename may not hold literally.
std::string UriEscape(const std::string& path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : path) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '%' || c == '?' || c == '#' || u < 0x21 || u >= 0x7f) {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<DbPtr> OpenDb(const std::string& path, bool read_only) {
  if (read_only) {
    if (::access(path.c_str(), F_OK) != 0) {
      return absl::NotFoundError(common::StrCat("audit database ", path, " does not exist"));
    }
  } else {
    // Create the file 0600 ourselves: SQLite gives its -wal and -shm files the
    // database's mode, and audit records name identities and addresses.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
    }
  }
  // A read-only open of a WAL database makes SQLite create -wal and -shm files next
  // to it. When there is no -wal (a copy, or a log no process has open), nothing
  // can be missing from the main file, so open it immutable: no side files, no
  // locks, the copy stays byte for byte what the auditor was given. A live log has
  // its -wal, and is read normally (with locking, so the snapshot is consistent).
  std::string name = path;
  // Each connection is used by one thread at a time (AuditLog serialises its own).
  int flags = SQLITE_OPEN_NOMUTEX;
  if (read_only) {
    flags |= SQLITE_OPEN_READONLY;
    if (::access((path + "-wal").c_str(), F_OK) != 0) {
      name = common::StrCat("file:", UriEscape(path), "?immutable=1");
      flags |= SQLITE_OPEN_URI;
    }
  } else {
    flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(name.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(common::StrCat("cannot open audit database ", path, ": ",
                                                 raw ? sqlite3_errmsg(raw) : "out of memory"));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  return db;
}

absl::StatusOr<bool> HasAuditTables(sqlite3* db) {
  Stmt s(db,
         "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
         "('audit_meta','audit_records','audit_checkpoints','audit_head')");
  RETURN_IF_ERROR(s.Prepared());
  if (s.Step() != SQLITE_ROW) {
    return SqliteError(db, "reading the schema");
  }
  if (s.Int(0) != 4) {
    return false;
  }
  Stmt v(db, "SELECT value FROM audit_meta WHERE key='schema_version'");
  RETURN_IF_ERROR(v.Prepared());
  if (v.Step() != SQLITE_ROW || v.Text(0) != common::StrCat(kSchemaVersion)) {
    return absl::FailedPreconditionError(
        "the audit log's schema version is not supported by this binary; upgrade drawbridge");
  }
  return true;
}

absl::StatusOr<Anchor> ReadAnchor(sqlite3* db) {
  Anchor anchor;
  Stmt s(db, "SELECT key, value FROM audit_meta WHERE key IN ('anchor_seq','anchor_hash')");
  RETURN_IF_ERROR(s.Prepared());
  bool have_seq = false;
  bool have_hash = false;
  while (s.Step() == SQLITE_ROW) {
    std::string key = s.Text(0);
    std::string value = s.Text(1);
    if (key == "anchor_seq") {
      uint64_t seq = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seq);
      if (ec != std::errc() || end != value.data() + value.size()) {
        return absl::DataLossError("audit anchor_seq is not a number");
      }
      anchor.seq = seq;
      have_seq = true;
    } else {
      anchor.hash = value;
      have_hash = true;
    }
  }
  if (have_seq != have_hash) {
    return absl::DataLossError("audit retention anchor is incomplete");
  }
  return anchor;
}

absl::StatusOr<std::optional<HeadRow>> ReadHead(sqlite3* db) {
  Stmt s(db,
         "SELECT seq, hash, anchor_seq, anchor_hash, time_ms, signature FROM audit_head "
         "WHERE id=1");
  RETURN_IF_ERROR(s.Prepared());
  int rc = s.Step();
  if (rc == SQLITE_DONE) {
    return std::optional<HeadRow>();
  }
  if (rc != SQLITE_ROW) {
    return SqliteError(db, "reading the audit head");
  }
  HeadRow h;
  h.seq = static_cast<uint64_t>(s.Int(0));
  h.hash = s.Text(1);
  h.anchor_seq = static_cast<uint64_t>(s.Int(2));
  h.anchor_hash = s.Text(3);
  h.time_ms = s.Int(4);
  h.signature = s.Text(5);
  return std::optional<HeadRow>(std::move(h));
}

std::string CheckpointMessage(uint64_t seq, const std::string& hash, int64_t time_ms) {
  return common::StrCat("drawbridge-audit-checkpoint|", seq, "|", hash, "|", time_ms);
}

std::string HeadMessage(const HeadRow& head) {
  return common::StrCat("drawbridge-audit-head|", head.seq, "|", head.hash, "|", head.anchor_seq,
                        "|", head.anchor_hash, "|", head.time_ms);
}

}  // namespace drawbridge::audit::internal

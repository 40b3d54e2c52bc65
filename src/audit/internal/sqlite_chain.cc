#include <utility>

#include "audit/internal/chain.h"
#include "common/status_macros.h"
#include "common/strings.h"

// The chain in SQLite: tables audit_* (see kSchema), WAL with synchronous=FULL so a
// committed transaction has been fsynced.
namespace drawbridge::audit::internal {
namespace {

// Runs `body` in BEGIN IMMEDIATE ... COMMIT; rolls back on any error.
template <typename F>
absl::Status Transaction(sqlite3* db, F&& body) {
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status s = body();
  if (s.ok()) {
    s = Exec(db, "COMMIT");
  }
  if (!s.ok()) {
    Exec(db, "ROLLBACK").IgnoreError();
  }
  return s;
}

absl::Status SetMeta(sqlite3* db, const std::string& key, const std::string& value) {
  Stmt s(db, "INSERT OR REPLACE INTO audit_meta(key, value) VALUES(?,?)");
  RETURN_IF_ERROR(s.Prepared());
  s.Bind(1, key).Bind(2, value);
  return s.Run("write audit meta");
}

absl::Status InitSchema(sqlite3* db) {
  RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=FULL"));
  return Transaction(db, [&]() -> absl::Status {
    RETURN_IF_ERROR(Exec(db, kSchema));
    Stmt s(db, "SELECT value FROM audit_meta WHERE key='schema_version'");
    RETURN_IF_ERROR(s.Prepared());
    if (s.Step() == SQLITE_ROW) {
      std::string v = s.Text(0);
      if (v != common::StrCat(kSchemaVersion)) {
        return absl::FailedPreconditionError(
            common::StrCat("audit log schema version ", v, " is not supported by this binary (",
                           kSchemaVersion, "); upgrade drawbridge"));
      }
      return absl::OkStatus();
    }
    return SetMeta(db, "schema_version", common::StrCat(kSchemaVersion));
  });
}

// The statement in `slot`, prepared on first use and reset for binding;
// preparing them on every commit showed in dial profiles.
Stmt& Cached(std::unique_ptr<Stmt>& slot, sqlite3* db, const std::string& sql) {
  if (slot == nullptr || !slot->Prepared().ok()) {
    slot = std::make_unique<Stmt>(db, sql);
  }
  slot->Reset();
  return *slot;
}

absl::Status WriteHead(std::unique_ptr<Stmt>& slot, sqlite3* db, const HeadRow& head) {
  Stmt& s = Cached(slot, db,
                   "INSERT OR REPLACE INTO audit_head(id, seq, hash, anchor_seq, anchor_hash, "
                   "time_ms, signature) VALUES(1,?,?,?,?,?,?)");
  RETURN_IF_ERROR(s.Prepared());
  s.Bind(1, static_cast<int64_t>(head.seq))
      .Bind(2, head.hash)
      .Bind(3, static_cast<int64_t>(head.anchor_seq))
      .Bind(4, head.anchor_hash)
      .Bind(5, head.time_ms)
      .Bind(6, head.signature);
  return s.Run("write audit head");
}

class SqliteChainWriter : public ChainWriter {
 public:
  SqliteChainWriter(std::string path, DbPtr db) : path_(std::move(path)), db_(std::move(db)) {}

  std::string Describe() const override { return common::StrCat("audit log ", path_); }

  absl::StatusOr<ChainTail> Load() override {
    sqlite3* db = db_.get();
    RETURN_IF_ERROR(InitSchema(db));
    ChainTail tail;
    ASSIGN_OR_RETURN(tail.anchor, ReadAnchor(db));
    tail.last_seq = tail.anchor.seq;
    tail.last_hash = tail.anchor.hash;
    {
      Stmt s(db, "SELECT seq, hash, time_ms FROM audit_records ORDER BY seq DESC LIMIT 1");
      RETURN_IF_ERROR(s.Prepared());
      if (s.Step() == SQLITE_ROW) {
        tail.last_seq = static_cast<uint64_t>(s.Int(0));
        tail.last_hash = s.Text(1);
        tail.last_time_ms = s.Int(2);
      }
    }
    {
      Stmt s(db,
             "SELECT seq, hash, time_ms, signature FROM audit_checkpoints ORDER BY seq DESC "
             "LIMIT 1");
      RETURN_IF_ERROR(s.Prepared());
      if (s.Step() == SQLITE_ROW) {
        tail.last_checkpoint =
            CheckpointRow{static_cast<uint64_t>(s.Int(0)), s.Text(1), s.Int(2), s.Text(3)};
      }
    }
    ASSIGN_OR_RETURN(tail.head, ReadHead(db));
    return tail;
  }

  absl::Status Commit(const Batch& batch) override {
    sqlite3* db = db_.get();
    return Transaction(db, [&]() -> absl::Status {
      Stmt& insert = Cached(insert_record_, db,
                            common::StrCat("INSERT INTO audit_records(", kRecordColumns,
                                           ") VALUES(?,?,?,?,?,?,?,?,?,?,?)"));
      RETURN_IF_ERROR(insert.Prepared());
      for (const auto& [r, details_json] : batch.records) {
        insert.Reset();
        insert.Bind(1, static_cast<int64_t>(r->seq))
            .Bind(2, r->time_unix_ms)
            .Bind(3, int64_t{r->class_uid})
            .Bind(4, r->class_name)
            .Bind(5, r->activity)
            .Bind(6, r->outcome)
            .Bind(7, r->actor)
            .Bind(8, r->source_address)
            .Bind(9, details_json)
            .Bind(10, r->prev_hash)
            .Bind(11, r->hash);
        RETURN_IF_ERROR(insert.Run("insert audit record"));
      }
      for (const CheckpointRow& cp : batch.checkpoints) {
        Stmt s(db,
               "INSERT OR REPLACE INTO audit_checkpoints(seq, hash, time_ms, signature) "
               "VALUES(?,?,?,?)");
        RETURN_IF_ERROR(s.Prepared());
        s.Bind(1, static_cast<int64_t>(cp.seq)).Bind(2, cp.hash).Bind(3, cp.time_ms);
        s.Bind(4, cp.signature);
        RETURN_IF_ERROR(s.Run("insert audit checkpoint"));
      }
      if (batch.head.has_value()) {
        RETURN_IF_ERROR(WriteHead(write_head_, db, *batch.head));
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<Anchor>> FindPrunePoint(int64_t before_ms,
                                                       bool signed_only) override {
    sqlite3* db = db_.get();
    Stmt q(db, signed_only ? "SELECT r.seq, r.hash FROM audit_checkpoints c JOIN audit_records r "
                             "ON r.seq = c.seq WHERE r.time_ms < ? AND r.hash = c.hash "
                             "ORDER BY r.seq DESC LIMIT 1"
                           : "SELECT seq, hash FROM audit_records WHERE time_ms < ? ORDER BY "
                             "seq DESC LIMIT 1");
    RETURN_IF_ERROR(q.Prepared());
    q.Bind(1, before_ms);
    int rc = q.Step();
    if (rc == SQLITE_DONE) {
      return std::optional<Anchor>();
    }
    if (rc != SQLITE_ROW) {
      return SqliteError(db, "finding the prune point");
    }
    return std::optional<Anchor>(Anchor{static_cast<uint64_t>(q.Int(0)), q.Text(1)});
  }

  absl::StatusOr<uint64_t> Prune(const Anchor& anchor,
                                 const std::optional<HeadRow>& head) override {
    sqlite3* db = db_.get();
    uint64_t deleted = 0;
    auto prune = [&]() -> absl::Status {
      Stmt del(db, "DELETE FROM audit_records WHERE seq <= ?");
      RETURN_IF_ERROR(del.Prepared());
      del.Bind(1, static_cast<int64_t>(anchor.seq));
      RETURN_IF_ERROR(del.Run("prune audit records"));
      deleted = static_cast<uint64_t>(sqlite3_changes(db));
      Stmt cps(db, "DELETE FROM audit_checkpoints WHERE seq < ?");
      RETURN_IF_ERROR(cps.Prepared());
      cps.Bind(1, static_cast<int64_t>(anchor.seq));
      RETURN_IF_ERROR(cps.Run("prune audit checkpoints"));
      RETURN_IF_ERROR(SetMeta(db, "anchor_seq", common::StrCat(anchor.seq)));
      RETURN_IF_ERROR(SetMeta(db, "anchor_hash", anchor.hash));
      if (head.has_value()) {
        RETURN_IF_ERROR(WriteHead(write_head_, db, *head));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(Transaction(db, prune));
    return deleted;
  }

  absl::Status LimitPagesForTesting(int64_t max_pages) override {
    return Exec(db_.get(), common::StrCat("PRAGMA max_page_count = ", max_pages));
  }

 private:
  const std::string path_;
  DbPtr db_;
  // Declared after db_: finalized before it closes.
  std::unique_ptr<Stmt> insert_record_;
  std::unique_ptr<Stmt> write_head_;
};

class SqliteChainReader : public ChainReader {
 public:
  // `owned` may be null (a connection the caller keeps); `snapshot`: one read
  // transaction for the reader's lifetime.
  SqliteChainReader(DbPtr owned, sqlite3* db, bool snapshot)
      : owned_(std::move(owned)), db_(db), snapshot_(snapshot) {}
  ~SqliteChainReader() override {
    if (snapshot_) {
      Exec(db_, "COMMIT").IgnoreError();
    }
  }

  absl::Status Begin() { return snapshot_ ? Exec(db_, "BEGIN") : absl::OkStatus(); }

  absl::StatusOr<Anchor> ReadAnchor() override { return internal::ReadAnchor(db_); }
  absl::StatusOr<std::optional<HeadRow>> ReadHead() override { return internal::ReadHead(db_); }

  absl::Status ForEachCheckpoint(
      const std::function<void(const CheckpointRow&, bool well_formed)>& fn) override {
    Stmt s(db_, "SELECT seq, hash, time_ms, signature FROM audit_checkpoints ORDER BY seq");
    RETURN_IF_ERROR(s.Prepared());
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      CheckpointRow row{static_cast<uint64_t>(s.Int(0)), s.Text(1), s.Int(2), s.Text(3)};
      fn(row, s.Type(1) == SQLITE_TEXT && s.Type(2) == SQLITE_INTEGER && s.Type(3) == SQLITE_TEXT);
    }
    if (rc != SQLITE_DONE) {
      return SqliteError(db_, "reading audit checkpoints");
    }
    return absl::OkStatus();
  }

  absl::Status ForEachRecord(const Range& range,
                             const std::function<bool(const RawRecord&)>& fn) override {
    Stmt s(db_, common::StrCat("SELECT ", kRecordColumns,
                               " FROM audit_records WHERE time_ms >= ? AND time_ms < ? AND "
                               "seq > ? ORDER BY seq"));
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, range.from_ms).Bind(2, range.to_ms).Bind(3, static_cast<int64_t>(range.after_seq));
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      RawRecord raw;
      raw.types_ok = true;
      for (int col : {0, 1, 2}) {
        raw.types_ok = raw.types_ok && s.Type(col) == SQLITE_INTEGER;
      }
      for (int col = 3; col <= 10; ++col) {
        raw.types_ok = raw.types_ok && s.Type(col) == SQLITE_TEXT;
      }
      raw.seq = s.Int(0);
      raw.time_ms = s.Int(1);
      raw.class_uid = s.Int(2);
      raw.class_name = s.Text(3);
      raw.activity = s.Text(4);
      raw.outcome = s.Text(5);
      raw.actor = s.Text(6);
      raw.source_address = s.Text(7);
      raw.details = s.Text(8);
      raw.prev_hash = s.Text(9);
      raw.hash = s.Text(10);
      if (!fn(raw)) {
        return absl::OkStatus();
      }
    }
    if (rc != SQLITE_DONE) {
      return SqliteError(db_, "reading audit records");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> LastSeq() override {
    Stmt s(db_, "SELECT COALESCE(MAX(seq), 0) FROM audit_records");
    RETURN_IF_ERROR(s.Prepared());
    if (s.Step() != SQLITE_ROW) {
      return SqliteError(db_, "reading the last seq");
    }
    return static_cast<uint64_t>(s.Int(0));
  }

 private:
  DbPtr owned_;
  sqlite3* db_;
  bool snapshot_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChainWriter>> OpenSqliteChainWriter(const std::string& path) {
  ASSIGN_OR_RETURN(DbPtr db, OpenDb(path, /*read_only=*/false));
  return std::unique_ptr<ChainWriter>(new SqliteChainWriter(path, std::move(db)));
}

absl::StatusOr<std::unique_ptr<ChainReader>> OpenSqliteChainReader(const std::string& path,
                                                                   bool snapshot) {
  ASSIGN_OR_RETURN(DbPtr db, OpenDb(path, /*read_only=*/true));
  ASSIGN_OR_RETURN(bool has_tables, HasAuditTables(db.get()));
  if (!has_tables) {
    return absl::NotFoundError(common::StrCat(path, " holds no audit log"));
  }
  sqlite3* raw = db.get();
  auto reader = std::make_unique<SqliteChainReader>(std::move(db), raw, snapshot);
  RETURN_IF_ERROR(reader->Begin());
  return std::unique_ptr<ChainReader>(std::move(reader));
}

std::unique_ptr<ChainReader> SqliteChainReaderOn(sqlite3* db) {
  return std::make_unique<SqliteChainReader>(nullptr, db, /*snapshot=*/false);
}

}  // namespace drawbridge::audit::internal

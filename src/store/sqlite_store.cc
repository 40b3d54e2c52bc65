#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "store/store.h"

namespace drawbridge::store {
namespace {

constexpr int kSchemaVersion = 1;
// Kill requests are history after an hour (a pending one matters for seconds).
constexpr int64_t kSessionKillKeepSeconds = 3600;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities(
  identity TEXT PRIMARY KEY,
  enabled INTEGER NOT NULL,
  cidrs TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys(
  key_id TEXT PRIMARY KEY,
  identity TEXT NOT NULL REFERENCES identities(identity),
  algorithm TEXT NOT NULL,
  public_key_pem TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  removed_at INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS keys_by_identity ON keys(identity);
CREATE TABLE IF NOT EXISTS used_token_ids(
  token_id TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS used_token_ids_by_expiry ON used_token_ids(expires_at);
CREATE TABLE IF NOT EXISTS policy(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  yaml TEXT NOT NULL,
  updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replicas(
  id TEXT PRIMARY KEY,
  advertise TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS session_kills(
  conn_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  requested_at INTEGER NOT NULL,
  done_by TEXT NOT NULL DEFAULT '',
  session_json TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS pki_material(
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates(
  serial TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  key_id TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL);
)sql";

// A prepared statement bound for one call; finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status Prepared() const {
    if (rc_ != SQLITE_OK) {
      return absl::InternalError(common::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
    }
    return absl::OkStatus();
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status StepError(sqlite3* db, int rc, std::string_view what) {
  if (rc == SQLITE_CONSTRAINT || sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
    return absl::AlreadyExistsError(common::StrCat(what, " already exists"));
  }
  return absl::InternalError(common::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db)));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

IdentityRecord ReadIdentity(const Stmt& s) {
  IdentityRecord r;
  r.identity = s.Text(0);
  r.enabled = s.Int(1) != 0;
  std::string cidrs = s.Text(2);
  if (!cidrs.empty()) {
    for (std::string_view c : common::Split(cidrs, ',')) {
      r.cidrs.emplace_back(c);
    }
  }
  r.created_at = s.Int(3);
  r.updated_at = s.Int(4);
  return r;
}

KeyRecord ReadKey(const Stmt& s) {
  return KeyRecord{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4), s.Int(5)};
}

class SqliteStore : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close(db_); }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    sqlite3_busy_timeout(db_, 5000);
    RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL"));
    RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
    RETURN_IF_ERROR(Exec(kSchema));
    Stmt s(db_, "SELECT value FROM meta WHERE key='schema_version'");
    RETURN_IF_ERROR(s.Prepared());
    if (s.Step() == SQLITE_ROW) {
      int version = std::stoi(s.Text(0));
      if (version > kSchemaVersion) {
        return absl::FailedPreconditionError(common::StrCat(
            "database schema version ", version, " is newer than this binary supports (",
            kSchemaVersion, "); upgrade drawbridge"));
      }
      return absl::OkStatus();
    }
    return Exec(common::StrCat("INSERT INTO meta(key, value) VALUES('schema_version','",
                               kSchemaVersion, "')"));
  }

  absl::Status CreateIdentity(const IdentityRecord& id, const KeyRecord& key) override {
    absl::MutexLock lock(&mu_);
    return Bump(Transaction([&]() -> absl::Status {
      Stmt s(db_,
             "INSERT INTO identities(identity, enabled, cidrs, created_at, updated_at) "
             "VALUES(?,?,?,?,?)");
      RETURN_IF_ERROR(s.Prepared());
      s.Bind(1, id.identity)
          .Bind(2, int64_t{id.enabled ? 1 : 0})
          .Bind(3, common::Join(id.cidrs, ","))
          .Bind(4, id.created_at)
          .Bind(5, id.updated_at);
      int rc = s.Step();
      if (rc != SQLITE_DONE) {
        return StepError(db_, rc, common::StrCat("identity ", id.identity));
      }
      return InsertKeyLocked(key);
    }));
  }

  absl::StatusOr<IdentityRecord> GetIdentity(const std::string& identity) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT identity, enabled, cidrs, created_at, updated_at FROM identities "
           "WHERE identity=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, identity);
    if (s.Step() != SQLITE_ROW) {
      return absl::NotFoundError(common::StrCat("identity ", identity, " not found"));
    }
    return ReadIdentity(s);
  }

  absl::StatusOr<std::vector<IdentityRecord>> ListIdentities() override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT identity, enabled, cidrs, created_at, updated_at FROM identities "
           "ORDER BY identity");
    RETURN_IF_ERROR(s.Prepared());
    std::vector<IdentityRecord> out;
    while (s.Step() == SQLITE_ROW) {
      out.push_back(ReadIdentity(s));
    }
    return out;
  }

  absl::Status SetIdentityEnabled(const std::string& identity, bool enabled, int64_t now) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "UPDATE identities SET enabled=?, updated_at=? WHERE identity=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, int64_t{enabled ? 1 : 0}).Bind(2, now).Bind(3, identity);
    int rc = s.Step();
    if (rc != SQLITE_DONE) {
      return StepError(db_, rc, "identity update");
    }
    if (sqlite3_changes(db_) == 0) {
      return absl::NotFoundError(common::StrCat("identity ", identity, " not found"));
    }
    return Bump(absl::OkStatus());
  }

  // Read-then-write methods run in BEGIN IMMEDIATE: the audit log writes the same
  // file, and a read snapshot cannot be upgraded to a write once another
  // connection has committed (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
  absl::Status AddKey(const KeyRecord& key) override {
    absl::MutexLock lock(&mu_);
    return Bump(Transaction([&]() -> absl::Status {
      {
        Stmt s(db_, "SELECT 1 FROM identities WHERE identity=?");
        RETURN_IF_ERROR(s.Prepared());
        s.Bind(1, key.identity);
        if (s.Step() != SQLITE_ROW) {
          return absl::NotFoundError(common::StrCat("identity ", key.identity, " not found"));
        }
      }
      return InsertKeyLocked(key);
    }));
  }

  absl::StatusOr<KeyRecord> GetKey(const std::string& key_id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT key_id, identity, algorithm, public_key_pem, created_at, removed_at "
           "FROM keys WHERE key_id=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, key_id);
    if (s.Step() != SQLITE_ROW) {
      return absl::NotFoundError(common::StrCat("key ", key_id, " not found"));
    }
    return ReadKey(s);
  }

  absl::StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& identity) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT key_id, identity, algorithm, public_key_pem, created_at, removed_at "
           "FROM keys WHERE identity=? ORDER BY created_at, key_id");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, identity);
    std::vector<KeyRecord> out;
    while (s.Step() == SQLITE_ROW) {
      out.push_back(ReadKey(s));
    }
    return out;
  }

  absl::Status RemoveKey(const std::string& identity, const std::string& key_id,
                         int64_t now) override {
    absl::MutexLock lock(&mu_);
    return Bump(Transaction([&]() -> absl::Status {
      {
        Stmt q(db_, "SELECT removed_at FROM keys WHERE key_id=? AND identity=?");
        RETURN_IF_ERROR(q.Prepared());
        q.Bind(1, key_id).Bind(2, identity);
        if (q.Step() != SQLITE_ROW) {
          return absl::NotFoundError(
              common::StrCat("key ", key_id, " of ", identity, " not found"));
        }
        if (q.Int(0) != 0) {
          return absl::FailedPreconditionError(
              common::StrCat("key ", key_id, " is already removed"));
        }
      }
      Stmt s(db_, "UPDATE keys SET removed_at=? WHERE key_id=?");
      RETURN_IF_ERROR(s.Prepared());
      s.Bind(1, now).Bind(2, key_id);
      int rc = s.Step();
      return rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "key removal");
    }));
  }

  absl::Status ConsumeTokenId(const std::string& token_id, int64_t expires_at,
                              int64_t now) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() -> absl::Status {
      Stmt purge(db_, "DELETE FROM used_token_ids WHERE expires_at < ?");
      RETURN_IF_ERROR(purge.Prepared());
      purge.Bind(1, now);
      purge.Step();
      Stmt s(db_, "INSERT INTO used_token_ids(token_id, expires_at) VALUES(?,?)");
      RETURN_IF_ERROR(s.Prepared());
      s.Bind(1, token_id).Bind(2, expires_at);
      int rc = s.Step();
      if (rc != SQLITE_DONE) {
        return StepError(db_, rc, "token id");
      }
      return absl::OkStatus();
    });
  }

  absl::Status RecordCertificate(const CertificateRecord& c) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "INSERT INTO certificates(serial, identity, key_id, not_before, not_after) "
           "VALUES(?,?,?,?,?)");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, c.serial)
        .Bind(2, c.identity)
        .Bind(3, c.key_id)
        .Bind(4, c.not_before)
        .Bind(5, c.not_after);
    int rc = s.Step();
    return rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "certificate");
  }

  absl::StatusOr<PolicyRecord> GetPolicy() override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT yaml, updated_at FROM policy WHERE id=1");
    RETURN_IF_ERROR(s.Prepared());
    if (s.Step() != SQLITE_ROW) {
      return absl::NotFoundError("no policy in the store");
    }
    return PolicyRecord{s.Text(0), s.Int(1)};
  }

  absl::Status SetPolicy(const PolicyRecord& policy) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "INSERT INTO policy(id, yaml, updated_at) VALUES(1,?,?) "
           "ON CONFLICT(id) DO UPDATE SET yaml=excluded.yaml, updated_at=excluded.updated_at");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, policy.yaml).Bind(2, policy.updated_at);
    int rc = s.Step();
    return Bump(rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "policy"));
  }

  absl::Status HeartbeatReplica(const ReplicaRecord& self) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "INSERT INTO replicas(id, advertise, started_at, heartbeat_at_ms) VALUES(?,?,?,?) "
           "ON CONFLICT(id) DO UPDATE SET advertise=excluded.advertise, "
           "heartbeat_at_ms=excluded.heartbeat_at_ms");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, self.id).Bind(2, self.advertise).Bind(3, self.started_at).Bind(4, NowMs());
    int rc = s.Step();
    return rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "replica");
  }

  absl::Status RemoveReplica(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "DELETE FROM replicas WHERE id=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, id);
    int rc = s.Step();
    return rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "replica removal");
  }

  absl::StatusOr<std::vector<ReplicaRecord>> ListReplicas(
      std::chrono::milliseconds max_age) override {
    absl::MutexLock lock(&mu_);
    const int64_t now = NowMs();
    Stmt s(db_,
           "SELECT id, advertise, started_at, heartbeat_at_ms FROM replicas "
           "WHERE heartbeat_at_ms >= ? ORDER BY id");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, now - static_cast<int64_t>(max_age.count()));
    std::vector<ReplicaRecord> out;
    while (s.Step() == SQLITE_ROW) {
      out.push_back(ReplicaRecord{s.Text(0), s.Text(1), s.Int(2), now - s.Int(3)});
    }
    return out;
  }

  absl::Status RequestSessionKill(const SessionKillRecord& r) override {
    absl::MutexLock lock(&mu_);
    Stmt purge(db_, "DELETE FROM session_kills WHERE requested_at < ?");
    RETURN_IF_ERROR(purge.Prepared());
    purge.Bind(1, r.requested_at - kSessionKillKeepSeconds);
    if (int rc = purge.Step(); rc != SQLITE_DONE) {
      return StepError(db_, rc, "session kill purge");
    }
    Stmt s(db_,
           "INSERT INTO session_kills(conn_id, reason, requested_at) VALUES(?,?,?) "
           "ON CONFLICT(conn_id) DO UPDATE SET reason=excluded.reason, "
           "requested_at=excluded.requested_at, done_by='', session_json=''");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, r.conn_id).Bind(2, r.reason).Bind(3, r.requested_at);
    int rc = s.Step();
    return rc == SQLITE_DONE ? absl::OkStatus() : StepError(db_, rc, "session kill request");
  }

  absl::StatusOr<std::vector<SessionKillRecord>> PendingSessionKills(int64_t since) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT conn_id, reason, requested_at, done_by, session_json FROM session_kills "
           "WHERE done_by='' AND requested_at >= ? ORDER BY requested_at, conn_id");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, since);
    std::vector<SessionKillRecord> out;
    while (s.Step() == SQLITE_ROW) {
      out.push_back({s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4)});
    }
    return out;
  }

  absl::Status CompleteSessionKill(const std::string& conn_id, const std::string& replica,
                                   const std::string& session_json) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "UPDATE session_kills SET done_by=?, session_json=? WHERE conn_id=? AND done_by=''");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, replica).Bind(2, session_json).Bind(3, conn_id);
    if (int rc = s.Step(); rc != SQLITE_DONE) {
      return StepError(db_, rc, "session kill completion");
    }
    if (sqlite3_changes(db_) == 0) {
      return absl::FailedPreconditionError(
          common::StrCat("session kill ", conn_id, " is done already or was never requested"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SessionKillRecord> GetSessionKill(const std::string& conn_id) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT conn_id, reason, requested_at, done_by, session_json FROM session_kills "
           "WHERE conn_id=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, conn_id);
    if (s.Step() != SQLITE_ROW) {
      return absl::NotFoundError(common::StrCat("no kill request for session ", conn_id));
    }
    return SessionKillRecord{s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4)};
  }

  absl::Status PutPkiMaterial(const std::map<std::string, std::string>& items) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = [&]() -> absl::Status {
      for (const auto& [name, value] : items) {
        Stmt st(db_, "INSERT INTO pki_material(name, value) VALUES(?,?)");
        RETURN_IF_ERROR(st.Prepared());
        st.Bind(1, name).Bind(2, value);
        if (int rc = st.Step(); rc != SQLITE_DONE) {
          return rc == SQLITE_CONSTRAINT ? absl::AlreadyExistsError("the store already holds a CA")
                                         : StepError(db_, rc, "CA material");
        }
      }
      return absl::OkStatus();
    }();
    RETURN_IF_ERROR(Exec(s.ok() ? "COMMIT" : "ROLLBACK"));
    return s;
  }

  absl::StatusOr<std::map<std::string, std::string>> GetPkiMaterial() override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_, "SELECT name, value FROM pki_material");
    RETURN_IF_ERROR(s.Prepared());
    std::map<std::string, std::string> out;
    while (s.Step() == SQLITE_ROW) {
      out[s.Text(0)] = s.Text(1);
    }
    if (out.empty()) {
      return absl::NotFoundError("the store holds no CA");
    }
    return out;
  }

  absl::StatusOr<std::vector<KeyRecord>> ListAllKeys() override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT key_id, identity, algorithm, public_key_pem, created_at, removed_at "
           "FROM keys ORDER BY identity, created_at, key_id");
    RETURN_IF_ERROR(s.Prepared());
    std::vector<KeyRecord> out;
    while (s.Step() == SQLITE_ROW) {
      out.push_back(ReadKey(s));
    }
    return out;
  }

  // Only this server writes its state.db: its own writes are all the changes.
  bool shared() const override { return false; }
  absl::StatusOr<int64_t> StateVersion() override {
    absl::MutexLock lock(&mu_);
    return state_version_;
  }
  bool WaitForChange(std::chrono::milliseconds timeout) override {
    std::this_thread::sleep_for(timeout);
    return false;
  }

  absl::StatusOr<CertificateRecord> GetCertificate(const std::string& serial) override {
    absl::MutexLock lock(&mu_);
    Stmt s(db_,
           "SELECT serial, identity, key_id, not_before, not_after FROM certificates "
           "WHERE serial=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, serial);
    if (s.Step() != SQLITE_ROW) {
      return absl::NotFoundError(common::StrCat("certificate ", serial, " not found"));
    }
    return CertificateRecord{s.Text(0), s.Text(1), s.Text(2), s.Int(3), s.Int(4)};
  }

 private:
  absl::Status Exec(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return absl::InternalError(common::StrCat("sqlite: ", msg));
    }
    return absl::OkStatus();
  }

  absl::Status Transaction(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status s = body();
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    return Exec("COMMIT");
  }

  absl::Status InsertKeyLocked(const KeyRecord& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Stmt s(db_,
           "INSERT INTO keys(key_id, identity, algorithm, public_key_pem, created_at, removed_at) "
           "VALUES(?,?,?,?,?,0)");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, key.key_id)
        .Bind(2, key.identity)
        .Bind(3, key.algorithm)
        .Bind(4, key.public_key_pem)
        .Bind(5, key.created_at);
    int rc = s.Step();
    if (rc != SQLITE_DONE) {
      return StepError(db_, rc, common::StrCat("key ", key.key_id));
    }
    return absl::OkStatus();
  }

  // Counts identity and key changes (StateVersion).
  absl::Status Bump(absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (s.ok()) {
      ++state_version_;
    }
    return s;
  }

  absl::Mutex mu_;
  sqlite3* db_;
  int64_t state_version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  if (path != ":memory:") {
    // Create the file 0600 ourselves: SQLite gives its -wal and -shm files the
    // database's mode, and the state includes identities and token ids.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
    }
  }
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(common::StrCat("cannot open database ", path, ": ", msg));
  }
  auto store = std::make_unique<SqliteStore>(db);
  RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace drawbridge::store

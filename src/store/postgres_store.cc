#include <libpq-fe.h>
#include <poll.h>

#include <cstring>
#include <functional>
#include <initializer_list>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "store/pg_conn.h"
#include "store/postgres_migrations.h"
#include "store/store.h"

namespace drawbridge::store {
namespace {

using Result = PgResult;

IdentityRecord ReadIdentity(const Result& r, int row) {
  IdentityRecord out;
  out.identity = r.Text(row, 0);
  out.enabled = r.Text(row, 1) == "t";
  std::string cidrs = r.Text(row, 2);
  if (!cidrs.empty()) {
    for (std::string_view c : common::Split(cidrs, ',')) {
      out.cidrs.emplace_back(c);
    }
  }
  out.created_at = r.Int(row, 3);
  out.updated_at = r.Int(row, 4);
  return out;
}

KeyRecord ReadKey(const Result& r, int row) {
  return KeyRecord{r.Text(row, 0), r.Text(row, 1), r.Text(row, 2),
                   r.Text(row, 3), r.Int(row, 4),  r.Int(row, 5)};
}

constexpr char kIdentityColumns[] = "identity, enabled, cidrs, created_at, updated_at";
constexpr char kKeyColumns[] =
    "key_id, identity, algorithm, public_key_pem, created_at, removed_at";

// The server's state in PostgreSQL, shared by every replica that opens the
// same database. One connection, used by one caller at a time: the writes here
// are admin changes and enrollments, not per-connection work. A lost
// connection is re-established on the next call; while PostgreSQL is
// unreachable every call fails with Unavailable (never a wrong answer).
class PostgresStore : public Store {
 public:
  explicit PostgresStore(std::string conninfo) : conninfo_(conninfo), pg_(std::move(conninfo)) {}

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(pg_.Connect());
    return MigrateLocked();
  }

  absl::Status CreateIdentity(const IdentityRecord& id, const KeyRecord& key) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      RETURN_IF_ERROR(ExecLocked(common::StrCat("INSERT INTO identities(", kIdentityColumns,
                                                ") VALUES($1,$2,$3,$4,$5)"),
                                 {id.identity, id.enabled ? "t" : "f", common::Join(id.cidrs, ","),
                                  std::to_string(id.created_at), std::to_string(id.updated_at)},
                                 common::StrCat("identity ", id.identity))
                          .status());
      RETURN_IF_ERROR(InsertKeyLocked(key));
      return BumpStateVersionLocked();
    });
  }

  absl::StatusOr<IdentityRecord> GetIdentity(const std::string& identity) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked(common::StrCat("SELECT ", kIdentityColumns,
                                                         " FROM identities WHERE identity=$1"),
                                          {identity}, "identity lookup"));
    if (r.rows() == 0) {
      return absl::NotFoundError(common::StrCat("identity ", identity, " not found"));
    }
    return ReadIdentity(r, 0);
  }

  absl::StatusOr<std::vector<IdentityRecord>> ListIdentities() override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked(common::StrCat("SELECT ", kIdentityColumns,
                                                         " FROM identities ORDER BY identity"),
                                          {}, "identity list"));
    std::vector<IdentityRecord> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(ReadIdentity(r, i));
    }
    return out;
  }

  absl::Status SetIdentityEnabled(const std::string& identity, bool enabled, int64_t now) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      ASSIGN_OR_RETURN(
          Result r,
          ExecLocked("UPDATE identities SET enabled=$1, updated_at=$2 WHERE identity=$3",
                     {enabled ? "t" : "f", std::to_string(now), identity}, "identity update"));
      if (r.changed() == 0) {
        return absl::NotFoundError(common::StrCat("identity ", identity, " not found"));
      }
      return BumpStateVersionLocked();
    });
  }

  absl::Status AddKey(const KeyRecord& key) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      // The foreign key refuses a key of an unknown identity (NotFound).
      RETURN_IF_ERROR(InsertKeyLocked(key));
      return BumpStateVersionLocked();
    });
  }

  absl::StatusOr<KeyRecord> GetKey(const std::string& key_id) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        Result r, ExecLocked(common::StrCat("SELECT ", kKeyColumns, " FROM keys WHERE key_id=$1"),
                             {key_id}, "key lookup"));
    if (r.rows() == 0) {
      return absl::NotFoundError(common::StrCat("key ", key_id, " not found"));
    }
    return ReadKey(r, 0);
  }

  absl::StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& identity) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        Result r,
        ExecLocked(common::StrCat("SELECT ", kKeyColumns,
                                  " FROM keys WHERE identity=$1 ORDER BY created_at, key_id"),
                   {identity}, "key list"));
    std::vector<KeyRecord> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(ReadKey(r, i));
    }
    return out;
  }

  absl::Status RemoveKey(const std::string& identity, const std::string& key_id,
                         int64_t now) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      // FOR UPDATE: two replicas removing the same key agree on who did it.
      ASSIGN_OR_RETURN(Result q,
                       ExecLocked("SELECT removed_at FROM keys WHERE key_id=$1 AND identity=$2 "
                                  "FOR UPDATE",
                                  {key_id, identity}, "key lookup"));
      if (q.rows() == 0) {
        return absl::NotFoundError(common::StrCat("key ", key_id, " of ", identity, " not found"));
      }
      if (q.Int(0, 0) != 0) {
        return absl::FailedPreconditionError(common::StrCat("key ", key_id, " is already removed"));
      }
      RETURN_IF_ERROR(ExecLocked("UPDATE keys SET removed_at=$1 WHERE key_id=$2",
                                 {std::to_string(now), key_id}, "key removal")
                          .status());
      return BumpStateVersionLocked();
    });
  }

  absl::Status ConsumeTokenId(const std::string& token_id, int64_t expires_at,
                              int64_t now) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      RETURN_IF_ERROR(ExecLocked("DELETE FROM used_token_ids WHERE expires_at < $1",
                                 {std::to_string(now)}, "token id purge")
                          .status());
      // The primary key makes a replay on any replica AlreadyExists.
      return ExecLocked("INSERT INTO used_token_ids(token_id, expires_at) VALUES($1,$2)",
                        {token_id, std::to_string(expires_at)}, "token id")
          .status();
    });
  }

  absl::Status RecordCertificate(const CertificateRecord& c) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked(
               "INSERT INTO certificates(serial, identity, key_id, not_before, not_after) "
               "VALUES($1,$2,$3,$4,$5)",
               {c.serial, c.identity, c.key_id, std::to_string(c.not_before),
                std::to_string(c.not_after)},
               "certificate")
        .status();
  }

  absl::StatusOr<PolicyRecord> GetPolicy() override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked("SELECT yaml, updated_at FROM policy WHERE id=1", {},
                                          "policy lookup"));
    if (r.rows() == 0) {
      return absl::NotFoundError("no policy in the store");
    }
    return PolicyRecord{r.Text(0, 0), r.Int(0, 1)};
  }

  absl::Status SetPolicy(const PolicyRecord& policy) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      RETURN_IF_ERROR(ExecLocked("INSERT INTO policy(id, yaml, updated_at) VALUES(1,$1,$2) "
                                 "ON CONFLICT(id) DO UPDATE SET yaml=EXCLUDED.yaml, "
                                 "updated_at=EXCLUDED.updated_at",
                                 {policy.yaml, std::to_string(policy.updated_at)}, "policy")
                          .status());
      return BumpStateVersionLocked();
    });
  }

  absl::Status HeartbeatReplica(const ReplicaRecord& self) override {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(ExecLocked("INSERT INTO replicas(id, advertise, started_at, heartbeat_at) "
                               "VALUES($1,$2,$3,clock_timestamp()) ON CONFLICT(id) DO UPDATE "
                               "SET advertise=EXCLUDED.advertise, heartbeat_at=clock_timestamp()",
                               {self.id, self.advertise, std::to_string(self.started_at)},
                               "replica heartbeat")
                        .status());
    // Rows of replicas that vanished without leaving (kill -9) are only
    // history after an hour.
    return ExecLocked(
               "DELETE FROM replicas WHERE heartbeat_at < clock_timestamp() - "
               "interval '1 hour'",
               {}, "replica purge")
        .status();
  }

  absl::Status RemoveReplica(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    return ExecLocked("DELETE FROM replicas WHERE id=$1", {id}, "replica removal").status();
  }

  absl::StatusOr<std::vector<ReplicaRecord>> ListReplicas(
      std::chrono::milliseconds max_age) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        Result r,
        ExecLocked("SELECT id, advertise, started_at, "
                   "(EXTRACT(EPOCH FROM clock_timestamp() - heartbeat_at) * 1000)::BIGINT "
                   "FROM replicas WHERE heartbeat_at >= clock_timestamp() - "
                   "make_interval(secs => $1::DOUBLE PRECISION / 1000) ORDER BY id",
                   {std::to_string(max_age.count())}, "replica list"));
    std::vector<ReplicaRecord> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(ReplicaRecord{r.Text(i, 0), r.Text(i, 1), r.Int(i, 2), r.Int(i, 3)});
    }
    return out;
  }

  absl::Status RequestSessionKill(const SessionKillRecord& r) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      // Requests are history after an hour (a pending one matters for seconds).
      RETURN_IF_ERROR(ExecLocked("DELETE FROM session_kills WHERE requested_at < $1",
                                 {std::to_string(r.requested_at - 3600)}, "session kill purge")
                          .status());
      RETURN_IF_ERROR(ExecLocked("INSERT INTO session_kills(conn_id, reason, requested_at) "
                                 "VALUES($1,$2,$3) ON CONFLICT(conn_id) DO UPDATE SET "
                                 "reason=EXCLUDED.reason, requested_at=EXCLUDED.requested_at, "
                                 "done_by='', session_json=''",
                                 {r.conn_id, r.reason, std::to_string(r.requested_at)},
                                 "session kill request")
                          .status());
      return BumpStateVersionLocked();
    });
  }

  absl::StatusOr<std::vector<SessionKillRecord>> PendingSessionKills(int64_t since) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked("SELECT conn_id, reason, requested_at, done_by, "
                                          "session_json FROM session_kills WHERE done_by='' "
                                          "AND requested_at >= $1 ORDER BY requested_at, conn_id",
                                          {std::to_string(since)}, "session kill list"));
    std::vector<SessionKillRecord> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back({r.Text(i, 0), r.Text(i, 1), r.Int(i, 2), r.Text(i, 3), r.Text(i, 4)});
    }
    return out;
  }

  absl::Status CompleteSessionKill(const std::string& conn_id, const std::string& replica,
                                   const std::string& session_json) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r,
                     ExecLocked("UPDATE session_kills SET done_by=$1, session_json=$2 "
                                "WHERE conn_id=$3 AND done_by='' RETURNING conn_id",
                                {replica, session_json, conn_id}, "session kill completion"));
    if (r.rows() == 0) {
      return absl::FailedPreconditionError(
          common::StrCat("session kill ", conn_id, " is done already or was never requested"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SessionKillRecord> GetSessionKill(const std::string& conn_id) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked("SELECT conn_id, reason, requested_at, done_by, "
                                          "session_json FROM session_kills WHERE conn_id=$1",
                                          {conn_id}, "session kill lookup"));
    if (r.rows() == 0) {
      return absl::NotFoundError(common::StrCat("no kill request for session ", conn_id));
    }
    return SessionKillRecord{r.Text(0, 0), r.Text(0, 1), r.Int(0, 2), r.Text(0, 3), r.Text(0, 4)};
  }

  absl::Status PutPkiMaterial(const std::map<std::string, std::string>& items) override {
    absl::MutexLock lock(&mu_);
    return TransactionLocked([&]() -> absl::Status {
      for (const auto& [name, value] : items) {
        absl::Status s = ExecLocked("INSERT INTO pki_material(name, value) VALUES($1,$2)",
                                    {name, value}, "CA material")
                             .status();
        if (absl::IsAlreadyExists(s)) {
          return absl::AlreadyExistsError("the store already holds a CA");
        }
        RETURN_IF_ERROR(s);
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::map<std::string, std::string>> GetPkiMaterial() override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r,
                     ExecLocked("SELECT name, value FROM pki_material", {}, "CA material"));
    std::map<std::string, std::string> out;
    for (int i = 0; i < r.rows(); ++i) {
      out[r.Text(i, 0)] = r.Text(i, 1);
    }
    if (out.empty()) {
      return absl::NotFoundError("the store holds no CA");
    }
    return out;
  }

  absl::StatusOr<std::vector<KeyRecord>> ListAllKeys() override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r,
                     ExecLocked(common::StrCat("SELECT ", kKeyColumns,
                                               " FROM keys ORDER BY identity, created_at, "
                                               "key_id"),
                                {}, "key list"));
    std::vector<KeyRecord> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(ReadKey(r, i));
    }
    return out;
  }

  bool shared() const override { return true; }

  absl::StatusOr<int64_t> StateVersion() override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        Result r, ExecLocked("SELECT version FROM state_version WHERE id=1", {}, "state version"));
    if (r.rows() != 1) {
      return absl::InternalError("PostgreSQL state_version has no row");
    }
    return r.Int(0, 0);
  }

  bool WaitForChange(std::chrono::milliseconds timeout) override {
    // Its own connection, LISTENing: the main one is busy with statements.
    bool reconnected = false;
    if (!listen_conn_ || PQstatus(listen_conn_.get()) != CONNECTION_OK) {
      listen_conn_.reset(ConnectPostgres(conninfo_));
      PgResultPtr r(listen_conn_ && PQstatus(listen_conn_.get()) == CONNECTION_OK
                        ? PQexec(listen_conn_.get(), common::StrCat("LISTEN ", kChannel).c_str())
                        : nullptr);
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
        listen_conn_.reset();
        std::this_thread::sleep_for(timeout);
        return true;  // cannot listen: the caller polls the version instead
      }
      reconnected = true;  // notifications sent meanwhile are lost
    }
    if (!HasNotification() && !reconnected) {
      pollfd p{PQsocket(listen_conn_.get()), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (PQconsumeInput(listen_conn_.get()) == 0) {
        listen_conn_.reset();
        return true;
      }
    }
    bool any = reconnected;
    while (HasNotification()) {
      any = true;
    }
    return any;
  }

  absl::StatusOr<CertificateRecord> GetCertificate(const std::string& serial) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Result r, ExecLocked("SELECT serial, identity, key_id, not_before, not_after "
                                          "FROM certificates WHERE serial=$1",
                                          {serial}, "certificate lookup"));
    if (r.rows() == 0) {
      return absl::NotFoundError(common::StrCat("certificate ", serial, " not found"));
    }
    return CertificateRecord{r.Text(0, 0), r.Text(0, 1), r.Text(0, 2), r.Int(0, 3), r.Int(0, 4)};
  }

 private:
  absl::StatusOr<Result> ExecLocked(const std::string& sql, const std::vector<std::string>& params,
                                    std::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pg_.Exec(sql, params, what);
  }

  absl::Status TransactionLocked(const std::function<absl::Status()>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pg_.Transaction(body);
  }

  absl::Status InsertKeyLocked(const KeyRecord& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<Result> r =
        ExecLocked(common::StrCat("INSERT INTO keys(", kKeyColumns, ") VALUES($1,$2,$3,$4,$5,0)"),
                   {key.key_id, key.identity, key.algorithm, key.public_key_pem,
                    std::to_string(key.created_at)},
                   common::StrCat("key ", key.key_id));
    if (absl::IsNotFound(r.status())) {
      return absl::NotFoundError(common::StrCat("identity ", key.identity, " not found"));
    }
    return r.status();
  }

  // Applies the migrations this binary knows and the database lacks, each in
  // its own transaction, under an advisory lock so that replicas starting
  // together do not race. A database newer than this binary is refused.
  absl::Status MigrateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return TransactionLocked([&]() -> absl::Status {
      RETURN_IF_ERROR(ExecLocked("SELECT pg_advisory_xact_lock($1)",
                                 {std::to_string(kMigrationLockId)}, "migration lock")
                          .status());
      RETURN_IF_ERROR(ExecLocked("CREATE TABLE IF NOT EXISTS schema_migrations("
                                 "version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
                                 {}, "schema_migrations")
                          .status());
      ASSIGN_OR_RETURN(Result v,
                       ExecLocked("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {},
                                  "schema version"));
      const int64_t have = v.Int(0, 0);
      const auto& migrations = PostgresMigrations();
      if (have > static_cast<int64_t>(migrations.size())) {
        return absl::FailedPreconditionError(common::StrCat(
            "database schema version ", have, " is newer than this binary supports (",
            migrations.size(), "); upgrade drawbridge"));
      }
      for (size_t i = static_cast<size_t>(have); i < migrations.size(); ++i) {
        RETURN_IF_ERROR(ExecLocked(migrations[i], {}, "migration").status());
        RETURN_IF_ERROR(ExecLocked("INSERT INTO schema_migrations(version, applied_at) "
                                   "VALUES($1, EXTRACT(EPOCH FROM now())::BIGINT)",
                                   {std::to_string(i + 1)}, "migration record")
                            .status());
      }
      return absl::OkStatus();
    });
  }

  // Inside a transaction: the version other replicas poll, and a NOTIFY that
  // reaches them when the transaction commits (never if it rolls back).
  absl::Status BumpStateVersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RETURN_IF_ERROR(
        ExecLocked("UPDATE state_version SET version = version + 1 WHERE id=1", {}, "state version")
            .status());
    return ExecLocked(common::StrCat("NOTIFY ", kChannel), {}, "notify").status();
  }

  // Takes one pending notification off the listening connection, if any.
  bool HasNotification() {
    PGnotify* n = PQnotifies(listen_conn_.get());
    if (n == nullptr) {
      return false;
    }
    PQfreemem(n);
    return true;
  }

  static constexpr char kChannel[] = "drawbridge_state";

  const std::string conninfo_;
  PgConnPtr listen_conn_;  // only WaitForChange's caller uses it
  absl::Mutex mu_;
  PgSession pg_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

bool IsPostgresLocation(std::string_view location) {
  return common::StartsWith(location, "postgres://") ||
         common::StartsWith(location, "postgresql://");
}

std::string RedactConninfo(std::string_view conninfo) {
  // postgres://user:secret@host/db -> postgres://user:***@host/db, and any
  // password=... parameter in the query string.
  std::string out(conninfo);
  size_t scheme = out.find("://");
  size_t at = out.find('@');
  if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
    size_t colon = out.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    size_t end = out.find_first_of("&; ", p);
    out.replace(p + 9, (end == std::string::npos ? out.size() : end) - p - 9, "***");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo) {
  auto store = std::make_unique<PostgresStore>(conninfo);
  RETURN_IF_ERROR(store->Init());
  return std::unique_ptr<Store>(std::move(store));
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& location) {
  if (IsPostgresLocation(location)) {
    return OpenPostgresStore(location);
  }
  return OpenSqliteStore(location);
}

}  // namespace drawbridge::store

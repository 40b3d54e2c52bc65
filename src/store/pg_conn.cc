#include "store/pg_conn.h"

#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "store/store.h"

namespace drawbridge::store {
namespace {

// SQLSTATE codes we map to our own errors.
constexpr char kUniqueViolation[] = "23505";
constexpr char kForeignKeyViolation[] = "23503";

// Server NOTICEs ("relation already exists, skipping") are not errors: libpq
// would print them on stderr.
void IgnoreNotice(void*, const char*) {}

}  // namespace

PGconn* ConnectPostgres(const std::string& conninfo) {
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {"5", conninfo.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn != nullptr) {
    PQsetNoticeProcessor(conn, IgnoreNotice, nullptr);
  }
  return conn;
}

absl::Status PgSession::Connect() {
  conn_.reset(ConnectPostgres(conninfo_));
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    std::string detail = conn_ ? PQerrorMessage(conn_.get()) : "out of memory";
    conn_.reset();
    return absl::UnavailableError(
        common::StrCat("PostgreSQL ", RedactConninfo(conninfo_),
                       " unreachable: ", std::string(common::StripWhitespace(detail))));
  }
  PgResultPtr r(PQexec(conn_.get(), "SET synchronous_commit = on"));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    absl::Status s = absl::UnavailableError(common::StrCat(
        "PostgreSQL: ", std::string(common::StripWhitespace(PQerrorMessage(conn_.get())))));
    conn_.reset();
    return s;
  }
  if (on_connect_) {
    if (absl::Status s = on_connect_(); !s.ok()) {
      conn_.reset();
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PgResult> PgSession::Exec(const std::string& sql,
                                         const std::vector<std::string>& params,
                                         std::string_view what) {
  if (!in_transaction_ && (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK)) {
    RETURN_IF_ERROR(Connect());
  }
  if (!conn_) {
    return absl::UnavailableError("PostgreSQL connection lost");
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) {
    values.push_back(p.c_str());
  }
  PgResultPtr r(values.empty()
                    ? PQexec(conn_.get(), sql.c_str())
                    : PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                   nullptr, values.data(), nullptr, nullptr, 0));
  ExecStatusType status = PQresultStatus(r.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    return PgResult(std::move(r));
  }
  const char* state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
  std::string message(common::StripWhitespace(r ? PQresultErrorMessage(r.get()) : ""));
  if (state != nullptr && std::strcmp(state, kUniqueViolation) == 0) {
    return absl::AlreadyExistsError(common::StrCat(what, " already exists"));
  }
  if (state != nullptr && std::strcmp(state, kForeignKeyViolation) == 0) {
    return absl::NotFoundError(common::StrCat(what, ": ", message));
  }
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    return absl::UnavailableError(
        common::StrCat("PostgreSQL connection lost during ", what, ": ", message));
  }
  return absl::InternalError(common::StrCat("PostgreSQL ", what, ": ", message));
}

absl::Status PgSession::Transaction(const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(Exec("BEGIN", {}, "begin").status());
  in_transaction_ = true;
  absl::Status s = body();
  if (s.ok()) {
    s = Exec("COMMIT", {}, "commit").status();
  } else if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
    Exec("ROLLBACK", {}, "rollback").IgnoreError();
  }
  in_transaction_ = false;
  return s;
}

}  // namespace drawbridge::store

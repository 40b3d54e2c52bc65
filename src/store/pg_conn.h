#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// libpq glue shared by the PostgreSQL store and the audit chains kept in the
// same database: one connection, statements with text parameters, errors mapped
// to statuses, transactions. Not thread-safe: each owner serialises its calls.
namespace drawbridge::store {

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnDeleter>;

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

// Opens a connection, NOTICEs silenced; nullptr only when out of memory. A
// server that does not answer is given up after 5 s (libpq waits for the OS's
// TCP timeout otherwise, minutes), unless `conninfo` sets connect_timeout: a
// setting in the expanded dbname overrides the keywords before it.
PGconn* ConnectPostgres(const std::string& conninfo);

// One statement's outcome: rows for a query, or the error mapped to a status.
class PgResult {
 public:
  explicit PgResult(PgResultPtr r) : r_(std::move(r)) {}
  int rows() const { return PQntuples(r_.get()); }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  int64_t Int(int row, int col) const { return std::stoll(Text(row, col)); }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  // Rows changed by an INSERT/UPDATE/DELETE.
  int64_t changed() const {
    const char* n = PQcmdTuples(r_.get());
    return n != nullptr && *n != '\0' ? std::stoll(n) : 0;
  }

 private:
  PgResultPtr r_;
};

class PgSession {
 public:
  // `on_connect` (optional) runs on every new connection, after it is set up
  // and before the statement that needed it; an error drops the connection.
  explicit PgSession(std::string conninfo, std::function<absl::Status()> on_connect = nullptr)
      : conninfo_(std::move(conninfo)), on_connect_(std::move(on_connect)) {}

  // (Re)connects, with synchronous_commit on: every statement is durable before
  // it is acknowledged, whatever the database's default says.
  absl::Status Connect();

  // Runs one statement. A broken connection is reopened once before the
  // statement (never in the middle of a transaction: a transaction's statements
  // fail instead, and the caller's retry starts over). Without parameters the
  // simple protocol, which also runs a script of several statements.
  // Unique violations are AlreadyExists, foreign-key violations NotFound, a lost
  // connection Unavailable, anything else Internal; `what` names the statement.
  absl::StatusOr<PgResult> Exec(const std::string& sql, const std::vector<std::string>& params,
                                std::string_view what);

  // Runs `body` in BEGIN ... COMMIT; rolls back on any error.
  absl::Status Transaction(const std::function<absl::Status()>& body);

  const std::string& conninfo() const { return conninfo_; }

 private:
  const std::string conninfo_;
  std::function<absl::Status()> on_connect_;
  PgConnPtr conn_;
  bool in_transaction_ = false;
};

}  // namespace drawbridge::store

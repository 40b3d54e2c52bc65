#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// RETURN_IF_ERROR(expr): returns the status from the enclosing function when not OK.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    const ::absl::Status _db_status = (expr); \
    if (!_db_status.ok()) {                   \
      return _db_status;                      \
    }                                         \
  } while (0)

#define DB_STATUS_CONCAT_INNER(a, b) a##b
#define DB_STATUS_CONCAT(a, b) DB_STATUS_CONCAT_INNER(a, b)

// ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr, returns its status on error,
// otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  DB_ASSIGN_OR_RETURN_IMPL(DB_STATUS_CONCAT(_db_statusor_, __LINE__), lhs, expr)

#define DB_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                             \
  if (!statusor.ok()) {                               \
    return statusor.status();                         \
  }                                                   \
  lhs = std::move(statusor).value()

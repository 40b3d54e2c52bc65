#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// RETURN_IF_ERROR(expr): returns the status from the enclosing function when not OK.
// `auto&&` binds an lvalue without a copy and a temporary as an rvalue reference,
// which the return then moves from (C++20 implicit move). The name carries the
// line so that a RETURN_IF_ERROR inside a lambda in `expr` shadows nothing.
#define RETURN_IF_ERROR(expr) DB_RETURN_IF_ERROR_IMPL(DB_STATUS_CONCAT(_db_status_, __LINE__), expr)

#define DB_STATUS_CONCAT_INNER(a, b) a##b
#define DB_STATUS_CONCAT(a, b) DB_STATUS_CONCAT_INNER(a, b)

// ASSIGN_OR_RETURN(lhs, expr): evaluates a StatusOr, returns its status on error,
// otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  DB_ASSIGN_OR_RETURN_IMPL(DB_STATUS_CONCAT(_db_statusor_, __LINE__), lhs, expr)

// `lhs` may be a declaration ("auto x"), so it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define DB_RETURN_IF_ERROR_IMPL(status, expr) \
  do {                                        \
    auto&& status = (expr);                   \
    if (!status.ok()) {                       \
      return status;                          \
    }                                         \
  } while (0)

#define DB_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                             \
  if (!statusor.ok()) {                               \
    return statusor.status();                         \
  }                                                   \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

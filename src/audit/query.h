#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/record.h"

namespace drawbridge::audit {

// Every set field must match (AND). Empty strings and unset times match anything.
struct QueryFilter {
  uint64_t after_seq = 0;          // seq > after_seq
  std::optional<int64_t> from_ms;  // time_unix_ms >= from_ms
  std::optional<int64_t> to_ms;    // time_unix_ms <  to_ms
  // Exact match on actor, details.client, details.agent, details.agent_instance or
  // details.identity.
  std::string identity;
  // details.destination ("host:port"): exact, or a prefix when it ends in '*'
  // ("gitlab.corp:*").
  std::string destination;
  std::string outcome;  // "success" | "failure"
  // Class name, case-insensitive, spaces or underscores ("Network Activity",
  // "network_activity"), or its uid ("4001").
  std::string class_name;
  size_t limit = 0;  // the first `limit` matches in seq order; 0: all
};

// Reads matching records in seq order from the log at `db_path`, read-only. Does not
// verify the chain (run VerifyAuditLog for that); a record that cannot be read
// (wrong column types, non-canonical details) is a DataLoss error naming its seq.
absl::StatusOr<std::vector<Record>> QueryAuditLog(const std::string& db_path,
                                                  const QueryFilter& filter);

// A time for --from/--to, as UTC milliseconds: "2026-12-01" (midnight UTC),
// "2026-12-01T10:00:00Z", "2026-12-01T10:00:00.250Z", or a duration before
// `now_ms`: "90s", "30m", "24h", "7d". InvalidArgument otherwise.
absl::StatusOr<int64_t> ParseTimeArg(const std::string& text, int64_t now_ms);

// The newest seq in the log at `db_path` (0 when it is empty), read-only.
absl::StatusOr<uint64_t> LastAuditSeq(const std::string& db_path);

// Whether `r` passes the filter's identity, destination, outcome, class and time.
bool Matches(const Record& r, const QueryFilter& filter);

// An aligned text table, one line per record: TIME (UTC) SEQ CLASS ACTIVITY OUTCOME
// ACTOR SOURCE DESTINATION UP DOWN DURATION. Control characters a peer may have put
// in a field are shown as '?', so the table cannot rewrite the operator's terminal.
// For JSON lines output use ToJsonLine per record.
std::string FormatTable(const std::vector<Record>& records);

// The same columns at fixed widths, one record at a time, for output that arrives
// as a stream (`admin audit tail --follow`): the header line and one line per record.
std::string FormatStreamHeader();
std::string FormatStreamLine(const Record& r);

}  // namespace drawbridge::audit

#include "audit/internal/chain.h"

#include "common/strings.h"

namespace drawbridge::audit::internal {

absl::StatusOr<Record> ParseRawRecord(const RawRecord& raw) {
  if (!raw.types_ok) {
    return absl::DataLossError("a column holds a value of another type than declared");
  }
  if (raw.seq <= 0) {
    return absl::DataLossError("seq is not positive");
  }
  if (raw.class_uid < 0 || raw.class_uid > 1000000) {
    return absl::DataLossError("class_uid out of range");
  }
  Record r;
  r.seq = static_cast<uint64_t>(raw.seq);
  r.time_unix_ms = raw.time_ms;
  r.class_uid = static_cast<int>(raw.class_uid);
  r.class_name = raw.class_name;
  r.activity = raw.activity;
  r.outcome = raw.outcome;
  r.actor = raw.actor;
  r.source_address = raw.source_address;
  r.prev_hash = raw.prev_hash;
  r.hash = raw.hash;
  auto parsed = ParseDetails(raw.details);
  if (!parsed.ok()) {
    return absl::DataLossError(common::StrCat("details: ", parsed.status().message()));
  }
  r.details = *std::move(parsed);
  if (r.details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) != raw.details) {
    return absl::DataLossError("details are not stored in canonical form");
  }
  return r;
}

absl::StatusOr<std::vector<Record>> ChainReader::ReadAfter(uint64_t after_seq, size_t limit) {
  std::vector<Record> out;
  absl::Status parse_error;
  Range range;
  range.after_seq = after_seq;
  absl::Status read = ForEachRecord(range, [&](const RawRecord& raw) {
    auto r = ParseRawRecord(raw);
    if (!r.ok()) {
      parse_error = absl::DataLossError(common::StrCat("audit record ", raw.seq, " is unreadable (",
                                                       r.status().message(),
                                                       "); run `drawbridge audit verify`"));
      return false;
    }
    out.push_back(*std::move(r));
    return out.size() < limit;
  });
  if (!read.ok()) {
    return read;
  }
  if (!parse_error.ok()) {
    return parse_error;
  }
  return out;
}

}  // namespace drawbridge::audit::internal

#include "audit/query.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <limits>

#include "audit/internal/chain.h"
#include "audit/internal/query_chains.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::audit {
namespace {

using nlohmann::json;

std::string DetailString(const Record& r, const char* key) {
  auto it = r.details.find(key);
  if (it == r.details.end() || !it->is_string()) {
    return "";
  }
  return it->get<std::string>();
}

std::string NormalizeClass(std::string_view name) {
  std::string out = common::ToLower(common::StripWhitespace(name));
  std::replace(out.begin(), out.end(), '_', ' ');
  return out;
}

bool ClassMatches(const Record& r, const std::string& wanted) {
  if (wanted.empty()) {
    return true;
  }
  return common::StrCat(r.class_uid) == wanted ||
         NormalizeClass(r.class_name) == NormalizeClass(wanted);
}

bool DestinationMatches(const Record& r, const std::string& wanted) {
  if (wanted.empty()) {
    return true;
  }
  std::string dest = DetailString(r, "destination");
  if (wanted.back() == '*') {
    return common::StartsWith(dest, std::string_view(wanted).substr(0, wanted.size() - 1));
  }
  return dest == wanted;
}

bool IdentityMatches(const Record& r, const std::string& wanted) {
  if (wanted.empty() || r.actor == wanted) {
    return true;
  }
  for (const char* key : {"client", "agent", "agent_instance", "identity"}) {
    if (DetailString(r, key) == wanted) {
      return true;
    }
  }
  return false;
}

// Printable, bounded cell text.
std::string Cell(std::string_view s) {
  constexpr size_t kMaxCell = 60;
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  if (out.size() > kMaxCell) {
    size_t cut = kMaxCell - 3;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    out = common::StrCat(out.substr(0, cut), "...");
  }
  return out.empty() ? "-" : out;
}

std::string NumberCell(const Record& r, const char* key) {
  auto it = r.details.find(key);
  if (it == r.details.end() || !it->is_number()) {
    return "-";
  }
  return it->dump();
}

std::string DurationCell(const Record& r) {
  auto it = r.details.find("duration_ms");
  if (it == r.details.end() || !it->is_number_integer()) {
    return "-";
  }
  int64_t ms = it->get<int64_t>();
  if (ms < 1000) {
    return common::StrCat(ms, "ms");
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

}  // namespace

bool Matches(const Record& r, const QueryFilter& f) {
  return (!f.from_ms || r.time_unix_ms >= *f.from_ms) && (!f.to_ms || r.time_unix_ms < *f.to_ms) &&
         (f.outcome.empty() || r.outcome == f.outcome) && ClassMatches(r, f.class_name) &&
         IdentityMatches(r, f.identity) && DestinationMatches(r, f.destination);
}

absl::StatusOr<std::vector<Record>> QueryChains(const std::vector<internal::ChainReader*>& chains,
                                                const QueryFilter& filter) {
  // The time range narrows in the storage (indexed); everything else is matched
  // on the parsed record, the same bytes the hash covers.
  internal::ChainReader::Range range;
  range.from_ms = filter.from_ms.value_or(std::numeric_limits<int64_t>::min());
  range.to_ms = filter.to_ms.value_or(std::numeric_limits<int64_t>::max());
  range.after_seq = filter.after_seq;
  std::vector<Record> out;
  for (internal::ChainReader* chain : chains) {
    absl::Status unreadable;
    size_t from_this_chain = 0;
    RETURN_IF_ERROR(chain->ForEachRecord(range, [&](const internal::RawRecord& raw) {
      auto rec = internal::ParseRawRecord(raw);
      if (!rec.ok()) {
        unreadable = absl::DataLossError(common::StrCat("audit record ", raw.seq,
                                                        " is unreadable (", rec.status().message(),
                                                        "); run `drawbridge audit verify`"));
        return false;
      }
      if (!Matches(*rec, filter)) {
        return true;
      }
      out.push_back(*std::move(rec));
      ++from_this_chain;
      // Each chain gives at most `limit`: the merged first `limit` are among them.
      return filter.limit == 0 || from_this_chain < filter.limit;
    }));
    RETURN_IF_ERROR(unreadable);
  }
  if (chains.size() > 1) {
    // Several replicas' chains: one timeline (time, then replica, then seq).
    std::stable_sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
      if (a.time_unix_ms != b.time_unix_ms) {
        return a.time_unix_ms < b.time_unix_ms;
      }
      std::string ra = a.details.value("replica", ""), rb = b.details.value("replica", "");
      return ra != rb ? ra < rb : a.seq < b.seq;
    });
  }
  if (filter.limit != 0 && out.size() > filter.limit) {
    out.resize(filter.limit);
  }
  return out;
}

absl::StatusOr<std::vector<Record>> QueryAuditLog(const std::string& db_path,
                                                  const QueryFilter& filter) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::ChainReader> chain,
                   internal::OpenSqliteChainReader(db_path, /*snapshot=*/false));
  return QueryChains({chain.get()}, filter);
}

absl::StatusOr<uint64_t> LastAuditSeq(const std::string& db_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::ChainReader> chain,
                   internal::OpenSqliteChainReader(db_path, /*snapshot=*/false));
  return chain->LastSeq();
}

namespace {

constexpr size_t kColumns = 12;
using Row = std::array<std::string, kColumns>;

Row HeaderRow() {
  return {"TIME (UTC)", "SEQ",         "CLASS", "ACTIVITY", "OUTCOME", "ACTOR",
          "SOURCE",     "DESTINATION", "AGENT", "UP",       "DOWN",    "DURATION"};
}

Row RecordRow(const Record& r) {
  // The agent column names the instance too: "agent/acme (i-1)".
  std::string agent = DetailString(r, "agent");
  std::string instance = DetailString(r, "agent_instance");
  if (!agent.empty() && !instance.empty()) {
    agent = common::StrCat(agent, " (", instance, ")");
  }
  // A replica's record (shared store) shows whose chain it is in: "a1b2c3d4:17".
  std::string replica = DetailString(r, "replica");
  return {FormatTimeUtc(r.time_unix_ms),
          replica.empty() ? common::StrCat(r.seq) : common::StrCat(Cell(replica), ":", r.seq),
          Cell(r.class_name),
          Cell(r.activity),
          Cell(r.outcome),
          Cell(r.actor),
          Cell(r.source_address),
          Cell(DetailString(r, "destination")),
          Cell(agent),
          NumberCell(r, "bytes_up"),
          NumberCell(r, "bytes_down"),
          DurationCell(r)};
}

std::string JoinRow(const Row& row, const std::array<size_t, kColumns>& width) {
  std::string line;
  for (size_t i = 0; i < kColumns; ++i) {
    line += row[i];
    if (i + 1 < kColumns) {
      line.append(width[i] > row[i].size() ? width[i] - row[i].size() + 2 : 2, ' ');
    }
  }
  line += '\n';
  return line;
}

// Widths for streamed lines: what typical records need (longer cells push the
// rest of their line right).
constexpr std::array<size_t, kColumns> kStreamWidths = {24, 6,  17, 17, 7,  24,
                                                        15, 28, 30, 10, 10, 8};

}  // namespace

std::string FormatTable(const std::vector<Record>& records) {
  std::vector<Row> rows;
  rows.push_back(HeaderRow());
  for (const Record& r : records) {
    rows.push_back(RecordRow(r));
  }
  std::array<size_t, kColumns> width{};
  for (const Row& row : rows) {
    for (size_t i = 0; i < kColumns; ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string out;
  for (const Row& row : rows) {
    out += JoinRow(row, width);
  }
  return out;
}

std::string FormatStreamHeader() { return JoinRow(HeaderRow(), kStreamWidths); }
std::string FormatStreamLine(const Record& r) { return JoinRow(RecordRow(r), kStreamWidths); }

absl::StatusOr<int64_t> ParseTimeArg(const std::string& text, int64_t now_ms) {
  auto bad = [&] {
    return absl::InvalidArgumentError(common::StrCat(
        "time \"", text.substr(0, 64),
        "\" must be YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ (UTC) or a duration ago like 24h, 30m, 7d"));
  };
  if (text.size() >= 2 && text.size() <= 12 && std::isdigit(static_cast<unsigned char>(text[0]))) {
    char unit = text.back();
    int64_t scale = unit == 's'   ? 1000
                    : unit == 'm' ? 60000
                    : unit == 'h' ? 3600000
                    : unit == 'd' ? 86400000
                                  : 0;
    std::string_view digits = std::string_view(text).substr(0, text.size() - 1);
    int64_t n = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (scale != 0 && ec == std::errc() && ptr == digits.data() + digits.size()) {
      if (n > 3650LL * 86400000 / scale) {
        return bad();
      }
      return now_ms - n * scale;
    }
  }
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
  int used = 0;
  if (text.size() == 10) {
    if (std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &year, &month, &day, &used) != 3 || used != 10) {
      return bad();
    }
  } else if (text.size() == 20 || text.size() == 24) {
    int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour,
                        &minute, &second, &used);
    if (n != 6 || used != 19) {
      return bad();
    }
    if (text.size() == 24) {
      if (text[19] != '.' || std::sscanf(text.c_str() + 20, "%3d", &millis) != 1 ||
          !std::isdigit(static_cast<unsigned char>(text[22]))) {
        return bad();
      }
    }
    if (text.back() != 'Z') {
      return bad();
    }
  } else {
    return bad();
  }
  if (year < 1970 || year > 9999 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 60 || millis < 0) {
    return bad();
  }
  struct tm tm = {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t t = timegm(&tm);
  if (tm.tm_mday != day) {
    return bad();  // 2026-02-31
  }
  return static_cast<int64_t>(t) * 1000 + millis;
}

}  // namespace drawbridge::audit

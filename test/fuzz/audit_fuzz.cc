// audit::FromJson over arbitrary bytes: one line of an exported audit log, as
// `audit verify`/`audit query` tooling and SIEM re-imports read it. A parsed record
// must serialise canonically and survive the round trip unchanged.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "audit/record.h"
#include "fuzz/fuzz_util.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  using nlohmann::json;
  std::string_view input = fuzz::AsView(data, size);
  absl::StatusOr<audit::Record> record = audit::FromJson(input);
  if (!record.ok()) {
    // The header promises that every parse failure is InvalidArgument.
    DB_FUZZ_CHECK(record.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }

  // ToJsonLine -> FromJson is the identity, and ToJsonLine is a fixed point.
  const std::string line = audit::ToJsonLine(*record);
  absl::StatusOr<audit::Record> back = audit::FromJson(line);
  DB_FUZZ_CHECK(back.ok());
  DB_FUZZ_CHECK(*back == *record);
  DB_FUZZ_CHECK(audit::ToJsonLine(*back) == line);
  DB_FUZZ_CHECK(audit::CanonicalJson(*back) == audit::CanonicalJson(*record));

  // The hand-written canonical form is exactly nlohmann's sorted, compact dump, so
  // any JSON tool can recompute the hash.
  json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
  DB_FUZZ_CHECK(!parsed.is_discarded());
  DB_FUZZ_CHECK(parsed.dump() == line);
  json without_hash = parsed;
  without_hash.erase("hash");
  DB_FUZZ_CHECK(without_hash.dump() == audit::CanonicalJson(*record));

  // The hash covers everything but itself.
  audit::Record other = *record;
  other.hash = std::string(audit::kGenesisHash);
  DB_FUZZ_CHECK(audit::ComputeHash(other) == audit::ComputeHash(*record));
  const std::string details_json = record->details.dump();
  DB_FUZZ_CHECK(audit::ComputeHash(*record, details_json) == audit::ComputeHash(*record));

  // The stored-details parser accepts what the record parser accepted.
  absl::StatusOr<json> details = audit::ParseDetails(details_json);
  DB_FUZZ_CHECK(details.ok());
  DB_FUZZ_CHECK(*details == record->details);

  // Redaction always leaves nothing CheckNoSecrets objects to.
  json redacted = record->details;
  audit::RedactSecrets(&redacted);
  DB_FUZZ_CHECK(audit::CheckNoSecrets(redacted).ok());

  // A record that parses can be appended: normalisation accepts it, and what it
  // produces parses back to itself.
  audit::Record normalized = *record;
  std::vector<std::string> paths;
  std::string normalized_details;
  DB_FUZZ_CHECK(audit::NormalizeForAppend(&normalized, &paths, &normalized_details).ok());
  DB_FUZZ_CHECK(normalized_details == normalized.details.dump());
  DB_FUZZ_CHECK(audit::CheckNoSecrets(normalized.details).ok());
  normalized.hash = audit::ComputeHash(normalized);
  absl::StatusOr<audit::Record> again = audit::FromJson(audit::ToJsonLine(normalized));
  DB_FUZZ_CHECK(again.ok());
  DB_FUZZ_CHECK(*again == normalized);
  return 0;
}

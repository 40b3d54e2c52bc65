#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

// One audit record: the normalised, OCSF-aligned schema shared by the server's and
// the agent's audit logs, its canonical serialisation and its place in the hash chain.
//
// JSON schema (one object per record; `ToJsonLine` writes exactly these keys):
//
//   seq             unsigned, >= 1, contiguous within one log
//   time_unix_ms    integer, UTC milliseconds since the epoch, non-decreasing in seq
//   class_uid       integer, one of the EventClass values below
//   class_name      string, the OCSF class name for class_uid ("Network Activity", ...)
//   activity        string, [a-z0-9_]{1,64}: "enroll", "connect", "deny", "close", ...
//   outcome         "success" | "failure"
//   actor           string: the identity that acted, or "system"
//   source_address  string: the peer address ("" when there is none)
//   details         object, free-form per activity (destination, agent, bytes_up, ...)
//   prev_hash       64 lower-case hex digits: the previous record's hash (the
//                   retention anchor's hash for the first retained record; 64 zeros
//                   for record 1)
//   hash            64 lower-case hex digits: SHA-256(prev_hash || CanonicalJson(record))
//
// CanonicalJson is the record without `hash`, keys sorted, no whitespace, UTF-8.
namespace drawbridge::audit {

// OCSF event classes we emit (https://schema.ocsf.io/classes).
enum class EventClass : int {
  kDetectionFinding = 2004,  // alerts
  kAccountChange = 3001,     // identities, keys, revocations, admin changes
  kAuthentication = 3002,    // enrollment, certificate issue, agent/client sessions
  kNetworkActivity = 4001,   // tunnel connections allowed, denied, closed
  kApiActivity = 6003,       // admin API calls, policy reloads
};

inline constexpr int kClassDetectionFinding = static_cast<int>(EventClass::kDetectionFinding);
inline constexpr int kClassAccountChange = static_cast<int>(EventClass::kAccountChange);
inline constexpr int kClassAuthentication = static_cast<int>(EventClass::kAuthentication);
inline constexpr int kClassNetworkActivity = static_cast<int>(EventClass::kNetworkActivity);
inline constexpr int kClassApiActivity = static_cast<int>(EventClass::kApiActivity);

inline constexpr std::string_view kOutcomeSuccess = "success";
inline constexpr std::string_view kOutcomeFailure = "failure";
inline constexpr std::string_view kActorSystem = "system";

// prev_hash of record 1.
inline constexpr std::string_view kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Replaces secret-looking values (see CheckNoSecrets).
inline constexpr std::string_view kRedacted = "[redacted]";

// The OCSF class name ("Network Activity"), or "" for an unknown uid.
std::string_view ClassName(int class_uid);
std::optional<EventClass> ClassFromUid(int class_uid);

struct Record {
  uint64_t seq = 0;          // assigned by AuditLog::Append
  int64_t time_unix_ms = 0;  // assigned by AuditLog::Append
  std::string class_name;    // filled from class_uid by Append when empty
  int class_uid = 0;
  std::string activity;
  std::string outcome;
  std::string actor;
  std::string source_address;
  nlohmann::json details = nlohmann::json::object();
  std::string prev_hash;  // assigned by AuditLog::Append
  std::string hash;       // assigned by AuditLog::Append

  bool operator==(const Record&) const = default;
};

// A record of `cls` with its class name filled in; seq, time and hashes are left
// to AuditLog::Append.
Record MakeRecord(EventClass cls, std::string activity, std::string_view outcome, std::string actor,
                  std::string source_address, nlohmann::json details = nlohmann::json::object());

// Every field except `hash`, deterministic: sorted keys, no whitespace. Never
// throws: invalid UTF-8 (which Append never lets through) is replaced by U+FFFD.
std::string CanonicalJson(const Record& r);
// The same, with `details_json` (the canonical dump of r.details, as
// NormalizeForAppend returns it) instead of dumping r.details again.
std::string CanonicalJson(const Record& r, std::string_view details_json);

// Hex SHA-256 of prev_hash || CanonicalJson(r).
std::string ComputeHash(const Record& r);
std::string ComputeHash(const Record& r, std::string_view details_json);

// CanonicalJson plus `hash`, on one line, without the trailing newline.
std::string ToJsonLine(const Record& r);

// Strict parser for one exported record (ToJsonLine's output, possibly with other
// whitespace): an object with exactly the schema's keys and types, no duplicate
// keys, a known class whose name matches its uid, details nested at most
// kMaxDetailsDepth deep. Does not check `hash` against the content (see
// ComputeHash; verification needs the chain). Every failure is InvalidArgument.
absl::StatusOr<Record> FromJson(std::string_view text);

inline constexpr int kMaxDetailsDepth = 16;
inline constexpr size_t kMaxDetailsBytes = 256 * 1024;
inline constexpr size_t kMaxStringBytes = 4096;

// Strict parser for a stored `details` object (same rules as FromJson's).
absl::StatusOr<nlohmann::json> ParseDetails(std::string_view text);

// InvalidArgument naming the JSON path (never the value) of the first thing that
// looks like a secret:
//   - a value under a key named like a secret: token, jwt, password, passphrase,
//     secret, private_key, api_key, authorization, ... (and *_token, *_secret,
//     *_password, *_private_key, ...; token_id is not a secret);
//   - a string containing "PRIVATE KEY" (any PEM private key);
//   - a string containing a JWT/JWS (eyJ<base64url>.eyJ<base64url>);
//   - a string starting with "Bearer ".
absl::Status CheckNoSecrets(const nlohmann::json& value);

// Replaces everything CheckNoSecrets rejects with kRedacted, in place. Returns the
// JSON paths redacted (for a warning; they never contain the secret).
std::vector<std::string> RedactSecrets(nlohmann::json* value);

// What Append does before hashing: checks the fields our own code chooses (known
// class, activity, outcome, details an object within the size and depth limits) and
// returns InvalidArgument if they are wrong; then makes the rest safe whatever a
// peer put in them: replaces invalid UTF-8 with U+FFFD, cuts strings longer than
// kMaxStringBytes, and redacts secrets in actor, source_address and details (an
// attacker must not be able to suppress the record of its own denied attempt by
// putting a JWT-looking string in a destination). `redacted` receives the paths;
// `details_json`, if not null, the canonical dump of the resulting details.
absl::Status NormalizeForAppend(Record* r, std::vector<std::string>* redacted,
                                std::string* details_json = nullptr);

// "2024-05-01T12:00:00.123Z".
std::string FormatTimeUtc(int64_t unix_ms);

}  // namespace drawbridge::audit

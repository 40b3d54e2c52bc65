#include "audit/record.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::audit {
namespace {

using nlohmann::json;

constexpr size_t kMaxRecordLineBytes = kMaxDetailsBytes + 64 * 1024;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool IsHexHash(const std::string& s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool IsValidActivity(const std::string& s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

bool IsValidOutcome(const std::string& s) { return s == kOutcomeSuccess || s == kOutcomeFailure; }

// Checks the class fields; fills an empty class_name when `fill` is set.
absl::Status CheckClass(Record* r, bool fill) {
  std::string_view name = ClassName(r->class_uid);
  if (name.empty()) {
    return absl::InvalidArgumentError(
        common::StrCat("unknown audit event class_uid ", r->class_uid));
  }
  if (fill && r->class_name.empty()) {
    r->class_name = std::string(name);
  }
  if (r->class_name != name) {
    return absl::InvalidArgumentError(common::StrCat("class_name does not match class_uid ",
                                                     r->class_uid, " (want \"", name, "\")"));
  }
  return absl::OkStatus();
}

absl::Status CheckActivityOutcome(const Record& r) {
  if (!IsValidActivity(r.activity)) {
    return absl::InvalidArgumentError("activity must be 1-64 characters of [a-z0-9_]");
  }
  if (!IsValidOutcome(r.outcome)) {
    return absl::InvalidArgumentError("outcome must be \"success\" or \"failure\"");
  }
  return absl::OkStatus();
}

// Nesting depth: a scalar is 0, a container 1 + its deepest child.
int Depth(const json& j) {
  if (!j.is_structured()) {
    return 0;
  }
  int deepest = 0;
  for (const auto& child : j) {
    deepest = std::max(deepest, Depth(child));
    if (deepest > kMaxDetailsDepth) {
      break;
    }
  }
  return deepest + 1;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Replaces invalid UTF-8 with U+FFFD and cuts at a character boundary so that the
// result is at most kMaxStringBytes.
std::string SafeString(const std::string& s) {
  std::string out = IsValidUtf8(s) ? s : json::parse(Dump(json(s))).get<std::string>();
  if (out.size() > kMaxStringBytes) {
    size_t cut = kMaxStringBytes;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) {
      --cut;
    }
    out.resize(cut);
  }
  return out;
}

void TruncateStrings(json* j) {
  if (j->is_string()) {
    const std::string& s = j->get_ref<const std::string&>();
    if (s.size() > kMaxStringBytes) {
      *j = SafeString(s);
    }
    return;
  }
  if (j->is_structured()) {
    for (auto& child : *j) {
      TruncateStrings(&child);
    }
  }
}

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// eyJ<base64url>.eyJ: the header and payload of a JWS/JWT (both JSON objects, so
// both start with base64url("{\"")). Linear: a failed run is never rescanned.
bool ContainsJwt(std::string_view s) {
  size_t pos = 0;
  while ((pos = s.find("eyJ", pos)) != std::string_view::npos) {
    size_t i = pos + 3;
    while (i < s.size() && IsBase64UrlChar(s[i])) {
      ++i;
    }
    if (i < s.size() && s[i] == '.' && s.substr(i + 1, 3) == "eyJ") {
      return true;
    }
    pos = i;
  }
  return false;
}

bool LooksSecret(std::string_view s) {
  if (s.find("PRIVATE KEY") != std::string_view::npos) {
    return true;
  }
  if (s.size() >= 7 && common::ToLower(s.substr(0, 7)) == "bearer ") {
    return true;
  }
  return ContainsJwt(s);
}

bool IsSecretKeyName(std::string_view key) {
  std::string n;
  for (char c : common::ToLower(key)) {
    if (c != '_' && c != '-' && c != '.' && c != ' ') {
      n.push_back(c);
    }
  }
  static const std::set<std::string, std::less<>> kExact = {
      "authorization", "bearer", "kek", "apikey", "cookie", "setcookie", "credentials",
  };
  if (kExact.count(n) > 0) {
    return true;
  }
  static constexpr std::string_view kSuffixes[] = {
      "token", "jwt", "password", "passwd", "passphrase", "secret", "privatekey", "secretkey",
  };
  for (std::string_view suffix : kSuffixes) {
    if (n.size() >= suffix.size() &&
        n.compare(n.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0) {
      return true;
    }
  }
  return false;
}

bool HoldsSomething(const json& j) {
  return !(j.is_null() || (j.is_string() && j.get_ref<const std::string&>().empty()));
}

// Visits every secret in `j` (paths relative to `path`); `redact` replaces them.
void WalkSecrets(json* j, const std::string& path, bool redact, std::vector<std::string>* found) {
  if (j->is_string()) {
    if (LooksSecret(j->get_ref<const std::string&>())) {
      found->push_back(path);
      if (redact) {
        *j = std::string(kRedacted);
      }
    }
    return;
  }
  if (j->is_object()) {
    for (auto it = j->begin(); it != j->end(); ++it) {
      std::string child = common::StrCat(path, ".", it.key());
      if (IsSecretKeyName(it.key()) && HoldsSomething(it.value()) &&
          !(it.value().is_string() && it.value().get_ref<const std::string&>() == kRedacted)) {
        found->push_back(child);
        if (redact) {
          it.value() = std::string(kRedacted);
        }
        continue;
      }
      WalkSecrets(&it.value(), child, redact, found);
    }
    return;
  }
  if (j->is_array()) {
    for (size_t i = 0; i < j->size(); ++i) {
      WalkSecrets(&(*j)[i], common::StrCat(path, "[", i, "]"), redact, found);
    }
  }
}

// Parses JSON strictly: no duplicate keys, containers nested at most `max_depth`
// levels, no non-finite numbers, strings at most kMaxStringBytes.
absl::StatusOr<json> ParseStrict(std::string_view text, int max_depth, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        common::StrCat("audit JSON longer than ", max_bytes, " bytes"));
  }
  std::vector<std::set<std::string>> keys;
  std::string problem;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (!problem.empty()) {
      return true;
    }
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case json::parse_event_t::array_start:
        if (depth + 1 > max_depth) {
          problem = "audit JSON nested too deeply";
        }
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          problem = "audit JSON has a duplicate key";
        }
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) {
          keys.pop_back();
        }
        break;
      case json::parse_event_t::value:
        if (parsed.is_number_float() && !std::isfinite(parsed.get<double>())) {
          problem = "audit JSON number out of range";
        } else if (parsed.is_string() &&
                   parsed.get_ref<const std::string&>().size() > kMaxStringBytes) {
          problem = "audit JSON string too long";
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("audit JSON is malformed");
  }
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("audit JSON is malformed");
  }
  if (!problem.empty()) {
    return absl::InvalidArgumentError(problem);
  }
  return j;
}

// Appends `s` as a JSON string exactly as nlohmann's dump (ensure_ascii=false) would.
void AppendJsonString(std::string& out, std::string_view s) {
  if (!IsValidUtf8(s)) {
    out += Dump(json(std::string(s)));  // replaces invalid UTF-8 with U+FFFD
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out.push_back(kHex[(c >> 4) & 0xf]);
          out.push_back(kHex[c & 0xf]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// The canonical object, keys in sorted order, with `hash` when given (it sorts
// between details and outcome).
std::string Serialize(const Record& r, std::string_view details_json, const std::string* hash) {
  std::string out;
  out.reserve(details_json.size() + r.actor.size() + r.source_address.size() + 320);
  out += "{\"activity\":";
  AppendJsonString(out, r.activity);
  out += ",\"actor\":";
  AppendJsonString(out, r.actor);
  out += ",\"class_name\":";
  AppendJsonString(out, r.class_name);
  common::StrAppend(&out, ",\"class_uid\":", r.class_uid, ",\"details\":", details_json);
  if (hash != nullptr) {
    out += ",\"hash\":";
    AppendJsonString(out, *hash);
  }
  out += ",\"outcome\":";
  AppendJsonString(out, r.outcome);
  out += ",\"prev_hash\":";
  AppendJsonString(out, r.prev_hash);
  common::StrAppend(&out, ",\"seq\":", r.seq, ",\"source_address\":");
  AppendJsonString(out, r.source_address);
  common::StrAppend(&out, ",\"time_unix_ms\":", r.time_unix_ms, "}");
  return out;
}

// Whether a dump/parse round trip would change `j`: invalid UTF-8 in a key or
// string, or a number JSON cannot hold.
bool NeedsRepair(const json& j) {
  switch (j.type()) {
    case json::value_t::string:
      return !IsValidUtf8(j.get_ref<const std::string&>());
    case json::value_t::number_float:
      return !std::isfinite(j.get<double>());
    case json::value_t::object:
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!IsValidUtf8(it.key()) || NeedsRepair(it.value())) {
          return true;
        }
      }
      return false;
    case json::value_t::array:
      for (const json& child : j) {
        if (NeedsRepair(child)) {
          return true;
        }
      }
      return false;
    default:
      return false;
  }
}

absl::StatusOr<std::string> StringField(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_string()) {
    return absl::InvalidArgumentError(
        common::StrCat("audit record field ", key, " must be a string"));
  }
  return v.get<std::string>();
}

}  // namespace

std::string_view ClassName(int class_uid) {
  switch (class_uid) {
    case kClassDetectionFinding:
      return "Detection Finding";
    case kClassAccountChange:
      return "Account Change";
    case kClassAuthentication:
      return "Authentication";
    case kClassNetworkActivity:
      return "Network Activity";
    case kClassApiActivity:
      return "API Activity";
    default:
      return "";
  }
}

std::optional<EventClass> ClassFromUid(int class_uid) {
  if (ClassName(class_uid).empty()) {
    return std::nullopt;
  }
  return static_cast<EventClass>(class_uid);
}

Record MakeRecord(EventClass cls, std::string activity, std::string_view outcome, std::string actor,
                  std::string source_address, nlohmann::json details) {
  Record r;
  r.class_uid = static_cast<int>(cls);
  r.class_name = std::string(ClassName(r.class_uid));
  r.activity = std::move(activity);
  r.outcome = std::string(outcome);
  r.actor = std::move(actor);
  r.source_address = std::move(source_address);
  r.details = std::move(details);
  return r;
}

std::string CanonicalJson(const Record& r) { return Serialize(r, Dump(r.details), nullptr); }

std::string CanonicalJson(const Record& r, std::string_view details_json) {
  return Serialize(r, details_json, nullptr);
}

std::string ComputeHash(const Record& r) {
  return common::HexEncode(pki::Sha256(common::StrCat(r.prev_hash, CanonicalJson(r))));
}

std::string ComputeHash(const Record& r, std::string_view details_json) {
  return common::HexEncode(
      pki::Sha256(common::StrCat(r.prev_hash, Serialize(r, details_json, nullptr))));
}

std::string ToJsonLine(const Record& r) { return Serialize(r, Dump(r.details), &r.hash); }

absl::StatusOr<Record> FromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json j, ParseStrict(text, kMaxDetailsDepth + 1, kMaxRecordLineBytes));
  static constexpr const char* kKeys[] = {
      "seq",   "time_unix_ms",   "class_uid", "class_name", "activity", "outcome",
      "actor", "source_address", "details",   "prev_hash",  "hash",
  };
  if (!j.is_object() || j.size() != std::size(kKeys)) {
    return absl::InvalidArgumentError(
        "audit record must be an object with exactly the schema's 11 keys");
  }
  for (const char* key : kKeys) {
    if (!j.contains(key)) {
      return absl::InvalidArgumentError(common::StrCat("audit record lacks ", key));
    }
  }
  Record r;
  const json& seq = j["seq"];
  if (!seq.is_number_unsigned() || seq.get<uint64_t>() == 0 ||
      seq.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError("audit record seq must be an integer >= 1");
  }
  r.seq = seq.get<uint64_t>();
  const json& time = j["time_unix_ms"];
  if (time.is_number_unsigned()) {
    if (time.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError("audit record time_unix_ms out of range");
    }
    r.time_unix_ms = static_cast<int64_t>(time.get<uint64_t>());
  } else if (time.is_number_integer()) {
    r.time_unix_ms = time.get<int64_t>();
  } else {
    return absl::InvalidArgumentError("audit record time_unix_ms must be an integer");
  }
  const json& uid = j["class_uid"];
  if (!uid.is_number_integer() || uid.get<int64_t>() < 0 || uid.get<int64_t>() > 1000000) {
    return absl::InvalidArgumentError("audit record class_uid must be an integer");
  }
  r.class_uid = static_cast<int>(uid.get<int64_t>());
  ASSIGN_OR_RETURN(r.class_name, StringField(j, "class_name"));
  ASSIGN_OR_RETURN(r.activity, StringField(j, "activity"));
  ASSIGN_OR_RETURN(r.outcome, StringField(j, "outcome"));
  ASSIGN_OR_RETURN(r.actor, StringField(j, "actor"));
  ASSIGN_OR_RETURN(r.source_address, StringField(j, "source_address"));
  ASSIGN_OR_RETURN(r.prev_hash, StringField(j, "prev_hash"));
  ASSIGN_OR_RETURN(r.hash, StringField(j, "hash"));
  RETURN_IF_ERROR(CheckClass(&r, /*fill=*/false));
  RETURN_IF_ERROR(CheckActivityOutcome(r));
  if (!IsHexHash(r.prev_hash) || !IsHexHash(r.hash)) {
    return absl::InvalidArgumentError("audit record hashes must be 64 lower-case hex digits");
  }
  if (!j["details"].is_object()) {
    return absl::InvalidArgumentError("audit record details must be an object");
  }
  if (Dump(j["details"]).size() > kMaxDetailsBytes) {
    return absl::InvalidArgumentError(
        common::StrCat("audit record details larger than ", kMaxDetailsBytes, " bytes"));
  }
  r.details = std::move(j["details"]);
  return r;
}

absl::StatusOr<nlohmann::json> ParseDetails(std::string_view text) {
  ASSIGN_OR_RETURN(json j, ParseStrict(text, kMaxDetailsDepth, kMaxDetailsBytes));
  if (!j.is_object()) {
    return absl::InvalidArgumentError("audit details must be an object");
  }
  return j;
}

absl::Status CheckNoSecrets(const nlohmann::json& value) {
  std::vector<std::string> found;
  json copy = value;
  WalkSecrets(&copy, "$", /*redact=*/false, &found);
  if (!found.empty()) {
    return absl::InvalidArgumentError(
        common::StrCat("audit data holds a secret-looking value at ", found.front()));
  }
  return absl::OkStatus();
}

std::vector<std::string> RedactSecrets(nlohmann::json* value) {
  std::vector<std::string> found;
  WalkSecrets(value, "$", /*redact=*/true, &found);
  return found;
}

absl::Status NormalizeForAppend(Record* r, std::vector<std::string>* redacted,
                                std::string* details_json) {
  RETURN_IF_ERROR(CheckClass(r, /*fill=*/true));
  RETURN_IF_ERROR(CheckActivityOutcome(*r));
  if (!r->details.is_object()) {
    return absl::InvalidArgumentError("audit details must be a JSON object");
  }
  if (Depth(r->details) > kMaxDetailsDepth) {
    return absl::InvalidArgumentError(
        common::StrCat("audit details nested deeper than ", kMaxDetailsDepth));
  }
  r->actor = SafeString(r->actor);
  r->source_address = SafeString(r->source_address);
  // A dump/parse round trip replaces invalid UTF-8 (in keys too) and makes the
  // in-memory details exactly what is stored and hashed (NaN becomes null).
  if (NeedsRepair(r->details)) {
    r->details = json::parse(Dump(r->details));
  }
  TruncateStrings(&r->details);

  for (auto [field, name] : {std::pair{&r->actor, "$actor"}, {&r->source_address, "$source"}}) {
    if (LooksSecret(*field)) {
      *field = std::string(kRedacted);
      redacted->push_back(name);
    }
  }
  for (std::string& path : RedactSecrets(&r->details)) {
    redacted->push_back(common::StrCat("details", std::string_view(path).substr(1)));
  }
  std::string text = Dump(r->details);
  if (text.size() > kMaxDetailsBytes) {
    return absl::InvalidArgumentError(
        common::StrCat("audit details larger than ", kMaxDetailsBytes, " bytes"));
  }
  if (details_json != nullptr) {
    *details_json = std::move(text);
  }
  return absl::OkStatus();
}

std::string FormatTimeUtc(int64_t unix_ms) {
  int64_t secs = unix_ms / 1000;
  int64_t ms = unix_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  struct tm tm;
  if (gmtime_r(&t, &tm) == nullptr) {
    return common::StrCat(unix_ms, "ms");
  }
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace drawbridge::audit

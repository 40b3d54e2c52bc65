#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "audit/alerts.h"
#include "audit/record.h"
#include "policy/policy.h"

// `drawbridge posture`: the security controls a deployment is audited against,
// and the evaluation of each from what was observed. This module holds the
// catalogue, the results and their rendering, and the judgements that need no
// server (policy breadth, secret patterns, file modes, sealed-key format); the
// live observations are made by src/cli/posture_command.cc.
//
// docs/compliance.md maps every control to SOC 2 criteria and says what each
// check observes.
namespace drawbridge::posture {

enum class Status { kPass, kFail, kNotApplicable };

std::string_view StatusName(Status s);  // "pass", "fail", "n/a"

// One control of the catalogue.
struct Control {
  std::string_view id;     // "IAM-01"
  std::string_view title;  // "Credentials are short-lived"
  std::string_view soc2;   // "CC6.1, CC6.6"
};

// Every control, in report order.
const std::vector<Control>& Catalogue();
// The control `id`, or nullptr.
const Control* FindControl(std::string_view id);

struct Result {
  std::string id;  // a Catalogue() id
  Status status = Status::kNotApplicable;
  std::vector<std::string> evidence;  // what was observed, one line each
};

struct Report {
  std::string server;    // the address checked
  std::string data_dir;  // the data directory checked
  int64_t generated_unix = 0;
  std::vector<Result> results;  // in Catalogue() order

  // Adds (or replaces) the result of control `id`.
  void Set(std::string_view id, Status status, std::vector<std::string> evidence);
  bool AnyFailed() const;
};

std::string ToMarkdown(const Report& report);
std::string ToJson(const Report& report);  // one object, newline-terminated

// --- Judgements -------------------------------------------------------------

// Why each rule of `policy` is (nearly) an allow-everything rule: every client
// ("client/*") through every agent ("agent/*") to a destination covering a /8 or
// more of IPv4, a /32 or more of IPv6, or all names under one top-level label
// ("*.com"). One line per offending rule; empty when none.
std::vector<std::string> BroadRules(const policy::Policy& policy);

// An agent allowlist entry as broad as BroadRules' destinations, or one that
// does not parse; empty when the entry is specific.
std::string BroadAllowlistEntry(const std::string& entry);

// Whether `rule` counts denied connections (class Network Activity or any, and
// activity "deny" or any).
bool CoversDenials(const audit::AlertRule& rule);

// Paths of secret-looking values in a record (audit::CheckNoSecrets over its
// actor, source address and details), and whether `extra_secret` (e.g. the
// KEK's hex) appears anywhere in its JSON line. Empty when clean.
std::vector<std::string> SecretsIn(const audit::Record& record, std::string_view extra_secret);

// A problem with a file holding a key or credential: group or other may read
// or write it, or it is not a regular file. Empty when fine. `mode` is st_mode.
std::string KeyFileModeProblem(uint32_t mode);
// The same for a directory holding them: group or other may enter or list it.
std::string KeyDirModeProblem(uint32_t mode);

// Whether `bytes` are in the sealed format (pki::KeyEncryptionKey: "DBSEAL1\n",
// a 12-byte nonce, ciphertext, a 16-byte tag) and hold no plaintext PEM.
bool LooksSealed(std::string_view bytes);

}  // namespace drawbridge::posture

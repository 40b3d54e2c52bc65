#include "posture/posture.h"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "policy/pattern.h"

namespace drawbridge::posture {
namespace {

// The ids are this product's control set (docs/compliance.md); SOC 2 criteria
// are the 2017 Trust Services Criteria (rev. 2022).
const std::vector<Control> kCatalogue = {
    {"IAM-01", "Workload credentials are short-lived (certificates live 8 h or less)",
     "CC6.1, CC6.6"},
    {"IAM-02", "Service credentials are bound to source networks (CIDRs)", "CC6.1, CC6.6"},
    {"IAM-03", "Static credentials (enrollment keys) are rotated within 90 days", "CC6.1, CC6.2"},
    {"IAM-04", "Revocation cuts live connections within 1 s", "CC6.2, CC6.3"},
    {"ACC-01", "Access is deny-by-default (no allow-everything rule; agents have allowlists)",
     "CC6.1, CC6.3, CC6.6"},
    {"CRY-01", "Private keys are encrypted at rest with AES-256", "CC6.1, CC6.7"},
    {"CRY-02", "The key-encryption key is younger than its rotation period", "CC6.1"},
    {"CRY-03", "Only TLS 1.3 is accepted", "CC6.7"},
    {"CRY-04", "Mutual TLS is required on every hop", "CC6.1, CC6.6, CC6.7"},
    {"CRY-05", "Certificates are rotated before they expire", "CC6.1, CC6.7"},
    {"LOG-01", "Access logs are immutable (the hash chain verifies now)", "CC7.2, CC4.1"},
    {"LOG-02", "Configuration changes are logged with before and after", "CC8.1, CC7.2"},
    {"LOG-03", "Denied traffic is logged and alerted", "CC7.2, CC7.3"},
    {"LOG-04", "Logs hold no keys, tokens or passwords", "CC6.1, C1.1"},
    {"MON-01", "Unusual events raise alerts (rules configured, webhook reachable)",
     "CC7.2, CC7.3, CC7.4"},
    {"OPS-01", "The server does not run as root", "CC6.1, CC6.8"},
    {"OPS-02", "Key and credential files are readable by their owner only", "CC6.1"},
};

bool IsAllPattern(const std::vector<std::string>& patterns, std::string_view all) {
  return std::find(patterns.begin(), patterns.end(), all) != patterns.end();
}

// Why a destination pattern covers too much, or "".
std::string BroadDestination(const policy::DestinationPattern& d) {
  if (d.is_cidr()) {
    const bool v4 = d.cidr().base.is_v4;
    const int widest = v4 ? 8 : 32;
    if (d.cidr().prefix_len <= widest) {
      return common::StrCat(d.ToString(), " covers a /", d.cidr().prefix_len, " of ",
                            v4 ? "IPv4" : "IPv6");
    }
    return "";
  }
  if (d.kind() == policy::DestinationPattern::Kind::kWildcard &&
      d.host().find('.') == std::string::npos) {
    return common::StrCat(d.ToString(), " covers every name under .", d.host());
  }
  return "";
}

// "" when neither group nor others have any access; else the mode and `want`.
std::string GroupOrOtherAccess(uint32_t mode, std::string_view want) {
  if ((mode & 077) == 0) {
    return "";
  }
  char octal[8];
  std::snprintf(octal, sizeof(octal), "%04o", mode & 07777);
  return common::StrCat("mode ", octal, ": group or others have access (want ", want, ")");
}

}  // namespace

std::string_view StatusName(Status s) {
  switch (s) {
    case Status::kPass:
      return "pass";
    case Status::kFail:
      return "fail";
    case Status::kNotApplicable:
      return "n/a";
  }
  return "n/a";
}

const std::vector<Control>& Catalogue() { return kCatalogue; }

const Control* FindControl(std::string_view id) {
  for (const Control& c : kCatalogue) {
    if (c.id == id) {
      return &c;
    }
  }
  return nullptr;
}

void Report::Set(std::string_view id, Status status, std::vector<std::string> evidence) {
  Result r{std::string(id), status, std::move(evidence)};
  auto order = [](std::string_view control) {
    for (size_t i = 0; i < kCatalogue.size(); ++i) {
      if (kCatalogue[i].id == control) {
        return i;
      }
    }
    return kCatalogue.size();
  };
  for (Result& existing : results) {
    if (existing.id == id) {
      existing = std::move(r);
      return;
    }
  }
  auto at = std::find_if(results.begin(), results.end(),
                         [&](const Result& x) { return order(x.id) > order(id); });
  results.insert(at, std::move(r));
}

bool Report::AnyFailed() const {
  return std::any_of(results.begin(), results.end(),
                     [](const Result& r) { return r.status == Status::kFail; });
}

std::string ToMarkdown(const Report& report) {
  int pass = 0, fail = 0, na = 0;
  for (const Result& r : report.results) {
    (r.status == Status::kPass ? pass : r.status == Status::kFail ? fail : na)++;
  }
  char when[32] = "";
  std::time_t t = static_cast<std::time_t>(report.generated_unix);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string out = common::StrCat(
      "# Drawbridge security posture\n\n", "- server: `", report.server, "`\n",
      "- data directory: `", report.data_dir, "`\n", "- checked at: ", when, "\n", "- result: **",
      fail > 0 ? "FAIL" : "PASS", "** (", pass, " pass, ", fail, " fail, ", na,
      " not applicable)\n\n", "| control | status | SOC 2 | title |\n|---|---|---|---|\n");
  for (const Result& r : report.results) {
    const Control* c = FindControl(r.id);
    out += common::StrCat("| ", r.id, " | ",
                          r.status == Status::kFail ? "**FAIL**" : StatusName(r.status), " | ",
                          c ? c->soc2 : "", " | ", c ? c->title : "", " |\n");
  }
  for (const Result& r : report.results) {
    const Control* c = FindControl(r.id);
    out += common::StrCat("\n## ", r.id, " ", c ? c->title : "", ": ",
                          r.status == Status::kFail ? "FAIL" : StatusName(r.status), "\n\n");
    for (const std::string& e : r.evidence) {
      out += common::StrCat("- ", e, "\n");
    }
  }
  return out;
}

std::string ToJson(const Report& report) {
  nlohmann::json controls = nlohmann::json::array();
  for (const Result& r : report.results) {
    const Control* c = FindControl(r.id);
    controls.push_back({{"id", r.id},
                        {"title", c ? std::string(c->title) : ""},
                        {"soc2", c ? std::string(c->soc2) : ""},
                        {"status", std::string(StatusName(r.status))},
                        {"evidence", r.evidence}});
  }
  nlohmann::json out = {{"server", report.server},
                        {"data_dir", report.data_dir},
                        {"generated_unix", report.generated_unix},
                        {"ok", !report.AnyFailed()},
                        {"controls", std::move(controls)}};
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::vector<std::string> BroadRules(const policy::Policy& policy) {
  std::vector<std::string> out;
  for (const policy::Rule& rule : policy.rules()) {
    if (!IsAllPattern(rule.clients, "client/*") || !IsAllPattern(rule.agents, "agent/*")) {
      continue;
    }
    for (const policy::DestinationPattern& d : rule.destinations) {
      if (std::string why = BroadDestination(d); !why.empty()) {
        out.push_back(common::StrCat("rule \"", rule.name,
                                     "\" lets every client through every agent: ", why));
        break;
      }
    }
  }
  return out;
}

std::string BroadAllowlistEntry(const std::string& entry) {
  auto d = policy::DestinationPattern::Parse(entry);
  if (!d.ok()) {
    return common::StrCat(entry, " does not parse: ", d.status().message());
  }
  return BroadDestination(*d);
}

bool CoversDenials(const audit::AlertRule& rule) {
  return (rule.class_uid == 0 || rule.class_uid == audit::kClassNetworkActivity) &&
         (rule.activity.empty() || rule.activity == "deny") &&
         (rule.outcome.empty() || rule.outcome == audit::kOutcomeFailure) &&
         rule.reason_codes.empty();
}

std::vector<std::string> SecretsIn(const audit::Record& record, std::string_view extra_secret) {
  std::vector<std::string> out;
  nlohmann::json fields = {{"actor", record.actor},
                           {"source_address", record.source_address},
                           {"details", record.details}};
  // RedactSecrets names every offending path (CheckNoSecrets only the first).
  for (std::string& path : audit::RedactSecrets(&fields)) {
    out.push_back(std::move(path));
  }
  if (!extra_secret.empty() &&
      fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).find(extra_secret) !=
          std::string::npos) {
    out.push_back("the key-encryption key");
  }
  return out;
}

std::string KeyFileModeProblem(uint32_t mode) {
  if (!S_ISREG(mode)) {
    return "not a regular file";
  }
  return GroupOrOtherAccess(mode, "0600 or 0400");
}

std::string KeyDirModeProblem(uint32_t mode) {
  if (!S_ISDIR(mode)) {
    return "not a directory";
  }
  return GroupOrOtherAccess(mode, "0700");
}

bool LooksSealed(std::string_view bytes) {
  constexpr std::string_view kMagic = "DBSEAL1\n";
  constexpr size_t kNonce = 12, kTag = 16;
  return bytes.size() > kMagic.size() + kNonce + kTag && bytes.substr(0, kMagic.size()) == kMagic &&
         bytes.find("PRIVATE KEY") == std::string_view::npos;
}

}  // namespace drawbridge::posture

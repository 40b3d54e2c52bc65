// The judgements and the report behind `drawbridge posture` (the live checks
// are exercised by test/integration/posture_test.sh).
#include "posture/posture.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>

#include "nlohmann/json.hpp"

namespace drawbridge::posture {
namespace {

std::shared_ptr<const policy::Policy> Parse(const std::string& yaml) {
  auto p = policy::Policy::Parse(yaml);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : policy::Policy::DenyAll();
}

std::string Rule(const std::string& name, const std::string& clients, const std::string& agents,
                 const std::string& destinations) {
  return "  - name: " + name + "\n    clients: [" + clients + "]\n    agents: [" + agents +
         "]\n    destinations: [" + destinations + "]\n";
}

TEST(BroadRules, EveryClientEveryAgentHalfTheInternetIsBroad) {
  auto p = Parse("rules:\n" + Rule("everything", "\"client/*\"", "\"agent/*\"",
                                   "\"0.0.0.0/1:*\", \"128.0.0.0/1:*\""));
  auto broad = BroadRules(*p);
  ASSERT_EQ(broad.size(), 1u);
  EXPECT_NE(broad[0].find("rule \"everything\""), std::string::npos);
  EXPECT_NE(broad[0].find("/1 of IPv4"), std::string::npos);
}

TEST(BroadRules, IPv6AndTopLevelWildcardsAreBroad) {
  auto p = Parse("rules:\n" + Rule("v6", "\"client/*\"", "\"agent/*\"", "\"[2000::/3]:443\"") +
                 Rule("tld", "\"client/*\"", "\"agent/*\"", "\"*.com:443\""));
  auto broad = BroadRules(*p);
  ASSERT_EQ(broad.size(), 2u);
  EXPECT_NE(broad[0].find("/3 of IPv6"), std::string::npos);
  EXPECT_NE(broad[1].find("every name under .com"), std::string::npos);
}

TEST(BroadRules, NarrowerRulesAreNot) {
  // A /8 for one client, a /16 for everyone, a name wildcard two labels deep.
  auto p =
      Parse("rules:\n" + Rule("one-client", "\"client/ci\"", "\"agent/*\"", "\"10.0.0.0/8:*\"") +
            Rule("one-agent", "\"client/*\"", "\"agent/a1\"", "\"10.0.0.0/8:*\"") +
            Rule("slash16", "\"client/*\"", "\"agent/*\"", "\"10.1.0.0/16:443\"") +
            Rule("corp", "\"client/*\"", "\"agent/*\"", "\"*.corp.example:22\""));
  EXPECT_TRUE(BroadRules(*p).empty());
  EXPECT_TRUE(BroadRules(*policy::Policy::DenyAll()).empty());
}

TEST(BroadAllowlistEntry, JudgesEachEntry) {
  EXPECT_EQ(BroadAllowlistEntry("127.0.0.1/32:8080"), "");
  EXPECT_EQ(BroadAllowlistEntry("gitlab.corp.example:443"), "");
  EXPECT_NE(BroadAllowlistEntry("10.0.0.0/8:*"), "");
  EXPECT_NE(BroadAllowlistEntry("*.internal:443"), "");
  EXPECT_NE(BroadAllowlistEntry("not an entry").find("does not parse"), std::string::npos);
}

TEST(CoversDenials, DefaultRuleDoesAndOthersDoNot) {
  bool any = false;
  for (const auto& rule : audit::DefaultAlertRules()) {
    any = any || CoversDenials(rule);
  }
  EXPECT_TRUE(any) << "the default rules count denied connections";
  audit::AlertRule auth{.name = "auth", .class_uid = audit::kClassAuthentication};
  EXPECT_FALSE(CoversDenials(auth));
  audit::AlertRule ssh{.name = "ssh",
                       .class_uid = audit::kClassNetworkActivity,
                       .activity = "deny",
                       .reason_codes = {"agent_allowlist"}};
  EXPECT_FALSE(CoversDenials(ssh)) << "counts only some denials";
  audit::AlertRule all{.name = "all"};
  EXPECT_TRUE(CoversDenials(all));
}

TEST(SecretsIn, FindsKeysTokensAndTheKek) {
  audit::Record clean;
  clean.actor = "client/ci";
  clean.details = {{"destination", "git:22"}, {"token_id", "abc"}};
  EXPECT_TRUE(SecretsIn(clean, "").empty());

  audit::Record leaky = clean;
  leaky.details["note"] = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
  leaky.details["password"] = "hunter2";
  leaky.source_address = "Bearer abc.def";
  auto found = SecretsIn(leaky, "");
  EXPECT_EQ(found.size(), 3u);

  const std::string kek(64, 'a');
  audit::Record kek_leak = clean;
  kek_leak.details["debug"] = "key=" + kek;
  auto k = SecretsIn(kek_leak, kek);
  ASSERT_EQ(k.size(), 1u);
  EXPECT_EQ(k[0], "the key-encryption key");
  EXPECT_TRUE(SecretsIn(clean, kek).empty());
}

TEST(FileModes, OwnerOnly) {
  EXPECT_EQ(KeyFileModeProblem(S_IFREG | 0600), "");
  EXPECT_EQ(KeyFileModeProblem(S_IFREG | 0400), "");
  EXPECT_NE(KeyFileModeProblem(S_IFREG | 0640).find("mode 0640"), std::string::npos);
  EXPECT_NE(KeyFileModeProblem(S_IFREG | 0604), "");
  EXPECT_EQ(KeyFileModeProblem(S_IFDIR | 0700), "not a regular file");
  EXPECT_EQ(KeyDirModeProblem(S_IFDIR | 0700), "");
  EXPECT_NE(KeyDirModeProblem(S_IFDIR | 0755).find("mode 0755"), std::string::npos);
  EXPECT_EQ(KeyDirModeProblem(S_IFREG | 0700), "not a directory");
}

TEST(LooksSealed, FormatAndNoPlaintext) {
  const std::string body(12 + 32 + 16, '\x01');
  EXPECT_TRUE(LooksSealed("DBSEAL1\n" + body));
  EXPECT_FALSE(LooksSealed("DBSEAL1\n" + std::string(20, 'x'))) << "too short for nonce and tag";
  EXPECT_FALSE(LooksSealed("-----BEGIN PRIVATE KEY-----\n" + body));
  EXPECT_FALSE(LooksSealed("DBSEAL1\n" + body + "-----BEGIN PRIVATE KEY-----"));
  EXPECT_FALSE(LooksSealed(""));
}

TEST(Report, CatalogueOrderAndRendering) {
  Report r;
  r.server = "broker:8443";
  r.data_dir = "/var/lib/drawbridge";
  r.generated_unix = 1796476168;
  r.Set("OPS-02", Status::kPass, {"modes fine"});
  r.Set("IAM-01", Status::kFail, {"24 h | too long"});
  r.Set("OPS-01", Status::kNotApplicable, {"not on this host"});
  r.Set("IAM-01", Status::kFail, {"certificate_lifetime_seconds: 86400"});  // replaces
  ASSERT_EQ(r.results.size(), 3u);
  EXPECT_EQ(r.results[0].id, "IAM-01");
  EXPECT_EQ(r.results[1].id, "OPS-01");
  EXPECT_EQ(r.results[2].id, "OPS-02");
  EXPECT_TRUE(r.AnyFailed());

  const std::string md = ToMarkdown(r);
  EXPECT_NE(md.find("- result: **FAIL** (1 pass, 1 fail, 1 not applicable)"), std::string::npos);
  EXPECT_NE(md.find("| IAM-01 | **FAIL** | CC6.1, CC6.6 |"), std::string::npos);
  EXPECT_NE(md.find("- certificate_lifetime_seconds: 86400"), std::string::npos);
  EXPECT_NE(md.find("2026-12-05T"), std::string::npos);

  auto j = nlohmann::json::parse(ToJson(r));
  EXPECT_EQ(j["ok"], false);
  ASSERT_EQ(j["controls"].size(), 3u);
  EXPECT_EQ(j["controls"][0]["id"], "IAM-01");
  EXPECT_EQ(j["controls"][0]["status"], "fail");
  EXPECT_EQ(j["controls"][1]["status"], "n/a");
  EXPECT_EQ(j["controls"][0]["soc2"], "CC6.1, CC6.6");
}

TEST(Catalogue, IdsUniqueAndMapped) {
  std::set<std::string_view> ids;
  for (const Control& c : Catalogue()) {
    EXPECT_TRUE(ids.insert(c.id).second) << c.id;
    EXPECT_FALSE(c.soc2.empty()) << c.id;
    EXPECT_EQ(FindControl(c.id), &c);
  }
  EXPECT_EQ(Catalogue().size(), 17u);
  EXPECT_EQ(FindControl("XYZ-99"), nullptr);
}

}  // namespace
}  // namespace drawbridge::posture

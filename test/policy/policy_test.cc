#include "policy/policy.h"

#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/allowlist.h"
#include "policy/destination.h"
#include "policy/pattern.h"

namespace drawbridge::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Destination Dest(std::string_view text) {
  absl::StatusOr<Destination> d = ParseDestination(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  return d.ok() ? *d : Destination{};
}

DestinationPattern Pat(std::string_view text) {
  absl::StatusOr<DestinationPattern> p = DestinationPattern::Parse(text);
  EXPECT_TRUE(p.ok()) << text << ": " << p.status();
  return p.ok() ? *p : *DestinationPattern::Parse("invalid.test:1");
}

common::IpAddress Ip(std::string_view text) {
  std::optional<common::IpAddress> ip = common::ParseIp(text);
  EXPECT_TRUE(ip.has_value()) << text;
  return ip.value_or(common::IpAddress{});
}

std::shared_ptr<const Policy> MustParse(std::string_view yaml) {
  absl::StatusOr<std::shared_ptr<const Policy>> p = Policy::Parse(yaml);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : Policy::DenyAll();
}

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string Repeat(char c, size_t n) { return std::string(n, c); }

// ---- Destination --------------------------------------------------------------------

TEST(DestinationTest, NamesAreLowerCasedWithoutTrailingDot) {
  Destination d = Dest("GitLab.Corp.EXAMPLE.:443");
  EXPECT_EQ(d.host, "gitlab.corp.example");
  EXPECT_FALSE(d.is_ip());
  EXPECT_EQ(d.port, 443);
  EXPECT_EQ(d.ToString(), "gitlab.corp.example:443");
  EXPECT_EQ(Dest("a_b-c.example:1").host, "a_b-c.example");
  EXPECT_EQ(Dest("localhost:65535").port, 65535);
}

TEST(DestinationTest, Ipv4Literal) {
  Destination d = Dest("10.1.2.3:443");
  ASSERT_TRUE(d.ip.has_value());
  EXPECT_TRUE(d.ip->is_v4);
  EXPECT_EQ(d.host, "10.1.2.3");
  EXPECT_EQ(d.ToString(), "10.1.2.3:443");
}

TEST(DestinationTest, Ipv6LiteralNeedsBracketsAndIsCanonicalised) {
  Destination d = Dest("[::1]:22");
  ASSERT_TRUE(d.ip.has_value());
  EXPECT_FALSE(d.ip->is_v4);
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.ToString(), "[::1]:22");
  EXPECT_EQ(Dest("[2001:DB8:0:0:0:0:0:1]:443").ToString(), "[2001:db8::1]:443");
  EXPECT_EQ(Dest("[2001:db8::1]:443"), Dest("[2001:0db8::0001]:443"));
}

TEST(DestinationTest, V4MappedIpv6BecomesIpv4) {
  Destination d = Dest("[::ffff:10.0.0.1]:80");
  ASSERT_TRUE(d.ip.has_value());
  EXPECT_TRUE(d.ip->is_v4);
  EXPECT_EQ(d.ToString(), "10.0.0.1:80");
  EXPECT_EQ(d, Dest("10.0.0.1:80"));
  EXPECT_EQ(Dest("[::FFFF:7f00:1]:80").ToString(), "127.0.0.1:80");
}

TEST(DestinationTest, ToStringRoundTrips) {
  for (std::string_view text :
       {"a.example:1", "10.0.0.1:65535", "[fe80::1]:22", "[::]:8080", "0.0.0.0:9"}) {
    Destination d = Dest(text);
    EXPECT_EQ(d.ToString(), text);
    EXPECT_EQ(Dest(d.ToString()), d);
  }
}

TEST(DestinationTest, LengthLimits) {
  std::string label63 = Repeat('a', 63);
  EXPECT_TRUE(ParseDestination(label63 + ".example:1").ok());
  absl::StatusOr<Destination> long_label = ParseDestination(Repeat('a', 64) + ".example:1");
  ASSERT_FALSE(long_label.ok());
  EXPECT_THAT(long_label.status().message(), HasSubstr("label longer than 63"));

  // 4 * 63 + 3 dots = 255; trim to exactly 253 and 254.
  std::string name253 = label63 + "." + label63 + "." + label63 + "." + Repeat('a', 61);
  ASSERT_EQ(name253.size(), 253u);
  EXPECT_TRUE(ParseDestination(name253 + ":1").ok());
  EXPECT_TRUE(ParseDestination(name253 + ".:1").ok()) << "trailing dot does not count";
  absl::StatusOr<Destination> too_long = ParseDestination(name253 + "a:1");
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(), HasSubstr("longer than 253"));
}

struct BadDestination {
  std::string text;
  std::string message;
};

TEST(DestinationTest, RejectsMalformed) {
  const std::vector<BadDestination> cases = {
      {"", "destination is empty"},
      {":443", "host is empty"},
      {"gitlab.corp", "missing port"},
      {"gitlab.corp:", "port \"\" must be a number from 1 to 65535"},
      {"gitlab.corp:0", "must be a number from 1 to 65535"},
      {"gitlab.corp:65536", "must be a number from 1 to 65535"},
      {"gitlab.corp:123456", "must be a number from 1 to 65535"},
      {"gitlab.corp:https", "must be a number from 1 to 65535"},
      {"gitlab.corp:-1", "must be a number from 1 to 65535"},
      {"gitlab.corp:+443", "must be a number from 1 to 65535"},
      {"gitlab.corp: 443", "must be a number from 1 to 65535"},
      {"a..b:1", "empty label"},
      {".a:1", "empty label"},
      {"a.b..:1", "empty label"},
      {".:1", "is empty"},
      {"git lab:1", "contains a space"},
      {"gitlab$:1", "contains '$'"},
      {"*.example:1", "contains '*'"},
      {"b\xc3\xbc"
       "cher.example:443",
       "xn--"},
      {"a\nb:1", "control or non-ASCII"},
      {"[fe80::1%eth0]:22", "zone ids"},
      {"fe80::1%25eth0:22", "zone ids"},
      {"::1:22", "IPv6 addresses need brackets"},
      {"[::1]22", "expected [IPV6]:PORT"},
      {"[::1]", "expected [IPV6]:PORT"},
      {"[::1:22", "missing ']'"},
      {"[1.2.3.4]:80", "is not an IPv6 address"},
      {"[gitlab]:80", "is not an IPv6 address"},
      {"[::g]:80", "is not an IPv6 address"},
      {"a[b]:80", "misplaced"},
      // Numeric spellings that inet_pton refuses but resolvers accept.
      {"127.1:80", "ends in a number"},
      {"0x7f.0.0.1:80", "ends in a number"},
      {"0x7f000001:80", "ends in a number"},
      {"010.0.0.1:80", "ends in a number"},
      {"2130706433:80", "ends in a number"},
      {"1.2.3.4.5:80", "ends in a number"},
      {"host.123:80", "ends in a number"},
  };
  for (const BadDestination& c : cases) {
    absl::StatusOr<Destination> d = ParseDestination(c.text);
    ASSERT_FALSE(d.ok()) << c.text << " parsed as " << d->ToString();
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(Msg(d.status()), HasSubstr(c.message)) << c.text;
  }
}

TEST(DestinationTest, MessagesDoNotEchoControlBytes) {
  absl::StatusOr<Destination> d = ParseDestination("evil\x1b[31m:1");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(std::string(d.status().message()).find('\x1b'), std::string::npos);
  EXPECT_THAT(Msg(d.status()), HasSubstr("\\x1b"));
}

TEST(DestinationTest, MakeDestinationFromParts) {
  absl::StatusOr<Destination> d = MakeDestination("GitLab.Corp.", 443);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ToString(), "gitlab.corp:443");
  EXPECT_EQ(*MakeDestination("::1", 22), Dest("[::1]:22"));
  EXPECT_EQ(*MakeDestination("[::1]", 22), Dest("[::1]:22"));
  EXPECT_EQ(*MakeDestination("::ffff:1.2.3.4", 22), Dest("1.2.3.4:22"));
  EXPECT_FALSE(MakeDestination("gitlab", 0).ok());
  EXPECT_FALSE(MakeDestination("gitlab", 65536).ok());
  EXPECT_FALSE(MakeDestination("", 1).ok());
  EXPECT_FALSE(MakeDestination("[[::1]]", 1).ok());
  EXPECT_FALSE(MakeDestination("[1.2.3.4]", 1).ok());
  EXPECT_FALSE(MakeDestination("127.1", 1).ok());
}

TEST(DestinationTest, FromIpNormalisesMappedAddresses) {
  common::IpAddress mapped;
  mapped.is_v4 = false;
  mapped.bytes = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 169, 254};
  Destination d = DestinationFromIp(mapped, 80);
  EXPECT_EQ(d, Dest("169.254.169.254:80"));
}

// ---- DestinationPattern -------------------------------------------------------------

TEST(PatternTest, ExactHostIsNormalised) {
  DestinationPattern p = Pat("GitLab.Corp.Example.:443");
  EXPECT_EQ(p.kind(), DestinationPattern::Kind::kHost);
  EXPECT_EQ(p.ToString(), "gitlab.corp.example:443");
  EXPECT_TRUE(p.Matches(Dest("gitlab.corp.example:443")));
  EXPECT_TRUE(p.Matches(Dest("GITLAB.corp.example.:443")));
  EXPECT_FALSE(p.Matches(Dest("gitlab.corp.example:80")));
  EXPECT_FALSE(p.Matches(Dest("x.gitlab.corp.example:443")));
  EXPECT_FALSE(p.Matches(Dest("gitlab.corp.example.evil:443")));
}

TEST(PatternTest, WildcardMatchesOneOrMoreWholeLabels) {
  DestinationPattern p = Pat("*.git.corp.example:22");
  EXPECT_EQ(p.kind(), DestinationPattern::Kind::kWildcard);
  EXPECT_EQ(p.host(), "git.corp.example");
  EXPECT_TRUE(p.Matches(Dest("a.git.corp.example:22")));
  EXPECT_TRUE(p.Matches(Dest("a.b.c.git.corp.example:22")));
  EXPECT_TRUE(p.Matches(Dest("A.GIT.corp.example.:22")));
  EXPECT_FALSE(p.Matches(Dest("git.corp.example:22"))) << "the apex is not covered";
  EXPECT_FALSE(p.Matches(Dest("agit.corp.example:22"))) << "never part of a label";
  EXPECT_FALSE(p.Matches(Dest("a.git.corp.example.evil:22")));
  EXPECT_FALSE(p.Matches(Dest("a.git.corp.example:23")));
  EXPECT_FALSE(p.Matches(Dest("corp.example:22")));
  EXPECT_EQ(Pat("*.COM.:1").ToString(), "*.com:1");
}

TEST(PatternTest, PortsNumbersRangesAndAny) {
  DestinationPattern range = Pat("build.corp:8000-8100");
  EXPECT_EQ(range.port_min(), 8000);
  EXPECT_EQ(range.port_max(), 8100);
  EXPECT_TRUE(range.Matches(Dest("build.corp:8000")));
  EXPECT_TRUE(range.Matches(Dest("build.corp:8050")));
  EXPECT_TRUE(range.Matches(Dest("build.corp:8100")));
  EXPECT_FALSE(range.Matches(Dest("build.corp:7999")));
  EXPECT_FALSE(range.Matches(Dest("build.corp:8101")));
  EXPECT_EQ(range.ToString(), "build.corp:8000-8100");

  DestinationPattern any = Pat("build.corp:*");
  EXPECT_TRUE(any.Matches(Dest("build.corp:1")));
  EXPECT_TRUE(any.Matches(Dest("build.corp:65535")));
  EXPECT_EQ(Pat("build.corp:1-65535").ToString(), "build.corp:*");
  EXPECT_EQ(Pat("build.corp:443-443").ToString(), "build.corp:443");
}

TEST(PatternTest, CidrAndAddressPatterns) {
  DestinationPattern net = Pat("10.20.0.0/16:443");
  EXPECT_TRUE(net.is_cidr());
  EXPECT_TRUE(net.Matches(Dest("10.20.0.1:443")));
  EXPECT_TRUE(net.Matches(Dest("10.20.255.255:443")));
  EXPECT_TRUE(net.Matches(Dest("[::ffff:10.20.3.4]:443"))) << "v4-mapped is IPv4";
  EXPECT_FALSE(net.Matches(Dest("10.21.0.1:443")));
  EXPECT_FALSE(net.Matches(Dest("10.20.0.1:80")));
  EXPECT_EQ(net.ToString(), "10.20.0.0/16:443");

  DestinationPattern one = Pat("10.0.0.1:443");
  EXPECT_TRUE(one.is_cidr());
  EXPECT_TRUE(one.Matches(Dest("10.0.0.1:443")));
  EXPECT_FALSE(one.Matches(Dest("10.0.0.2:443")));
  EXPECT_EQ(one.ToString(), "10.0.0.1:443");
  EXPECT_EQ(Pat("10.0.0.1/32:443").ToString(), "10.0.0.1:443");

  DestinationPattern v6 = Pat("[2001:DB8::/32]:443");
  EXPECT_TRUE(v6.Matches(Dest("[2001:db8:1::5]:443")));
  EXPECT_FALSE(v6.Matches(Dest("[2001:db9::5]:443")));
  EXPECT_FALSE(v6.Matches(Dest("10.0.0.1:443")));
  EXPECT_EQ(v6.ToString(), "[2001:db8::/32]:443");
  EXPECT_EQ(Pat("[::1]:22").ToString(), "[::1]:22");
  EXPECT_EQ(Pat("[::1/128]:22").ToString(), "[::1]:22");
  EXPECT_EQ(Pat("[::ffff:10.0.0.1]:22").ToString(), "10.0.0.1:22");

  DestinationPattern v4 = Pat("10.0.0.0/8:*");
  EXPECT_FALSE(v4.Matches(Dest("[::a00:1]:443"))) << "IPv4-compatible IPv6 is not IPv4";
}

TEST(PatternTest, IpLiteralsAndNamesNeverCrossMatch) {
  // A CIDR rule never matches a name, even one that looks like it belongs there ...
  DestinationPattern net = Pat("10.0.0.0/8:443");
  EXPECT_FALSE(net.Matches(Dest("ten.example:443")));
  EXPECT_FALSE(net.Matches(Dest("10-0-0-1.example:443")));
  // ... and a host rule never matches an IP literal.
  EXPECT_FALSE(Pat("localhost:80").Matches(Dest("127.0.0.1:80")));
  EXPECT_FALSE(Pat("*.in-addr.arpa:80").Matches(Dest("127.0.0.1:80")));
  EXPECT_FALSE(Pat("*.example:80").Matches(Dest("[::1]:80")));
}

TEST(PatternTest, ToStringRoundTrips) {
  for (std::string_view text :
       {"gitlab.corp.example:443", "*.git.corp.example:22", "10.20.0.0/16:443", "10.0.0.1:443",
        "[2001:db8::/32]:443", "[::1]:22", "a.b:8000-8100", "a.b:*", "*.com:1"}) {
    DestinationPattern p = Pat(text);
    EXPECT_EQ(p.ToString(), text);
    EXPECT_EQ(Pat(p.ToString()).ToString(), text);
  }
}

TEST(PatternTest, RejectsMalformed) {
  const std::vector<BadDestination> cases = {
      {"", "destination pattern is empty"},
      {"*:443", "a host of just '*' would match every name"},
      {"*", "missing port"},
      {"*.:443", "is empty"},
      {"*.*.example:443", "'*' may only stand for whole labels at the left"},
      {"**.example:443", "'*' may only stand for whole labels at the left"},
      {"*example.com:443", "'*' may only stand for whole labels at the left"},
      {"a*.example.com:443", "'*' may only stand for whole labels at the left"},
      {"foo.*.example.com:443", "'*' may only stand for whole labels at the left"},
      {"example.*:443", "'*' may only stand for whole labels at the left"},
      {"*.10.0.0.1:443", "ends in a number"},
      {"gitlab.corp", "missing port"},
      {"gitlab.corp:0", "must be a number from 1 to 65535, a range LOW-HIGH, or *"},
      {"gitlab.corp:65536", "must be a number from 1 to 65535"},
      {"gitlab.corp:", "must be a number from 1 to 65535"},
      {"gitlab.corp:**", "must be a number from 1 to 65535"},
      {"gitlab.corp:8100-8000", "port range \"8100-8000\" must be LOW-HIGH"},
      {"gitlab.corp:0-10", "must be LOW-HIGH"},
      {"gitlab.corp:1-", "must be LOW-HIGH"},
      {"gitlab.corp:-5", "must be LOW-HIGH"},
      {"gitlab.corp:1-2-3", "must be LOW-HIGH"},
      {"10.20.1.0/16:443", "did you mean 10.20.0.0/16?"},
      {"[2001:db8::1/32]:443", "did you mean 2001:db8::/32?"},
      {"0.0.0.0/0:443", "would match every address"},
      {"[::/0]:443", "would match every address"},
      {"10.0.0.0/33:443", "prefix length must be 0..32"},
      {"10.0.0.0/:443", "prefix length"},
      {"10.0.0/8:443", "bad address"},
      {"gitlab/8:443", "bad address"},
      {"2001:db8::/32:443", "IPv6 addresses need brackets"},
      {"[2001:db8::/32]", "expected [IPV6]:PORT"},
      {"[10.0.0.0/8]:443", "brackets are only for IPv6"},
      {"[2001:db8::/32:443", "missing ']'"},
      {"[fe80::1%eth0]:22", "zone ids"},
      {"a..b:443", "empty label"},
      {"127.1:80", "ends in a number"},
      {"Git Lab:80", "contains a space"},
  };
  for (const BadDestination& c : cases) {
    absl::StatusOr<DestinationPattern> p = DestinationPattern::Parse(c.text);
    ASSERT_FALSE(p.ok()) << c.text << " parsed as " << p->ToString();
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(Msg(p.status()), HasSubstr(c.message)) << c.text;
  }
}

// ---- IdentityPattern ----------------------------------------------------------------

TEST(IdentityPatternTest, ExactAndSuffixGlobs) {
  IdentityPattern exact = *IdentityPattern::Parse("client/frontend", "client");
  EXPECT_TRUE(exact.Matches("client/frontend"));
  EXPECT_FALSE(exact.Matches("client/frontend2"));
  EXPECT_FALSE(exact.Matches("agent/frontend"));

  IdentityPattern glob = *IdentityPattern::Parse("client/gitserver-*", "client");
  EXPECT_TRUE(glob.Matches("client/gitserver-1"));
  EXPECT_TRUE(glob.Matches("client/gitserver-eu.west"));
  EXPECT_TRUE(glob.Matches("client/gitserver-")) << "'*' matches the empty suffix";
  EXPECT_FALSE(glob.Matches("client/gitserver"));
  EXPECT_FALSE(glob.Matches("client/gitserver-A")) << "not a valid identity";
  EXPECT_FALSE(glob.Matches("client/gitserver-1/x"));
  EXPECT_FALSE(glob.Matches("agent/gitserver-1"));
  EXPECT_FALSE(glob.Matches("client/gitserver-" + Repeat('a', 60))) << "NAME over 63 chars";
  EXPECT_EQ(glob.ToString(), "client/gitserver-*");

  IdentityPattern all = *IdentityPattern::Parse("agent/*", "agent");
  EXPECT_TRUE(all.Matches("agent/a"));
  EXPECT_FALSE(all.Matches("agent/"));
  EXPECT_FALSE(all.Matches("agent/-a"));
  EXPECT_FALSE(all.Matches("client/a"));
  EXPECT_FALSE(all.Matches(""));
}

TEST(IdentityPatternTest, RejectsMalformed) {
  const std::vector<BadDestination> cases = {
      {"frontend", "expected client/NAME or client/PREFIX*"},
      {"agent/acme", "this list takes client/... identities"},
      {"admin/root", "this list takes client/... identities"},
      {"Client/frontend", "this list takes client/... identities"},
      {"client/", "NAME must match"},
      {"client/Frontend", "NAME must match"},
      {"client/-x", "NAME must match"},
      {"client/a/b", "NAME must match"},
      {"client/" + Repeat('a', 64), "NAME must match"},
      {"client/a*b", "NAME must match"},
      {"client/*a", "NAME must match"},
      {"client/**", "'*' may appear only once, at the end of NAME"},
      {"client/-*", "'*' may appear only once, at the end of NAME"},
      {"client/a b*", "'*' may appear only once, at the end of NAME"},
  };
  for (const BadDestination& c : cases) {
    absl::StatusOr<IdentityPattern> p = IdentityPattern::Parse(c.text, "client");
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_THAT(Msg(p.status()), HasSubstr(c.message)) << c.text;
  }
}

// ---- Policy: decisions --------------------------------------------------------------

// The example policy of DESIGN §4.
constexpr std::string_view kDesignPolicy = R"(
rules:
  - name: frontend-to-acme-gitlab
    clients: ["client/frontend", "client/gitserver-*"]
    agents: ["agent/acme-*"]
    destinations: ["gitlab.corp.example:443", "*.git.corp.example:22", "10.20.0.0/16:443"]
)";

TEST(PolicyTest, DesignExample) {
  std::shared_ptr<const Policy> p = MustParse(kDesignPolicy);
  ASSERT_EQ(p->rules().size(), 1u);

  Policy::Decision d = p->Check("client/frontend", "agent/acme-1", Dest("gitlab.corp.example:443"));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule, "frontend-to-acme-gitlab");
  EXPECT_EQ(d.reason,
            "rule \"frontend-to-acme-gitlab\" allows client/frontend to reach "
            "gitlab.corp.example:443 via agent/acme-1");

  EXPECT_TRUE(
      p->Check("client/gitserver-7", "agent/acme-eu", Dest("ssh.git.corp.example:22")).allowed);
  EXPECT_TRUE(p->Check("client/frontend", "agent/acme-1", Dest("10.20.9.9:443")).allowed);
  EXPECT_TRUE(
      p->Check("client/frontend", "agent/acme-1", Dest("GitLab.Corp.Example.:443")).allowed);

  // Each of client, agent and destination can deny on its own.
  Policy::Decision denied =
      p->Check("client/backend", "agent/acme-1", Dest("gitlab.corp.example:443"));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.rule, "");
  EXPECT_EQ(denied.reason,
            "no rule allows client/backend to reach gitlab.corp.example:443 via agent/acme-1");
  EXPECT_FALSE(p->Check("client/frontend", "agent/other", Dest("gitlab.corp.example:443")).allowed);
  EXPECT_FALSE(p->Check("client/frontend", "agent/acme-1", Dest("gitlab.corp.example:22")).allowed);
  EXPECT_FALSE(p->Check("client/frontend", "agent/acme-1", Dest("git.corp.example:22")).allowed);
  EXPECT_FALSE(p->Check("client/frontend", "agent/acme-1", Dest("10.21.0.1:443")).allowed);
  // Identity strings of the wrong kind never match.
  EXPECT_FALSE(p->Check("agent/frontend", "agent/acme-1", Dest("gitlab.corp.example:443")).allowed);
  EXPECT_FALSE(
      p->Check("client/frontend", "client/acme-1", Dest("gitlab.corp.example:443")).allowed);
}

TEST(PolicyTest, DenyByDefault) {
  std::shared_ptr<const Policy> empty = MustParse("rules: []\n");
  EXPECT_TRUE(empty->rules().empty());
  EXPECT_FALSE(empty->Check("client/a", "agent/b", Dest("a.example:443")).allowed);
  EXPECT_FALSE(empty->AllowsClient("client/a", Dest("a.example:443")));
  EXPECT_FALSE(Policy::DenyAll()->Check("client/a", "agent/b", Dest("a.example:443")).allowed);
  EXPECT_EQ(Policy::DenyAll()->ToYaml(), "rules: []\n");
}

TEST(PolicyTest, FirstMatchingRuleWins) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - name: narrow
    clients: [client/ci]
    agents: [agent/a]
    destinations: ["gitlab.corp:443"]
  - name: broad
    clients: ["client/*"]
    agents: ["agent/*"]
    destinations: ["*.corp:443", "gitlab.corp:443"]
  - name: never-reached
    clients: [client/ci]
    agents: [agent/a]
    destinations: ["gitlab.corp:443"]
)");
  EXPECT_EQ(p->Check("client/ci", "agent/a", Dest("gitlab.corp:443")).rule, "narrow");
  EXPECT_EQ(p->Check("client/ci", "agent/b", Dest("gitlab.corp:443")).rule, "broad");
  EXPECT_EQ(p->Check("client/web", "agent/a", Dest("wiki.corp:443")).rule, "broad");
  EXPECT_FALSE(p->Check("client/web", "agent/a", Dest("wiki.corp:80")).allowed);
  EXPECT_THAT(p->MatchingRules("client/ci", Dest("gitlab.corp:443")),
              ElementsAre("narrow", "broad", "never-reached"));
  EXPECT_THAT(p->MatchingRules("client/web", Dest("gitlab.corp:443")), ElementsAre("broad"));
  EXPECT_THAT(p->MatchingRules("client/web", Dest("10.0.0.1:443")), IsEmpty());
}

TEST(PolicyTest, ClientAndAgentFilters) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - name: git
    clients: [client/ci]
    agents: [agent/acme-*]
    destinations: ["gitlab.corp:443"]
  - name: db
    clients: [client/ci, client/reports]
    agents: [agent/db]
    destinations: ["[2001:db8::/48]:5432", "10.1.0.0/24:5432"]
)");
  EXPECT_TRUE(p->AllowsClient("client/ci", Dest("gitlab.corp:443")));
  EXPECT_FALSE(p->AllowsClient("client/reports", Dest("gitlab.corp:443")));
  EXPECT_TRUE(p->AllowsClient("client/reports", Dest("[2001:db8::7]:5432")));
  EXPECT_TRUE(p->AllowsClient("client/reports", Dest("10.1.0.7:5432")));
  EXPECT_FALSE(p->AllowsClient("client/reports", Dest("db.corp:5432")));

  EXPECT_TRUE(p->AgentAllowed("client/ci", "agent/acme-2", Dest("gitlab.corp:443")));
  EXPECT_FALSE(p->AgentAllowed("client/ci", "agent/db", Dest("gitlab.corp:443")));
  EXPECT_TRUE(p->AgentAllowed("client/ci", "agent/db", Dest("10.1.0.7:5432")));
  EXPECT_FALSE(p->AgentAllowed("client/ci", "agent/acme-2", Dest("10.1.0.7:5432")));
}

TEST(PolicyTest, HostRulesAndCidrRulesDoNotCrossMatch) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - name: nets
    clients: ["client/*"]
    agents: ["agent/*"]
    destinations: ["10.0.0.0/8:443"]
  - name: names
    clients: ["client/*"]
    agents: ["agent/*"]
    destinations: ["*.example:443", "localhost:443"]
)");
  EXPECT_FALSE(p->Check("client/a", "agent/b", Dest("ten.example.com:443")).allowed);
  EXPECT_EQ(p->Check("client/a", "agent/b", Dest("ten.example:443")).rule, "names");
  EXPECT_EQ(p->Check("client/a", "agent/b", Dest("10.2.3.4:443")).rule, "nets");
  EXPECT_FALSE(p->Check("client/a", "agent/b", Dest("127.0.0.1:443")).allowed);
  EXPECT_FALSE(p->Check("client/a", "agent/b", Dest("[::1]:443")).allowed);
}

// ---- Policy: parsing ----------------------------------------------------------------

struct BadPolicy {
  std::string yaml;
  std::string message;
};

constexpr std::string_view kGoodRuleBody = R"(
    clients: [client/a]
    agents: [agent/b]
    destinations: ["a.example:443"]
)";

TEST(PolicyParseTest, RejectsMalformedWithPreciseMessages) {
  const std::string good = std::string("  - name: ok") + std::string(kGoodRuleBody);
  const std::vector<BadPolicy> cases = {
      {"", "the document is empty; write \"rules: []\" to deny everything"},
      {"# just a comment\n", "the document is empty"},
      {"~\n", "the document is empty"},
      {"rules: []\n---\nrules: []\n", "found more than one YAML document"},
      {"rules: []\n---\n", "found more than one YAML document"},
      // yaml-cpp 0.7's LoadAll loops forever on these (jbeder/yaml-cpp#1319).
      {",l", "the document is empty"},
      {"rules: []\n,\n", "policy: "},
      {"rules: &r [*r]\n", "rules[0] (line 1): each rule must be a map"},
      {"[]\n", "the top level must be a map with a \"rules\" list"},
      {"just text\n", "the top level must be a map"},
      {"{}\n", "missing \"rules\""},
      {"rule: []\n", "unknown top-level key \"rule\"; a policy has only \"rules\""},
      {"rules: []\nversion: 2\n", "unknown top-level key \"version\""},
      {"rules: []\nrules: []\n", "\"rules\" appears twice"},
      {"? [a]\n: 1\n", "unknown top-level key (not a string)"},
      {"rules:\n", "\"rules\" (line 1) must be a list of rules"},
      {"x: 1\n", "unknown top-level key \"x\""},
      {"\n\nrules: {}\n", "\"rules\" (line 3) must be a list of rules"},
      {"rules: nope\n",
       "policy: \"rules\" (line 1) must be a list of rules; write \"rules: []\" to deny "
       "everything"},
      {"rules: [1]\n", "policy: rules[0] (line 1): each rule must be a map"},
      {"rules:\n  - [a]\n", "rules[0] (line 2): each rule must be a map"},
      {"rules:\n  - {}\n", "rules[0] (line 2): missing field \"name\""},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n",
       "rules[0] (\"x\", line 2): missing field \"destinations\""},
      {"rules:\n  - name: x\n    clients: [client/a]\n    destinations: [\"a.b:1\"]\n",
       "rules[0] (\"x\", line 2): missing field \"agents\""},
      {"rules:\n  - name: x\n    agents: [agent/a]\n    destinations: [\"a.b:1\"]\n",
       "missing field \"clients\""},
      {"rules:\n" + good + "  - name: bad\n    client: [client/a]\n",
       "rules[1] (\"bad\", line 6): unknown field \"client\"; a rule has name, clients, agents, "
       "destinations"},
      {"rules:\n  - name: x\n    name: y\n",
       "rules[0] (\"x\", line 2): field \"name\" appears twice"},
      {"rules:\n  - ? [k]\n    : v\n", "field names must be strings"},
      {"rules:\n  - name: [x]" + std::string(kGoodRuleBody),
       "rules[0] (line 2): field \"name\" must be a string"},
      {"rules:\n  - name:" + std::string(kGoodRuleBody), "field \"name\" must be a string"},
      {"rules:\n  - name: null" + std::string(kGoodRuleBody), "field \"name\" must be a string"},
      {"rules:\n  - name: ~" + std::string(kGoodRuleBody), "field \"name\" must be a string"},
      {"rules:\n  - name: Bad_Name" + std::string(kGoodRuleBody),
       "rules[0] (\"Bad_Name\", line 2): name \"Bad_Name\" must match [a-z0-9][a-z0-9._-]*"},
      {"rules:\n  - name: -x" + std::string(kGoodRuleBody), "must match [a-z0-9][a-z0-9._-]*"},
      {"rules:\n  - name: \"\"" + std::string(kGoodRuleBody), "must match [a-z0-9][a-z0-9._-]*"},
      {"rules:\n  - name: " + Repeat('a', 129) + std::string(kGoodRuleBody),
       "at most 128 characters"},
      {"rules:\n" + good + good,
       "rules[1] (\"ok\", line 6): name \"ok\" is already used by "
       "rules[0]; rule names must be unique"},
      {"rules:\n  - name: x\n    clients: client/a\n    agents: [agent/b]\n    destinations: "
       "[\"a.b:1\"]\n",
       "rules[0] (\"x\", line 2): field \"clients\" must be a list of strings, e.g. "
       "[\"client/frontend\"]"},
      {"rules:\n  - name: x\n    clients: []\n    agents: [agent/b]\n    destinations: "
       "[\"a.b:1\"]\n",
       "rules[0] (\"x\", line 2): field \"clients\" must not be empty"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: []\n    destinations: "
       "[\"a.b:1\"]\n",
       "field \"agents\" must not be empty"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n    destinations: "
       "[]\n",
       "field \"destinations\" must not be empty"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n    destinations:\n",
       "field \"destinations\" must be a list of strings"},
      {"rules:\n  - name: x\n    clients: [client/a, [client/b]]\n    agents: [agent/b]\n    "
       "destinations: [\"a.b:1\"]\n",
       "clients[1] must be a string"},
      {"rules:\n  - name: x\n    clients: [client/a, ~]\n    agents: [agent/b]\n    "
       "destinations: [\"a.b:1\"]\n",
       "clients[1] must be a string"},
      {"rules:\n  - name: x\n    clients: [client/a, agent/b]\n    agents: [agent/b]\n    "
       "destinations: [\"a.b:1\"]\n",
       "rules[0] (\"x\", line 2): clients[1]: identity pattern \"agent/b\": this list takes "
       "client/... identities"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [client/b]\n    "
       "destinations: [\"a.b:1\"]\n",
       "agents[0]: identity pattern \"client/b\": this list takes agent/... identities"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/B]\n    "
       "destinations: [\"a.b:1\"]\n",
       "agents[0]: identity pattern \"agent/B\": NAME must match"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n    "
       "destinations: [\"a.b:1\", \"*:443\"]\n",
       "rules[0] (\"x\", line 2): destinations[1]: destination pattern \"*:443\": a host of "
       "just '*' would match every name"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n    "
       "destinations: [a.b]\n",
       "destinations[0]: destination pattern \"a.b\": missing port"},
      {"rules:\n  - name: x\n    clients: [client/a]\n    agents: [agent/b]\n    "
       "destinations: [\"a.b:1\"]\n    extra: 1\n",
       "unknown field \"extra\""},
      {"rules: [\n", "policy: not valid YAML: "},
      {"rules:\n  - name: x\n   bad: indent\n", "policy: not valid YAML: "},
      {"rules: [" + Repeat('[', 3000), "policy: not valid YAML: "},
      {"rules: *nope\n", "policy: not valid YAML: "},
  };
  for (const BadPolicy& c : cases) {
    absl::StatusOr<std::shared_ptr<const Policy>> p = Policy::Parse(c.yaml);
    ASSERT_FALSE(p.ok()) << "accepted:\n" << c.yaml;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(Msg(p.status()), HasSubstr(c.message)) << c.yaml;
    EXPECT_TRUE(common::StartsWith(Msg(p.status()), "policy: ")) << p.status();
  }
}

TEST(PolicyParseTest, SizeLimits) {
  std::string big = "rules: []\n" + std::string(Policy::kMaxYamlBytes, '#');
  absl::StatusOr<std::shared_ptr<const Policy>> p = Policy::Parse(big);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("more than the limit of 1048576 (1 MiB)"));

  std::string many = "rules:\n";
  for (size_t i = 0; i <= Policy::kMaxRules; ++i) {
    common::StrAppend(&many, "- {name: r", i,
                      ", clients: [client/a], agents: [agent/b], destinations: [\"a.b:1\"]}\n");
  }
  ASSERT_LE(many.size(), Policy::kMaxYamlBytes);
  p = Policy::Parse(many);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("10001 rules is more than the limit of 10000"));
}

TEST(PolicyParseTest, AliasesCannotMultiplyWork) {
  // One anchored list referenced from many rules: small text, many entries.
  std::string yaml = "rules:\n- {name: r0, clients: &c [";
  for (int i = 0; i < 2000; ++i) {
    common::StrAppend(&yaml, i == 0 ? "" : ", ", "client/c", i);
  }
  yaml += "], agents: [agent/a], destinations: [\"a.b:1\"]}\n";
  for (int i = 1; i < 150; ++i) {
    common::StrAppend(&yaml, "- {name: r", i,
                      ", clients: *c, agents: [agent/a], destinations: [\"a.b:1\"]}\n");
  }
  absl::StatusOr<std::shared_ptr<const Policy>> p = Policy::Parse(yaml);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("more than 200000 list entries in all"));

  // A modest use of aliases is fine.
  p = Policy::Parse(
      "rules:\n- {name: a, clients: &c [client/x], agents: &g [agent/y], destinations: "
      "[\"a.b:1\"]}\n- {name: b, clients: *c, agents: *g, destinations: [\"c.d:2\"]}\n");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE((*p)->Check("client/x", "agent/y", Dest("c.d:2")).allowed);
}

TEST(PolicyParseTest, ScalarsThatLookLikeOtherTypesAreStrings) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - name: "null"
    clients: [client/a]
    agents: [agent/b]
    destinations: ["a.example:443"]
  - name: yes
    clients: [client/a]
    agents: [agent/b]
    destinations: ["b.example:443"]
  - name: 2024
    clients: [client/a]
    agents: [agent/b]
    destinations: ["c.example:443"]
)");
  ASSERT_EQ(p->rules().size(), 3u);
  EXPECT_EQ(p->rules()[0].name, "null");
  EXPECT_EQ(p->rules()[1].name, "yes");
  EXPECT_EQ(p->rules()[2].name, "2024");
  absl::StatusOr<std::shared_ptr<const Policy>> again = Policy::Parse(p->ToYaml());
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << p->ToYaml();
  EXPECT_EQ((*again)->rules()[0].name, "null");
}

TEST(PolicyParseTest, ToYamlIsCanonicalAndRoundTrips) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - destinations: ["GitLab.Corp.Example.:443", "*.Git.corp.example:22", "10.20.0.0/16:443",
                   "[2001:DB8::/32]:1-65535", "10.0.0.1/32:8000-8000", "[::ffff:10.0.0.2]:80"]
    agents: ["agent/acme-*"]
    name: frontend-to-acme-gitlab
    clients:
      - client/frontend
      - "client/gitserver-*"
  - name: all-clients
    clients: ["client/*"]
    agents: [agent/x]
    destinations: [wiki.corp:443]
)");
  const std::string expected =
      "rules:\n"
      "  - name: \"frontend-to-acme-gitlab\"\n"
      "    clients: [\"client/frontend\", \"client/gitserver-*\"]\n"
      "    agents: [\"agent/acme-*\"]\n"
      "    destinations: [\"gitlab.corp.example:443\", \"*.git.corp.example:22\", "
      "\"10.20.0.0/16:443\", \"[2001:db8::/32]:*\", \"10.0.0.1:8000\", \"10.0.0.2:80\"]\n"
      "  - name: \"all-clients\"\n"
      "    clients: [\"client/*\"]\n"
      "    agents: [\"agent/x\"]\n"
      "    destinations: [\"wiki.corp:443\"]\n";
  EXPECT_EQ(p->ToYaml(), expected);
  std::shared_ptr<const Policy> again = MustParse(p->ToYaml());
  EXPECT_EQ(again->ToYaml(), expected);
  EXPECT_EQ(MustParse("rules: []")->ToYaml(), "rules: []\n");
  EXPECT_EQ(MustParse(kDesignPolicy)->ToYaml(),
            MustParse(MustParse(kDesignPolicy)->ToYaml())->ToYaml());
}

TEST(PolicyParseTest, FromRulesValidatesLikeParse) {
  Rule rule{"git", {"client/ci"}, {"agent/a"}, {Pat("gitlab.corp:443")}};
  absl::StatusOr<std::shared_ptr<const Policy>> p = Policy::FromRules({rule});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE((*p)->Check("client/ci", "agent/a", Dest("gitlab.corp:443")).allowed);

  p = Policy::FromRules({rule, rule});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()),
              HasSubstr("rules[1] (\"git\"): name \"git\" is already used by rules[0]"));

  Rule bad = rule;
  bad.agents = {"agent/a", "agent/*x"};
  p = Policy::FromRules({bad});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("rules[0] (\"git\"): agents[1]: identity pattern"));

  bad = rule;
  bad.destinations.clear();
  p = Policy::FromRules({bad});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("field \"destinations\" must not be empty"));

  bad = rule;
  bad.name = "";
  p = Policy::FromRules({bad});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(Msg(p.status()), HasSubstr("rules[0]: name \"\" must match"));
}

// ---- Policy: Explain ----------------------------------------------------------------

TEST(PolicyExplainTest, AllowedNamesTheRule) {
  std::shared_ptr<const Policy> p = MustParse(kDesignPolicy);
  EXPECT_EQ(p->Explain("client/frontend", "agent/acme-1", Dest("gitlab.corp.example:443")),
            "allowed: rule \"frontend-to-acme-gitlab\" allows client/frontend to reach "
            "gitlab.corp.example:443 via agent/acme-1\n");
  EXPECT_EQ(p->Explain("client/frontend", "", Dest("gitlab.corp.example:443")),
            "allowed: client/frontend may reach gitlab.corp.example:443 through an agent named "
            "by:\n"
            "  rule \"frontend-to-acme-gitlab\" (agents: agent/acme-*)\n");
}

TEST(PolicyExplainTest, DeniedListsNearMisses) {
  std::shared_ptr<const Policy> p = MustParse(R"(
rules:
  - name: git
    clients: [client/ci]
    agents: [agent/acme-*]
    destinations: ["gitlab.corp:443", "*.git.corp:22"]
  - name: db
    clients: [client/reports]
    agents: [agent/db]
    destinations: ["10.1.0.0/24:5432"]
  - name: unrelated
    clients: [client/other]
    agents: [agent/other]
    destinations: ["other.corp:1"]
)");
  EXPECT_EQ(p->Explain("client/ci", "agent/acme-1", Dest("gitlab.corp:80")),
            "denied: no rule allows client/ci to reach gitlab.corp:80 via agent/acme-1\n"
            "near misses:\n"
            "  rule \"git\" matches the client and agent but not destination gitlab.corp:80 "
            "(destinations: gitlab.corp:443, *.git.corp:22); gitlab.corp:443 names the host "
            "but not port 80\n");
  EXPECT_EQ(p->Explain("client/ci", "agent/db", Dest("gitlab.corp:443")),
            "denied: no rule allows client/ci to reach gitlab.corp:443 via agent/db\n"
            "near misses:\n"
            "  rule \"git\" matches the client and destination but not agent agent/db (agents: "
            "agent/acme-*)\n");
  EXPECT_EQ(p->Explain("client/web", "agent/db", Dest("10.1.0.9:5432")),
            "denied: no rule allows client/web to reach 10.1.0.9:5432 via agent/db\n"
            "near misses:\n"
            "  rule \"db\" matches the destination and agent but not client client/web (clients: "
            "client/reports)\n");
  EXPECT_THAT(p->Explain("client/ci", "agent/acme-1", Dest("git.corp:22")),
              HasSubstr("*.git.corp:22 matches names below git.corp, not git.corp itself"));
  EXPECT_THAT(p->Explain("client/ci", "agent/acme-1", Dest("10.9.9.9:443")),
              HasSubstr("IP-literal destinations match only CIDR/IP entries"));
  EXPECT_THAT(p->Explain("client/reports", "agent/db", Dest("db.corp:5432")),
              HasSubstr("host names are never resolved to match CIDR entries"));
  EXPECT_EQ(p->Explain("client/nobody", "agent/nothing", Dest("x.corp:1")),
            "denied: no rule allows client/nobody to reach x.corp:1 via agent/nothing\n"
            "no rule comes close: none matches all but one of client, agent and destination\n");
  // Without an agent, only client and destination count.
  EXPECT_EQ(p->Explain("client/web", "", Dest("gitlab.corp:443")),
            "denied: no rule allows client/web to reach gitlab.corp:443\n"
            "near misses:\n"
            "  rule \"git\" matches the destination but not client client/web (clients: "
            "client/ci)\n");
}

TEST(PolicyExplainTest, FlagsMalformedIdentities) {
  std::shared_ptr<const Policy> p = MustParse(kDesignPolicy);
  std::string text = p->Explain("frontend", "agent/acme-1", Dest("gitlab.corp.example:443"));
  EXPECT_THAT(text, HasSubstr("note: frontend is not a client identity (expected client/NAME)"));
  text = p->Explain("client/frontend", "acme\x1b", Dest("gitlab.corp.example:443"));
  EXPECT_THAT(text, HasSubstr("note: \"acme\\x1b\" is not an agent identity"));
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
}

TEST(PolicyExplainTest, NearMissesAreCapped) {
  std::string yaml = "rules:\n";
  for (int i = 0; i < 30; ++i) {
    common::StrAppend(&yaml, "- {name: r", i,
                      ", clients: [client/a], agents: [agent/b], destinations: [\"h", i,
                      ".corp:1\"]}\n");
  }
  std::string text = MustParse(yaml)->Explain("client/a", "agent/b", Dest("x.corp:1"));
  EXPECT_THAT(text, HasSubstr("rule \"r19\""));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("rule \"r20\"")));
  EXPECT_THAT(text, HasSubstr("  ... and 10 more\n"));
}

// ---- Allowlist ----------------------------------------------------------------------

Allowlist MustAllow(const std::vector<std::string>& entries) {
  absl::StatusOr<Allowlist> a = Allowlist::Parse(entries);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *a : Allowlist();
}

TEST(AllowlistTest, ParseAndAllowsName) {
  Allowlist a = MustAllow({"GitLab.Corp:443", "*.git.corp:22", "10.0.0.0/8:5432"});
  EXPECT_THAT(a.ToStrings(), ElementsAre("gitlab.corp:443", "*.git.corp:22", "10.0.0.0/8:5432"));
  EXPECT_TRUE(a.AllowsName(Dest("gitlab.corp:443")));
  EXPECT_TRUE(a.AllowsName(Dest("x.git.corp:22")));
  EXPECT_TRUE(a.AllowsName(Dest("10.3.3.3:5432")));
  EXPECT_FALSE(a.AllowsName(Dest("git.corp:22")));
  EXPECT_FALSE(a.AllowsName(Dest("db.corp:5432")));
  EXPECT_FALSE(Allowlist().AllowsName(Dest("gitlab.corp:443")));
  EXPECT_TRUE(Allowlist::Parse({}).ok());

  absl::StatusOr<Allowlist> bad = Allowlist::Parse({"gitlab.corp:443", "*:22"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(Msg(bad.status()),
              HasSubstr("allowlist entry 1: destination pattern \"*:22\": a host of just '*'"));
}

TEST(AllowlistTest, NameNotAllowedIsRefusedBeforeResolution) {
  Allowlist a = MustAllow({"gitlab.corp:443"});
  absl::Status s = a.CheckResolved(Dest("wiki.corp:443"), Ip("10.0.0.5"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(s), "destination wiki.corp:443 is not named by this agent's allowlist");
  EXPECT_TRUE(a.CheckResolved(Dest("gitlab.corp:443"), Ip("10.0.0.5")).ok());
  EXPECT_TRUE(a.CheckResolved(Dest("gitlab.corp:443"), Ip("2001:db8::5")).ok());
}

TEST(AllowlistTest, RebindingToLoopbackIsRefused) {
  Allowlist a = MustAllow({"gitlab.corp:443"});
  absl::Status s = a.CheckResolved(Dest("gitlab.corp:443"), Ip("127.0.0.1"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(s),
              HasSubstr("destination gitlab.corp:443 resolved to 127.0.0.1, a loopback address "
                        "not named by any allowlist entry"));
  EXPECT_THAT(Msg(s), HasSubstr("add the entry \"127.0.0.1:443\""));
  EXPECT_EQ(a.CheckResolved(Dest("gitlab.corp:443"), Ip("127.8.9.10")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(a.CheckResolved(Dest("gitlab.corp:443"), Ip("::1"))),
              HasSubstr("resolved to ::1, a loopback address"));
  // A v4-mapped answer is the IPv4 address it carries.
  EXPECT_THAT(Msg(a.CheckResolved(Dest("gitlab.corp:443"), Ip("::ffff:127.0.0.1"))),
              HasSubstr("resolved to 127.0.0.1, a loopback address"));
  common::IpAddress raw_mapped;
  raw_mapped.is_v4 = false;
  raw_mapped.bytes = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(a.CheckResolved(Dest("gitlab.corp:443"), raw_mapped).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AllowlistTest, RebindingToMetadataLinkLocalAndUnspecifiedIsRefused) {
  Allowlist a = MustAllow({"*.corp:*"});
  struct Case {
    std::string address;
    std::string kind;
  };
  for (const Case& c : std::vector<Case>{{"169.254.169.254", "a cloud metadata address"},
                                         {"100.100.100.200", "a cloud metadata address"},
                                         {"fd00:ec2::254", "a cloud metadata address"},
                                         {"169.254.1.1", "a link-local address"},
                                         {"fe80::1", "a link-local address"},
                                         {"febf::1", "a link-local address"},
                                         {"0.0.0.0", "an unspecified address"},
                                         {"0.1.2.3", "an unspecified address"},
                                         {"::", "an unspecified address"}}) {
    absl::Status s = a.CheckResolved(Dest("app.corp:80"), Ip(c.address));
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << c.address;
    EXPECT_THAT(Msg(s), HasSubstr(common::StrCat("resolved to ", Ip(c.address).ToString(), ", ",
                                                 c.kind, " not named by any allowlist entry")))
        << c.address;
  }
  for (std::string_view ok : {"10.0.0.1", "192.168.1.1", "100.100.100.201", "169.253.255.255",
                              "fec0::1", "fd00:ec2::253", "2001:db8::1", "1.0.0.0"}) {
    EXPECT_TRUE(a.CheckResolved(Dest("app.corp:80"), Ip(ok)).ok()) << ok;
  }
}

TEST(AllowlistTest, ExplicitCidrEntryAllowsSpecialAddresses) {
  Allowlist a = MustAllow({"app.corp:8080", "127.0.0.1/32:8080", "[::1]:8080", "[fe80::/64]:8080",
                           "169.254.169.254:80", "metadata.corp:80"});
  EXPECT_TRUE(a.CheckResolved(Dest("app.corp:8080"), Ip("127.0.0.1")).ok());
  EXPECT_TRUE(a.CheckResolved(Dest("app.corp:8080"), Ip("::1")).ok());
  EXPECT_TRUE(a.CheckResolved(Dest("app.corp:8080"), Ip("fe80::1")).ok());
  // The explicit entry covers exactly its addresses and ports.
  EXPECT_FALSE(a.CheckResolved(Dest("app.corp:8080"), Ip("127.0.0.2")).ok());
  EXPECT_FALSE(a.CheckResolved(Dest("app.corp:8080"), Ip("fe80:0:0:1::1")).ok());
  EXPECT_FALSE(a.CheckResolved(Dest("app.corp:8080"), Ip("169.254.169.254")).ok());
  EXPECT_TRUE(a.CheckResolved(Dest("metadata.corp:80"), Ip("169.254.169.254")).ok());

  Allowlist other_port = MustAllow({"app.corp:*", "127.0.0.1:9090"});
  EXPECT_FALSE(other_port.CheckResolved(Dest("app.corp:8080"), Ip("127.0.0.1")).ok());
  EXPECT_TRUE(other_port.CheckResolved(Dest("app.corp:9090"), Ip("127.0.0.1")).ok());
}

TEST(AllowlistTest, IpLiteralsNeedACidrEntry) {
  Allowlist a = MustAllow({"10.0.0.0/8:443", "127.0.0.0/8:8080", "localhost:8080"});
  EXPECT_TRUE(a.AllowsName(Dest("10.1.1.1:443")));
  EXPECT_TRUE(a.CheckResolved(Dest("10.1.1.1:443"), Ip("10.1.1.1")).ok());
  // The CIDR entry that admits a literal names it explicitly, even in a special range.
  EXPECT_TRUE(a.CheckResolved(Dest("127.0.0.1:8080"), Ip("127.0.0.1")).ok());
  // A literal never resolves to something else.
  EXPECT_EQ(a.CheckResolved(Dest("10.1.1.1:443"), Ip("10.1.1.2")).code(),
            absl::StatusCode::kPermissionDenied);
  // Host entries never admit literals: "localhost" does not make 127.0.0.1 reachable.
  Allowlist names = MustAllow({"localhost:8080"});
  absl::Status s = names.CheckResolved(Dest("127.0.0.1:8080"), Ip("127.0.0.1"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Msg(s), "destination 127.0.0.1:8080 is not named by this agent's allowlist");
  EXPECT_FALSE(names.CheckResolved(Dest("[::1]:8080"), Ip("::1")).ok());
  // ... while the name itself still needs an explicit entry to land on loopback.
  EXPECT_FALSE(names.CheckResolved(Dest("localhost:8080"), Ip("127.0.0.1")).ok());
  EXPECT_TRUE(a.CheckResolved(Dest("localhost:8080"), Ip("127.0.0.1")).ok());
}

TEST(AllowlistTest, EveryResolvedAddressMustPass) {
  Allowlist a = MustAllow({"gitlab.corp:443"});
  EXPECT_TRUE(a.CheckResolved(Dest("gitlab.corp:443"), {Ip("10.0.0.1"), Ip("2001:db8::1")}).ok());
  absl::Status s =
      a.CheckResolved(Dest("gitlab.corp:443"), {Ip("10.0.0.1"), Ip("169.254.169.254")});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(Msg(s), HasSubstr("169.254.169.254, a cloud metadata address"));
  EXPECT_EQ(a.CheckResolved(Dest("gitlab.corp:443"), std::vector<common::IpAddress>{}).code(),
            absl::StatusCode::kNotFound);
}

TEST(AllowlistTest, ClassifyAddress) {
  EXPECT_EQ(ClassifyAddress(Ip("127.0.0.1")), SpecialRange::kLoopback);
  EXPECT_EQ(ClassifyAddress(Ip("::1")), SpecialRange::kLoopback);
  EXPECT_EQ(ClassifyAddress(Ip("169.254.169.254")), SpecialRange::kMetadata);
  EXPECT_EQ(ClassifyAddress(Ip("fd00:ec2::254")), SpecialRange::kMetadata);
  EXPECT_EQ(ClassifyAddress(Ip("169.254.0.1")), SpecialRange::kLinkLocal);
  EXPECT_EQ(ClassifyAddress(Ip("fe80::abcd")), SpecialRange::kLinkLocal);
  EXPECT_EQ(ClassifyAddress(Ip("fec0::1")), SpecialRange::kNone);
  EXPECT_EQ(ClassifyAddress(Ip("0.0.0.0")), SpecialRange::kUnspecified);
  EXPECT_EQ(ClassifyAddress(Ip("::")), SpecialRange::kUnspecified);
  EXPECT_EQ(ClassifyAddress(Ip("::2")), SpecialRange::kNone);
  EXPECT_EQ(ClassifyAddress(Ip("128.0.0.1")), SpecialRange::kNone);
}

}  // namespace
}  // namespace drawbridge::policy

#include "common/dns_srv.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace drawbridge::common {
namespace {

// DNS wire format, built by hand (RFC 1035 4.1).
std::string U16(int v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }
std::string Name(const std::string& dotted) {
  std::string out;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) {
      dot = dotted.size();
    }
    out += static_cast<char>(dot - start);
    out += dotted.substr(start, dot - start);
    start = dot + 1;
  }
  return out + '\0';
}
struct Rr {
  int type = 33;  // SRV
  std::string rdata;
};
std::string Srv(int priority, int weight, int port, const std::string& target) {
  return U16(priority) + U16(weight) + U16(port) + Name(target);
}
std::string Response(const std::vector<Rr>& answers) {
  std::string m =
      U16(0x1234) + U16(0x8180) + U16(1) + U16(static_cast<int>(answers.size())) + U16(0) + U16(0);
  m += Name("_drawbridge._tcp.example.com") + U16(33) + U16(1);
  for (const auto& rr : answers) {
    // The owner as a pointer to the question's name (offset 12).
    m += std::string("\xc0\x0c", 2) + U16(rr.type) + U16(1) + U16(0) + U16(300) +
         U16(static_cast<int>(rr.rdata.size())) + rr.rdata;
  }
  return m;
}

TEST(DnsSrv, ParsesTargetsInWireOrderAndSkipsOtherTypes) {
  auto t = ParseSrvResponse(Response({{33, Srv(20, 5, 8443, "b.example.com")},
                                      {5, Name("alias.example.com")},
                                      {33, Srv(10, 0, 443, "a.example.com")}}));
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].host, "b.example.com");
  EXPECT_EQ((*t)[0].port, 8443);
  EXPECT_EQ((*t)[0].priority, 20);
  EXPECT_EQ((*t)[0].weight, 5);
  EXPECT_EQ(SrvAddress((*t)[1]), "a.example.com:443");
}

TEST(DnsSrv, ALoneDotTargetMeansNotOffered) {
  auto t = ParseSrvResponse(Response({{33, Srv(0, 0, 0, "")}}));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->empty());
}

TEST(DnsSrv, MalformedAnswersAreRefused) {
  const std::string good = Response({{33, Srv(10, 0, 443, "a.example.com")}});
  EXPECT_FALSE(ParseSrvResponse("").ok());
  EXPECT_FALSE(ParseSrvResponse(good.substr(0, 11)).ok());               // short header
  EXPECT_FALSE(ParseSrvResponse(good.substr(0, good.size() - 3)).ok());  // cut record
  EXPECT_FALSE(ParseSrvResponse(Response({{33, "\x00\x01"}})).ok());     // short rdata
  EXPECT_FALSE(ParseSrvResponse(Response({{33, Srv(10, 0, 0, "a.example.com")}})).ok());
  EXPECT_FALSE(ParseSrvResponse(Response({{33, Srv(10, 0, 443, "a b.example.com")}})).ok());
  // A name pointer to itself (a compression loop).
  EXPECT_FALSE(
      ParseSrvResponse(Response({{33, U16(1) + U16(0) + U16(443) + std::string("\xc0\x40", 2)}}))
          .ok());
  // rdata longer than the name it holds.
  EXPECT_FALSE(ParseSrvResponse(Response({{33, Srv(1, 0, 443, "a.example.com") + "xx"}})).ok());
  // Every failure is InvalidArgument.
  EXPECT_TRUE(absl::IsInvalidArgument(ParseSrvResponse("garbage").status()));
}

TEST(DnsSrv, OrderIsByPriorityThenWeightedRandom) {
  std::vector<SrvTarget> targets = {
      {"low-prio", 1, 20, 0}, {"heavy", 2, 10, 99}, {"light", 3, 10, 0}, {"lower-prio", 4, 30, 0}};
  // A draw of 0 picks the first candidate of a priority; the heaviest last draw
  // picks the last.
  auto first = OrderSrvTargets(targets, [](uint64_t) { return 0; });
  EXPECT_EQ(first[0].host, "heavy");
  EXPECT_EQ(first[1].host, "light");
  EXPECT_EQ(first[2].host, "low-prio");
  EXPECT_EQ(first[3].host, "lower-prio");
  auto last = OrderSrvTargets(targets, [](uint64_t n) { return n - 1; });
  EXPECT_EQ(last[0].host, "light");
  EXPECT_EQ(last[1].host, "heavy");
  // With a fair draw, weight 99 against 0 comes first about 100 times in 101.
  std::map<std::string, int> firsts;
  uint64_t state = 1;
  for (int i = 0; i < 2000; ++i) {
    auto o = OrderSrvTargets(targets, [&](uint64_t n) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      return (state >> 33) % n;
    });
    ++firsts[o[0].host];
  }
  EXPECT_GT(firsts["heavy"], 1900);
  EXPECT_GT(firsts["light"], 0);
}

TEST(DnsSrv, ValidatesNames) {
  EXPECT_TRUE(ValidateSrvName("_drawbridge._tcp.example.com").ok());
  EXPECT_TRUE(ValidateSrvName("_drawbridge._tcp.example.com.").ok());
  EXPECT_FALSE(ValidateSrvName("").ok());
  EXPECT_FALSE(ValidateSrvName("example.com").ok());
  EXPECT_FALSE(ValidateSrvName("_x._tcp..com").ok());
  EXPECT_FALSE(ValidateSrvName("_x._tcp.exa mple.com").ok());
  EXPECT_FALSE(ValidateSrvName("_x._tcp." + std::string(64, 'a') + ".com").ok());
  EXPECT_FALSE(ValidateSrvName("_x._tcp." + std::string(250, 'a')).ok());
}

TEST(DnsSrv, LookupRefusesAnInvalidNameBeforeAskingDns) {
  EXPECT_TRUE(absl::IsInvalidArgument(LookupSrv("not an srv name").status()));
}

}  // namespace
}  // namespace drawbridge::common

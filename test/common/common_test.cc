#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/backoff.h"
#include "common/encoding.h"
#include "common/files.h"
#include "common/ip.h"
#include "common/strings.h"
#include "testing/temp_dir.h"

namespace drawbridge::common {
namespace {

TEST(Base64Url, RoundTripsAllLengths) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    auto decoded = Base64UrlDecode(Base64UrlEncode(data));
    ASSERT_TRUE(decoded.has_value()) << i;
    EXPECT_EQ(*decoded, data);
    data.push_back(static_cast<char>(i * 37));
  }
}

TEST(Base64Url, RejectsPaddingWhitespaceAndOtherAlphabets) {
  EXPECT_FALSE(Base64UrlDecode("YQ==").has_value());
  EXPECT_FALSE(Base64UrlDecode("Y Q").has_value());
  EXPECT_FALSE(Base64UrlDecode("a+b/").has_value());
  EXPECT_FALSE(Base64UrlDecode("A").has_value());  // impossible length
}

TEST(Base64Url, RejectsNonCanonicalTrailingBits) {
  // "YQ" is the canonical encoding of "a"; "YR" decodes to the same byte with
  // non-zero padding bits and must be refused.
  EXPECT_TRUE(Base64UrlDecode("YQ").has_value());
  EXPECT_FALSE(Base64UrlDecode("YR").has_value());
}

TEST(Hex, RoundTripAndRejects) {
  EXPECT_EQ(HexEncode(std::string("\x01\xab", 2)), "01ab");
  EXPECT_EQ(*HexDecode("01AB"), std::string("\x01\xab", 2));
  EXPECT_FALSE(HexDecode("0").has_value());
  EXPECT_FALSE(HexDecode("zz").has_value());
}

TEST(Ip, ParsesAndNormalisesMappedV4) {
  auto v4 = ParseIp("10.1.2.3");
  ASSERT_TRUE(v4.has_value());
  EXPECT_TRUE(v4->is_v4);
  auto mapped = ParseIp("::ffff:10.1.2.3");
  ASSERT_TRUE(mapped.has_value());
  EXPECT_EQ(*mapped, *v4);
  EXPECT_EQ(ParseIp("[::1]")->ToString(), "::1");
  EXPECT_FALSE(ParseIp("10.1.2").has_value());
  EXPECT_FALSE(ParseIp("example.com").has_value());
  EXPECT_FALSE(ParseIp("").has_value());
  // Found by ip_fuzz: inet_pton stops at NUL, so trailing junk used to be ignored.
  EXPECT_FALSE(ParseIp(std::string_view("1.2.3.4\0evil", 12)).has_value());
  EXPECT_FALSE(IpFromGrpcPeer(std::string_view("ipv4:127.0.0.1\0x:1", 19)).has_value());
}

TEST(Cidr, ContainsAndCanonicalForm) {
  auto c = ParseCidr("10.20.30.40/16");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->ToString(), "10.20.0.0/16");
  EXPECT_TRUE(c->Contains(*ParseIp("10.20.255.1")));
  EXPECT_FALSE(c->Contains(*ParseIp("10.21.0.1")));
  EXPECT_FALSE(c->Contains(*ParseIp("::1")));
  auto v6 = ParseCidr("2001:db8::/33");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->Contains(*ParseIp("2001:db8:7fff::1")));
  EXPECT_FALSE(v6->Contains(*ParseIp("2001:db8:8000::1")));
  EXPECT_TRUE(ParseCidr("0.0.0.0/0")->Contains(*ParseIp("8.8.8.8")));
  EXPECT_EQ(ParseCidr("127.0.0.1")->prefix_len, 32);
}

TEST(Cidr, RejectsMalformed) {
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x", "::/129", "host/8", "", "/8"}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
}

TEST(Ip, FromGrpcPeer) {
  EXPECT_EQ(IpFromGrpcPeer("ipv4:127.0.0.1:5000")->ToString(), "127.0.0.1");
  EXPECT_EQ(IpFromGrpcPeer("ipv6:[::1]:5000")->ToString(), "::1");
  EXPECT_EQ(IpFromGrpcPeer("ipv6:%5B::1%5D:5000")->ToString(), "::1");
  EXPECT_EQ(IpFromGrpcPeer("ipv6:[::ffff:10.0.0.1]:1")->ToString(), "10.0.0.1");
  EXPECT_FALSE(IpFromGrpcPeer("unix:/tmp/sock").has_value());
  EXPECT_FALSE(IpFromGrpcPeer("ipv6:::1").has_value());
}

TEST(Files, AtomicWriteSetsExactMode) {
  testing::TempDir dir;
  std::string path = dir.File("secret");
  ASSERT_TRUE(WriteFileAtomic(path, "x", 0600).ok());
  EXPECT_EQ(*FileMode(path), 0600u);
  ASSERT_TRUE(WriteFileAtomic(path, "yz", 0640).ok());
  EXPECT_EQ(*FileMode(path), 0640u);
  EXPECT_EQ(*ReadFile(path), "yz");
  EXPECT_TRUE(absl::IsNotFound(ReadFile(dir.File("missing")).status()));
}

TEST(Strings, SplitJoinAndCat) {
  auto parts = Split("a,,b", ',');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(Join({"x", "y"}, ", "), "x, y");
  EXPECT_EQ(StrCat("n=", 42, " ", std::string_view("v"), '!'), "n=42 v!");
  EXPECT_EQ(ReplaceAll("%5B::1%5D", "%5B", "["), "[::1%5D");
}

TEST(JitteredBackoff, StaysWithinTheDoublingCeilingAndTheCap) {
  using std::chrono::milliseconds;
  JitteredBackoff backoff(milliseconds(100), milliseconds(1000));
  // Ceilings: 100, 200, 400, 800, then 1000 for ever.
  const int64_t ceilings[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t ceiling : ceilings) {
    milliseconds d = backoff.Next();
    EXPECT_GE(d.count(), 0);
    EXPECT_LE(d.count(), ceiling);
  }
  // Full jitter really spreads: over many draws at the cap, both halves occur.
  int low = 0;
  int high = 0;
  for (int i = 0; i < 400; ++i) {
    (backoff.Next().count() < 500 ? low : high) += 1;
  }
  EXPECT_GT(low, 100);
  EXPECT_GT(high, 100);
  backoff.Reset();
  EXPECT_LE(backoff.Next().count(), 100);
}

}  // namespace
}  // namespace drawbridge::common

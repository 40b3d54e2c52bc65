#include "client/proxy_protocol.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "client/http_connect.h"
#include "client/socks5.h"

namespace drawbridge::client {
namespace {

using namespace std::string_literals;  // NOLINT(build/namespaces): "\0" in literals
using HttpState = HttpConnectParser::State;
using SocksState = Socks5Parser::State;

std::string B(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) {
    out.push_back(static_cast<char>(b));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Protocol detection

TEST(DetectProtocol, FirstByteChoosesTheParser) {
  EXPECT_EQ(DetectProtocol(0x05), ProxyProtocol::kSocks5);
  EXPECT_EQ(DetectProtocol('C'), ProxyProtocol::kHttpConnect);
  EXPECT_EQ(DetectProtocol('G'), ProxyProtocol::kHttpConnect);  // answered 405 later
  EXPECT_EQ(DetectProtocol('A'), ProxyProtocol::kHttpConnect);
  EXPECT_EQ(DetectProtocol('Z'), ProxyProtocol::kHttpConnect);
  EXPECT_EQ(DetectProtocol(0x04), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol(0x16), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol('c'), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol(0x00), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol(0xFF), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol('@'), ProxyProtocol::kUnknown);
  EXPECT_EQ(DetectProtocol('['), ProxyProtocol::kUnknown);
}

TEST(DetectProtocol, ExactlySocks5AndUpperCaseLettersAreAccepted) {
  int accepted = 0;
  for (int b = 0; b < 256; ++b) {
    uint8_t byte = static_cast<uint8_t>(b);
    if (DetectProtocol(byte) == ProxyProtocol::kUnknown) {
      EXPECT_FALSE(UnknownProtocolReason(byte).empty()) << b;
    } else {
      ++accepted;
      EXPECT_TRUE(UnknownProtocolReason(byte).empty()) << b;
    }
  }
  EXPECT_EQ(accepted, 1 + 26);
}

TEST(DetectProtocol, ReasonsNameTheLikelyMistake) {
  EXPECT_NE(UnknownProtocolReason(0x04).find("SOCKS4"), std::string_view::npos);
  EXPECT_NE(UnknownProtocolReason(0x16).find("TLS"), std::string_view::npos);
  EXPECT_NE(UnknownProtocolReason('c').find("upper case"), std::string_view::npos);
}

TEST(Names, AreStable) {
  EXPECT_EQ(ProxyProtocolName(ProxyProtocol::kSocks5), "socks5");
  EXPECT_EQ(ProxyProtocolName(ProxyProtocol::kHttpConnect), "http-connect");
  EXPECT_EQ(ProxyProtocolName(ProxyProtocol::kUnknown), "unknown");
  EXPECT_EQ(TunnelResultName(TunnelResult::kOk), "ok");
  EXPECT_EQ(TunnelResultName(TunnelResult::kDeniedByPolicy), "denied_by_policy");
  EXPECT_EQ(TunnelResultName(TunnelResult::kConnectionRefused), "connection_refused");
  EXPECT_EQ(TunnelResultName(TunnelResult::kAgentUnreachable), "agent_unreachable");
  EXPECT_EQ(TunnelResultName(TunnelResult::kTimeout), "timeout");
  EXPECT_EQ(TunnelResultName(TunnelResult::kNoAgent), "no_agent");
  EXPECT_EQ(TunnelResultName(TunnelResult::kBadRequest), "bad_request");
  EXPECT_EQ(TunnelResultName(TunnelResult::kInternal), "internal");
  EXPECT_EQ(TunnelResultName(TunnelResult::kRateLimited), "rate_limited");
  EXPECT_EQ(HttpConnectReply(TunnelResult::kRateLimited).substr(0, 31),
            "HTTP/1.1 429 Too Many Requests\r");
}

TEST(IsValidTargetHostName, AcceptsNamesAndIpv4Literals) {
  EXPECT_TRUE(IsValidTargetHostName("gitlab.corp.example"));
  EXPECT_TRUE(IsValidTargetHostName("gitlab.corp.example."));
  EXPECT_TRUE(IsValidTargetHostName("localhost"));
  EXPECT_TRUE(IsValidTargetHostName("_srv-name.Example.COM"));
  EXPECT_TRUE(IsValidTargetHostName("10.20.0.1"));
  EXPECT_TRUE(IsValidTargetHostName(std::string(63, 'a')));
  std::string max_name = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                         std::string(63, 'c') + "." + std::string(61, 'd');
  ASSERT_EQ(max_name.size(), 253u);
  EXPECT_TRUE(IsValidTargetHostName(max_name));
  EXPECT_TRUE(IsValidTargetHostName(max_name + "."));
}

TEST(IsValidTargetHostName, RejectsEverythingElse) {
  EXPECT_FALSE(IsValidTargetHostName(""));
  EXPECT_FALSE(IsValidTargetHostName("."));
  EXPECT_FALSE(IsValidTargetHostName("a..b"));
  EXPECT_FALSE(IsValidTargetHostName(".a"));
  EXPECT_FALSE(IsValidTargetHostName("a.."));
  EXPECT_FALSE(IsValidTargetHostName("::1"));
  EXPECT_FALSE(IsValidTargetHostName("host:22"));
  EXPECT_FALSE(IsValidTargetHostName("a b"));
  EXPECT_FALSE(IsValidTargetHostName("a/b"));
  EXPECT_FALSE(IsValidTargetHostName("user@host"));
  EXPECT_FALSE(IsValidTargetHostName("h%41st"));
  EXPECT_FALSE(IsValidTargetHostName(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidTargetHostName("caf\xc3\xa9.example"));
  EXPECT_FALSE(IsValidTargetHostName(std::string(64, 'a')));
  std::string too_long = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                         std::string(63, 'c') + "." + std::string(62, 'd');
  ASSERT_EQ(too_long.size(), 254u);
  EXPECT_FALSE(IsValidTargetHostName(too_long));
}

// ---------------------------------------------------------------------------
// HTTP CONNECT parser

constexpr std::string_view kCurlHead =
    "CONNECT gitlab.corp.example:443 HTTP/1.1\r\n"
    "Host: gitlab.corp.example:443\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";

struct HttpRun {
  HttpState state;
  size_t consumed;
};

HttpRun FeedHttp(HttpConnectParser& parser, std::string_view bytes) {
  size_t consumed = 999999;
  HttpState state = parser.Feed(bytes, &consumed);
  return {state, consumed};
}

HttpConnectParser ParseHttpError(std::string_view input) {
  HttpConnectParser parser;
  size_t consumed = 0;
  parser.Feed(input, &consumed);
  return parser;
}

TEST(HttpConnect, ParsesATypicalCurlRequest) {
  HttpConnectParser parser;
  HttpRun run = FeedHttp(parser, kCurlHead);
  ASSERT_EQ(run.state, HttpState::kDone) << parser.error_reason();
  EXPECT_EQ(run.consumed, kCurlHead.size());
  EXPECT_EQ(parser.state(), HttpState::kDone);
  EXPECT_EQ(parser.target(), "gitlab.corp.example:443");
  EXPECT_EQ(parser.host(), "gitlab.corp.example");
  EXPECT_EQ(parser.port(), 443);
  EXPECT_EQ(parser.http_version(), "HTTP/1.1");
  EXPECT_EQ(parser.error_status(), 0);
}

TEST(HttpConnect, AcceptsHttp10WithoutHeaders) {
  HttpConnectParser parser;
  std::string_view head = "CONNECT 10.0.0.7:22 HTTP/1.0\r\n\r\n";
  HttpRun run = FeedHttp(parser, head);
  ASSERT_EQ(run.state, HttpState::kDone) << parser.error_reason();
  EXPECT_EQ(run.consumed, head.size());
  EXPECT_EQ(parser.target(), "10.0.0.7:22");
  EXPECT_EQ(parser.port(), 22);
  EXPECT_EQ(parser.http_version(), "HTTP/1.0");
}

TEST(HttpConnect, KeepsTheTargetAsSent) {
  HttpConnectParser parser;
  HttpRun run = FeedHttp(parser, "CONNECT GitLab.Corp.:00443 HTTP/1.1\r\n\r\n");
  ASSERT_EQ(run.state, HttpState::kDone) << parser.error_reason();
  EXPECT_EQ(parser.target(), "GitLab.Corp.:00443");
  EXPECT_EQ(parser.host(), "GitLab.Corp.");
  EXPECT_EQ(parser.port(), 443);
}

TEST(HttpConnect, AcceptsBracketedIpv6Targets) {
  struct Case {
    std::string_view target, host;
    uint16_t port;
  };
  for (const Case& c :
       {Case{"[::1]:443", "::1", 443}, Case{"[2001:db8::1]:8443", "2001:db8::1", 8443},
        Case{"[::ffff:10.1.2.3]:22", "::ffff:10.1.2.3", 22}}) {
    HttpConnectParser parser;
    std::string head = std::string("CONNECT ") + std::string(c.target) + " HTTP/1.1\r\n\r\n";
    ASSERT_EQ(FeedHttp(parser, head).state, HttpState::kDone) << c.target;
    EXPECT_EQ(parser.target(), c.target);
    EXPECT_EQ(parser.host(), c.host);
    EXPECT_EQ(parser.port(), c.port);
  }
}

TEST(HttpConnect, TrailingPayloadIsNotConsumed) {
  std::string client_hello = B({0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03});
  std::string input = std::string(kCurlHead) + client_hello;
  HttpConnectParser parser;
  HttpRun run = FeedHttp(parser, input);
  ASSERT_EQ(run.state, HttpState::kDone);
  EXPECT_EQ(run.consumed, kCurlHead.size());
  EXPECT_EQ(input.substr(run.consumed), client_hello);
}

TEST(HttpConnect, ByteAtATime) {
  std::string input = std::string(kCurlHead) + "payload";
  HttpConnectParser parser;
  size_t total = 0;
  for (size_t i = 0; i < kCurlHead.size(); ++i) {
    HttpRun run = FeedHttp(parser, input.substr(i, 1));
    EXPECT_EQ(run.consumed, 1u) << i;
    total += run.consumed;
    if (i + 1 < kCurlHead.size()) {
      ASSERT_EQ(run.state, HttpState::kNeedMore) << i;
    } else {
      ASSERT_EQ(run.state, HttpState::kDone);
    }
  }
  EXPECT_EQ(total, kCurlHead.size());
  EXPECT_EQ(parser.target(), "gitlab.corp.example:443");
  // Final: later bytes are the tunnel's, never the parser's.
  HttpRun after = FeedHttp(parser, "p");
  EXPECT_EQ(after.state, HttpState::kDone);
  EXPECT_EQ(after.consumed, 0u);
}

TEST(HttpConnect, EverySplitGivesTheSameResult) {
  std::string input = std::string(kCurlHead) + "DATA";
  for (size_t split = 0; split <= input.size(); ++split) {
    HttpConnectParser parser;
    HttpRun first = FeedHttp(parser, std::string_view(input).substr(0, split));
    size_t total = first.consumed;
    HttpState state = first.state;
    if (state == HttpState::kNeedMore) {
      EXPECT_EQ(first.consumed, split);
      HttpRun second = FeedHttp(parser, std::string_view(input).substr(split));
      total += second.consumed;
      state = second.state;
    }
    ASSERT_EQ(state, HttpState::kDone) << split;
    EXPECT_EQ(total, kCurlHead.size()) << split;
    EXPECT_EQ(parser.target(), "gitlab.corp.example:443") << split;
  }
}

TEST(HttpConnect, TruncatedAtEveryByteNeedsMore) {
  for (size_t len = 0; len < kCurlHead.size(); ++len) {
    HttpConnectParser parser;
    HttpRun run = FeedHttp(parser, kCurlHead.substr(0, len));
    EXPECT_EQ(run.state, HttpState::kNeedMore) << len;
    EXPECT_EQ(run.consumed, len);
  }
}

TEST(HttpConnect, MissingBlankLineNeverCompletes) {
  HttpConnectParser parser;
  std::string_view head = "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n";
  HttpRun run = FeedHttp(parser, head);
  EXPECT_EQ(run.state, HttpState::kNeedMore);
  EXPECT_EQ(run.consumed, head.size());
  EXPECT_TRUE(parser.target().empty());
}

TEST(HttpConnect, HeaderNamesAreCaseInsensitiveAndValuesIgnored) {
  HttpConnectParser parser;
  std::string head =
      "CONNECT a.example:443 HTTP/1.1\r\n"
      "HOST: a.example:443\r\n"
      "proxy-authorization: Basic c2VjcmV0OnBhc3N3b3Jk\r\n"
      "Proxy-Authorization: Bearer abc.def.ghi\r\n"
      "X-Empty:\r\n"
      "X-Tab:\tvalue\twith tabs \r\n"
      "X-Obs-Text: caf\xc3\xa9\r\n"
      "X-Odd!#$%&'*+-.^_`|~: ok\r\n"
      "\r\n";
  ASSERT_EQ(FeedHttp(parser, head).state, HttpState::kDone) << parser.error_reason();
  EXPECT_EQ(parser.target(), "a.example:443");
}

struct HttpErrorCase {
  std::string input;
  int status;
  std::string_view reason_part;
};

void PrintTo(const HttpErrorCase& c, std::ostream* os) {
  *os << "input=" << testing::PrintToString(c.input);
}

class HttpConnectErrorTest : public testing::TestWithParam<HttpErrorCase> {};

TEST_P(HttpConnectErrorTest, RefusesWithStatusAndReason) {
  const HttpErrorCase& c = GetParam();
  HttpConnectParser parser;
  HttpRun run = FeedHttp(parser, c.input);
  ASSERT_EQ(run.state, HttpState::kError);
  EXPECT_LE(run.consumed, c.input.size());
  EXPECT_EQ(parser.error_status(), c.status);
  EXPECT_NE(parser.error_reason().find(c.reason_part), std::string::npos) << parser.error_reason();
  EXPECT_TRUE(parser.target().empty());
  // The reply repeats the status, and the parser stays failed.
  std::string reply = parser.ErrorReply();
  EXPECT_EQ(reply.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0), 0u) << reply;
  HttpRun again = FeedHttp(parser, "\r\n\r\n");
  EXPECT_EQ(again.state, HttpState::kError);
  EXPECT_EQ(again.consumed, 0u);

  // Byte at a time reaches the same verdict at the same byte.
  HttpConnectParser slow;
  size_t total = 0;
  HttpState state = HttpState::kNeedMore;
  for (size_t i = 0; i < c.input.size() && state == HttpState::kNeedMore; ++i) {
    HttpRun one = FeedHttp(slow, std::string_view(c.input).substr(i, 1));
    total += one.consumed;
    state = one.state;
  }
  EXPECT_EQ(state, HttpState::kError);
  EXPECT_EQ(total, run.consumed);
  EXPECT_EQ(slow.error_status(), c.status);
}

std::string Line(std::string_view request_line) {
  return std::string(request_line) + "\r\nHost: x\r\n\r\n";
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, HttpConnectErrorTest,
    testing::Values(
        // Method.
        HttpErrorCase{Line("connect a.example:443 HTTP/1.1"), 405, "only CONNECT"},
        HttpErrorCase{Line("GET http://a.example/ HTTP/1.1"), 405, "only CONNECT"},
        HttpErrorCase{Line("POST / HTTP/1.1"), 405, "only CONNECT"},
        HttpErrorCase{Line("PRI * HTTP/2.0"), 405, "only CONNECT"},
        HttpErrorCase{Line("CONN(ECT a.example:443 HTTP/1.1"), 400, "method"},
        // Request line shape.
        HttpErrorCase{Line("CONNECT a.example:443"), 400, "malformed request line"},
        HttpErrorCase{Line("CONNECT  a.example:443 HTTP/1.1"), 400, "malformed request line"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/1.1 "), 400, "malformed request line"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/1.1 x"), 400, "malformed request line"},
        HttpErrorCase{Line("CONNECT\ta.example:443 HTTP/1.1"), 400, "control character"},
        HttpErrorCase{"\r\nCONNECT a.example:443 HTTP/1.1\r\n\r\n", 400, "malformed request line"},
        // Version.
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/2.0"), 505, "HTTP/1.1"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/0.9"), 505, "HTTP/1.1"},
        HttpErrorCase{Line("CONNECT a.example:443 http/1.1"), 400, "version"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/1.10"), 400, "version"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/1"), 400, "version"},
        // Target.
        HttpErrorCase{Line("CONNECT http://a.example:443 HTTP/1.1"), 400, "not a URL"},
        HttpErrorCase{Line("CONNECT https://a.example/ HTTP/1.1"), 400, "not a URL"},
        HttpErrorCase{Line("CONNECT /index.html HTTP/1.1"), 400, "not a URL"},
        HttpErrorCase{Line("CONNECT a.example HTTP/1.1"), 400, "no port"},
        HttpErrorCase{Line("CONNECT a.example: HTTP/1.1"), 400, "no port"},
        HttpErrorCase{Line("CONNECT a.example:0 HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT a.example:65536 HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT a.example:123456 HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT a.example:+443 HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT a.example:-1 HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT a.example:44a HTTP/1.1"), 400, "1 to 65535"},
        HttpErrorCase{Line("CONNECT :443 HTTP/1.1"), 400, "host"},
        HttpErrorCase{Line("CONNECT a..example:443 HTTP/1.1"), 400, "host"},
        HttpErrorCase{Line("CONNECT a_b%2e:443 HTTP/1.1"), 400, "host"},
        HttpErrorCase{Line("CONNECT user:pw@a.example:443 HTTP/1.1"), 400, "user info"},
        HttpErrorCase{Line("CONNECT ::1:443 HTTP/1.1"), 400, "brackets"},
        HttpErrorCase{Line("CONNECT [::1] HTTP/1.1"), 400, "no port"},
        HttpErrorCase{Line("CONNECT [::1]: HTTP/1.1"), 400, "no port"},
        HttpErrorCase{Line("CONNECT [::1]443 HTTP/1.1"), 400, "[IPv6]:port"},
        HttpErrorCase{Line("CONNECT [::1:443 HTTP/1.1"), 400, "without ']'"},
        HttpErrorCase{Line("CONNECT [10.0.0.1]:443 HTTP/1.1"), 400, "not an IPv6"},
        HttpErrorCase{Line("CONNECT [a.example]:443 HTTP/1.1"), 400, "not an IPv6"},
        HttpErrorCase{Line("CONNECT [fe80::1%25eth0]:443 HTTP/1.1"), 400, "not an IPv6"},
        HttpErrorCase{Line("CONNECT []:443 HTTP/1.1"), 400, "not an IPv6"},
        // Line ends.
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\n\n", 400, "bare LF"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: x\n\r\n", 400, "bare LF"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: x\r\n\n", 400, "bare LF"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\rX", 400, "CR not followed by LF"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: x\rX", 400, "CR not followed"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\n\rX", 400, "CR not followed"},
        // Control and non-ASCII bytes.
        HttpErrorCase{"CONNECT a.exa\0mple:443 HTTP/1.1\r\n\r\n"s, 400, "control character"},
        HttpErrorCase{Line("CONNECT a.example:443 HTTP/1.1\x7f"), 400, "control character"},
        HttpErrorCase{Line("CONNECT caf\xc3\xa9.example:443 HTTP/1.1"), 400, "non-ASCII"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: a\0b\r\n\r\n"s, 400,
                      "control character"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400,
                      "control character"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400,
                      "control character"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHo\x01st: a\r\n\r\n", 400,
                      "control character"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\n\x01Host: a\r\n\r\n", 400,
                      "control character"},
        // Header syntax.
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost a.example\r\n\r\n", 400,
                      "whitespace"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHostname\r\n\r\n", 400, "without ':'"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400,
                      "folding"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\n: x\r\n\r\n", 400, "empty name"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\nHo(st: x\r\n\r\n", 400,
                      "invalid character"},
        HttpErrorCase{"CONNECT a.example:443 HTTP/1.1\r\n(Host: x\r\n\r\n", 400,
                      "invalid character"}));

TEST(HttpConnect, ErrorStopsAtTheOffendingByte) {
  std::string_view head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  HttpConnectParser parser;
  HttpRun run = FeedHttp(parser, head);
  ASSERT_EQ(run.state, HttpState::kError);
  EXPECT_EQ(run.consumed, std::string_view("GET / HTTP/1.1\r\n").size());

  HttpConnectParser nul;
  std::string with_nul("CONNECT a\0", 10);
  EXPECT_EQ(FeedHttp(nul, with_nul + "bc:443 HTTP/1.1\r\n\r\n").consumed, with_nul.size());
}

TEST(HttpConnect, LowerCaseConnectGets405WithAllow) {
  HttpConnectParser parser = ParseHttpError("connect a.example:443 HTTP/1.1\r\n\r\n");
  ASSERT_EQ(parser.state(), HttpState::kError);
  EXPECT_EQ(parser.error_status(), 405);
  std::string reply = parser.ErrorReply();
  EXPECT_EQ(reply.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << reply;
  EXPECT_NE(reply.find("\r\nAllow: CONNECT\r\n"), std::string::npos) << reply;
}

TEST(HttpConnect, RequestLineLimit) {
  // 4096 bytes pass the length check (and fail on the bad host instead); 4097 do not.
  auto request_line = [](size_t len) {
    std::string prefix = "CONNECT ";
    std::string suffix = ":443 HTTP/1.1";
    return prefix + std::string(len - prefix.size() - suffix.size(), 'a') + suffix;
  };
  ASSERT_EQ(request_line(4096).size(), 4096u);
  HttpConnectParser at_limit = ParseHttpError(request_line(4096) + "\r\n\r\n");
  ASSERT_EQ(at_limit.state(), HttpState::kError);
  EXPECT_EQ(at_limit.error_status(), 400);
  EXPECT_NE(at_limit.error_reason().find("host"), std::string::npos) << at_limit.error_reason();

  HttpConnectParser over = ParseHttpError(request_line(4097) + "\r\n\r\n");
  ASSERT_EQ(over.state(), HttpState::kError);
  EXPECT_EQ(over.error_status(), 400);
  EXPECT_NE(over.error_reason().find("request line longer"), std::string::npos);

  // Without a line end at all, the verdict comes at byte 4097.
  HttpConnectParser endless;
  std::string junk(5000, 'A');
  HttpRun run = FeedHttp(endless, junk);
  EXPECT_EQ(run.state, HttpState::kError);
  EXPECT_EQ(run.consumed, 4097u);
}

std::string HeadOfSize(size_t size) {
  std::string head = "CONNECT a.example:443 HTTP/1.1\r\n";
  // Filler headers of at most ~1000 bytes keep the header count small.
  while (head.size() + 2 < size) {
    size_t room = size - 2 - head.size();
    size_t line = std::min<size_t>(room, 1000);
    if (line < 4) {  // "X:\r\n" is the shortest header line
      break;
    }
    head += "X:" + std::string(line - 4, 'v') + "\r\n";
  }
  head += "\r\n";
  return head;
}

TEST(HttpConnect, HeadLimit) {
  std::string at_limit = HeadOfSize(HttpConnectParser::kMaxHead);
  ASSERT_EQ(at_limit.size(), HttpConnectParser::kMaxHead);
  HttpConnectParser ok;
  HttpRun run = FeedHttp(ok, at_limit);
  EXPECT_EQ(run.state, HttpState::kDone) << ok.error_reason();
  EXPECT_EQ(run.consumed, at_limit.size());

  std::string over = HeadOfSize(HttpConnectParser::kMaxHead + 1);
  ASSERT_EQ(over.size(), HttpConnectParser::kMaxHead + 1);
  HttpConnectParser big;
  run = FeedHttp(big, over);
  EXPECT_EQ(run.state, HttpState::kError);
  EXPECT_EQ(big.error_status(), 431);
  EXPECT_EQ(run.consumed, HttpConnectParser::kMaxHead + 1);
  EXPECT_EQ(big.ErrorReply().rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u);

  // A client that never ends its head is cut off at the limit, not buffered forever.
  HttpConnectParser endless;
  std::string stream = "CONNECT a.example:443 HTTP/1.1\r\nX: ";
  stream += std::string(100000, 'v');
  run = FeedHttp(endless, stream);
  EXPECT_EQ(run.state, HttpState::kError);
  EXPECT_EQ(endless.error_status(), 431);
  EXPECT_EQ(run.consumed, HttpConnectParser::kMaxHead + 1);
}

TEST(HttpConnect, HeaderCountLimit) {
  auto head_with = [](int headers) {
    std::string head = "CONNECT a.example:443 HTTP/1.1\r\n";
    for (int i = 0; i < headers; ++i) {
      head += "X-" + std::to_string(i) + ": v\r\n";
    }
    return head + "\r\n";
  };
  HttpConnectParser hundred;
  EXPECT_EQ(FeedHttp(hundred, head_with(100)).state, HttpState::kDone);
  HttpConnectParser too_many = ParseHttpError(head_with(101));
  EXPECT_EQ(too_many.state(), HttpState::kError);
  EXPECT_EQ(too_many.error_status(), 431);
  EXPECT_NE(too_many.error_reason().find("100 header fields"), std::string::npos);
}

TEST(HttpConnect, ErrorsNeverEchoTheRequest) {
  std::string secret = "c2VjcmV0LXRva2VuLTEyMzQ1Njc4OTA";
  std::string head =
      "CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Basic " + secret + "\r\n";
  for (int i = 0; i < 100; ++i) {
    head += "X: y\r\n";
  }
  head += "\r\n";
  HttpConnectParser parser = ParseHttpError(head);
  ASSERT_EQ(parser.error_status(), 431);
  EXPECT_EQ(parser.ErrorReply().find(secret), std::string::npos);
  EXPECT_EQ(parser.error_reason().find(secret), std::string::npos);

  HttpConnectParser bad_target = ParseHttpError("CONNECT " + secret + " HTTP/1.1\r\n\r\n");
  ASSERT_EQ(bad_target.error_status(), 400);
  EXPECT_EQ(bad_target.ErrorReply().find(secret), std::string::npos);
}

// ---------------------------------------------------------------------------
// HTTP replies

TEST(HttpConnectReply, OkStartsTheTunnel) {
  EXPECT_EQ(HttpConnectReply(TunnelResult::kOk), "HTTP/1.1 200 Connection established\r\n\r\n");
}

TEST(HttpConnectReply, ExactBytesForEveryFailure) {
  struct Case {
    TunnelResult result;
    std::string_view reply;
  };
  const Case cases[] = {
      {TunnelResult::kDeniedByPolicy,
       "HTTP/1.1 403 Forbidden\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 69\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: the destination is not allowed for this client by policy\n"},
      {TunnelResult::kConnectionRefused,
       "HTTP/1.1 502 Bad Gateway\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 51\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: the destination refused the connection\n"},
      {TunnelResult::kAgentUnreachable,
       "HTTP/1.1 502 Bad Gateway\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 54\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: the agent could not reach the destination\n"},
      {TunnelResult::kTimeout,
       "HTTP/1.1 504 Gateway Timeout\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 52\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: timed out connecting to the destination\n"},
      {TunnelResult::kNoAgent,
       "HTTP/1.1 503 Service Unavailable\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 54\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: no agent is available for the destination\n"},
      {TunnelResult::kBadRequest,
       "HTTP/1.1 400 Bad Request\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 38\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: malformed CONNECT request\n"},
      {TunnelResult::kInternal,
       "HTTP/1.1 500 Internal Server Error\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 27\r\n"
       "Connection: close\r\n"
       "\r\n"
       "drawbridge: internal error\n"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(HttpConnectReply(c.result), c.reply) << TunnelResultName(c.result);
  }
}

TEST(HttpConnectReply, ExplicitStatus) {
  EXPECT_EQ(HttpConnectReply(405, "only CONNECT"),
            "HTTP/1.1 405 Method Not Allowed\r\n"
            "Allow: CONNECT\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 25\r\n"
            "Connection: close\r\n"
            "\r\n"
            "drawbridge: only CONNECT\n");
  EXPECT_EQ(HttpConnectReply(431, "x").rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0),
            0u);
  EXPECT_EQ(HttpConnectReply(505, "x").rfind("HTTP/1.1 505 HTTP Version Not Supported\r\n", 0), 0u);
  EXPECT_EQ(HttpConnectReply(418, "x").rfind("HTTP/1.1 418 Client Error\r\n", 0), 0u);
  // Not an error status: answered as an internal error, never as a tunnel.
  EXPECT_EQ(HttpConnectReply(200, "x").rfind("HTTP/1.1 500 Internal Server Error\r\n", 0), 0u);
  EXPECT_EQ(HttpConnectReply(-1, "x").rfind("HTTP/1.1 500 ", 0), 0u);
  EXPECT_EQ(HttpConnectReply(600, "x").rfind("HTTP/1.1 500 ", 0), 0u);
}

TEST(HttpConnectReply, MessageCannotInjectHeaders) {
  std::string reply = HttpConnectReply(400, "bad\r\nSet-Cookie: a=b\r\n\r\nmore");
  size_t end_of_head = reply.find("\r\n\r\n");
  ASSERT_NE(end_of_head, std::string::npos);
  std::string head = reply.substr(0, end_of_head);
  std::string body = reply.substr(end_of_head + 4);
  EXPECT_EQ(head.find("Set-Cookie"), std::string::npos);
  EXPECT_EQ(body.find('\r'), std::string::npos);
  EXPECT_EQ(body.find('\n'), body.size() - 1);
  EXPECT_NE(head.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// SOCKS5 parser

const std::string kGreeting = B({0x05, 0x01, 0x00});

std::string Request(int atyp, std::string_view addr, uint16_t port, int cmd = 0x01) {
  std::string r = B({0x05, cmd, 0x00, atyp});
  if (atyp == 0x03) {
    r.push_back(static_cast<char>(addr.size()));
  }
  r.append(addr);
  r.push_back(static_cast<char>(port >> 8));
  r.push_back(static_cast<char>(port & 0xff));
  return r;
}

std::string DomainRequest(std::string_view name, uint16_t port) {
  return Request(0x03, name, port);
}

struct SocksRun {
  SocksState state = SocksState::kNeedMore;
  size_t consumed = 0;           // over all calls
  size_t greeting_consumed = 0;  // total consumed when kGreetingDone was returned
  bool greeting_done = false;
};

// Feeds `chunks` in order, the way a socket loop would: after kGreetingDone the rest
// of the same chunk is fed again; stops at kDone or kError.
SocksRun RunSocks(Socks5Parser& parser, const std::vector<std::string_view>& chunks) {
  SocksRun run;
  for (std::string_view chunk : chunks) {
    size_t offset = 0;
    do {
      size_t consumed = 999999;
      run.state = parser.Feed(chunk.substr(offset), &consumed);
      EXPECT_LE(consumed, chunk.size() - offset);
      offset += consumed;
      run.consumed += consumed;
      if (run.state == SocksState::kGreetingDone) {
        EXPECT_FALSE(run.greeting_done) << "greeting completed twice";
        run.greeting_done = true;
        run.greeting_consumed = run.consumed;
      } else if (run.state != SocksState::kNeedMore) {
        return run;
      } else {
        EXPECT_EQ(offset, chunk.size()) << "kNeedMore must consume everything";
      }
    } while (offset < chunk.size());
  }
  return run;
}

SocksRun RunSocks(Socks5Parser& parser, std::string_view input) {
  return RunSocks(parser, std::vector<std::string_view>{input});
}

std::vector<std::string_view> Bytewise(std::string_view input) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < input.size(); ++i) {
    out.push_back(input.substr(i, 1));
  }
  return out;
}

TEST(Socks5, GreetingThenRequestInSeparateReads) {
  Socks5Parser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Feed(kGreeting, &consumed), SocksState::kGreetingDone);
  EXPECT_EQ(consumed, 3u);
  EXPECT_EQ(Socks5MethodReply(), B({0x05, 0x00}));
  std::string request = DomainRequest("gitlab.corp.example", 443);
  EXPECT_EQ(parser.Feed(request, &consumed), SocksState::kDone);
  EXPECT_EQ(consumed, request.size());
  EXPECT_EQ(parser.target(), "gitlab.corp.example:443");
  EXPECT_EQ(parser.host(), "gitlab.corp.example");
  EXPECT_EQ(parser.port(), 443);
  EXPECT_EQ(parser.address_type(), Socks5Parser::AddressType::kDomain);
}

TEST(Socks5, EmptyFeedAfterGreetingNeedsMore) {
  Socks5Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(kGreeting, &consumed), SocksState::kGreetingDone);
  EXPECT_EQ(parser.Feed({}, &consumed), SocksState::kNeedMore);
  EXPECT_EQ(consumed, 0u);
}

TEST(Socks5, PipelinedRequestAndPayload) {
  std::string request = Request(0x01, B({10, 20, 0, 7}), 22);
  std::string payload = "SSH-2.0-OpenSSH_9.2\r\n";
  std::string input = kGreeting + request + payload;
  Socks5Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.Feed(input, &consumed), SocksState::kGreetingDone);
  ASSERT_EQ(consumed, kGreeting.size());
  std::string_view rest = std::string_view(input).substr(consumed);
  ASSERT_EQ(parser.Feed(rest, &consumed), SocksState::kDone);
  EXPECT_EQ(consumed, request.size());
  EXPECT_EQ(rest.substr(consumed), payload);
  EXPECT_EQ(parser.target(), "10.20.0.7:22");
  EXPECT_EQ(parser.address_type(), Socks5Parser::AddressType::kIpv4);
  // Final: nothing more is consumed.
  EXPECT_EQ(parser.Feed("x", &consumed), SocksState::kDone);
  EXPECT_EQ(consumed, 0u);
}

TEST(Socks5, AcceptsNoAuthAmongOtherMethods) {
  Socks5Parser parser;
  std::string greeting = B({0x05, 0x03, 0x02, 0x80, 0x00});
  SocksRun run = RunSocks(parser, greeting);
  EXPECT_EQ(run.state, SocksState::kGreetingDone);
  EXPECT_EQ(run.consumed, greeting.size());
}

TEST(Socks5, AllMethodsOffered) {
  // 255 methods, the longest greeting, with "no authentication" last.
  std::string greeting = B({0x05, 0xFF});
  for (int m = 1; m < 255; ++m) {
    greeting.push_back(static_cast<char>(m));
  }
  greeting.push_back(0x00);
  ASSERT_EQ(greeting.size(), 2u + 255u);
  Socks5Parser parser;
  SocksRun run = RunSocks(parser, greeting);
  EXPECT_EQ(run.state, SocksState::kGreetingDone);
  EXPECT_EQ(run.consumed, greeting.size());
}

struct SocksTarget {
  std::string request;
  std::string_view target;
  std::string_view host;
  Socks5Parser::AddressType type;
};

std::vector<SocksTarget> GoodTargets() {
  return {
      {Request(0x01, B({127, 0, 0, 1}), 8080), "127.0.0.1:8080", "127.0.0.1",
       Socks5Parser::AddressType::kIpv4},
      {Request(0x01, B({255, 255, 255, 255}), 65535), "255.255.255.255:65535", "255.255.255.255",
       Socks5Parser::AddressType::kIpv4},
      {Request(0x04, B({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), 443), "[::1]:443", "::1",
       Socks5Parser::AddressType::kIpv6},
      {Request(0x04, B({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), 1),
       "[2001:db8::1]:1", "2001:db8::1", Socks5Parser::AddressType::kIpv6},
      // IPv4-mapped IPv6 has one spelling: the IPv4 one.
      {Request(0x04, B({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}), 22), "10.1.2.3:22",
       "10.1.2.3", Socks5Parser::AddressType::kIpv4},
      {DomainRequest("gitlab.corp.example", 443), "gitlab.corp.example:443", "gitlab.corp.example",
       Socks5Parser::AddressType::kDomain},
      {DomainRequest("Host_1-a.Example.", 22), "Host_1-a.Example.:22", "Host_1-a.Example.",
       Socks5Parser::AddressType::kDomain},
      {DomainRequest("x", 443), "x:443", "x", Socks5Parser::AddressType::kDomain},
  };
}

TEST(Socks5, NormalisedTargets) {
  for (const SocksTarget& t : GoodTargets()) {
    Socks5Parser parser;
    SocksRun run = RunSocks(parser, kGreeting + t.request);
    ASSERT_EQ(run.state, SocksState::kDone) << t.target << ": " << parser.error_reason();
    EXPECT_EQ(run.consumed, kGreeting.size() + t.request.size());
    EXPECT_EQ(parser.target(), t.target);
    EXPECT_EQ(parser.host(), t.host);
    EXPECT_EQ(parser.address_type(), t.type);
  }
}

TEST(Socks5, LongestDomain) {
  std::string name = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                     std::string(63, 'c') + "." + std::string(61, 'd') + ".";
  ASSERT_EQ(name.size(), 254u);
  Socks5Parser parser;
  SocksRun run = RunSocks(parser, kGreeting + DomainRequest(name, 443));
  ASSERT_EQ(run.state, SocksState::kDone) << parser.error_reason();
  EXPECT_EQ(parser.target(), name + ":443");
}

TEST(Socks5, ByteAtATimeAndEverySplit) {
  for (const SocksTarget& t : GoodTargets()) {
    std::string input = kGreeting + t.request + "payload";
    size_t handshake = kGreeting.size() + t.request.size();
    {
      Socks5Parser parser;
      SocksRun run = RunSocks(parser, Bytewise(input));
      ASSERT_EQ(run.state, SocksState::kDone) << t.target;
      EXPECT_TRUE(run.greeting_done);
      EXPECT_EQ(run.greeting_consumed, kGreeting.size());
      EXPECT_EQ(run.consumed, handshake);
      EXPECT_EQ(parser.target(), t.target);
    }
    for (size_t split = 0; split <= input.size(); ++split) {
      Socks5Parser parser;
      std::string_view in(input);
      SocksRun run = RunSocks(parser, {in.substr(0, split), in.substr(split)});
      ASSERT_EQ(run.state, SocksState::kDone) << t.target << " split " << split;
      EXPECT_EQ(run.greeting_consumed, kGreeting.size());
      EXPECT_EQ(run.consumed, handshake) << split;
      EXPECT_EQ(parser.target(), t.target);
    }
  }
}

TEST(Socks5, TruncatedAtEveryByteNeedsMore) {
  for (const SocksTarget& t : GoodTargets()) {
    std::string input = kGreeting + t.request;
    for (size_t len = 0; len < input.size(); ++len) {
      Socks5Parser parser;
      SocksRun run = RunSocks(parser, std::string_view(input).substr(0, len));
      EXPECT_EQ(run.consumed, len);
      if (len == kGreeting.size()) {
        EXPECT_EQ(run.state, SocksState::kGreetingDone);
      } else {
        EXPECT_EQ(run.state, SocksState::kNeedMore) << t.target << " len " << len;
      }
      EXPECT_TRUE(parser.target().empty());
    }
  }
}

TEST(Socks5, GreetingErrors) {
  struct Case {
    std::string input;
    std::string reply;
    std::string_view reason_part;
  };
  const Case cases[] = {
      {B({0x04, 0x01, 0x00, 0x50}), "", "not SOCKS version 5"},
      {"CONNECT", "", "not SOCKS version 5"},
      {B({0x05, 0x00}), B({0x05, 0xFF}), "no authentication methods"},
      {B({0x05, 0x01, 0x02}), B({0x05, 0xFF}), "no SOCKS credentials"},
      {B({0x05, 0x02, 0x01, 0x02}), B({0x05, 0xFF}), "no SOCKS credentials"},
  };
  for (const Case& c : cases) {
    Socks5Parser parser;
    SocksRun run = RunSocks(parser, c.input + "more");
    ASSERT_EQ(run.state, SocksState::kError) << testing::PrintToString(c.input);
    EXPECT_LE(run.consumed, c.input.size());
    EXPECT_EQ(parser.ErrorReply(), c.reply);
    EXPECT_NE(parser.error_reason().find(c.reason_part), std::string::npos)
        << parser.error_reason();
    size_t consumed = 99;
    EXPECT_EQ(parser.Feed(kGreeting, &consumed), SocksState::kError);
    EXPECT_EQ(consumed, 0u);
  }
  EXPECT_EQ(Socks5NoAcceptableMethodsReply(), B({0x05, 0xFF}));
}

TEST(Socks5, NoAuthMissingIsDecidedAfterTheLastMethod) {
  Socks5Parser parser;
  std::string greeting = B({0x05, 0x02, 0x02, 0x03});
  SocksRun run = RunSocks(parser, Bytewise(greeting.substr(0, 3)));
  EXPECT_EQ(run.state, SocksState::kNeedMore);
  run = RunSocks(parser, greeting.substr(3));
  EXPECT_EQ(run.state, SocksState::kError);
  EXPECT_EQ(run.consumed, 1u);
}

struct SocksErrorCase {
  std::string name;
  std::string request;  // after the greeting
  Socks5ReplyCode code;
  size_t consumed;  // of the request, up to the offending byte
  std::string_view reason_part;
};

void PrintTo(const SocksErrorCase& c, std::ostream* os) { *os << c.name; }

class Socks5RequestErrorTest : public testing::TestWithParam<SocksErrorCase> {};

TEST_P(Socks5RequestErrorTest, RefusedWithReplyCode) {
  const SocksErrorCase& c = GetParam();
  for (bool bytewise : {false, true}) {
    Socks5Parser parser;
    std::string input = kGreeting + c.request + "trailing";
    SocksRun run = bytewise ? RunSocks(parser, Bytewise(input)) : RunSocks(parser, input);
    ASSERT_EQ(run.state, SocksState::kError) << c.name;
    EXPECT_EQ(run.consumed, kGreeting.size() + c.consumed) << c.name;
    EXPECT_EQ(parser.error_code(), c.code);
    EXPECT_EQ(parser.ErrorReply(), Socks5Reply(c.code));
    EXPECT_NE(parser.error_reason().find(c.reason_part), std::string::npos)
        << parser.error_reason();
    EXPECT_TRUE(parser.target().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, Socks5RequestErrorTest,
    testing::Values(
        SocksErrorCase{"WrongVersion", Request(0x01, B({1, 2, 3, 4}), 80).replace(0, 1, "\x04"),
                       Socks5ReplyCode::kGeneralFailure, 1, "not version 5"},
        SocksErrorCase{"Bind", Request(0x01, B({1, 2, 3, 4}), 80, 0x02),
                       Socks5ReplyCode::kCommandNotSupported, 2, "BIND"},
        SocksErrorCase{"UdpAssociate", Request(0x01, B({1, 2, 3, 4}), 80, 0x03),
                       Socks5ReplyCode::kCommandNotSupported, 2, "UDP ASSOCIATE"},
        SocksErrorCase{"UnknownCommand", Request(0x01, B({1, 2, 3, 4}), 80, 0x09),
                       Socks5ReplyCode::kCommandNotSupported, 2, "only CONNECT"},
        SocksErrorCase{"ZeroCommand", Request(0x01, B({1, 2, 3, 4}), 80, 0x00),
                       Socks5ReplyCode::kCommandNotSupported, 2, "only CONNECT"},
        SocksErrorCase{"ReservedNotZero", B({0x05, 0x01, 0x01, 0x01, 1, 2, 3, 4, 0, 80}),
                       Socks5ReplyCode::kGeneralFailure, 3, "reserved"},
        SocksErrorCase{"AddressTypeZero", B({0x05, 0x01, 0x00, 0x00, 1, 2, 3, 4, 0, 80}),
                       Socks5ReplyCode::kAddressTypeNotSupported, 4, "address type"},
        SocksErrorCase{"AddressTypeTwo", B({0x05, 0x01, 0x00, 0x02, 1, 2, 3, 4, 0, 80}),
                       Socks5ReplyCode::kAddressTypeNotSupported, 4, "address type"},
        SocksErrorCase{"AddressTypeFF", B({0x05, 0x01, 0x00, 0xFF, 1, 2, 3, 4, 0, 80}),
                       Socks5ReplyCode::kAddressTypeNotSupported, 4, "address type"},
        SocksErrorCase{"EmptyDomain", B({0x05, 0x01, 0x00, 0x03, 0x00, 0, 80}),
                       Socks5ReplyCode::kGeneralFailure, 5, "empty domain"},
        SocksErrorCase{"DomainWithNul", DomainRequest(std::string("ab\0cd", 5), 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 3, "not allowed in host names"},
        SocksErrorCase{"DomainWithSpace", DomainRequest("a b", 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 2, "not allowed in host names"},
        SocksErrorCase{"DomainWithColon", DomainRequest("::1", 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 1, "not allowed in host names"},
        SocksErrorCase{"DomainWithSlash", DomainRequest("a/b", 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 2, "not allowed in host names"},
        SocksErrorCase{"DomainWithHighByte", DomainRequest("caf\xc3\xa9", 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 4, "not allowed in host names"},
        SocksErrorCase{"DomainEmptyLabel", DomainRequest("a..b", 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 4 + 2, "not a valid host name"},
        SocksErrorCase{"DomainOnlyDot", DomainRequest(".", 443), Socks5ReplyCode::kGeneralFailure,
                       5 + 1 + 2, "not a valid host name"},
        SocksErrorCase{"DomainLabelTooLong", DomainRequest(std::string(64, 'a'), 443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 64 + 2, "not a valid host name"},
        SocksErrorCase{"DomainTooLong",
                       DomainRequest(std::string(200, 'a')
                                             .replace(60, 1, ".")
                                             .replace(120, 1, ".")
                                             .replace(180, 1, ".") +
                                         "." + std::string(54, 'b'),
                                     443),
                       Socks5ReplyCode::kGeneralFailure, 5 + 255 + 2, "not a valid host name"},
        SocksErrorCase{"PortZeroIpv4", Request(0x01, B({10, 0, 0, 1}), 0),
                       Socks5ReplyCode::kGeneralFailure, 10, "port is 0"},
        SocksErrorCase{"PortZeroDomain", DomainRequest("a.example", 0),
                       Socks5ReplyCode::kGeneralFailure, 5 + 9 + 2, "port is 0"}),
    [](const testing::TestParamInfo<SocksErrorCase>& param_info) { return param_info.param.name; });

TEST(Socks5, ErrorBeforeTheAddressArrives) {
  // BIND is refused as soon as the command byte arrives; the client is not made to
  // send the address first.
  Socks5Parser parser;
  SocksRun run = RunSocks(parser, kGreeting + B({0x05, 0x02}));
  EXPECT_EQ(run.state, SocksState::kError);
  EXPECT_EQ(parser.ErrorReply(), B({0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0}));
}

// ---------------------------------------------------------------------------
// SOCKS5 replies

TEST(Socks5Reply, ExactBytesForEveryResult) {
  struct Case {
    TunnelResult result;
    int rep;
  };
  const Case cases[] = {
      {TunnelResult::kOk, 0x00},
      {TunnelResult::kDeniedByPolicy, 0x02},
      {TunnelResult::kConnectionRefused, 0x05},
      {TunnelResult::kAgentUnreachable, 0x04},
      {TunnelResult::kTimeout, 0x04},
      {TunnelResult::kNoAgent, 0x01},
      {TunnelResult::kBadRequest, 0x01},
      {TunnelResult::kInternal, 0x01},
      {TunnelResult::kRateLimited, 0x01},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Socks5Reply(c.result), B({0x05, c.rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0}))
        << TunnelResultName(c.result);
    EXPECT_EQ(static_cast<int>(Socks5ReplyCodeFor(c.result)), c.rep);
  }
}

TEST(Socks5Reply, ParserOnlyCodes) {
  EXPECT_EQ(Socks5Reply(Socks5ReplyCode::kCommandNotSupported),
            B({0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Socks5Reply(Socks5ReplyCode::kAddressTypeNotSupported),
            B({0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(Socks5Reply(Socks5ReplyCode::kGeneralFailure),
            B({0x05, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0}));
}

}  // namespace
}  // namespace drawbridge::client

#include "common/http_proxy.h"

#include <gtest/gtest.h>

#include <map>

#include "common/encoding.h"

namespace drawbridge::common {
namespace {

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

TEST(HttpProxyTest, ParsesUrlsWithAndWithoutCredentials) {
  auto p = ParseHttpProxyUrl("http://proxy.corp:8080");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->host, "proxy.corp");
  EXPECT_EQ(p->port, 8080);
  EXPECT_EQ(p->authorization, "");
  EXPECT_EQ(p->display, "http://proxy.corp:8080");
  EXPECT_EQ(ParseHttpProxyUrl("proxy.corp")->port, 3128);  // no scheme, squid's port
  EXPECT_EQ(ParseHttpProxyUrl("http://[::1]:3129/")->host, "::1");
  EXPECT_EQ(ParseHttpProxyUrl("http://[::1]:3129/")->display, "http://[::1]:3129");
  auto auth = ParseHttpProxyUrl("http://alice:p%40ss%3Aword@10.0.0.1:3128");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->authorization, "Basic " + Base64Encode("alice:p@ss:word"));
  EXPECT_EQ(auth->display, "http://10.0.0.1:3128");  // never the password
}

TEST(HttpProxyTest, RefusesWhatItCannotUseWithoutEchoingThePassword) {
  const char* bad[] = {"https://proxy:3128",     "socks5://proxy:1080", "http://",
                       "http://proxy:0",         "http://proxy:65536",  "http://proxy:x",
                       "http://proxy:3128/path", "http://:pw@proxy",    "http://a:%zz@proxy",
                       "http://pro xy:3128",     "http://proxy:3128\n", "http://a%3Ab:pw@proxy"};
  for (const char* url : bad) {
    auto p = ParseHttpProxyUrl(url);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << url;
  }
  auto secret = ParseHttpProxyUrl("http://alice:hunter2@proxy:3128/extra");
  EXPECT_EQ(std::string(secret.status().message()).find("hunter2"), std::string::npos);
}

TEST(HttpProxyTest, NoProxyMatchesNamesSubdomainsAddressesCidrsAndPorts) {
  EXPECT_TRUE(NoProxyMatches("*", "anything", 1));
  EXPECT_TRUE(NoProxyMatches("example.com", "example.com", 443));
  EXPECT_TRUE(NoProxyMatches("example.com", "broker.example.com", 443));
  EXPECT_TRUE(NoProxyMatches(".example.com", "broker.example.com", 443));
  EXPECT_TRUE(NoProxyMatches("*.example.com", "broker.example.com", 443));
  EXPECT_TRUE(NoProxyMatches("EXAMPLE.com", "Broker.Example.COM.", 443));
  EXPECT_FALSE(NoProxyMatches("example.com", "badexample.com", 443));
  EXPECT_FALSE(NoProxyMatches("broker.example.com", "example.com", 443));
  EXPECT_TRUE(NoProxyMatches("10.0.0.0/8, 192.168.1.1", "10.1.2.3", 8443));
  EXPECT_TRUE(NoProxyMatches("10.0.0.0/8 192.168.1.1", "192.168.1.1", 8443));
  EXPECT_FALSE(NoProxyMatches("10.0.0.0/8", "11.0.0.1", 8443));
  EXPECT_FALSE(NoProxyMatches("10.0.0.0/8", "ten.example", 8443));
  EXPECT_TRUE(NoProxyMatches("::1", "[::1]", 8443));
  EXPECT_TRUE(NoProxyMatches("broker.corp:8443", "broker.corp", 8443));
  EXPECT_FALSE(NoProxyMatches("broker.corp:8443", "broker.corp", 8444));
  EXPECT_FALSE(NoProxyMatches("", "broker.corp", 8443));
  EXPECT_FALSE(NoProxyMatches(",,", "broker.corp", 8443));
}

TEST(HttpProxyTest, ProxyForFollowsFlagThenEnvironment) {
  auto env = Env({{"HTTPS_PROXY", "http://env-proxy:3128"}, {"NO_PROXY", "internal.corp"}});
  EXPECT_EQ((*ProxyFor("broker.example.com:443", "", env))->host, "env-proxy");
  EXPECT_FALSE(ProxyFor("broker.internal.corp:443", "", env)->has_value());
  EXPECT_EQ((*ProxyFor("broker.internal.corp:443", "http://flag-proxy:1", env))->host,
            "flag-proxy");  // the flag is explicit: NO_PROXY is for the environment
  EXPECT_FALSE(ProxyFor("broker.example.com:443", "direct", env)->has_value());
  EXPECT_FALSE(ProxyFor("broker.example.com:443", "", Env({}))->has_value());
  auto lower = Env({{"https_proxy", "http://lower:3128"}, {"no_proxy", "example.com"}});
  EXPECT_FALSE(ProxyFor("broker.example.com:443", "", lower)->has_value());
  EXPECT_EQ((*ProxyFor("broker.other.com:443", "", lower))->host, "lower");
  auto broken = ProxyFor("broker.example.com:443", "", Env({{"HTTPS_PROXY", "ftp://x"}}));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(broken.status().message()).find("HTTPS_PROXY"), std::string::npos);
  EXPECT_FALSE(ProxyFor("no-port", "", env).ok());
}

TEST(HttpProxyTest, ConnectRequestAndAnswers) {
  HttpProxy p = *ParseHttpProxyUrl("http://alice:pw@proxy:3128");
  EXPECT_EQ(ConnectRequest("broker.corp", 8443, p),
            "CONNECT broker.corp:8443 HTTP/1.1\r\nHost: broker.corp:8443\r\n"
            "Proxy-Authorization: Basic " +
                Base64Encode("alice:pw") + "\r\n\r\n");
  EXPECT_EQ(ConnectRequest("::1", 8443, HttpProxy{}).substr(0, 26), "CONNECT [::1]:8443 HTTP/1.");
  EXPECT_TRUE(CheckConnectResponse("HTTP/1.1 200 Connection established\r\n\r\n", p).ok());
  EXPECT_TRUE(CheckConnectResponse("HTTP/1.0 200\r\n\r\n", p).ok());
  auto denied = CheckConnectResponse("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", p);
  EXPECT_EQ(denied.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(denied.message()).find("407"), std::string::npos) << denied;
  EXPECT_NE(std::string(denied.message()).find("user and password"), std::string::npos);
  auto refused = CheckConnectResponse("HTTP/1.1 403 Forbidden\x01\r\n\r\n", p);
  EXPECT_NE(std::string(refused.message()).find("does not allow"), std::string::npos);
  EXPECT_EQ(std::string(refused.message()).find('\x01'), std::string::npos);
  for (const char* bad : {"", "HTTP/2 200\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0-x\r\n\r\n",
                          "HTTP/1.1 200OK\r\n\r\n"}) {
    EXPECT_EQ(CheckConnectResponse(bad, p).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(CheckConnectResponse(std::string(kMaxConnectResponse + 1, 'a'), p).ok());
}

}  // namespace
}  // namespace drawbridge::common

#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <asio.hpp>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "metrics/endpoint.h"
#include "metrics/http.h"

namespace drawbridge::metrics {
namespace {

TEST(RegistryTest, RendersPrometheusTextFormat) {
  Registry r;
  Counter* ok = r.AddCounter("demo_dials_total", "Dials by result", {{"result", "ok"}});
  Counter* refused = r.AddCounter("demo_dials_total", "Dials by result", {{"result", "refused"}});
  Gauge* active = r.AddGauge("demo_active", "Open now");
  r.AddGaugeFunction("demo_expiry_seconds", "Seconds left", {{"certificate", "a\"b\\c\nd"}},
                     [] { return 12.5; });
  Histogram* h = r.AddHistogram("demo_latency_seconds", "Latency", {0.001, 0.01, 0.1});
  ok->Inc(3);
  refused->Inc();
  active->Add(5);
  active->Add(-2);
  for (double v : {0.0005, 0.001, 0.005, 0.05, 7.0}) {
    h->Observe(v);
  }
  EXPECT_EQ(r.Render(),
            "# HELP demo_dials_total Dials by result\n"
            "# TYPE demo_dials_total counter\n"
            "demo_dials_total{result=\"ok\"} 3\n"
            "demo_dials_total{result=\"refused\"} 1\n"
            "# HELP demo_active Open now\n"
            "# TYPE demo_active gauge\n"
            "demo_active 3\n"
            "# HELP demo_expiry_seconds Seconds left\n"
            "# TYPE demo_expiry_seconds gauge\n"
            "demo_expiry_seconds{certificate=\"a\\\"b\\\\c\\nd\"} 12.5\n"
            "# HELP demo_latency_seconds Latency\n"
            "# TYPE demo_latency_seconds histogram\n"
            "demo_latency_seconds_bucket{le=\"0.001\"} 2\n"
            "demo_latency_seconds_bucket{le=\"0.01\"} 3\n"
            "demo_latency_seconds_bucket{le=\"0.1\"} 4\n"
            "demo_latency_seconds_bucket{le=\"+Inf\"} 5\n"
            "demo_latency_seconds_sum 7.0565\n"
            "demo_latency_seconds_count 5\n");
}

TEST(RegistryTest, CountersAreExactUnderConcurrency) {
  Registry r;
  Counter* c = r.AddCounter("demo_total", "n");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([c] {
      for (int i = 0; i < 100000; ++i) {
        c->Inc();
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(c->value(), 400000u);
}

TEST(HttpTest, ParsesRequestHeads) {
  auto r = ParseHttpRequestHead("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->path, "/metrics");
  EXPECT_TRUE(ParseHttpRequestHead("GET / HTTP/1.0\r\n\r\n").ok());
}

TEST(HttpTest, RefusesMalformedHeads) {
  for (std::string bad : {
           std::string(""),
           std::string("GET /metrics HTTP/1.1\r\n"),           // no blank line
           std::string("GET /metrics\r\n\r\n"),                // no version
           std::string("GET  /metrics HTTP/1.1\r\n\r\n"),      // double space
           std::string("GET metrics HTTP/1.1\r\n\r\n"),        // not absolute
           std::string("GET /m HTTP/2.0\r\n\r\n"),             // version
           std::string("G(T /m HTTP/1.1\r\n\r\n"),             // method token
           std::string("GET /m\x01 HTTP/1.1\r\n\r\n"),         // control char
           std::string("GET /m HTTP/1.1\r\nNoColon\r\n\r\n"),  // header
           std::string("GET /m HTTP/1.1\r\n: v\r\n\r\n"),      // empty name
           std::string("GET /m HTTP/1.1\r\nA b: v\r\n\r\n"),   // space in name
           std::string("GET /m HTTP/1.1\r\nA: v\0w\r\n\r\n", 27),
           "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n",
       }) {
    EXPECT_FALSE(ParseHttpRequestHead(bad).ok()) << bad;
  }
}

// The endpoint over a real socket: paths, methods, readiness and garbage.
std::string Fetch(int port, const std::string& request) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
  asio::write(s, asio::buffer(request));
  std::string out;
  asio::error_code ec;
  char buf[4096];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) {
      break;
    }
    out.append(buf, n);
  }
  return out;
}

TEST(EndpointTest, ServesMetricsHealthAndReadiness) {
  Registry r;
  r.AddCounter("demo_total", "n")->Inc(7);
  std::atomic<bool> ready{false};
  auto e = Endpoint::Start({.listen = "127.0.0.1:0",
                            .registry = &r,
                            .ready = {{"store", [&] {
                                         return ready ? absl::OkStatus()
                                                      : absl::UnavailableError("database locked");
                                       }}}});
  ASSERT_TRUE(e.ok()) << e.status();
  int port = (*e)->port();
  std::string m = Fetch(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(m.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_NE(m.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(m.find("\r\n\r\n# HELP demo_total n\n# TYPE demo_total counter\ndemo_total 7\n"),
            std::string::npos);
  EXPECT_NE(Fetch(port, "GET /healthz HTTP/1.1\r\n\r\n").find("200 OK"), std::string::npos);
  std::string not_ready = Fetch(port, "GET /readyz HTTP/1.1\r\n\r\n");
  EXPECT_NE(not_ready.find("503"), std::string::npos);
  EXPECT_NE(not_ready.find("not ready: store: database locked"), std::string::npos);
  ready = true;
  EXPECT_NE(Fetch(port, "GET /readyz HTTP/1.1\r\n\r\n").find("200 OK"), std::string::npos);
  EXPECT_NE(Fetch(port, "GET /nope HTTP/1.1\r\n\r\n").find("404"), std::string::npos);
  EXPECT_NE(Fetch(port, "DELETE /metrics HTTP/1.1\r\n\r\n").find("405"), std::string::npos);
  EXPECT_NE(Fetch(port, "\x16\x03\x01garbage\r\n\r\n").find("400"), std::string::npos);
  // A head larger than the limit gets 400, not a stalled connection.
  EXPECT_NE(Fetch(port, "GET /" + std::string(10000, 'a')).find("400"), std::string::npos);
  // Still serving after all that.
  EXPECT_NE(Fetch(port, "GET /healthz HTTP/1.1\r\n\r\n").find("200 OK"), std::string::npos);
}

TEST(EndpointTest, RefusesBadListenAddresses) {
  Registry r;
  EXPECT_FALSE(Endpoint::Start({.listen = "nowhere", .registry = &r}).ok());
  EXPECT_FALSE(Endpoint::Start({.listen = "example.com:80", .registry = &r}).ok());
  auto first = Endpoint::Start({.listen = "127.0.0.1:0", .registry = &r});
  ASSERT_TRUE(first.ok());
  auto clash =
      Endpoint::Start({.listen = "127.0.0.1:" + std::to_string((*first)->port()), .registry = &r});
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(std::string(clash.status().message()).find("cannot listen"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::metrics

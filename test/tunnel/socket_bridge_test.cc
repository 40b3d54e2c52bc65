// SocketBridge against an echoing Tunnel.Accept (no broker): byte-exact relay
// with lookahead, half-close, and the gate that holds an agent's connection
// until its audit record is durable.
#include "tunnel/socket_bridge.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <random>
#include <string>
#include <thread>

#include "testing/echo_tunnel.h"

namespace drawbridge::tunnel {
namespace {

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until EOF or error, with a 10 s guard so a broken bridge fails the test.
std::string ReadToEnd(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) {
      ADD_FAILURE() << "no EOF within 10 s";
      return out;
    }
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string RandomBytes(size_t n) {
  std::mt19937_64 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) {
    c = static_cast<char>(rng());
  }
  return s;
}

TEST(SocketBridgeTest, EchoesSixteenMiBByteExactAndForwardsTheHalfClose) {
  testing::BridgeHarness harness;
  std::promise<BridgeStats> done;
  SocketBridge::Options opts;
  opts.on_done = [&done](const BridgeStats& s) { done.set_value(s); };
  int fd = harness.Open(std::move(opts));
  ASSERT_GE(fd, 0);
  const std::string data = RandomBytes(16 << 20);
  std::thread writer([&] {
    EXPECT_TRUE(SendAll(fd, data));
    ::shutdown(fd, SHUT_WR);  // becomes a fin frame; the echo answers with one
  });
  std::string echoed = ReadToEnd(fd);
  writer.join();
  ::close(fd);
  EXPECT_EQ(echoed.size(), data.size());
  EXPECT_TRUE(echoed == data) << "echoed bytes differ";
  auto stats = done.get_future();
  ASSERT_EQ(stats.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  BridgeStats s = stats.get();
  EXPECT_EQ(s.bytes_from_socket, data.size());
  EXPECT_EQ(s.bytes_to_socket, data.size());
  EXPECT_EQ(s.error, "");
  EXPECT_TRUE(s.status.ok()) << s.status.error_message();
}

TEST(SocketBridgeTest, GatedBridgeMovesNoByteUntilTheGateOpens) {
  testing::BridgeHarness harness;
  std::shared_ptr<SocketBridge> bridge;
  SocketBridge::Options opts;
  opts.gated = true;
  int fd = harness.Open(std::move(opts), &bridge);
  ASSERT_GE(fd, 0);
  ASSERT_NE(bridge, nullptr);
  ASSERT_TRUE(SendAll(fd, "GET / HTTP/1.1\r\n\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(harness.service().data_frames.load(), 0u) << "bytes flowed before the gate opened";
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "the application got bytes before the gate opened";
  bridge->OpenGate(absl::OkStatus());
  ::shutdown(fd, SHUT_WR);
  EXPECT_EQ(ReadToEnd(fd), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(harness.service().data_frames.load(), 1u);
  ::close(fd);
}

TEST(SocketBridgeTest, GateErrorEndsTheConnectionWithoutMovingAByte) {
  testing::BridgeHarness harness;
  std::shared_ptr<SocketBridge> bridge;
  std::promise<BridgeStats> done;
  SocketBridge::Options opts;
  opts.gated = true;
  opts.on_done = [&done](const BridgeStats& s) { done.set_value(s); };
  int fd = harness.Open(std::move(opts), &bridge);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "secret"));
  bridge->OpenGate(absl::UnavailableError("the agent's audit log is unavailable"));
  EXPECT_EQ(ReadToEnd(fd), "");  // closed, nothing delivered
  ::close(fd);
  auto stats = done.get_future();
  ASSERT_EQ(stats.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  BridgeStats s = stats.get();
  EXPECT_EQ(s.error, "the agent's audit log is unavailable");
  EXPECT_EQ(s.bytes_from_socket, 0u);
  EXPECT_EQ(s.bytes_to_socket, 0u);
  EXPECT_EQ(harness.service().data_frames.load(), 0u);
}

// Reads until the stream ends; true if it ended with a reset (ECONNRESET), false
// on a clean end of stream or after 10 s.
bool EndsWithReset(int fd) {
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) {
      ADD_FAILURE() << "no end within 10 s";
      return false;
    }
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0) {
      return false;
    }
    if (n < 0) {
      return errno == ECONNRESET;
    }
  }
}

// Invariant 8: an error end is a reset, never a clean end of stream, and what
// was still queued for the application is dropped.
TEST(SocketBridgeTest, AbortResetsTheApplicationsSocketInsteadOfClosingIt) {
  testing::BridgeHarness harness;
  std::shared_ptr<SocketBridge> bridge;
  std::promise<BridgeStats> done;
  SocketBridge::Options opts;
  opts.on_done = [&done](const BridgeStats& s) { done.set_value(s); };
  int fd = harness.Open(std::move(opts), &bridge);
  ASSERT_GE(fd, 0);
  // Bytes echoed back while we do not read, until nothing more fits: the bridge
  // is left waiting for the socket with chunks queued, the slow-reader case.
  // No send may be blocked when the reset arrives: the kernel reports a reset
  // once, to whichever call comes first.
  const std::string chunk = RandomBytes(64 * 1024);
  auto full_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - full_since < std::chrono::milliseconds(300)) {
    if (::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
      full_since = std::chrono::steady_clock::now();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  bridge->Abort("ended by the server: test");
  EXPECT_TRUE(EndsWithReset(fd)) << "the application saw a clean end of stream";
  ::close(fd);
  auto stats = done.get_future();
  ASSERT_EQ(stats.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(stats.get().error, "ended by the server: test");
}

TEST(SocketBridgeTest, BridgeSetAbortsTheBridgeTheServerNames) {
  testing::BridgeHarness harness;
  SocketBridge::Options named;
  named.conn_id = "conn-1";
  int fd1 = harness.Open(std::move(named));
  SocketBridge::Options other;
  other.conn_id = "conn-2";
  int fd2 = harness.Open(std::move(other));
  ASSERT_GE(fd1, 0);
  ASSERT_GE(fd2, 0);
  EXPECT_FALSE(harness.bridges().AbortByConnId("no-such-conn", "x"));
  EXPECT_TRUE(harness.bridges().AbortByConnId("conn-1", "revoked"));
  EXPECT_TRUE(EndsWithReset(fd1));
  // The other one still relays.
  ASSERT_TRUE(SendAll(fd2, "still here"));
  ::shutdown(fd2, SHUT_WR);
  EXPECT_EQ(ReadToEnd(fd2), "still here");
  ::close(fd1);
  ::close(fd2);
}

TEST(SocketBridgeTest, ManyConcurrentBridgesEachEchoTheirOwnBytes) {
  testing::BridgeHarness harness;
  constexpr int kConns = 32;
  std::vector<std::thread> threads;
  std::atomic<int> exact{0};
  for (int i = 0; i < kConns; ++i) {
    threads.emplace_back([&harness, &exact, i] {
      int fd = harness.Open({});
      if (fd < 0) {
        return;
      }
      std::string data = RandomBytes(256 * 1024 + static_cast<size_t>(i) * 977);
      data[0] = static_cast<char>(i);
      std::thread writer([&] {
        SendAll(fd, data);
        ::shutdown(fd, SHUT_WR);
      });
      std::string echoed = ReadToEnd(fd);
      writer.join();
      ::close(fd);
      if (echoed == data) {
        exact.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(exact.load(), kConns);
}

// A loopback port nothing listens on.
int DeadPort() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();  // closed when the acceptor goes
}

// A Dial whose server cannot be reached ends UNAVAILABLE before any answer:
// nothing has moved, so the socket goes to `redial` alive, not reset.
TEST(SocketBridgeTest, DialThatReachesNoServerHandsTheSocketToRedial) {
  testing::BridgeHarness harness;
  auto dead = v1::Tunnel::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(DeadPort()),
                                                      grpc::InsecureChannelCredentials()));
  std::promise<BridgeStats> done;
  SocketBridge::Options opts;
  opts.expect_result = true;
  opts.initial_payload = "bytes read with the request";
  opts.on_done = [&done](const BridgeStats& s) { done.set_value(s); };
  opts.redial = [](asio::ip::tcp::socket socket) {
    // The next attempt's stand-in: answers the application and ends cleanly.
    asio::error_code ec;
    socket.non_blocking(false, ec);
    asio::write(socket, asio::buffer(std::string("second attempt")), ec);
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  };
  int fd = harness.Open(
      std::move(opts), nullptr,
      [&dead](grpc::ClientContext* ctx, grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        dead->async()->Dial(ctx, reactor);
      });
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ReadToEnd(fd), "second attempt") << "the socket was not handed over intact";
  ::close(fd);
  auto stats = done.get_future();
  ASSERT_EQ(stats.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  BridgeStats s = stats.get();
  EXPECT_TRUE(s.redialed);
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNAVAILABLE) << s.status.error_message();
  EXPECT_EQ(s.bytes_from_socket, 0u);
  EXPECT_EQ(s.bytes_to_socket, 0u);
}

// Any other end before the answer is the service's word (here UNIMPLEMENTED):
// no second attempt, and the application sees a reset.
TEST(SocketBridgeTest, DialEndedByTheServerIsNotRedialed) {
  testing::BridgeHarness harness;
  std::promise<BridgeStats> done;
  std::atomic<int> redials{0};
  SocketBridge::Options opts;
  opts.expect_result = true;
  opts.on_done = [&done](const BridgeStats& s) { done.set_value(s); };
  opts.redial = [&redials](asio::ip::tcp::socket) { redials.fetch_add(1); };
  int fd = harness.Open(
      std::move(opts), nullptr,
      [&harness](grpc::ClientContext* ctx, grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        harness.stub()->async()->Dial(ctx, reactor);
      });
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(EndsWithReset(fd)) << "the application saw a clean end of stream";
  ::close(fd);
  auto stats = done.get_future();
  ASSERT_EQ(stats.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  BridgeStats s = stats.get();
  EXPECT_FALSE(s.redialed);
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(redials.load(), 0);
}

}  // namespace
}  // namespace drawbridge::tunnel

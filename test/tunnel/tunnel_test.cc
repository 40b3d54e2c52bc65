// End-to-end tests of the data plane in one process: a real server, agents and a
// client proxy on loopback, with TCP backends and plain blocking sockets as the
// application.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/agent.h"
#include "client/client.h"
#include "common/encoding.h"
#include "common/files.h"
#include "common/random.h"
#include "common/strings.h"
#include "enroll/cert_manager.h"
#include "lane/framing.h"
#include "lane/tls_context.h"
#include "pki/keys.h"
#include "server/server.h"
#include "testing/loopback.h"
#include "testing/temp_dir.h"
#include "testing/test_store.h"

namespace drawbridge {
namespace {

// ---- plain socket helpers -----------------------------------------------------

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

int Connect(int port) {
  int fd = testing::ConnectToLoopback(port);
  if (fd < 0) {
    return -1;
  }
  timeval tv{60, 0};  // no test may hang forever on a read
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string RecvExactly(int fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
    if (r <= 0) {
      break;
    }
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

std::string RecvUntilEof(int fd) {
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(r));
  }
}

// Opens a tunnel with HTTP CONNECT through the client proxy. Returns the socket
// (or -1) and the HTTP status of the reply.
int ConnectVia(int proxy_port, const std::string& target, int* status) {
  int fd = Connect(proxy_port);
  *status = 0;
  if (fd < 0 ||
      !SendAll(fd, common::StrCat("CONNECT ", target, " HTTP/1.1\r\nHost: ", target, "\r\n\r\n"))) {
    return -1;
  }
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) {
    head.push_back(c);
  }
  if (head.size() > 12) {
    *status = std::stoi(head.substr(9, 3));
  }
  return fd;
}

// A TCP server on 127.0.0.1 that runs `handler(fd)` on a thread per connection.
class Backend {
 public:
  explicit Backend(std::function<void(int)> handler) : handler_(std::move(handler)) {
    listener_ = testing::ListenOnLoopback(1024, &port_);
    accept_thread_ = std::thread([this] {
      while (true) {
        int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) {
          return;
        }
        std::lock_guard<std::mutex> lock(mu_);
        threads_.emplace_back([this, fd] {
          handler_(fd);
          ::close(fd);
        });
      }
    });
  }
  ~Backend() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    accept_thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& t : threads_) {
      t.join();
    }
  }
  int port() const { return port_; }

 private:
  std::function<void(int)> handler_;
  int listener_ = -1;
  int port_ = 0;
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

std::string Sha256Hex(const std::string& data) { return common::HexEncode(pki::Sha256(data)); }

// ---- fixture ------------------------------------------------------------------

// Every test runs on both transports of tunnel bytes: lanes (the server's data
// port, with gRPC streams whenever no pre-opened lane is ready) and gRPC
// streams only.
enum class Transport { kLanes, kGrpc };

class TunnelTest : public ::testing::TestWithParam<Transport> {
 protected:
  bool lanes() const { return GetParam() == Transport::kLanes; }

  void SetUp() override {
    rlimit lim;
    ::getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    port_ = FreePort();
    server::InitOptions init;
    init.data_dir = dir_.File("data");
    init.trust_domain = "example.com";
    init.listen = common::StrCat("127.0.0.1:", port_);
    init.store = testing::TestStoreLocation();
    ASSERT_TRUE(server::InitDataDir(init).ok());
  }

  void TearDown() override {
    client_.reset();
    agents_.clear();
    server_.reset();
  }

  void StartServer(const std::string& policy_yaml) {
    ASSERT_TRUE(common::WriteFileAtomic(dir_.File("policy.yaml"), policy_yaml, 0600).ok());
    server::ServerOptions opts;
    opts.data_dir = dir_.File("data");
    opts.policy_file = dir_.File("policy.yaml");
    opts.dial_timeout = std::chrono::seconds(3);
    opts.idle_timeout_override = idle_timeout_;
    auto s = server::Server::Start(opts);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    if (admin_.key_id.empty()) {
      admin_ = *pki::LoadCredentialFile(server::DataDir(dir_.File("data")).admin_credential);
    }
  }

  pki::Credential Identity(const std::string& identity) {
    auto key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    pki::Credential c = admin_;
    c.identity = *pki::ParseIdentity(identity);
    c.key_id = *pki::KeyIdOf(key.get());
    c.private_key_pem = *pki::PrivateKeyToPem(key.get());
    auto existing = server_->directory()->GetIdentity(identity);
    absl::Status s =
        existing.ok() ? server_->directory()->AddKey(
                            {c.key_id, identity, "ES256", *pki::PublicKeyToPem(key.get()), 1, 0})
                      : server_->directory()->CreateIdentity(
                            {identity, true, {}, 1, 1},
                            {c.key_id, identity, "ES256", *pki::PublicKeyToPem(key.get()), 1, 0});
    EXPECT_TRUE(s.ok()) << s;
    return c;
  }

  agent::Agent* StartAgent(const std::string& identity, std::vector<std::string> allow,
                           const std::string& instance = "") {
    agent::AgentOptions opts;
    opts.credential = Identity(identity);
    opts.allow = std::move(allow);
    opts.instance_id = instance;
    opts.dial_timeout = std::chrono::seconds(2);
    opts.use_lanes = lanes();
    auto a = agent::Agent::Start(opts);
    EXPECT_TRUE(a.ok()) << a.status();
    if (!a.ok()) {
      return nullptr;
    }
    EXPECT_TRUE((*a)->WaitConnected(std::chrono::seconds(10)));
    if (lanes()) {
      agent::Agent* started = a->get();
      EXPECT_TRUE(WaitFor([started] { return started->lanes_ready(); }, std::chrono::seconds(10)))
          << "the agent's lanes did not come up";
    }
    agents_.push_back(std::move(*a));
    return agents_.back().get();
  }

  int StartClient(const std::string& identity = "client/ci") {
    client::ClientOptions opts;
    opts.credential = Identity(identity);
    opts.listen = "127.0.0.1:0";
    opts.use_lanes = lanes();
    auto c = client::Client::Start(opts);
    EXPECT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
    if (lanes()) {
      EXPECT_TRUE(WaitFor([this] { return client_->lanes_ready(); }, std::chrono::seconds(10)))
          << "the client's lanes did not come up";
    }
    return client_->proxy_port();
  }

  static std::string AllowAllLoopback() {
    return R"(rules:
  - name: ci-to-loopback
    clients: ["client/ci"]
    agents: ["agent/*"]
    destinations: ["127.0.0.1/32:*", "localhost:*"]
)";
  }

  bool WaitFor(std::function<bool()> cond, std::chrono::seconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (cond()) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return cond();
  }

  testing::TempDir dir_;
  std::chrono::milliseconds idle_timeout_{0};
  int port_ = 0;
  pki::Credential admin_;
  std::unique_ptr<server::Server> server_;
  std::vector<std::unique_ptr<agent::Agent>> agents_;
  std::unique_ptr<client::Client> client_;
};

constexpr size_t kMiB = 1 << 20;

std::string DeterministicChunk() {
  std::string chunk(kMiB, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < chunk.size(); ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    chunk[i] = static_cast<char>(x);
  }
  return chunk;
}

// ---- tests ----------------------------------------------------------------------

// 100 MiB each way, byte-exact (SHA-256). The upload also exercises half-close:
// the backend answers only after the client shut its write side.
TEST_P(TunnelTest, TransfersOneHundredMiBEachWayByteExact) {
  const std::string chunk = DeterministicChunk();
  const size_t total = 100 * kMiB;
  SHA256_CTX expected_ctx;
  SHA256_Init(&expected_ctx);
  for (size_t sent = 0; sent < total; sent += chunk.size()) {
    SHA256_Update(&expected_ctx, chunk.data(), chunk.size());
  }
  unsigned char expected[32];
  SHA256_Final(expected, &expected_ctx);

  Backend sink([](int fd) {  // hashes everything until EOF, then replies with the digest
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    char buf[65536];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
      SHA256_Update(&ctx, buf, static_cast<size_t>(n));
    }
    unsigned char md[32];
    SHA256_Final(md, &ctx);
    SendAll(fd, std::string_view(reinterpret_cast<char*>(md), 32));
  });
  Backend source([&chunk, total](int fd) {
    for (size_t sent = 0; sent < total; sent += chunk.size()) {
      if (!SendAll(fd, chunk)) {
        return;
      }
    }
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();

  int status = 0;
  int up = ConnectVia(proxy, common::StrCat("127.0.0.1:", sink.port()), &status);
  ASSERT_EQ(status, 200);
  for (size_t sent = 0; sent < total; sent += chunk.size()) {
    ASSERT_TRUE(SendAll(up, chunk));
  }
  ::shutdown(up, SHUT_WR);
  std::string digest = RecvExactly(up, 32);
  EXPECT_EQ(digest, std::string(reinterpret_cast<char*>(expected), 32)) << "upload corrupted";
  ::close(up);

  int down = ConnectVia(proxy, common::StrCat("127.0.0.1:", source.port()), &status);
  ASSERT_EQ(status, 200);
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  size_t received = 0;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(down, buf, sizeof(buf), 0)) > 0) {
    SHA256_Update(&ctx, buf, static_cast<size_t>(n));
    received += static_cast<size_t>(n);
  }
  unsigned char md[32];
  SHA256_Final(md, &ctx);
  ::close(down);
  EXPECT_EQ(received, total);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(md), 32),
            std::string(reinterpret_cast<char*>(expected), 32))
      << "download corrupted";
}

// The destination closes its write side first; the client can still send.
TEST_P(TunnelTest, HalfCloseFromTheDestinationKeepsTheOtherDirection) {
  std::mutex mu;
  std::string received_after_fin;
  std::atomic<bool> done{false};
  Backend backend([&](int fd) {
    SendAll(fd, "hello");
    ::shutdown(fd, SHUT_WR);
    std::string rest = RecvUntilEof(fd);
    std::lock_guard<std::mutex> lock(mu);
    received_after_fin = rest;
    done = true;
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", backend.port()), &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(RecvUntilEof(fd), "hello");  // EOF arrives while our side is open
  ASSERT_TRUE(SendAll(fd, "world"));
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(WaitFor([&] { return done.load(); }, std::chrono::seconds(10)));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(received_after_fin, "world");
  ::close(fd);
}

TEST_P(TunnelTest, FiveHundredConcurrentConnectionsAllComplete) {
  Backend echo([](int fd) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
      if (!SendAll(fd, std::string_view(buf, static_cast<size_t>(n)))) {
        return;
      }
    }
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  constexpr int kConnections = 500;
  std::vector<int> fds;
  std::string target = common::StrCat("127.0.0.1:", echo.port());
  for (int i = 0; i < kConnections; ++i) {
    int status = 0;
    int fd = ConnectVia(proxy, target, &status);
    ASSERT_EQ(status, 200) << "connection " << i;
    fds.push_back(fd);
  }
  // All 500 are open at once: write to every one, then read every echo.
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(SendAll(fds[i], common::StrCat("message-", i, "-", std::string(1000, 'x'))));
  }
  int complete = 0;
  for (int i = 0; i < kConnections; ++i) {
    std::string expected = common::StrCat("message-", i, "-", std::string(1000, 'x'));
    complete += RecvExactly(fds[i], expected.size()) == expected ? 1 : 0;
    ::close(fds[i]);
  }
  EXPECT_EQ(complete, kConnections);
}

long RssKiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return 0;
}

// A reader that stops reading: backpressure must stop the destination's writes
// instead of buffering without bound in the agent or the server.
TEST_P(TunnelTest, StalledReaderKeepsMemoryBounded) {
  std::atomic<uint64_t> produced{0};
  std::atomic<bool> stop{false};
  Backend firehose([&](int fd) {
    std::string chunk(64 * 1024, 'z');
    while (!stop.load()) {
      ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        produced += static_cast<uint64_t>(n);
      } else if (errno == EAGAIN) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        return;
      }
    }
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  long rss_before = RssKiB();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", firehose.port()), &status);
  ASSERT_EQ(status, 200);
  // Never read from fd. Wait until the producer is stalled: no progress for 1 s.
  uint64_t last = 0;
  int still = 0;
  for (int i = 0; i < 100 && still < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    uint64_t now = produced.load();
    still = now == last ? still + 1 : 0;
    last = now;
  }
  long rss_after = RssKiB();
  std::printf("stalled reader: destination wrote %.1f MiB before stalling; RSS grew %ld KiB\n",
              static_cast<double>(last) / kMiB, rss_after - rss_before);
  EXPECT_GE(still, 4) << "the destination never stalled: no backpressure";
  // Kernel socket buffers on the path (autotuned up to tcp_rmem/tcp_wmem's max,
  // 6 + 4 MiB, on each of four connections) plus two HTTP/2 windows, which
  // gRPC's BDP probe grows: far below what an unbounded relay would queue in 25 s
  // of loopback speed (gigabytes). Under ASan the slower relay lets autotuning
  // grow further (seen once: 81 MiB in CI), so its bound is looser.
#if defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(last, 160 * kMiB);
#else
  EXPECT_LT(last, 64 * kMiB);
#endif
#if !defined(__SANITIZE_ADDRESS__)
  // Not under ASan: its quarantine keeps freed chunks resident (up to 256 MiB),
  // so RSS there follows the bytes relayed, not what is live (seen: 112-207 MiB
  // for 13-25 MiB relayed). The bound on `last` above holds in both builds.
  EXPECT_LT(rss_after - rss_before, 128 * 1024);
#endif
  stop = true;
  ::close(fd);
}

TEST_P(TunnelTest, IdleConnectionsAreClosed) {
  Backend quiet([](int fd) { RecvUntilEof(fd); });  // never sends
  idle_timeout_ = std::chrono::milliseconds(700);
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", quiet.port()), &status);
  ASSERT_EQ(status, 200);
  ASSERT_TRUE(SendAll(fd, "activity resets the timer"));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RecvUntilEof(fd), "");  // returns when the server closes the idle tunnel
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(500));
  EXPECT_LT(waited, std::chrono::seconds(10));
  ::close(fd);
}

// DESIGN §7.3: disabling an identity ends all of its live streams within a second.
TEST_P(TunnelTest, DisablingAClientCutsItsFiftyLiveConnectionsWithinASecond) {
  Backend echo([](int fd) {
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
      SendAll(fd, std::string_view(buf, static_cast<size_t>(n)));
    }
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  std::string target = common::StrCat("127.0.0.1:", echo.port());
  std::vector<int> fds;
  for (int i = 0; i < 50; ++i) {
    int status = 0;
    int fd = ConnectVia(proxy, target, &status);
    ASSERT_EQ(status, 200);
    ASSERT_TRUE(SendAll(fd, "ping"));
    ASSERT_EQ(RecvExactly(fd, 4), "ping");
    fds.push_back(fd);
  }
  ASSERT_TRUE(server_->directory()->SetEnabled("client/ci", false, 2).ok());
  auto revoked_at = std::chrono::steady_clock::now();
  int cut = 0;
  for (int fd : fds) {
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    ssize_t n = ::recv(fd, &c, 1, 0);  // EOF or reset when the tunnel is cut
    cut += (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ? 1 : 0;
    ::close(fd);
  }
  auto elapsed = std::chrono::steady_clock::now() - revoked_at;
  std::printf("revocation: %d of 50 connections cut in %.1f ms\n", cut,
              std::chrono::duration<double, std::milli>(elapsed).count());
  EXPECT_EQ(cut, 50);
  EXPECT_LT(elapsed, std::chrono::seconds(1));
  int status = 0;
  int fd = ConnectVia(proxy, target, &status);
  EXPECT_NE(status, 200) << "a disabled client opened a new tunnel";
  if (fd >= 0) {
    ::close(fd);
  }
}

TEST_P(TunnelTest, RemovingAnAgentKeyCutsItsTunnelsAndControlStream) {
  Backend echo([](int fd) { RecvUntilEof(fd); });
  StartServer(AllowAllLoopback());
  agent::Agent* agent = StartAgent("agent/a1", {"127.0.0.1/32:*"});
  ASSERT_NE(agent, nullptr);
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", echo.port()), &status);
  ASSERT_EQ(status, 200);
  auto keys = server_->directory()->ListKeys("agent/a1");
  ASSERT_EQ(keys.size(), 1u);
  ASSERT_TRUE(server_->directory()->RemoveKey("agent/a1", keys[0].key_id, 2).ok());
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  ssize_t n = ::recv(fd, &c, 1, 0);
  EXPECT_TRUE(n == 0 || (n < 0 && errno != EAGAIN)) << "tunnel still open";
  ::close(fd);
  EXPECT_TRUE(
      WaitFor([&] { return server_->registry()->Snapshot().empty(); }, std::chrono::seconds(1)))
      << "control stream still registered";
  // It cannot come back: its next Control stream is refused.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(server_->registry()->Snapshot().empty());
}

TEST_P(TunnelTest, ServerPolicyDenies) {
  Backend echo([](int fd) { RecvUntilEof(fd); });
  StartServer(R"(rules:
  - name: only-one-port
    clients: ["client/ci"]
    agents: ["agent/*"]
    destinations: ["127.0.0.1:1"]
)");
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", echo.port()), &status);
  EXPECT_EQ(status, 403);
  ::close(fd);
}

TEST_P(TunnelTest, AgentAllowlistDeniesEvenWhenPolicyAllows) {
  Backend echo([](int fd) { RecvUntilEof(fd); });
  StartServer(AllowAllLoopback());
  // The agent advertises another port only; with no eligible agent the server
  // refuses, and an agent asked anyway would refuse by itself.
  StartAgent("agent/a1", {common::StrCat("127.0.0.1:", echo.port() + 1)});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", echo.port()), &status);
  EXPECT_EQ(status, 403);
  ::close(fd);
}

// DNS rebinding defence: a name allowed by name only must not lead to loopback.
TEST_P(TunnelTest, NameResolvingToLoopbackIsRefusedUnlessAnAddressRuleNamesIt) {
  Backend echo([](int fd) {
    char buf[16];
    ::recv(fd, buf, sizeof(buf), 0);
  });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {common::StrCat("localhost:", echo.port())});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("localhost:", echo.port()), &status);
  EXPECT_EQ(status, 403);
  ::close(fd);
}

TEST_P(TunnelTest, NameResolvingToLoopbackWorksWhenExplicitlyAllowed) {
  Backend hello([](int fd) { SendAll(fd, "hi"); });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {common::StrCat("localhost:", hello.port()),
                          common::StrCat("127.0.0.1/32:", hello.port())});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("localhost:", hello.port()), &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(RecvUntilEof(fd), "hi");
  ::close(fd);
}

TEST_P(TunnelTest, RefusedAndUnreachableDestinationsMapTo502) {
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", FreePort()), &status);  // nothing there
  EXPECT_EQ(status, 502);
  ::close(fd);
}

TEST_P(TunnelTest, NoAgentConnectedMapsTo503) {
  StartServer(AllowAllLoopback());
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, "127.0.0.1:9", &status);
  EXPECT_EQ(status, 503);
  ::close(fd);
}

TEST_P(TunnelTest, KillingOneOfTwoInstancesMovesNewConnectionsToTheOther) {
  Backend hello([](int fd) { SendAll(fd, "hi"); });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"}, "first");
  StartAgent("agent/a1", {"127.0.0.1/32:*"}, "second");
  ASSERT_TRUE(WaitFor([&] { return server_->registry()->Snapshot().size() == 2; },
                      std::chrono::seconds(10)));
  int proxy = StartClient();
  std::string target = common::StrCat("127.0.0.1:", hello.port());
  agents_[0]->Stop();
  ASSERT_TRUE(WaitFor([&] { return server_->registry()->Snapshot().size() == 1; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(server_->registry()->Snapshot()[0]->instance_id(), "second");
  for (int i = 0; i < 20; ++i) {
    int status = 0;
    int fd = ConnectVia(proxy, target, &status);
    EXPECT_EQ(status, 200) << "connection " << i;
    EXPECT_EQ(RecvUntilEof(fd), "hi");
    ::close(fd);
  }
}

TEST_P(TunnelTest, AgentReconnectsAfterServerRestart) {
  Backend hello([](int fd) { SendAll(fd, "hi"); });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  std::string target = common::StrCat("127.0.0.1:", hello.port());
  // Agents leave on goaway, so a long grace period does not delay an idle stop.
  auto stop_started = std::chrono::steady_clock::now();
  server_->Shutdown(std::chrono::seconds(10));
  EXPECT_LT(std::chrono::steady_clock::now() - stop_started, std::chrono::seconds(5));
  server_.reset();
  StartServer(AllowAllLoopback());  // same data dir and port
  ASSERT_TRUE(WaitFor([&] { return server_->registry()->Snapshot().size() == 1; },
                      std::chrono::seconds(40)))
      << "the agent did not reconnect";
  int status = 0;
  int fd = -1;
  // The client's channel reconnects on its own; its first dial may race that.
  ASSERT_TRUE(WaitFor(
      [&] {
        if (fd >= 0) {
          ::close(fd);
        }
        fd = ConnectVia(proxy, target, &status);
        return status == 200;
      },
      std::chrono::seconds(20)));
  EXPECT_EQ(RecvUntilEof(fd), "hi");
  ::close(fd);
}

// ---- the data port under attack ---------------------------------------------------

// A blocking TLS connection to the data port, speaking lanes by hand.
class RawLane {
 public:
  // Connects and handshakes; ok() is false if either failed.
  RawLane(SSL_CTX* ctx, int port, const std::string& server_name) {
    fd_ = Connect(port);
    auto ssl = lane::NewClientSsl(ctx, server_name);
    if (fd_ < 0 || !ssl.ok()) {
      return;
    }
    ssl_ = std::move(*ssl);
    SSL_set_fd(ssl_.get(), fd_);
    ok_ = SSL_connect(ssl_.get()) == 1;
  }
  ~RawLane() {
    ssl_.reset();
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  bool ok() const { return ok_; }
  bool WriteRaw(const std::string& bytes) {
    size_t n = 0;
    return SSL_write_ex(ssl_.get(), bytes.data(), bytes.size(), &n) == 1;
  }
  bool Write(const v1::Frame& frame) {
    std::string message;
    lane::AppendLengthPrefix(frame.ByteSizeLong(), &message);
    frame.AppendToString(&message);
    return WriteRaw(message);
  }
  // The next message, or false when the lane ended (closed, reset, alert).
  bool Read(v1::Frame* frame) {
    std::string buffer;
    char chunk[16384];
    while (true) {
      size_t consumed = 0;
      auto message = lane::SplitMessage(buffer, &consumed);
      if (!message.ok()) {
        return false;
      }
      if (consumed > 0) {
        return frame->ParseFromArray(message->data(), static_cast<int>(message->size()));
      }
      size_t n = 0;
      if (SSL_read_ex(ssl_.get(), chunk, sizeof(chunk), &n) != 1) {
        return false;
      }
      buffer.append(chunk, n);
    }
  }

 private:
  int fd_ = -1;
  lane::SslPtr ssl_;
  bool ok_ = false;
};

v1::Frame Hello(const std::string& method, const std::string& destination) {
  v1::Frame f;
  f.mutable_lane()->set_method(method);
  f.mutable_lane()->set_instance_id("attacker");
  f.mutable_open()->set_destination(destination);
  return f;
}

// Our own certificate for `identity`, as a client or agent process would hold it.
lane::SslContext ContextFor(const pki::Credential& credential,
                            std::unique_ptr<enroll::CertManager>* keep) {
  auto certs = enroll::CertManager::Create({.credential = credential});
  EXPECT_TRUE(certs.ok()) << certs.status();
  auto pair = (*certs)->CurrentKeyPair();
  auto ctx = lane::MakeClientContext(pair.chain_pem, pair.key_pem, credential.ca_bundle_pem);
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  *keep = std::move(*certs);
  return *ctx;
}

TEST_P(TunnelTest, DataPortRefusesWhatIsNotAnAuthenticatedLane) {
  if (!lanes()) {
    GTEST_SKIP() << "lanes only";
  }
  Backend hello([](int fd) { SendAll(fd, "hi"); });
  StartServer(AllowAllLoopback());
  ASSERT_GT(server_->lane_port(), 0);
  const int port = server_->lane_port();
  const std::string name = admin_.server_name;

  // No client certificate: the server's alert ends the lane; no frame comes back.
  {
    lane::SslContext anonymous(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
    SSL_CTX_set_min_proto_version(anonymous.get(), TLS1_3_VERSION);
    const unsigned char alpn[] = "\x11drawbridge-lane/1";
    SSL_CTX_set_alpn_protos(anonymous.get(), alpn, sizeof(alpn) - 1);
    RawLane lane(anonymous.get(), port, name);
    v1::Frame reply;
    EXPECT_FALSE(lane.ok() &&
                 lane.Write(Hello("Dial", common::StrCat("127.0.0.1:", hello.port()))) &&
                 lane.Read(&reply))
        << "a lane without a client certificate was answered";
  }
  std::unique_ptr<enroll::CertManager> client_certs;
  lane::SslContext client_ctx = ContextFor(Identity("client/ci"), &client_certs);
  // Another protocol (ALPN h2, as a gRPC client dialling the wrong port): no handshake.
  {
    lane::SslContext h2(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
    const unsigned char alpn[] = "\x02h2";
    SSL_CTX_set_alpn_protos(h2.get(), alpn, sizeof(alpn) - 1);
    RawLane lane(h2.get(), port, name);
    EXPECT_FALSE(lane.ok()) << "a handshake without our ALPN succeeded";
  }
  // A client certificate opening an agent's stream: refused with a status.
  {
    RawLane lane(client_ctx.get(), port, name);
    ASSERT_TRUE(lane.ok());
    v1::Frame accept;
    accept.mutable_lane()->set_method("Accept");
    accept.mutable_open()->set_conn_id(std::string(16, 'x'));
    ASSERT_TRUE(lane.Write(accept));
    v1::Frame reply;
    ASSERT_TRUE(lane.Read(&reply));
    EXPECT_EQ(reply.status().code(), grpc::StatusCode::PERMISSION_DENIED) << reply.DebugString();
  }
  // An unknown method, a length beyond the limit, and a frame that is not a
  // Frame: each lane ends, and nothing else is disturbed.
  {
    RawLane lane(client_ctx.get(), port, name);
    ASSERT_TRUE(lane.ok());
    v1::Frame bogus;
    bogus.mutable_lane()->set_method("Control");
    ASSERT_TRUE(lane.Write(bogus));
    v1::Frame reply;
    ASSERT_TRUE(lane.Read(&reply));
    EXPECT_EQ(reply.status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    RawLane lane(client_ctx.get(), port, name);
    ASSERT_TRUE(lane.ok());
    ASSERT_TRUE(lane.WriteRaw(std::string("\xff\xff\xff\xff", 4) + std::string(1000, 'A')));
    v1::Frame reply;
    EXPECT_FALSE(lane.Read(&reply)) << "an oversized message was answered";
  }
  {
    RawLane lane(client_ctx.get(), port, name);
    ASSERT_TRUE(lane.ok());
    ASSERT_TRUE(lane.WriteRaw(std::string("\x00\x00\x00\x04\xff\xff\xff\xff", 8)));
    v1::Frame reply;
    EXPECT_FALSE(lane.Read(&reply)) << "a malformed message was answered";
  }
  // A client on the same port still gets through, on a lane.
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  int proxy = StartClient();
  int status = 0;
  int fd = ConnectVia(proxy, common::StrCat("127.0.0.1:", hello.port()), &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(RecvUntilEof(fd), "hi");
  ::close(fd);
}

TEST_P(TunnelTest, DisabledIdentityCannotUseALaneItOpenedBefore) {
  if (!lanes()) {
    GTEST_SKIP() << "lanes only";
  }
  Backend hello([](int fd) { SendAll(fd, "hi"); });
  StartServer(AllowAllLoopback());
  StartAgent("agent/a1", {"127.0.0.1/32:*"});
  std::unique_ptr<enroll::CertManager> certs;
  lane::SslContext ctx = ContextFor(Identity("client/ci"), &certs);
  // Opened (and authenticated by TLS) while the identity was enabled, like a
  // pre-opened lane in a client's pool.
  RawLane lane(ctx.get(), server_->lane_port(), admin_.server_name);
  ASSERT_TRUE(lane.ok());
  ASSERT_TRUE(server_->directory()->SetEnabled("client/ci", false, 1).ok());
  ASSERT_TRUE(lane.Write(Hello("Dial", common::StrCat("127.0.0.1:", hello.port()))));
  v1::Frame reply;
  ASSERT_TRUE(lane.Read(&reply));
  EXPECT_EQ(reply.status().code(), grpc::StatusCode::PERMISSION_DENIED) << reply.DebugString();
}

INSTANTIATE_TEST_SUITE_P(Transports, TunnelTest,
                         ::testing::Values(Transport::kLanes, Transport::kGrpc),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return info.param == Transport::kLanes ? "Lanes" : "Grpc";
                         });

}  // namespace
}  // namespace drawbridge

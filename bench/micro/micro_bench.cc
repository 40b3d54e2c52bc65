// Micro-benchmarks of hot paths (Google Benchmark): tunnel frame encode/decode,
// the socket bridge, the whole data plane with the server's splice, policy
// matching, audit record hashing and durable appends, and metric updates.
//
//   cmake --build build --target micro_bench && build/bench/micro/micro_bench
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/agent.h"
#include "audit/audit_log.h"
#include "audit/record.h"
#include "client/client.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "drawbridge/v1/tunnel.pb.h"
#include "metrics/metrics.h"
#include "pki/keys.h"
#include "policy/destination.h"
#include "policy/policy.h"
#include "server/server.h"
#include "testing/echo_tunnel.h"
#include "testing/loopback.h"
#include "testing/temp_dir.h"

namespace drawbridge {
namespace {

// A data frame as the bridges send them (32 KiB chunks), serialised and parsed.
void BM_FrameEncode(benchmark::State& state) {
  v1::Frame frame;
  frame.set_data(std::string(static_cast<size_t>(state.range(0)), 'x'));
  std::string out;
  for (auto _ : state) {
    out.clear();
    frame.SerializeToString(&out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_FrameEncode)->Arg(32 * 1024)->Arg(64 * 1024);

void BM_FrameDecode(benchmark::State& state) {
  v1::Frame frame;
  frame.set_data(std::string(static_cast<size_t>(state.range(0)), 'x'));
  const std::string wire = frame.SerializeAsString();
  v1::Frame parsed;
  for (auto _ : state) {
    parsed.ParseFromString(wire);
    benchmark::DoNotOptimize(parsed.data().data());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_FrameDecode)->Arg(32 * 1024)->Arg(64 * 1024);

// A dial's policy check against N rules; the match is the last rule (worst case).
void BM_PolicyCheck(benchmark::State& state) {
  std::string yaml = "rules:\n";
  for (int i = 0; i < state.range(0); ++i) {
    yaml += "  - name: r" + std::to_string(i) + "\n    clients: [\"client/team-" +
            std::to_string(i) + "-*\"]\n    agents: [\"agent/site-" + std::to_string(i) +
            "\"]\n    destinations: [\"*.git" + std::to_string(i) + ".corp.example:22\", \"10." +
            std::to_string(i % 250) + ".0.0/16:443\"]\n";
  }
  auto policy = policy::Policy::Parse(yaml);
  if (!policy.ok()) {
    state.SkipWithError("policy did not parse");
    return;
  }
  const int last = static_cast<int>(state.range(0)) - 1;
  auto dest = policy::ParseDestination("repo.git" + std::to_string(last) + ".corp.example:22");
  const std::string client = "client/team-" + std::to_string(last) + "-ci";
  const std::string agent = "agent/site-" + std::to_string(last);
  for (auto _ : state) {
    benchmark::DoNotOptimize((*policy)->Check(client, agent, *dest).allowed);
  }
}
BENCHMARK(BM_PolicyCheck)->Arg(1)->Arg(10)->Arg(100)->Arg(1000);

// Hashing one audit record into the chain (per connection: open and close).
void BM_AuditRecordHash(benchmark::State& state) {
  audit::Record r = audit::MakeRecord(audit::EventClass::kNetworkActivity, "close",
                                      audit::kOutcomeSuccess, "client/ci", "10.0.0.7",
                                      {{"client", "client/ci"},
                                       {"destination", "gitlab.corp.example:443"},
                                       {"agent", "agent/acme"},
                                       {"agent_instance", "i-1"},
                                       {"bytes_up", 4107},
                                       {"bytes_down", 918233},
                                       {"duration_ms", 2700}});
  r.seq = 812;
  r.time_unix_ms = 1764590400123;
  r.prev_hash = std::string(audit::kGenesisHash);
  for (auto _ : state) {
    benchmark::DoNotOptimize(audit::ComputeHash(r));
  }
}
BENCHMARK(BM_AuditRecordHash);

// One durable append on an idle log: what a dial waits for on the agent and again on
// the server (queue hop to the writer, SQLite WAL commit with fsync, callback).
void BM_AuditAppendDurable(benchmark::State& state) {
  char dir[] = "/tmp/drawbridge-micro.XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::string path = std::string(dir) + "/audit.db";
  // Signed like the agent's and server's logs: every commit re-signs the head.
  auto key = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  if (!key.ok()) {
    state.SkipWithError("key generation failed");
    return;
  }
  {
    audit::AuditLog::Options options;
    options.signing_key = key->get();
    auto log = audit::AuditLog::Open(path, options);
    if (!log.ok()) {
      state.SkipWithError(std::string(log.status().message()).c_str());
      return;
    }
    for (auto _ : state) {
      absl::Status s = (*log)->AppendSync(audit::MakeRecord(
          audit::EventClass::kNetworkActivity, "open", audit::kOutcomeSuccess, "client/ci", "",
          {{"client", "client/ci"}, {"destination", "gitlab.corp.example:443"}}));
      if (!s.ok()) {
        state.SkipWithError(std::string(s.message()).c_str());
        break;
      }
    }
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_AuditAppendDurable)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Sends and receives range(0) bytes per iteration over `fd`.
void EchoLoop(benchmark::State& state, int fd) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::string data(n, 'x');
  std::string buf(n, '\0');
  for (auto _ : state) {
    for (size_t off = 0; off < n;) {
      ssize_t w = ::send(fd, data.data() + off, n - off, MSG_NOSIGNAL);
      if (w <= 0) {
        state.SkipWithError("send failed");
        return;
      }
      off += static_cast<size_t>(w);
    }
    for (size_t off = 0; off < n;) {
      ssize_t r = ::recv(fd, buf.data() + off, n - off, 0);
      if (r <= 0) {
        state.SkipWithError("recv failed");
        return;
      }
      off += static_cast<size_t>(r);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

// The socket bridge (the agent's and client's half of every tunnel): bytes
// written to a bridged loopback socket, relayed as frames over one gRPC stream
// (plain TCP, no TLS) to an echoing Tunnel.Accept and back. Each iteration sends
// and receives `range(0)` bytes; the figure is bytes relayed one way per second.
void BM_SocketBridgeEcho(benchmark::State& state) {
  testing::BridgeHarness harness;
  int fd = harness.Open({});
  if (fd < 0) {
    state.SkipWithError("cannot connect the loopback pair");
    return;
  }
  EchoLoop(state, fd);
  ::close(fd);
}
BENCHMARK(BM_SocketBridgeEcho)->Arg(64 * 1024)->Arg(1 << 20)->UseRealTime();

// The whole data plane in one process, the splice included: application socket
// -> client proxy (HTTP CONNECT) -> mTLS gRPC -> server splice -> mTLS gRPC ->
// agent -> an echoing TCP backend, and back. Compared with BM_SocketBridgeEcho
// (one bridge, no TLS) it shows what the server's splice and the TLS hops add.
class TunnelBench {
 public:
  TunnelBench() {
    backend_ = testing::ListenOnLoopback(16, &backend_port_);
    echo_ = std::thread([this] {
      int fd = ::accept(backend_, nullptr, nullptr);
      char buf[65536];
      for (ssize_t n; fd >= 0 && (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) {
        if (::send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) {
          break;
        }
      }
      ::close(fd);
    });
  }
  ~TunnelBench() {
    client_.reset();
    agent_.reset();
    server_.reset();
    ::shutdown(backend_, SHUT_RDWR);
    ::close(backend_);
    echo_.join();
  }

  // Starts server, agent and client; returns the application's socket, or an error.
  absl::StatusOr<int> Connect() {
    int port = 0;
    {
      asio::io_context io;
      asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
      port = probe.local_endpoint().port();
    }
    server::InitOptions init;
    init.data_dir = dir_.File("data");
    init.trust_domain = "bench.local";
    init.listen = common::StrCat("127.0.0.1:", port);
    RETURN_IF_ERROR(server::InitDataDir(init));
    RETURN_IF_ERROR(common::WriteFileAtomic(
        dir_.File("policy.yaml"),
        "rules:\n  - name: bench\n    clients: [\"client/bench\"]\n    agents: [\"agent/bench\"]\n"
        "    destinations: [\"127.0.0.1/32:*\"]\n",
        0600));
    server::ServerOptions opts;
    opts.data_dir = dir_.File("data");
    opts.policy_file = dir_.File("policy.yaml");
    opts.metrics_listen = "off";
    ASSIGN_OR_RETURN(server_, server::Server::Start(opts));
    ASSIGN_OR_RETURN(pki::Credential admin,
                     pki::LoadCredentialFile(server::DataDir(dir_.File("data")).admin_credential));
    agent::AgentOptions agent;
    ASSIGN_OR_RETURN(agent.credential, Identity(admin, "agent/bench"));
    agent.allow = {"127.0.0.1/32:*"};
    agent.data_dir = dir_.File("agent-data");
    ASSIGN_OR_RETURN(agent_, agent::Agent::Start(agent));
    if (!agent_->WaitConnected(std::chrono::seconds(10))) {
      return absl::UnavailableError("agent did not connect");
    }
    client::ClientOptions client;
    ASSIGN_OR_RETURN(client.credential, Identity(admin, "client/bench"));
    client.listen = "127.0.0.1:0";
    ASSIGN_OR_RETURN(client_, client::Client::Start(client));

    int fd = testing::ConnectToLoopback(client_->proxy_port());
    if (fd < 0) {
      return absl::UnavailableError("cannot reach the client proxy");
    }
    std::string connect = common::StrCat("CONNECT 127.0.0.1:", backend_port_, " HTTP/1.1\r\n\r\n");
    ::send(fd, connect.data(), connect.size(), MSG_NOSIGNAL);
    std::string reply;
    char c;
    while (reply.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) {
      reply += c;
    }
    if (reply.rfind("HTTP/1.1 200", 0) != 0) {
      ::close(fd);
      return absl::UnavailableError("CONNECT refused: " + reply);
    }
    return fd;
  }

 private:
  absl::StatusOr<pki::Credential> Identity(const pki::Credential& admin, const std::string& name) {
    ASSIGN_OR_RETURN(common::PKeyPtr key, pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    pki::Credential c = admin;
    ASSIGN_OR_RETURN(c.identity, pki::ParseIdentity(name));
    ASSIGN_OR_RETURN(c.key_id, pki::KeyIdOf(key.get()));
    ASSIGN_OR_RETURN(c.private_key_pem, pki::PrivateKeyToPem(key.get()));
    ASSIGN_OR_RETURN(std::string public_pem, pki::PublicKeyToPem(key.get()));
    RETURN_IF_ERROR(server_->directory()->CreateIdentity(
        {name, true, {}, 1, 1}, {c.key_id, name, "ES256", public_pem, 1, 0}));
    return c;
  }

  testing::TempDir dir_;
  int backend_ = -1;
  int backend_port_ = 0;
  std::thread echo_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<agent::Agent> agent_;
  std::unique_ptr<client::Client> client_;
};

void BM_TunnelEcho(benchmark::State& state) {
  TunnelBench bench;
  absl::StatusOr<int> fd = bench.Connect();
  if (!fd.ok()) {
    state.SkipWithError(std::string(fd.status().message()).c_str());
    return;
  }
  EchoLoop(state, *fd);
  ::close(*fd);
}
BENCHMARK(BM_TunnelEcho)->Arg(64 * 1024)->Arg(1 << 20)->UseRealTime();

// The per-frame metric update on the relay path.
void BM_CounterInc(benchmark::State& state) {
  metrics::Registry registry;
  metrics::Counter* c = registry.AddCounter("bench_total", "n");
  for (auto _ : state) {
    c->Inc(32768);
  }
  benchmark::DoNotOptimize(c->value());
}
BENCHMARK(BM_CounterInc)->Threads(1)->Threads(2);

}  // namespace
}  // namespace drawbridge

// As the drawbridge binary runs: same malloc and mutex settings, quiet logs.
int main(int argc, char** argv) {
  drawbridge::common::TuneProcessForRelay();
  drawbridge::common::SetLogLevel(drawbridge::common::LogLevel::kWarn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

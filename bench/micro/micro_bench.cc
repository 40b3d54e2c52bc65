// Micro-benchmarks of hot paths (Google Benchmark): tunnel frame encode/decode,
// policy matching, audit record hashing and metric updates.
//
//   cmake --build build --target micro_bench && build/bench/micro/micro_bench
#include <benchmark/benchmark.h>

#include <string>

#include "audit/record.h"
#include "drawbridge/v1/tunnel.pb.h"
#include "metrics/metrics.h"
#include "policy/destination.h"
#include "policy/policy.h"

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

BENCHMARK_MAIN();

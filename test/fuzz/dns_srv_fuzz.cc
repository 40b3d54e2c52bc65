// The DNS SRV parsers over arbitrary bytes: a DNS response (from the network,
// through the system resolver) and an SRV name (from a credential). The first
// byte picks the parser. Failures must be InvalidArgument; every target
// parsed has a port and a host of name characters only; the order keeps every
// target and sorts by priority.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/dns_srv.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  if (size == 0) {
    return 0;
  }
  std::string input(fuzz::AsView(data + 1, size - 1));
  if (data[0] % 2 == 0) {
    DB_FUZZ_CHECK(common::ValidateSrvName(input).ok() ||
                  common::ValidateSrvName(input).code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  auto targets = common::ParseSrvResponse(input);
  if (!targets.ok()) {
    DB_FUZZ_CHECK(targets.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  DB_FUZZ_CHECK(targets->size() <= common::kMaxSrvTargets);
  for (const auto& t : *targets) {
    DB_FUZZ_CHECK(t.port != 0 && !t.host.empty());
    DB_FUZZ_CHECK(t.host.find_first_of(" :/@\r\n") == std::string::npos);
  }
  uint64_t draw = size;
  auto ordered = common::OrderSrvTargets(*targets, [&](uint64_t n) { return draw++ % n; });
  DB_FUZZ_CHECK(ordered.size() == targets->size());
  for (size_t i = 1; i < ordered.size(); ++i) {
    DB_FUZZ_CHECK(ordered[i - 1].priority <= ordered[i].priority);
  }
  return 0;
}

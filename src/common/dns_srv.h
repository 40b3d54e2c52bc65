#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace drawbridge::common {

// One SRV record's target (RFC 2782).
struct SrvTarget {
  std::string host;  // a DNS name, without the trailing dot
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
};

// Up to this many targets are kept from one answer; the rest are dropped.
inline constexpr size_t kMaxSrvTargets = 32;

// Checks that `name` can be looked up as an SRV name (_service._proto.domain,
// e.g. _drawbridge._tcp.example.com): at most 253 bytes, labels of 1-63
// letters, digits, '-' or '_', at least three labels.
absl::Status ValidateSrvName(std::string_view name);

// The SRV records in the answer section of a DNS response (RFC 1035), in wire
// order; records of other types (CNAME, A in the additional section) are
// skipped. A message that does not parse, and an SRV record that does not, is
// InvalidArgument. The lone target "." means the service is decidedly not
// offered (RFC 2782) and yields no target.
absl::StatusOr<std::vector<SrvTarget>> ParseSrvResponse(std::string_view message);

// RFC 2782's order: ascending priority; within one priority a weighted random
// draw, repeated until none is left (weight 0 is drawn rarely, not never).
// `uniform(n)` returns a uniform value in [0, n).
std::vector<SrvTarget> OrderSrvTargets(std::vector<SrvTarget> targets,
                                       const std::function<uint64_t(uint64_t)>& uniform);

// Looks `name` up with the system resolver (/etc/resolv.conf) and orders the
// targets. Blocks for up to the resolver's timeout. NotFound when the name has
// no SRV records (or says the service is not offered), Unavailable when DNS
// gives no answer.
absl::StatusOr<std::vector<SrvTarget>> LookupSrv(const std::string& name);

// "HOST:PORT", the form a credential's addresses have.
std::string SrvAddress(const SrvTarget& target);

}  // namespace drawbridge::common

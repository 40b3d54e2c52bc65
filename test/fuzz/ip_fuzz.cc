// Addresses and CIDRs come from policy files, admin requests and gRPC peer strings.
// Whatever parses must print in a form that parses back to the same value: policy
// matching and the audit log rely on one host having one spelling.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/ip.h"
#include "fuzz/fuzz_util.h"

namespace drawbridge::fuzz {
namespace {

void CheckAddressRoundTrip(const common::IpAddress& ip) {
  std::optional<common::IpAddress> again = common::ParseIp(ip.ToString());
  DB_FUZZ_CHECK(again.has_value());
  DB_FUZZ_CHECK(*again == ip);
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  // Nothing that parses may hide bytes behind a NUL (inet_pton would ignore them).
  const bool has_nul = input.find('\0') != std::string_view::npos;
  if (std::optional<common::IpAddress> ip = common::ParseIp(input)) {
    DB_FUZZ_CHECK(!has_nul);
    fuzz::CheckAddressRoundTrip(*ip);
  }

  absl::StatusOr<common::Cidr> cidr = common::ParseCidr(input);
  if (cidr.ok()) {
    DB_FUZZ_CHECK(!has_nul);
    DB_FUZZ_CHECK(cidr->prefix_len >= 0 && cidr->prefix_len <= (cidr->base.is_v4 ? 32 : 128));
    DB_FUZZ_CHECK(cidr->Contains(cidr->base));
    absl::StatusOr<common::Cidr> again = common::ParseCidr(cidr->ToString());
    DB_FUZZ_CHECK(again.ok());
    DB_FUZZ_CHECK(again->base == cidr->base);
    DB_FUZZ_CHECK(again->prefix_len == cidr->prefix_len);
  }

  if (std::optional<common::IpAddress> peer = common::IpFromGrpcPeer(input)) {
    fuzz::CheckAddressRoundTrip(*peer);
  }
  return 0;
}

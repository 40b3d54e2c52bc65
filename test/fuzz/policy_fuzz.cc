// Policies come from operators and the admin API, destinations from CONNECT/SOCKS
// requests and port-forward flags, allowlists from the agent's config. Whatever parses
// has one canonical spelling that parses back to the same thing, and a pattern always
// matches the destinations it names (and names never cross into CIDR rules).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "fuzz/fuzz_util.h"
#include "policy/allowlist.h"
#include "policy/destination.h"
#include "policy/pattern.h"
#include "policy/policy.h"

namespace drawbridge::fuzz {
namespace {

void CheckPolicy(std::string_view input) {
  absl::StatusOr<std::shared_ptr<const policy::Policy>> p = policy::Policy::Parse(input);
  if (!p.ok()) {
    DB_FUZZ_CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  std::string yaml = (*p)->ToYaml();
  absl::StatusOr<std::shared_ptr<const policy::Policy>> again = policy::Policy::Parse(yaml);
  DB_FUZZ_CHECK(again.ok());
  DB_FUZZ_CHECK((*again)->rules().size() == (*p)->rules().size());
  DB_FUZZ_CHECK((*again)->ToYaml() == yaml);
  for (size_t i = 0; i < (*p)->rules().size(); ++i) {
    DB_FUZZ_CHECK((*again)->rules()[i].name == (*p)->rules()[i].name);
  }
}

void CheckDestination(std::string_view input) {
  absl::StatusOr<policy::Destination> d = policy::ParseDestination(input);
  if (!d.ok()) {
    return;
  }
  DB_FUZZ_CHECK(!d->host.empty() && d->port != 0);
  absl::StatusOr<policy::Destination> again = policy::ParseDestination(d->ToString());
  DB_FUZZ_CHECK(again.ok() && *again == *d);
  // The destination's own text is a pattern that matches exactly it.
  absl::StatusOr<policy::DestinationPattern> p = policy::DestinationPattern::Parse(d->ToString());
  DB_FUZZ_CHECK(p.ok());
  DB_FUZZ_CHECK(p->Matches(*d));
  DB_FUZZ_CHECK(p->is_cidr() == d->is_ip());
}

void CheckPattern(std::string_view input) {
  absl::StatusOr<policy::DestinationPattern> p = policy::DestinationPattern::Parse(input);
  if (!p.ok()) {
    return;
  }
  DB_FUZZ_CHECK(p->port_min() >= 1 && p->port_min() <= p->port_max());
  absl::StatusOr<policy::DestinationPattern> again =
      policy::DestinationPattern::Parse(p->ToString());
  DB_FUZZ_CHECK(again.ok() && again->ToString() == p->ToString());

  using Kind = policy::DestinationPattern::Kind;
  switch (p->kind()) {
    case Kind::kCidr: {
      DB_FUZZ_CHECK(p->cidr().prefix_len > 0);
      policy::Destination base = policy::DestinationFromIp(p->cidr().base, p->port_max());
      DB_FUZZ_CHECK(p->Matches(base));
      break;
    }
    case Kind::kHost: {
      absl::StatusOr<policy::Destination> d = policy::MakeDestination(p->host(), p->port_min());
      DB_FUZZ_CHECK(d.ok() && !d->is_ip() && p->Matches(*d));
      break;
    }
    case Kind::kWildcard: {
      absl::StatusOr<policy::Destination> apex = policy::MakeDestination(p->host(), p->port_min());
      DB_FUZZ_CHECK(apex.ok() && !p->Matches(*apex));
      absl::StatusOr<policy::Destination> below =
          policy::MakeDestination(common::StrCat("x.", p->host()), p->port_min());
      if (below.ok()) {  // may exceed 253 characters
        DB_FUZZ_CHECK(p->Matches(*below));
      }
      break;
    }
  }
}

void CheckIdentityPattern(std::string_view input) {
  absl::StatusOr<policy::IdentityPattern> p = policy::IdentityPattern::Parse(input, "client");
  if (p.ok()) {
    DB_FUZZ_CHECK(p->ToString() == input);
    DB_FUZZ_CHECK(!p->Matches("agent/x"));
    if (input.back() != '*') {
      DB_FUZZ_CHECK(p->Matches(input));
    }
  }
}

void CheckAllowlist(std::string_view input) {
  std::vector<std::string> entries;
  for (std::string_view line : common::Split(input, '\n')) {
    entries.emplace_back(line);
  }
  absl::StatusOr<policy::Allowlist> list = policy::Allowlist::Parse(entries);
  if (!list.ok()) {
    return;
  }
  absl::StatusOr<policy::Allowlist> again = policy::Allowlist::Parse(list->ToStrings());
  DB_FUZZ_CHECK(again.ok() && again->ToStrings() == list->ToStrings());
  // A name that resolves to loopback needs an explicit CIDR entry for that port.
  common::IpAddress loopback;
  loopback.bytes[0] = 127;
  loopback.bytes[3] = 1;
  for (const policy::DestinationPattern& p : list->entries()) {
    if (p.kind() != policy::DestinationPattern::Kind::kHost) {
      continue;
    }
    policy::Destination name{p.host(), std::nullopt, p.port_min()};
    absl::Status s = list->CheckResolved(name, loopback);
    bool explicit_entry = list->AllowsName(policy::DestinationFromIp(loopback, p.port_min()));
    DB_FUZZ_CHECK(s.ok() == explicit_entry);
  }
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);
  fuzz::CheckPolicy(input);
  fuzz::CheckDestination(input);
  fuzz::CheckPattern(input);
  fuzz::CheckIdentityPattern(input);
  fuzz::CheckAllowlist(input);
  return 0;
}

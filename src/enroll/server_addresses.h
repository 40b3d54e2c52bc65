#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dns_srv.h"
#include "pki/credential.h"

namespace drawbridge::enroll {

using SrvLookup =
    std::function<absl::StatusOr<std::vector<common::SrvTarget>>(const std::string& name)>;

// The addresses to try, in order: the targets of the credential's SRV name
// (looked up now, in RFC 2782 order), then server_address, then the fallback
// addresses; each address once. A failed SRV lookup is logged and skipped, so
// the static addresses still serve when DNS does not.
std::vector<std::string> ServerAddresses(const pki::Credential& credential,
                                         const SrvLookup& lookup = common::LookupSrv);

// The address after `current` in `addresses`, wrapping to the first; the first
// when `current` is not among them.
std::string NextServerAddress(const std::vector<std::string>& addresses,
                              const std::string& current);

}  // namespace drawbridge::enroll

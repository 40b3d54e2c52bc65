#include "enroll/server_addresses.h"

#include <algorithm>

#include "common/log.h"
#include "common/strings.h"

namespace drawbridge::enroll {

std::vector<std::string> ServerAddresses(const pki::Credential& credential,
                                         const SrvLookup& lookup) {
  std::vector<std::string> addresses;
  auto add = [&](const std::string& address) {
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      addresses.push_back(address);
    }
  };
  if (!credential.dns_srv.empty()) {
    auto targets = lookup(credential.dns_srv);
    if (targets.ok()) {
      std::vector<std::string> found;
      for (const auto& t : *targets) {
        add(common::SrvAddress(t));
        found.push_back(common::SrvAddress(t));
      }
      common::LogInfo("server.srv_resolved",
                      {{"name", credential.dns_srv}, {"targets", common::Join(found, ",")}});
    } else {
      common::LogWarn("server.srv_failed", {{"name", credential.dns_srv},
                                            {"error", std::string(targets.status().message())},
                                            {"using", credential.server_address}});
    }
  }
  add(credential.server_address);
  for (const auto& a : credential.fallback_addresses) {
    add(a);
  }
  return addresses;
}

std::string NextServerAddress(const std::vector<std::string>& addresses,
                              const std::string& current) {
  if (addresses.empty()) {
    return current;
  }
  auto it = std::find(addresses.begin(), addresses.end(), current);
  if (it == addresses.end() || ++it == addresses.end()) {
    return addresses.front();
  }
  return *it;
}

}  // namespace drawbridge::enroll

#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "pki/workload_token.h"
#include "pki/workload_trust.h"

namespace drawbridge::server {

// The signing keys of external token issuers, fetched over HTTPS and cached.
// Blocking (it fetches): call from worker threads only. Thread-safe.
//
// A source is fetched on first use and again once its keys are older than
// kRefresh. A token naming a key id the cached set lacks (the issuer rotated)
// refetches at once, but at most once per kMinRefetch per source, so tokens
// with invented key ids cannot make us hammer the issuer. If a refresh fails,
// the last good keys serve for up to kMaxStale, then the source fails closed.
class JwksCache {
 public:
  // GET url (https) verified with ca_pem (system roots when empty).
  using Fetcher =
      std::function<absl::StatusOr<std::string>(const std::string& url, const std::string& ca_pem)>;

  static constexpr std::chrono::seconds kRefresh{300};
  static constexpr std::chrono::seconds kMinRefetch{10};
  static constexpr std::chrono::seconds kMaxStale{3600};

  explicit JwksCache(const common::Clock* clock, Fetcher fetch = DefaultFetcher())
      : clock_(clock), fetch_(std::move(fetch)) {}

  // The key `key_id` of the trust's issuer. NotFound if the issuer does not
  // publish it (after a refetch, if one is allowed); Unavailable if the keys
  // cannot be had.
  absl::StatusOr<pki::Jwk> Key(const pki::WorkloadTrust& trust, const std::string& key_id);

  static Fetcher DefaultFetcher();

 private:
  struct Source {
    absl::Mutex mu;  // held while fetching: one fetch per source at a time
    std::map<std::string, pki::Jwk> keys ABSL_GUARDED_BY(mu);
    int64_t fetched_at ABSL_GUARDED_BY(mu) = 0;  // last successful fetch; 0: never
    int64_t attempted_at ABSL_GUARDED_BY(mu) = 0;
    std::string last_error ABSL_GUARDED_BY(mu);
  };
  absl::StatusOr<std::map<std::string, pki::Jwk>> Fetch(const pki::WorkloadTrust& trust);
  std::shared_ptr<Source> SourceFor(const std::string& name);

  const common::Clock* clock_;
  Fetcher fetch_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Source>> sources_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::server

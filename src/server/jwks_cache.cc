#include "server/jwks_cache.h"

#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "server/https_fetch.h"

namespace drawbridge::server {
namespace {

constexpr std::chrono::milliseconds kFetchTimeout{5000};

// The cache key: where the keys come from and what vouches for that place.
std::string SourceName(const pki::WorkloadTrust& t) {
  return common::StrCat(t.jwks_uri.empty() ? "discovery:" + t.issuer : t.jwks_uri, "|",
                        t.ca_bundle_pem);
}

}  // namespace

JwksCache::Fetcher JwksCache::DefaultFetcher() {
  return [](const std::string& url, const std::string& ca_pem) {
    return HttpsGet(url, ca_pem, kFetchTimeout, pki::kMaxJwksBytes);
  };
}

std::shared_ptr<JwksCache::Source> JwksCache::SourceFor(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto& source = sources_[name];
  if (!source) {
    source = std::make_shared<Source>();
  }
  return source;
}

absl::StatusOr<std::map<std::string, pki::Jwk>> JwksCache::Fetch(const pki::WorkloadTrust& trust) {
  std::string jwks_uri = trust.jwks_uri;
  if (jwks_uri.empty()) {
    // OIDC discovery: the issuer names its JWKS, and must name itself exactly.
    std::string issuer = trust.issuer;
    while (!issuer.empty() && issuer.back() == '/') {
      issuer.pop_back();
    }
    ASSIGN_OR_RETURN(std::string doc_text,
                     fetch_(issuer + "/.well-known/openid-configuration", trust.ca_bundle_pem));
    auto doc = nlohmann::json::parse(doc_text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("jwks_uri") ||
        !doc["jwks_uri"].is_string() || !doc.contains("issuer") || !doc["issuer"].is_string()) {
      return absl::UnavailableError(
          "the issuer's discovery document has no \"issuer\" and \"jwks_uri\" strings");
    }
    if (doc["issuer"].get<std::string>() != trust.issuer) {
      return absl::UnavailableError(common::StrCat("the discovery document names issuer \"",
                                                   doc["issuer"].get<std::string>().substr(0, 200),
                                                   "\", not \"", trust.issuer, "\""));
    }
    jwks_uri = doc["jwks_uri"].get<std::string>();
    if (!common::StartsWith(jwks_uri, "https://")) {
      return absl::UnavailableError("the discovery document's jwks_uri is not https://");
    }
  }
  ASSIGN_OR_RETURN(std::string jwks_text, fetch_(jwks_uri, trust.ca_bundle_pem));
  auto keys = pki::ParseJwks(jwks_text);
  if (!keys.ok()) {
    return absl::UnavailableError(
        common::StrCat(jwks_uri.substr(0, 200), ": ", keys.status().message()));
  }
  return keys;
}

absl::StatusOr<pki::Jwk> JwksCache::Key(const pki::WorkloadTrust& trust,
                                        const std::string& key_id) {
  if (!trust.jwks_json.empty()) {
    // Given by the admin: nothing to fetch, nothing to refresh.
    ASSIGN_OR_RETURN(auto keys, pki::ParseJwks(trust.jwks_json));
    auto it = keys.find(key_id);
    if (it == keys.end()) {
      return absl::NotFoundError("the trust's JWKS has no such key id");
    }
    return it->second;
  }
  std::shared_ptr<Source> source = SourceFor(SourceName(trust));
  absl::MutexLock lock(&source->mu);
  const int64_t now = clock_->NowUnix();
  const bool have = source->fetched_at != 0;
  const bool old = !have || now - source->fetched_at >= kRefresh.count();
  const bool unknown = have && source->keys.count(key_id) == 0;
  const bool may_fetch =
      source->attempted_at == 0 || now - source->attempted_at >= kMinRefetch.count();
  if ((old || unknown) && may_fetch) {
    source->attempted_at = now;
    auto keys = Fetch(trust);
    if (keys.ok()) {
      if (have && source->keys.size() != keys->size()) {
        common::LogInfo("oidc.jwks_rotated", {{"issuer", trust.issuer},
                                              {"keys_before", common::StrCat(source->keys.size())},
                                              {"keys_now", common::StrCat(keys->size())}});
      }
      source->keys = std::move(*keys);
      source->fetched_at = now;
      source->last_error.clear();
    } else {
      source->last_error = std::string(keys.status().message());
      common::LogWarn("oidc.jwks_fetch_failed",
                      {{"issuer", trust.issuer}, {"error", source->last_error}});
    }
  }
  if (source->fetched_at == 0 || now - source->fetched_at > kMaxStale.count()) {
    return absl::UnavailableError(
        common::StrCat("the issuer's keys cannot be fetched",
                       source->last_error.empty() ? "" : common::StrCat(": ", source->last_error)));
  }
  auto it = source->keys.find(key_id);
  if (it == source->keys.end()) {
    return absl::NotFoundError("the issuer publishes no such key id");
  }
  return it->second;
}

}  // namespace drawbridge::server

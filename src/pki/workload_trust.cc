#include "pki/workload_trust.h"

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "pki/certs.h"
#include "pki/keys.h"
#include "pki/workload_token.h"

namespace drawbridge::pki {
namespace {

using nlohmann::json;

absl::Status Bad(std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat("workload trust: ", why));
}

absl::Status CheckHttpsUrl(const std::string& url, std::string_view what) {
  if (!common::StartsWith(url, "https://") || url.size() <= 8 || url.size() > 512) {
    return Bad(common::StrCat(what, " must be an https:// URL"));
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 32 || c == 127) {
      return Bad(common::StrCat(what, " contains spaces or control characters"));
    }
  }
  std::string_view rest = std::string_view(url).substr(8);
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.empty() || authority.find('@') != std::string_view::npos ||
      url.find('#') != std::string::npos || url.find('?') != std::string::npos) {
    return Bad(common::StrCat(what, " needs a host, and no user info, query or fragment"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateWorkloadTrust(const WorkloadTrust& t) {
  RETURN_IF_ERROR(CheckHttpsUrl(t.issuer, "the issuer"));
  if (t.subject.empty() || t.subject.size() > 512) {
    return Bad("the subject must be 1 to 512 characters");
  }
  if (t.audience.empty() || t.audience.size() > 512) {
    return Bad("the audience must be 1 to 512 characters");
  }
  if (!t.jwks_uri.empty() && !t.jwks_json.empty()) {
    return Bad("give the JWKS as a URI or as a document, not both");
  }
  if (!t.jwks_uri.empty()) {
    RETURN_IF_ERROR(CheckHttpsUrl(t.jwks_uri, "the JWKS URI"));
  }
  if (!t.jwks_json.empty()) {
    ASSIGN_OR_RETURN(auto keys, ParseJwks(t.jwks_json));
    if (keys.empty()) {
      return Bad("the JWKS holds no RS256 or ES256 signing key");
    }
  }
  if (!t.ca_bundle_pem.empty() && !CertsFromPem(t.ca_bundle_pem).ok()) {
    return Bad("the CA bundle holds no certificate");
  }
  return absl::OkStatus();
}

std::string WorkloadTrustToJson(const WorkloadTrust& t) {
  json j = {{"issuer", t.issuer}, {"subject", t.subject}, {"audience", t.audience}};
  if (!t.jwks_uri.empty()) {
    j["jwks_uri"] = t.jwks_uri;
  }
  if (!t.jwks_json.empty()) {
    j["jwks"] = t.jwks_json;
  }
  if (!t.ca_bundle_pem.empty()) {
    j["ca_bundle_pem"] = t.ca_bundle_pem;
  }
  return j.dump();
}

absl::StatusOr<WorkloadTrust> ParseWorkloadTrust(std::string_view json_text) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Bad("not a JSON object");
  }
  auto field = [&j](const char* name, std::string* out) -> absl::Status {
    auto it = j.find(name);
    if (it == j.end()) {
      return absl::OkStatus();
    }
    if (!it->is_string()) {
      return Bad(common::StrCat("\"", name, "\" is not a string"));
    }
    *out = it->get<std::string>();
    return absl::OkStatus();
  };
  WorkloadTrust t;
  RETURN_IF_ERROR(field("issuer", &t.issuer));
  RETURN_IF_ERROR(field("subject", &t.subject));
  RETURN_IF_ERROR(field("audience", &t.audience));
  RETURN_IF_ERROR(field("jwks_uri", &t.jwks_uri));
  RETURN_IF_ERROR(field("jwks", &t.jwks_json));
  RETURN_IF_ERROR(field("ca_bundle_pem", &t.ca_bundle_pem));
  RETURN_IF_ERROR(ValidateWorkloadTrust(t));
  return t;
}

std::string WorkloadTrustKeyId(const WorkloadTrust& t) {
  // Length-prefixed, so that no two (issuer, subject, audience) collide by concatenation.
  std::string input = common::StrCat(t.issuer.size(), ":", t.issuer, t.subject.size(), ":",
                                     t.subject, t.audience.size(), ":", t.audience);
  return common::StrCat("oidc-", common::HexEncode(Sha256(input)).substr(0, 24));
}

}  // namespace drawbridge::pki

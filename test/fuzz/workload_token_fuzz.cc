// The workload identity parsers over arbitrary bytes: the first byte picks the
// parser (a token from the network, a JWKS or discovery-fetched document from
// an issuer's HTTPS server, a stored trust document); the rest is its input.
// Tokens are also built from NUL-separated parts base64url-encoded here, so that
// mutations reach the claim checks. Every failure must be InvalidArgument, and
// no token may verify against a key the fuzzer never saw.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/encoding.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"
#include "pki/keys.h"
#include "pki/workload_token.h"
#include "pki/workload_trust.h"

namespace drawbridge::fuzz {
namespace {

const pki::Jwk& HiddenKey() {
  static const pki::Jwk* const jwk = [] {
    auto generated = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
    DB_FUZZ_CHECK(generated.ok());
    auto* out = new pki::Jwk;
    out->key_id = "hidden";
    out->algorithm = pki::WorkloadAlgorithm::kEs256;
    out->key = std::shared_ptr<EVP_PKEY>(generated->release(), EVP_PKEY_free);
    return out;
  }();
  return *jwk;
}

void CheckToken(std::string_view compact) {
  auto token = pki::ParseWorkloadToken(compact);
  if (!token.ok()) {
    DB_FUZZ_CHECK(token.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  DB_FUZZ_CHECK(compact.size() <= pki::kMaxWorkloadTokenBytes);
  DB_FUZZ_CHECK(compact.substr(0, token->signing_input.size()) == token->signing_input);
  DB_FUZZ_CHECK(!token->key_id.empty() && !token->claims.issuer.empty());
  DB_FUZZ_CHECK(!token->claims.audiences.empty() && token->claims.expires_at > 0);
  DB_FUZZ_CHECK(!pki::VerifyWorkloadSignature(*token, HiddenKey()).ok());
}

void CheckJwks(std::string_view text) {
  auto keys = pki::ParseJwks(text);
  if (!keys.ok()) {
    DB_FUZZ_CHECK(keys.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  DB_FUZZ_CHECK(keys->size() <= pki::kMaxJwksKeys);
  for (const auto& [kid, jwk] : *keys) {
    DB_FUZZ_CHECK(!kid.empty() && kid == jwk.key_id && jwk.key != nullptr);
  }
}

void CheckTrust(std::string_view text) {
  auto trust = pki::ParseWorkloadTrust(text);
  if (!trust.ok()) {
    DB_FUZZ_CHECK(trust.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  // What was accepted survives its own round trip.
  auto again = pki::ParseWorkloadTrust(pki::WorkloadTrustToJson(*trust));
  DB_FUZZ_CHECK(again.ok());
  DB_FUZZ_CHECK(pki::WorkloadTrustKeyId(*again) == pki::WorkloadTrustKeyId(*trust));
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  if (size == 0) {
    return 0;
  }
  std::string_view input = fuzz::AsView(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      fuzz::CheckToken(input);
      break;
    case 1: {
      std::vector<std::string_view> raw = common::Split(input, '\0');
      if (raw.size() == 3) {
        fuzz::CheckToken(common::StrCat(common::Base64UrlEncode(raw[0]), ".",
                                        common::Base64UrlEncode(raw[1]), ".",
                                        common::Base64UrlEncode(raw[2])));
      }
      break;
    }
    case 2:
      fuzz::CheckJwks(input);
      break;
    default:
      fuzz::CheckTrust(input);
      break;
  }
  return 0;
}

// ParseEnrollmentToken over arbitrary bytes, twice: once as the compact token a
// client sends, once with the bytes split at NUL into header, payload and signature
// that are base64url-encoded here, so that mutations reach the JSON claim checks
// instead of dying in the base64 layer.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/encoding.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"
#include "pki/jwt.h"
#include "pki/keys.h"

namespace drawbridge::fuzz {
namespace {

// One key for the whole run: generating a key per input would dominate the run
// time, and the fuzzer never sees it, so no input can carry a valid signature.
EVP_PKEY* RegisteredKey() {
  static EVP_PKEY* const key = [] {
    auto generated = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
    DB_FUZZ_CHECK(generated.ok());
    return generated->release();
  }();
  return key;
}

void CheckToken(std::string_view compact) {
  absl::StatusOr<pki::ParsedToken> token = pki::ParseEnrollmentToken(compact);
  if (!token.ok()) {
    // The header promises that every parse failure is InvalidArgument.
    DB_FUZZ_CHECK(token.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  // The signing input is the first two parts exactly as sent, and the signature part
  // is the canonical encoding of the bytes we verify.
  DB_FUZZ_CHECK(compact.size() > token->signing_input.size());
  DB_FUZZ_CHECK(compact.substr(0, token->signing_input.size()) == token->signing_input);
  DB_FUZZ_CHECK(compact[token->signing_input.size()] == '.');
  DB_FUZZ_CHECK(compact.substr(token->signing_input.size() + 1) ==
                common::Base64UrlEncode(token->signature));
  DB_FUZZ_CHECK(token->claims.token_id.size() >= 16);
  DB_FUZZ_CHECK(!token->key_id.empty());

  absl::Status verified = pki::VerifyTokenSignature(*token, RegisteredKey());
  DB_FUZZ_CHECK(!verified.ok());
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);
  fuzz::CheckToken(input);

  std::vector<std::string_view> raw = common::Split(input, '\0');
  if (raw.size() == 3) {
    fuzz::CheckToken(common::StrCat(common::Base64UrlEncode(raw[0]), ".",
                                    common::Base64UrlEncode(raw[1]), ".",
                                    common::Base64UrlEncode(raw[2])));
  }
  return 0;
}

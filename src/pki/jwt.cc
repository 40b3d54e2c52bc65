#include "pki/jwt.h"

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "pki/jose_json.h"

namespace drawbridge::pki {
namespace {

using nlohmann::json;
constexpr char kWhat[] = "malformed enrollment token";

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat(kWhat, ": ", why));
}

absl::StatusOr<int64_t> NumericDate(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (required) {
      return Malformed(common::StrCat("\"", name, "\" missing"));
    }
    return 0;
  }
  if (!it->is_number_integer()) {
    return Malformed(common::StrCat("\"", name, "\" is not an integer NumericDate"));
  }
  int64_t v = it->get<int64_t>();
  if (v <= 0 || v > (int64_t{1} << 40)) {
    return Malformed(common::StrCat("\"", name, "\" out of range"));
  }
  return v;
}

}  // namespace

absl::StatusOr<std::string> SignEnrollmentToken(EVP_PKEY* key, std::string_view key_id,
                                                const EnrollmentClaims& c) {
  ASSIGN_OR_RETURN(KeyAlgorithm alg, AlgorithmOf(key));
  json header = {{"alg", std::string(JoseName(alg))}, {"typ", "JWT"}, {"kid", std::string(key_id)}};
  json payload = {{"sub", c.subject},   {"aud", c.audience},
                  {"iat", c.issued_at}, {"exp", c.expires_at},
                  {"jti", c.token_id},  {"cnf", {{"jkt", c.tls_key_thumbprint}}}};
  if (c.not_before != 0) {
    payload["nbf"] = c.not_before;
  }
  std::string input = common::StrCat(common::Base64UrlEncode(header.dump()), ".",
                                     common::Base64UrlEncode(payload.dump()));
  ASSIGN_OR_RETURN(std::string sig, SignJose(key, input));
  return common::StrCat(input, ".", common::Base64UrlEncode(sig));
}

absl::StatusOr<ParsedToken> ParseEnrollmentToken(std::string_view compact) {
  ASSIGN_OR_RETURN(std::vector<std::string_view> parts,
                   jose::SplitCompact(compact, kMaxTokenBytes, kWhat));
  ParsedToken t;
  ASSIGN_OR_RETURN(json header, jose::DecodeObject(parts[0], "header", kWhat));
  ASSIGN_OR_RETURN(std::string alg, jose::RequiredString(header, "alg", 16, kWhat));
  auto parsed_alg = ParseJoseName(alg);
  if (!parsed_alg.ok()) {
    return Malformed(common::StrCat("algorithm \"", alg, "\" is not allowed"));
  }
  t.algorithm = *parsed_alg;
  for (const char* banned : {"crit", "jku", "jwk", "x5u", "x5c"}) {
    if (header.contains(banned)) {
      return Malformed(common::StrCat("header parameter \"", banned, "\" is not supported"));
    }
  }
  if (auto typ = header.find("typ"); typ != header.end() && *typ != "JWT") {
    return Malformed("\"typ\" must be JWT");
  }
  ASSIGN_OR_RETURN(t.key_id, jose::RequiredString(header, "kid", 128, kWhat));

  ASSIGN_OR_RETURN(json payload, jose::DecodeObject(parts[1], "payload", kWhat));
  ASSIGN_OR_RETURN(t.claims.subject, jose::RequiredString(payload, "sub", 128, kWhat));
  // "aud" may be a string or an array holding exactly one string (RFC 7519 §4.1.3).
  auto aud = payload.find("aud");
  if (aud != payload.end() && aud->is_array() && aud->size() == 1 && (*aud)[0].is_string()) {
    t.claims.audience = (*aud)[0].get<std::string>();
  } else {
    ASSIGN_OR_RETURN(t.claims.audience, jose::RequiredString(payload, "aud", 255, kWhat));
  }
  ASSIGN_OR_RETURN(t.claims.issued_at, NumericDate(payload, "iat", true));
  ASSIGN_OR_RETURN(t.claims.expires_at, NumericDate(payload, "exp", true));
  ASSIGN_OR_RETURN(t.claims.not_before, NumericDate(payload, "nbf", false));
  ASSIGN_OR_RETURN(t.claims.token_id, jose::RequiredString(payload, "jti", 128, kWhat));
  if (t.claims.token_id.size() < 16) {
    return Malformed("\"jti\" must carry at least 16 characters of randomness");
  }
  auto cnf = payload.find("cnf");
  if (cnf == payload.end() || !cnf->is_object()) {
    return Malformed("\"cnf\" missing");
  }
  ASSIGN_OR_RETURN(t.claims.tls_key_thumbprint, jose::RequiredString(*cnf, "jkt", 64, kWhat));

  auto sig = common::Base64UrlDecode(parts[2]);
  if (!sig || sig->empty()) {
    return Malformed("signature is not base64url");
  }
  t.signature = std::move(*sig);
  t.signing_input = std::string(compact.substr(0, parts[0].size() + 1 + parts[1].size()));
  return t;
}

absl::Status VerifyTokenSignature(const ParsedToken& token, EVP_PKEY* key) {
  return VerifyJose(key, token.algorithm, token.signing_input, token.signature);
}

}  // namespace drawbridge::pki

#include "pki/workload_token.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <cmath>

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "pki/jose_json.h"
#include "pki/keys.h"

namespace drawbridge::pki {
namespace {

using nlohmann::json;
constexpr char kWhat[] = "malformed workload token";

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat(kWhat, ": ", why));
}

absl::Status BadJwks(std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat("invalid JWKS: ", why));
}

absl::StatusOr<int64_t> NumericDate(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (required) {
      return Malformed(common::StrCat("\"", name, "\" missing"));
    }
    return 0;
  }
  // Issuers may write NumericDate as a float (RFC 7519 allows it); whole seconds suffice.
  if (!it->is_number() || (it->is_number_float() && !std::isfinite(it->get<double>()))) {
    return Malformed(common::StrCat("\"", name, "\" is not a NumericDate"));
  }
  double v = it->get<double>();
  if (v <= 0 || v > static_cast<double>(int64_t{1} << 40)) {
    return Malformed(common::StrCat("\"", name, "\" out of range"));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<WorkloadAlgorithm> ParseAlgorithm(std::string_view name) {
  if (name == "RS256") {
    return WorkloadAlgorithm::kRs256;
  }
  if (name == "ES256") {
    return WorkloadAlgorithm::kEs256;
  }
  return Malformed(common::StrCat("algorithm \"", name.substr(0, 16),
                                  "\" is not allowed (RS256 or ES256 only)"));
}

// Big-endian unsigned bytes of a base64url JWK member.
absl::StatusOr<std::string> JwkBytes(const json& key, const char* name, size_t max_bytes) {
  auto it = key.find(name);
  if (it == key.end() || !it->is_string()) {
    return BadJwks(common::StrCat("key member \"", name, "\" missing or not a string"));
  }
  auto bytes = common::Base64UrlDecode(it->get_ref<const std::string&>());
  if (!bytes || bytes->empty() || bytes->size() > max_bytes) {
    return BadJwks(common::StrCat("key member \"", name, "\" is not base64url of a sane size"));
  }
  return *bytes;
}

absl::StatusOr<common::PKeyPtr> KeyFromParams(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld),
                                                                 OSSL_PARAM_free);
  common::PKeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
    common::DrainOpenSslErrors();
    return BadJwks(common::StrCat("a ", type, " key is not well formed"));
  }
  return common::PKeyPtr(raw);
}

absl::StatusOr<common::PKeyPtr> RsaKey(const json& key) {
  ASSIGN_OR_RETURN(std::string n, JwkBytes(key, "n", 1024));  // up to 8192 bits
  ASSIGN_OR_RETURN(std::string e, JwkBytes(key, "e", 8));
  common::BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                                   static_cast<int>(n.size()), nullptr));
  common::BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                                   static_cast<int>(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return BadJwks("an RSA key is not well formed");
  }
  ASSIGN_OR_RETURN(common::PKeyPtr pkey, KeyFromParams("RSA", bld.get()));
  if (EVP_PKEY_get_bits(pkey.get()) < kMinRsaBits) {
    return BadJwks(common::StrCat("an RSA key has ", EVP_PKEY_get_bits(pkey.get()),
                                  " bits (at least ", kMinRsaBits, ")"));
  }
  return pkey;
}

absl::StatusOr<common::PKeyPtr> P256Key(const json& key) {
  ASSIGN_OR_RETURN(std::string x, JwkBytes(key, "x", 32));
  ASSIGN_OR_RETURN(std::string y, JwkBytes(key, "y", 32));
  if (x.size() != 32 || y.size() != 32) {
    return BadJwks("a P-256 key's x and y must be 32 bytes each");
  }
  std::string point = common::StrCat(std::string(1, '\x04'), x, y);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return BadJwks("an EC key is not well formed");
  }
  // fromdata checks that the point is on the curve.
  return KeyFromParams("EC", bld.get());
}

}  // namespace

std::string_view WorkloadAlgorithmName(WorkloadAlgorithm alg) {
  return alg == WorkloadAlgorithm::kRs256 ? "RS256" : "ES256";
}

absl::StatusOr<ParsedWorkloadToken> ParseWorkloadToken(std::string_view compact) {
  ASSIGN_OR_RETURN(std::vector<std::string_view> parts,
                   jose::SplitCompact(compact, kMaxWorkloadTokenBytes, kWhat));
  ParsedWorkloadToken t;
  ASSIGN_OR_RETURN(json header, jose::DecodeObject(parts[0], "header", kWhat));
  ASSIGN_OR_RETURN(std::string alg, jose::RequiredString(header, "alg", 16, kWhat));
  ASSIGN_OR_RETURN(t.algorithm, ParseAlgorithm(alg));
  for (const char* banned : {"crit", "jku", "jwk", "x5u", "x5c"}) {
    if (header.contains(banned)) {
      return Malformed(common::StrCat("header parameter \"", banned, "\" is not supported"));
    }
  }
  ASSIGN_OR_RETURN(t.key_id, jose::RequiredString(header, "kid", 256, kWhat));

  ASSIGN_OR_RETURN(json payload, jose::DecodeObject(parts[1], "payload", kWhat));
  ASSIGN_OR_RETURN(t.claims.issuer, jose::RequiredString(payload, "iss", 512, kWhat));
  ASSIGN_OR_RETURN(t.claims.subject, jose::RequiredString(payload, "sub", 512, kWhat));
  auto aud = payload.find("aud");
  if (aud != payload.end() && aud->is_array()) {
    if (aud->empty() || aud->size() > 16) {
      return Malformed("\"aud\" must hold 1 to 16 audiences");
    }
    for (const auto& a : *aud) {
      if (!a.is_string() || a.get_ref<const std::string&>().empty() ||
          a.get_ref<const std::string&>().size() > 512) {
        return Malformed("\"aud\" entries must be non-empty strings");
      }
      t.claims.audiences.push_back(a.get<std::string>());
    }
  } else {
    ASSIGN_OR_RETURN(std::string one, jose::RequiredString(payload, "aud", 512, kWhat));
    t.claims.audiences.push_back(std::move(one));
  }
  ASSIGN_OR_RETURN(t.claims.expires_at, NumericDate(payload, "exp", true));
  ASSIGN_OR_RETURN(t.claims.not_before, NumericDate(payload, "nbf", false));
  ASSIGN_OR_RETURN(t.claims.issued_at, NumericDate(payload, "iat", false));

  auto sig = common::Base64UrlDecode(parts[2]);
  if (!sig || sig->empty() || sig->size() > 1024) {
    return Malformed("signature is not base64url of a sane size");
  }
  t.signature = std::move(*sig);
  t.signing_input = std::string(compact.substr(0, parts[0].size() + 1 + parts[1].size()));
  return t;
}

absl::StatusOr<std::map<std::string, Jwk>> ParseJwks(std::string_view json_text) {
  if (json_text.size() > kMaxJwksBytes) {
    return BadJwks("larger than 64 KiB");
  }
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return BadJwks("not a JSON object");
  }
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) {
    return BadJwks("\"keys\" missing or not an array");
  }
  if (keys->size() > kMaxJwksKeys) {
    return BadJwks(common::StrCat("more than ", kMaxJwksKeys, " keys"));
  }
  std::map<std::string, Jwk> out;
  for (const json& key : *keys) {
    if (!key.is_object()) {
      return BadJwks("a key is not a JSON object");
    }
    auto str = [&key](const char* name) -> std::string {
      auto it = key.find(name);
      return it != key.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string kty = str("kty");
    const std::string use = str("use");
    const std::string alg = str("alg");
    const std::string kid = str("kid");
    if (!use.empty() && use != "sig") {
      continue;  // an encryption key
    }
    Jwk jwk;
    if (kty == "RSA" && (alg.empty() || alg == "RS256")) {
      jwk.algorithm = WorkloadAlgorithm::kRs256;
      ASSIGN_OR_RETURN(common::PKeyPtr pkey, RsaKey(key));
      jwk.key = std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free);
    } else if (kty == "EC" && str("crv") == "P-256" && (alg.empty() || alg == "ES256")) {
      jwk.algorithm = WorkloadAlgorithm::kEs256;
      ASSIGN_OR_RETURN(common::PKeyPtr pkey, P256Key(key));
      jwk.key = std::shared_ptr<EVP_PKEY>(pkey.release(), EVP_PKEY_free);
    } else {
      continue;  // a key type, curve or algorithm we never verify with
    }
    if (kid.empty() || kid.size() > 256) {
      return BadJwks("a signing key has no \"kid\" (tokens choose their key by it)");
    }
    jwk.key_id = kid;
    if (!out.emplace(kid, std::move(jwk)).second) {
      return BadJwks(common::StrCat("key id \"", kid, "\" appears twice"));
    }
  }
  return out;
}

absl::Status VerifyWorkloadSignature(const ParsedWorkloadToken& token, const Jwk& key) {
  if (token.algorithm != key.algorithm) {
    return absl::PermissionDeniedError(common::StrCat(
        "token algorithm ", WorkloadAlgorithmName(token.algorithm), " does not match key ",
        key.key_id.substr(0, 64), " (", WorkloadAlgorithmName(key.algorithm), ")"));
  }
  if (token.algorithm == WorkloadAlgorithm::kEs256) {
    // VerifyJose checks the key is P-256 and converts the r||s signature.
    return VerifyJose(key.key.get(), KeyAlgorithm::kEs256, token.signing_input, token.signature);
  }
  if (EVP_PKEY_get_base_id(key.key.get()) != EVP_PKEY_RSA) {
    return absl::PermissionDeniedError("RS256 needs an RSA key");
  }
  common::MdCtxPtr md(EVP_MD_CTX_new());
  if (!md || EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, key.key.get()) != 1) {
    return common::OpenSslError("RS256 verify init");
  }
  // PKCS#1 v1.5 is the RSA default; RS256 is exactly that over SHA-256.
  int ok = EVP_DigestVerify(
      md.get(), reinterpret_cast<const unsigned char*>(token.signature.data()),
      token.signature.size(), reinterpret_cast<const unsigned char*>(token.signing_input.data()),
      token.signing_input.size());
  if (ok != 1) {
    common::DrainOpenSslErrors();
    return absl::PermissionDeniedError("signature does not verify");
  }
  return absl::OkStatus();
}

}  // namespace drawbridge::pki

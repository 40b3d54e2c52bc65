#pragma once

// A stand-in for an external OIDC issuer in unit tests: RSA and P-256 signing
// keys, their JWKS, and tokens signed with them (or deliberately not).

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "common/encoding.h"
#include "common/openssl_util.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "pki/keys.h"

namespace drawbridge::testing {

class TokenIssuer {
 public:
  struct Key {
    std::string kid;
    bool rsa = true;
    common::PKeyPtr key;
  };

  static Key MakeRsaKey(const std::string& kid, int bits = 2048) {
    return {kid, true, common::PKeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(bits)))};
  }
  static Key MakeEcKey(const std::string& kid) {
    return {kid, false, std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256))};
  }

  static nlohmann::json Jwk(const Key& k) {
    if (k.rsa) {
      return {{"kty", "RSA"},
              {"kid", k.kid},
              {"use", "sig"},
              {"alg", "RS256"},
              {"n", common::Base64UrlEncode(BnParam(k.key.get(), OSSL_PKEY_PARAM_RSA_N))},
              {"e", common::Base64UrlEncode(BnParam(k.key.get(), OSSL_PKEY_PARAM_RSA_E))}};
    }
    std::string der = *pki::PublicKeyToDer(k.key.get());
    std::string point = der.substr(der.size() - 64);
    return {{"kty", "EC"},
            {"kid", k.kid},
            {"crv", "P-256"},
            {"x", common::Base64UrlEncode(point.substr(0, 32))},
            {"y", common::Base64UrlEncode(point.substr(32))}};
  }

  static std::string Jwks(std::initializer_list<const Key*> keys) {
    nlohmann::json j = {{"keys", nlohmann::json::array()}};
    for (const Key* k : keys) {
      j["keys"].push_back(Jwk(*k));
    }
    return j.dump();
  }

  // header.payload.signature with the key's own algorithm.
  static std::string Sign(const Key& k, const nlohmann::json& claims,
                          nlohmann::json header = nullptr) {
    if (header.is_null()) {
      header = {{"alg", k.rsa ? "RS256" : "ES256"}, {"kid", k.kid}};
    }
    std::string input = common::StrCat(common::Base64UrlEncode(header.dump()), ".",
                                       common::Base64UrlEncode(claims.dump()));
    std::string sig;
    if (k.rsa) {
      common::MdCtxPtr md(EVP_MD_CTX_new());
      size_t len = 0;
      EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, k.key.get());
      EVP_DigestSign(md.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size());
      sig.resize(len);
      EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size());
      sig.resize(len);
    } else {
      sig = *pki::SignJose(k.key.get(), input);
    }
    return common::StrCat(input, ".", common::Base64UrlEncode(sig));
  }

  // The classic confusion attack: HS256 with the issuer's public key as the secret.
  static std::string SignHs256WithPublicKey(const Key& k, const nlohmann::json& claims) {
    nlohmann::json header = {{"alg", "HS256"}, {"kid", k.kid}};
    std::string input = common::StrCat(common::Base64UrlEncode(header.dump()), ".",
                                       common::Base64UrlEncode(claims.dump()));
    std::string secret = *pki::PublicKeyToPem(k.key.get());
    unsigned char mac[32];
    unsigned int len = sizeof(mac);
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return common::StrCat(input, ".",
                          common::Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len)));
  }

  static std::string Unsigned(const nlohmann::json& claims) {
    return common::StrCat(common::Base64UrlEncode(R"({"alg":"none"})"), ".",
                          common::Base64UrlEncode(claims.dump()), ".");
  }

 private:
  static std::string BnParam(EVP_PKEY* key, const char* name) {
    BIGNUM* bn = nullptr;
    EVP_PKEY_get_bn_param(key, name, &bn);
    std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
    BN_free(bn);
    return out;
  }
};

}  // namespace drawbridge::testing

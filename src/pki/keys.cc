#include "pki/keys.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::pki {

using common::BioPtr;
using common::OpenSslError;
using common::PKeyPtr;

std::string_view JoseName(KeyAlgorithm alg) {
  return alg == KeyAlgorithm::kEs256 ? "ES256" : "EdDSA";
}

absl::StatusOr<KeyAlgorithm> ParseJoseName(std::string_view name) {
  if (name == "ES256") {
    return KeyAlgorithm::kEs256;
  }
  if (name == "EdDSA") {
    return KeyAlgorithm::kEdDsa;
  }
  return absl::InvalidArgumentError(
      common::StrCat("algorithm \"", name.substr(0, 20), "\" is not allowed (use ES256 or EdDSA)"));
}

absl::StatusOr<PKeyPtr> GenerateKey(KeyAlgorithm alg) {
  EVP_PKEY* key = alg == KeyAlgorithm::kEs256 ? EVP_EC_gen("P-256")
                                              : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) {
    return OpenSslError("cannot generate key");
  }
  return PKeyPtr(key);
}

absl::StatusOr<KeyAlgorithm> AlgorithmOf(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "ED25519")) {
    return KeyAlgorithm::kEdDsa;
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    char curve[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve),
                                       &len) == 1 &&
        std::string_view(curve, len) == "prime256v1") {
      return KeyAlgorithm::kEs256;
    }
    return absl::InvalidArgumentError("EC key is not on curve P-256");
  }
  return absl::InvalidArgumentError("key type is not allowed (use ECDSA P-256 or Ed25519)");
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("cannot encode private key");
  }
  return common::BioToString(bio.get());
}

absl::StatusOr<std::string> PublicKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return OpenSslError("cannot encode public key");
  }
  return common::BioToString(bio.get());
}

absl::StatusOr<PKeyPtr> PrivateKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  // An empty passphrase callback: encrypted PEM fails instead of prompting.
  EVP_PKEY* key = PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a valid PEM private key");
  }
  PKeyPtr owned(key);
  RETURN_IF_ERROR(AlgorithmOf(key).status());
  return owned;
}

absl::StatusOr<PKeyPtr> PublicKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a valid PEM public key");
  }
  PKeyPtr owned(key);
  RETURN_IF_ERROR(AlgorithmOf(key).status());
  return owned;
}

absl::StatusOr<PKeyPtr> PublicKeyFromDer(std::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* key = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a valid DER public key");
  }
  return PKeyPtr(key);
}

absl::StatusOr<std::string> PublicKeyToDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) {
    return OpenSslError("cannot encode public key");
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string Sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof(md));
}

absl::StatusOr<std::string> JwkThumbprint(EVP_PKEY* key) {
  ASSIGN_OR_RETURN(KeyAlgorithm alg, AlgorithmOf(key));
  std::string canonical;
  if (alg == KeyAlgorithm::kEdDsa) {
    unsigned char raw[32];
    size_t len = sizeof(raw);
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32) {
      return OpenSslError("cannot read Ed25519 public key");
    }
    // Members in lexicographic order, no whitespace (RFC 7638 §3).
    canonical = common::StrCat(
        R"({"crv":"Ed25519","kty":"OKP","x":")",
        common::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(raw), len)), R"("})");
  } else {
    unsigned char point[65];
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                        sizeof(point), &len) != 1 ||
        len != 65 || point[0] != 0x04) {
      return OpenSslError("cannot read P-256 public point");
    }
    std::string_view x(reinterpret_cast<char*>(point + 1), 32);
    std::string_view y(reinterpret_cast<char*>(point + 33), 32);
    canonical = common::StrCat(R"({"crv":"P-256","kty":"EC","x":")", common::Base64UrlEncode(x),
                               R"(","y":")", common::Base64UrlEncode(y), R"("})");
  }
  return common::Base64UrlEncode(Sha256(canonical));
}

absl::StatusOr<std::string> KeyIdOf(EVP_PKEY* key) {
  ASSIGN_OR_RETURN(std::string thumb, JwkThumbprint(key));
  auto digest = common::Base64UrlDecode(thumb);
  if (!digest) {
    return absl::InternalError("thumbprint is not base64url");
  }
  return common::HexEncode(digest->substr(0, 12));
}

absl::StatusOr<std::string> SignJose(EVP_PKEY* key, std::string_view data) {
  ASSIGN_OR_RETURN(KeyAlgorithm alg, AlgorithmOf(key));
  common::MdCtxPtr ctx(EVP_MD_CTX_new());
  const EVP_MD* md = alg == KeyAlgorithm::kEs256 ? EVP_sha256() : nullptr;
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1) {
    return OpenSslError("cannot initialise signing");
  }
  size_t sig_len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &sig_len, in, data.size()) != 1) {
    return OpenSslError("cannot size signature");
  }
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len, in,
                     data.size()) != 1) {
    return OpenSslError("cannot sign");
  }
  sig.resize(sig_len);
  if (alg == KeyAlgorithm::kEdDsa) {
    return sig;
  }
  // DER ECDSA-Sig-Value → fixed-width r||s.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  common::EcdsaSigPtr ecdsa(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!ecdsa) {
    return OpenSslError("cannot decode ECDSA signature");
  }
  std::string raw(64, '\0');
  const BIGNUM* r = ECDSA_SIG_get0_r(ecdsa.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(ecdsa.get());
  if (BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32) != 32 ||
      BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32) != 32) {
    return OpenSslError("cannot encode ECDSA signature");
  }
  return raw;
}

absl::Status VerifyJose(EVP_PKEY* key, KeyAlgorithm alg, std::string_view data,
                        std::string_view signature) {
  auto actual = AlgorithmOf(key);
  if (!actual.ok() || *actual != alg) {
    return absl::PermissionDeniedError(
        common::StrCat("token algorithm ", JoseName(alg), " does not match the registered key"));
  }
  std::string der;
  if (alg == KeyAlgorithm::kEs256) {
    if (signature.size() != 64) {
      return absl::PermissionDeniedError("bad ES256 signature length");
    }
    common::EcdsaSigPtr ecdsa(ECDSA_SIG_new());
    const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
    BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
    if (r == nullptr || s == nullptr || ECDSA_SIG_set0(ecdsa.get(), r, s) != 1) {
      BN_free(r);
      BN_free(s);
      return OpenSslError("cannot decode ECDSA signature");
    }
    unsigned char* out = nullptr;
    int len = i2d_ECDSA_SIG(ecdsa.get(), &out);
    if (len <= 0) {
      return OpenSslError("cannot encode ECDSA signature");
    }
    der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    signature = der;
  } else if (signature.size() != 64) {
    return absl::PermissionDeniedError("bad EdDSA signature length");
  }
  common::MdCtxPtr ctx(EVP_MD_CTX_new());
  const EVP_MD* md = alg == KeyAlgorithm::kEs256 ? EVP_sha256() : nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) {
    return OpenSslError("cannot initialise verification");
  }
  int rc = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
  common::DrainOpenSslErrors();
  if (rc != 1) {
    return absl::PermissionDeniedError("token signature does not verify with the registered key");
  }
  return absl::OkStatus();
}

}  // namespace drawbridge::pki

#include "pki/key_encryption.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "common/encoding.h"
#include "common/files.h"
#include "common/openssl_util.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::pki {
namespace {

constexpr std::string_view kMagic = "DBSEAL1\n";
constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;
constexpr size_t kKeyLen = 32;

}  // namespace

std::string KekPath(const std::string& data_dir) {
  const char* env = std::getenv("DRAWBRIDGE_KEK_FILE");
  if (env != nullptr && *env != '\0') {
    return env;
  }
  return common::JoinPath(data_dir, "kek");
}

absl::StatusOr<KeyEncryptionKey> KeyEncryptionKey::CreateFile(const std::string& path) {
  if (common::PathExists(path)) {
    return absl::AlreadyExistsError(common::StrCat("key-encryption key file ", path,
                                                   " already exists; refusing to replace it"));
  }
  std::string key = common::RandomBytes(kKeyLen);
  RETURN_IF_ERROR(common::WriteFileAtomic(path, common::HexEncode(key) + "\n", 0600));
  return KeyEncryptionKey(std::move(key));
}

absl::StatusOr<KeyEncryptionKey> KeyEncryptionKey::LoadFile(const std::string& path) {
  ASSIGN_OR_RETURN(mode_t mode, common::FileMode(path));
  if ((mode & 077) != 0) {
    return absl::PermissionDeniedError(common::StrCat(
        "key-encryption key file ", path, " is readable by group or others; run chmod 600 ", path));
  }
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  auto key = common::HexDecode(common::StripWhitespace(text));
  if (!key || key->size() != kKeyLen) {
    return absl::InvalidArgumentError(
        common::StrCat("key-encryption key file ", path, " does not hold a hex 256-bit key"));
  }
  return KeyEncryptionKey(std::move(*key));
}

KeyEncryptionKey KeyEncryptionKey::FromBytes(std::string key) {
  return KeyEncryptionKey(std::move(key));
}

absl::StatusOr<std::string> KeyEncryptionKey::Seal(std::string_view plaintext,
                                                   std::string_view label) const {
  if (key_.size() != kKeyLen) {
    return absl::FailedPreconditionError("key-encryption key has the wrong length");
  }
  std::string nonce = common::RandomBytes(kNonceLen);
  std::string aad = common::StrCat(kMagic, label);
  common::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out = common::StrCat(kMagic, nonce);
  size_t ct_off = out.size();
  out.resize(ct_off + plaintext.size() + kTagLen);
  auto* ct = reinterpret_cast<unsigned char*>(out.data() + ct_off);
  int len = 0;
  if (EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(),
                          reinterpret_cast<const unsigned char*>(key_.data()),
                          reinterpret_cast<const unsigned char*>(nonce.data()), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagLen, ct + plaintext.size()) != 1) {
    return common::OpenSslError("AES-256-GCM seal failed");
  }
  return out;
}

absl::StatusOr<std::string> KeyEncryptionKey::Open(std::string_view sealed,
                                                   std::string_view label) const {
  if (sealed.size() < kMagic.size() + kNonceLen + kTagLen ||
      sealed.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a sealed Drawbridge key file");
  }
  std::string_view nonce = sealed.substr(kMagic.size(), kNonceLen);
  std::string_view body = sealed.substr(kMagic.size() + kNonceLen);
  std::string_view ct = body.substr(0, body.size() - kTagLen);
  std::string tag(body.substr(body.size() - kTagLen));
  std::string aad = common::StrCat(kMagic, label);
  std::string out(ct.size(), '\0');
  common::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok =
      EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(),
                          reinterpret_cast<const unsigned char*>(key_.data()),
                          reinterpret_cast<const unsigned char*>(nonce.data()), nullptr) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        reinterpret_cast<const unsigned char*>(ct.data()),
                        static_cast<int>(ct.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagLen, tag.data()) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) == 1;
  common::DrainOpenSslErrors();
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return absl::PermissionDeniedError(common::StrCat(
        "cannot decrypt sealed ", label, ": wrong key-encryption key or corrupted file"));
  }
  return out;
}

}  // namespace drawbridge::pki

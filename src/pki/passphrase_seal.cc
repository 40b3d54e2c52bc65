#include "pki/passphrase_seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::pki {
namespace {

constexpr std::string_view kSealedHeader = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

absl::Status CheckPassphrase(std::string_view passphrase) {
  if (passphrase.size() < kMinPassphraseBytes || passphrase.size() > kMaxPassphraseBytes) {
    return absl::InvalidArgumentError(common::StrCat("the passphrase must be ", kMinPassphraseBytes,
                                                     " to ", kMaxPassphraseBytes, " bytes"));
  }
  return absl::OkStatus();
}

// One line from `fd`, at most kMaxPassphraseBytes + 1 bytes.
absl::StatusOr<std::string> ReadFd(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::FailedPreconditionError(common::StrCat(
          "cannot read the passphrase from file descriptor ", fd, ": ", std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxPassphraseBytes + 2) {
      OPENSSL_cleanse(out.data(), out.size());
      return absl::InvalidArgumentError("the passphrase is longer than 1 KiB");
    }
  }
  OPENSSL_cleanse(buf, sizeof(buf));
  ::close(fd);
  return out;
}

}  // namespace

absl::StatusOr<std::optional<std::string>> ReadPassphraseFromEnvironment();

bool IsSealedPem(std::string_view pem) { return pem.find(kSealedHeader) != std::string_view::npos; }

absl::StatusOr<std::string> SealPrivateKeyPem(EVP_PKEY* key, std::string_view passphrase) {
  RETURN_IF_ERROR(CheckPassphrase(passphrase));
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> info(
      EVP_PKEY2PKCS8(key), PKCS8_PRIV_KEY_INFO_free);
  std::unique_ptr<X509_ALGOR, decltype(&X509_ALGOR_free)> pbe(
      PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), nullptr, 0, nullptr, kScryptN, 8, 1),
      X509_ALGOR_free);
  if (!info || !pbe) {
    return common::OpenSslError("cannot prepare the sealed key");
  }
  X509_SIG* sealed =
      PKCS8_set0_pbe(passphrase.data(), static_cast<int>(passphrase.size()), info.get(), pbe.get());
  if (sealed == nullptr) {
    return common::OpenSslError("cannot seal the key");
  }
  std::unique_ptr<X509_SIG, decltype(&X509_SIG_free)> owned(sealed, X509_SIG_free);
  (void)pbe.release();  // owned by `sealed` now
  common::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PKCS8(bio.get(), sealed) != 1) {
    return common::OpenSslError("cannot encode the sealed key");
  }
  return common::BioToString(bio.get());
}

absl::StatusOr<common::PKeyPtr> UnsealPrivateKeyPem(std::string_view pem,
                                                    std::string_view passphrase) {
  if (!IsSealedPem(pem)) {
    return absl::InvalidArgumentError("not a sealed (ENCRYPTED PRIVATE KEY) PEM block");
  }
  std::string pass(passphrase);
  common::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, pass.data());
  OPENSSL_cleanse(pass.data(), pass.size());
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::PermissionDeniedError("the passphrase does not open the sealed credential key");
  }
  common::PKeyPtr owned(key);
  RETURN_IF_ERROR(AlgorithmOf(key).status());
  return owned;
}

absl::StatusOr<std::optional<std::string>> PassphraseFromEnvironment() {
  // Read once (the variables are gone afterwards) and kept for the process's
  // life: an admin command may unseal its own credential and seal a new one.
  static absl::StatusOr<std::optional<std::string>>* const once =
      new absl::StatusOr<std::optional<std::string>>(ReadPassphraseFromEnvironment());
  return *once;
}

absl::StatusOr<std::optional<std::string>> ReadPassphraseFromEnvironment() {
  // NOLINTBEGIN(concurrency-mt-unsafe): read once at startup, before threads
  std::optional<std::string> passphrase;
  if (const char* fd_text = std::getenv("DRAWBRIDGE_KEY_PASSPHRASE_FD"); fd_text != nullptr) {
    char* end = nullptr;
    long fd = std::strtol(fd_text, &end, 10);
    ::unsetenv("DRAWBRIDGE_KEY_PASSPHRASE_FD");
    if (end == fd_text || *end != '\0' || fd < 0 || fd > 1 << 20) {
      return absl::InvalidArgumentError("DRAWBRIDGE_KEY_PASSPHRASE_FD must be a file descriptor");
    }
    ASSIGN_OR_RETURN(std::string read, ReadFd(static_cast<int>(fd)));
    passphrase = std::move(read);
  } else if (const char* value = std::getenv("DRAWBRIDGE_KEY_PASSPHRASE"); value != nullptr) {
    passphrase = std::string(value);
    ::unsetenv("DRAWBRIDGE_KEY_PASSPHRASE");
  }
  // NOLINTEND(concurrency-mt-unsafe)
  if (passphrase) {
    while (!passphrase->empty() && (passphrase->back() == '\n' || passphrase->back() == '\r')) {
      passphrase->pop_back();
    }
  }
  return passphrase;
}

}  // namespace drawbridge::pki

// OpenSSL 3 deprecates the ENGINE API in favour of providers, but Debian 12
// ships PKCS#11 support only as an engine (see the header).
#define OPENSSL_SUPPRESS_DEPRECATED
#include "pki/pkcs11_key.h"

#include <openssl/engine.h>

#include <algorithm>
#include <map>

#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"
#include "pki/passphrase_seal.h"

namespace drawbridge::pki {
namespace {

absl::Mutex engines_mu;

// The initialised pkcs11 engine for `module`, made on first use and kept: keys
// loaded through it hold references into it.
absl::StatusOr<ENGINE*> EngineFor(const std::string& module)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(engines_mu) {
  static auto* engines = new std::map<std::string, ENGINE*>();
  if (auto it = engines->find(module); it != engines->end()) {
    return it->second;
  }
  ENGINE* e = ENGINE_by_id("pkcs11");
  if (e == nullptr) {
    common::DrainOpenSslErrors();
    return absl::FailedPreconditionError(
        "OpenSSL's pkcs11 engine is not installed (Debian: apt-get install "
        "libengine-pkcs11-openssl)");
  }
  if (ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module.c_str(), 0) != 1 || ENGINE_init(e) != 1) {
    common::DrainOpenSslErrors();
    ENGINE_free(e);
    return absl::FailedPreconditionError(common::StrCat("cannot load the PKCS#11 module ", module));
  }
  ENGINE_free(e);  // the functional reference from ENGINE_init keeps it
  (*engines)[module] = e;
  return e;
}

}  // namespace

absl::StatusOr<common::PKeyPtr> OpenPkcs11Key(const std::string& uri, const std::string& module) {
  ASSIGN_OR_RETURN(std::optional<std::string> pin, PassphraseFromEnvironment());
  if (!pin) {
    return absl::FailedPreconditionError(common::StrCat(
        "the key ", uri.substr(0, 200),
        " is in a PKCS#11 token: give the token's PIN in DRAWBRIDGE_KEY_PASSPHRASE_FD (a file "
        "descriptor to read it from) or DRAWBRIDGE_KEY_PASSPHRASE"));
  }
  return LoadPkcs11PrivateKey(uri, module, *pin);
}

absl::StatusOr<common::PKeyPtr> PublicHalfOf(EVP_PKEY* key) {
  ASSIGN_OR_RETURN(std::string der, PublicKeyToDer(key));
  return PublicKeyFromDer(der);
}

absl::Status ValidatePkcs11Uri(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(common::StrCat("PKCS#11 key URI ", why));
  };
  if (!uri.starts_with("pkcs11:") || uri.size() <= 7 || uri.size() > 1024) {
    return bad("must be pkcs11:ATTR=VALUE;... (RFC 7512), at most 1024 bytes");
  }
  if (!std::all_of(uri.begin(), uri.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    return bad("must be printable ASCII without spaces");
  }
  std::string lower = common::ToLower(uri);
  if (lower.find("pin-value") != std::string::npos ||
      lower.find("pin-source") != std::string::npos) {
    return bad("must not carry the PIN: give it in DRAWBRIDGE_KEY_PASSPHRASE_FD");
  }
  return absl::OkStatus();
}

absl::StatusOr<common::PKeyPtr> LoadPkcs11PrivateKey(const std::string& uri,
                                                     const std::string& module,
                                                     std::string_view pin) {
  RETURN_IF_ERROR(ValidatePkcs11Uri(uri));
  if (module.empty() || module.front() != '/') {
    return absl::InvalidArgumentError("the PKCS#11 module must be an absolute path");
  }
  absl::MutexLock lock(&engines_mu);
  ASSIGN_OR_RETURN(ENGINE * engine, EngineFor(module));
  const std::string pin_copy(pin);
  if (ENGINE_ctrl_cmd_string(engine, "PIN", pin_copy.c_str(), 0) != 1) {
    common::DrainOpenSslErrors();
    return absl::InternalError("the pkcs11 engine refused the PIN setting");
  }
  EVP_PKEY* key = ENGINE_load_private_key(engine, uri.c_str(), nullptr, nullptr);
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::FailedPreconditionError(
        common::StrCat("cannot use the key ", uri,
                       " in the PKCS#11 token (wrong PIN, no such token or "
                       "object, or the token is not present)"));
  }
  common::PKeyPtr owned(key);
  RETURN_IF_ERROR(AlgorithmOf(key).status());
  return owned;
}

}  // namespace drawbridge::pki

#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/openssl_util.h"

namespace drawbridge::pki {

// A signing key that stays inside a PKCS#11 token (an HSM, a smart card,
// SoftHSM), used through OpenSSL's pkcs11 engine (Debian's
// libengine-pkcs11-openssl, libp11): OpenSSL 3's PKCS#11 provider is not
// packaged for Debian 12. The returned key signs inside the token; its private
// half is never in our memory.
//
// `uri` is an RFC 7512 PKCS#11 URI naming one private key
// ("pkcs11:token=drawbridge;object=agent-acme"); it must not carry the PIN
// (pin-value, pin-source): the PIN comes from the caller. `module` is the
// token's PKCS#11 library (an absolute path). Thread-safe; the engine for a
// module is loaded once and kept for the life of the process.
absl::StatusOr<common::PKeyPtr> LoadPkcs11PrivateKey(const std::string& uri,
                                                     const std::string& module,
                                                     std::string_view pin);

// LoadPkcs11PrivateKey with the PIN from the environment
// (PassphraseFromEnvironment: DRAWBRIDGE_KEY_PASSPHRASE_FD or
// DRAWBRIDGE_KEY_PASSPHRASE); FailedPrecondition saying so when neither is set.
absl::StatusOr<common::PKeyPtr> OpenPkcs11Key(const std::string& uri, const std::string& module);

// The public half of `key` as a key of its own (for a token's key, whose
// parameters OpenSSL cannot export directly: KeyIdOf needs this).
absl::StatusOr<common::PKeyPtr> PublicHalfOf(EVP_PKEY* key);

// Checks a key URI without touching a token: "pkcs11:" with a path, at most
// 1024 bytes, printable, and no PIN attribute.
absl::Status ValidatePkcs11Uri(std::string_view uri);

}  // namespace drawbridge::pki

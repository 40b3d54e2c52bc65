#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/openssl_util.h"

// Long-lived credential keys sealed with a passphrase (docs/enrollment.md,
// "Credential keys sealed with a passphrase"): standard encrypted PKCS#8 PEM
// ("ENCRYPTED PRIVATE KEY", PBES2 with scrypt and AES-256-CBC), so that
// `openssl pkey` can open it too.
namespace drawbridge::pki {

// scrypt cost: N = 2^14, r = 8, p = 1 (16 MiB, the parameters `openssl pkcs8
// -scrypt` uses, and within OpenSSL's default 32 MiB limit): paid once per
// process start, and by an attacker for every guess.
inline constexpr uint64_t kScryptN = uint64_t{1} << 14;
inline constexpr size_t kMinPassphraseBytes = 12;
inline constexpr size_t kMaxPassphraseBytes = 1024;

bool IsSealedPem(std::string_view pem);
absl::StatusOr<std::string> SealPrivateKeyPem(EVP_PKEY* key, std::string_view passphrase);
// PermissionDenied for a wrong passphrase (indistinguishable from a damaged
// file, by design of the format); InvalidArgument if it is not sealed PEM.
absl::StatusOr<common::PKeyPtr> UnsealPrivateKeyPem(std::string_view pem,
                                                    std::string_view passphrase);

// The passphrase from the environment: DRAWBRIDGE_KEY_PASSPHRASE_FD (a file
// descriptor to read it from, e.g. `3<passphrase-file` or systemd's
// LoadCredential=) or DRAWBRIDGE_KEY_PASSPHRASE (the value). Both variables
// are removed once read, so child processes do not inherit them; a trailing
// newline is dropped. nullopt if neither is set.
absl::StatusOr<std::optional<std::string>> PassphraseFromEnvironment();

}  // namespace drawbridge::pki

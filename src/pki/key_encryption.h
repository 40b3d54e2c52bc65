#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::pki {

// A 256-bit key-encryption key (KEK) that seals the CA and server private keys at
// rest with AES-256-GCM. The KEK file holds the key as hex on one line and must
// not be readable by group or others.
class KeyEncryptionKey {
 public:
  // Creates a new random KEK file (0600). Fails if `path` exists.
  static absl::StatusOr<KeyEncryptionKey> CreateFile(const std::string& path);
  // Loads a KEK file; refuses files readable by group or others.
  static absl::StatusOr<KeyEncryptionKey> LoadFile(const std::string& path);
  static KeyEncryptionKey FromBytes(std::string key);  // 32 bytes; tests

  // Sealed form: "DBSEAL1\n" || nonce(12) || ciphertext || tag(16). `label` is
  // authenticated (not stored), so a sealed root key cannot be swapped in where
  // the intermediate key is expected.
  absl::StatusOr<std::string> Seal(std::string_view plaintext, std::string_view label) const;
  absl::StatusOr<std::string> Open(std::string_view sealed, std::string_view label) const;

 private:
  explicit KeyEncryptionKey(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

// Where the KEK lives: $DRAWBRIDGE_KEK_FILE if set, else DATA_DIR/kek.
std::string KekPath(const std::string& data_dir);

}  // namespace drawbridge::pki

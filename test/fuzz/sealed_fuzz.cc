// Sealed CA and server keys are read from disk, where they may be damaged or swapped.
// Open must fail cleanly on anything that is not a blob sealed with this key and
// label; a blob the fuzzer could forge would be a broken AEAD.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "fuzz/fuzz_util.h"
#include "pki/key_encryption.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  static const pki::KeyEncryptionKey kek =
      pki::KeyEncryptionKey::FromBytes(std::string(fuzz::kFuzzKek));
  std::string_view input = fuzz::AsView(data, size);

  absl::StatusOr<std::string> opened = kek.Open(input, fuzz::kSealLabel);
  if (opened.ok()) {
    // Only the real sealed seed in the corpus gets here; its label is authenticated.
    DB_FUZZ_CHECK(!kek.Open(input, "intermediate").ok());
  } else {
    DB_FUZZ_CHECK(opened.status().code() == absl::StatusCode::kInvalidArgument ||
                  opened.status().code() == absl::StatusCode::kPermissionDenied);
  }

  // Seal round trip over the same bytes, and any single flipped bit is refused.
  absl::StatusOr<std::string> sealed = kek.Seal(input, fuzz::kSealLabel);
  DB_FUZZ_CHECK(sealed.ok());
  absl::StatusOr<std::string> back = kek.Open(*sealed, fuzz::kSealLabel);
  DB_FUZZ_CHECK(back.ok() && *back == input);
  DB_FUZZ_CHECK(!kek.Open(*sealed, "intermediate").ok());
  if (!input.empty()) {
    std::string tampered = *sealed;
    size_t bit = (static_cast<size_t>(data[0]) * 8 + size) % (tampered.size() * 8);
    tampered[bit / 8] = static_cast<char>(tampered[bit / 8] ^ (1 << (bit % 8)));
    DB_FUZZ_CHECK(!kek.Open(tampered, fuzz::kSealLabel).ok());
  }
  return 0;
}

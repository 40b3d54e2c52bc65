#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

// A broken invariant is a finding, not an ordinary failure: trap so that libFuzzer
// stops, saves the input and prints the stack.
#define DB_FUZZ_CHECK(cond)                                                                  \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                                      \
    }                                                                                        \
  } while (0)

namespace drawbridge::fuzz {

inline std::string_view AsView(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The key-encryption key and label that sealed_fuzz opens with. gen_seeds seals its
// seed with the same pair so that the corpus holds one blob that really opens.
inline constexpr std::string_view kFuzzKek = "drawbridge-fuzz-kek-0123456789ab";
inline constexpr std::string_view kSealLabel = "label";
static_assert(kFuzzKek.size() == 32, "AES-256 needs a 32-byte key");

}  // namespace drawbridge::fuzz

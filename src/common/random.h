#pragma once

#include <cstdint>
#include <string>

namespace drawbridge::common {

// Cryptographically secure random bytes (OpenSSL's DRBG). Aborts if the DRBG fails,
// since continuing without randomness would mint guessable serials and ids.
std::string RandomBytes(size_t n);
// `n` random bytes as lower-case hex.
std::string RandomHex(size_t n);
// Uniform in [0, bound).
uint64_t RandomUniform(uint64_t bound);

}  // namespace drawbridge::common

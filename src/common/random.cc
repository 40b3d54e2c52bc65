#include "common/random.h"

#include <openssl/rand.h>

#include "common/check.h"
#include "common/encoding.h"

namespace drawbridge::common {

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  DB_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) == 1);
  return out;
}

std::string RandomHex(size_t n) { return HexEncode(RandomBytes(n)); }

uint64_t RandomUniform(uint64_t bound) {
  if (bound <= 1) {
    return 0;
  }
  // Rejection sampling avoids modulo bias.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
  while (true) {
    uint64_t v = 0;
    DB_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof(v)) == 1);
    if (v < limit) {
      return v % bound;
    }
  }
}

}  // namespace drawbridge::common

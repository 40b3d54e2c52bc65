// The JWT parser relies on Base64UrlDecode accepting exactly one spelling per byte
// string (no padding, no stray trailing bits), so decode followed by encode must
// give back the input exactly.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/encoding.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  if (std::optional<std::string> decoded = common::Base64UrlDecode(input)) {
    DB_FUZZ_CHECK(common::Base64UrlEncode(*decoded) == input);
  }
  // And the other direction: every byte string survives encode -> decode.
  std::optional<std::string> back = common::Base64UrlDecode(common::Base64UrlEncode(input));
  DB_FUZZ_CHECK(back.has_value() && *back == input);

  if (std::optional<std::string> hex = common::HexDecode(input)) {
    DB_FUZZ_CHECK(hex->size() * 2 == input.size());
    DB_FUZZ_CHECK(common::HexEncode(*hex) == common::ToLower(input));
  }
  std::optional<std::string> unhexed = common::HexDecode(common::HexEncode(input));
  DB_FUZZ_CHECK(unhexed.has_value() && *unhexed == input);
  return 0;
}

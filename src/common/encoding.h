#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace drawbridge::common {

// RFC 4648 §5 base64url without padding (as JOSE uses it).
std::string Base64UrlEncode(std::string_view data);
// Rejects padding, whitespace and characters outside the url-safe alphabet, and
// non-canonical trailing bits, so that one token has exactly one spelling.
std::optional<std::string> Base64UrlDecode(std::string_view text);

// Standard base64 with padding (PEM bodies).
std::string Base64Encode(std::string_view data);

std::string HexEncode(std::string_view data);
std::optional<std::string> HexDecode(std::string_view text);

}  // namespace drawbridge::common

#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace drawbridge::policy::internal {

// Quotes untrusted text for an operator-facing message: at most 100 bytes, with
// control and non-ASCII bytes shown as \xNN so a hostile policy or destination cannot
// forge log lines or terminal escapes.
inline std::string Quote(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr size_t kMax = 100;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMax; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMax) {
    out += "...";
  }
  out += '"';
  return out;
}

// absl::Status::message() is an absl::string_view, which Debian's Abseil does not
// make a std::string_view.
inline std::string_view Message(const absl::Status& status) {
  return {status.message().data(), status.message().size()};
}

inline bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace drawbridge::policy::internal

#include "lane/framing.h"

#include "common/strings.h"

namespace drawbridge::lane {
namespace {

uint32_t ReadLength(std::string_view buffer) {
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(buffer[i])); };
  return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

}  // namespace

void AppendLengthPrefix(size_t size, std::string* out) {
  const auto n = static_cast<uint32_t>(size);
  out->push_back(static_cast<char>(n >> 24));
  out->push_back(static_cast<char>(n >> 16));
  out->push_back(static_cast<char>(n >> 8));
  out->push_back(static_cast<char>(n));
}

absl::StatusOr<std::string_view> SplitMessage(std::string_view buffer, size_t* consumed) {
  *consumed = 0;
  if (buffer.size() < kLengthBytes) {
    return std::string_view();
  }
  const uint32_t length = ReadLength(buffer);
  if (length == 0) {
    return absl::InvalidArgumentError("lane message of length 0");
  }
  if (length > kMaxMessageBytes) {
    return absl::InvalidArgumentError(
        common::StrCat("lane message of ", length, " bytes (at most ", kMaxMessageBytes, ")"));
  }
  if (buffer.size() - kLengthBytes < length) {
    return std::string_view();
  }
  *consumed = kLengthBytes + length;
  return buffer.substr(kLengthBytes, length);
}

size_t BytesNeeded(std::string_view buffer) {
  if (buffer.size() < kLengthBytes) {
    return kLengthBytes;
  }
  const uint32_t length = ReadLength(buffer);
  return length > kMaxMessageBytes ? kLengthBytes : kLengthBytes + length;
}

}  // namespace drawbridge::lane

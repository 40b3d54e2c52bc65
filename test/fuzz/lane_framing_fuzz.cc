// A lane's byte stream comes from any holder of a certificate from our CA (and,
// before the handshake completes, from anyone): the length-prefix splitter must
// never read out of bounds, never hand out more than the limit, and give the
// same messages however TCP split the bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "lane/framing.h"

namespace drawbridge::fuzz {
namespace {

// Splits `input` fed in pieces of `step` bytes (0: all at once), as a reader
// that appends each read to its buffer would. Returns the messages, and
// whether the stream was refused.
std::vector<std::string> Split(std::string_view input, size_t step, bool* refused) {
  std::vector<std::string> out;
  std::string buffer;
  size_t pos = 0;
  *refused = false;
  while (pos < input.size() || !buffer.empty()) {
    if (pos < input.size()) {
      size_t n = step == 0 ? input.size() - pos : std::min(step, input.size() - pos);
      buffer.append(input.substr(pos, n));
      pos += n;
    }
    while (true) {
      size_t consumed = 0;
      auto message = lane::SplitMessage(buffer, &consumed);
      if (!message.ok()) {
        *refused = true;
        return out;
      }
      DB_FUZZ_CHECK(consumed <= buffer.size());
      DB_FUZZ_CHECK(lane::BytesNeeded(buffer) >= lane::kLengthBytes);
      if (consumed == 0) {
        DB_FUZZ_CHECK(lane::BytesNeeded(buffer) > buffer.size());
        break;
      }
      DB_FUZZ_CHECK(message->size() >= 1 && message->size() <= lane::kMaxMessageBytes);
      DB_FUZZ_CHECK(consumed == lane::kLengthBytes + message->size());
      out.emplace_back(*message);
      buffer.erase(0, consumed);
    }
    if (pos >= input.size()) {
      break;  // a partial message remains: the stream ended mid-message
    }
  }
  return out;
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge::fuzz;
  std::string_view input = AsView(data, size);
  bool refused_whole = false;
  bool refused_chunked = false;
  const size_t step = size == 0 ? 1 : 1 + data[0] % 17;
  auto whole = Split(input, 0, &refused_whole);
  auto chunked = Split(input, step, &refused_chunked);
  DB_FUZZ_CHECK(whole == chunked);
  DB_FUZZ_CHECK(refused_whole == refused_chunked);
  // Re-framing what was split gives back the bytes it came from.
  std::string again;
  for (const auto& m : whole) {
    drawbridge::lane::AppendLengthPrefix(m.size(), &again);
    again += m;
  }
  DB_FUZZ_CHECK(input.substr(0, again.size()) == again);
  return 0;
}

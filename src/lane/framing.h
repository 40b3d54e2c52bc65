#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace drawbridge::lane {

// A lane carries messages as a 4-byte big-endian length followed by that many
// bytes (a serialized v1::Frame). The limit bounds what a peer can make us
// buffer: a data chunk of at most 64 KiB plus the frame's own fields.
inline constexpr size_t kLengthBytes = 4;
inline constexpr size_t kMaxMessageBytes = 64 * 1024 + 8 * 1024;

// Appends the length prefix for a message of `size` bytes to `out`.
void AppendLengthPrefix(size_t size, std::string* out);

// Splits one message off the front of `buffer`. Returns the message (a view
// into `buffer`) and sets *consumed to the bytes it took, prefix included; sets
// *consumed to 0 when `buffer` does not yet hold a whole message. Fails on an
// empty or oversized message, which ends the lane: a peer that sends one is
// broken or hostile, and nothing after it can be trusted to be in step.
absl::StatusOr<std::string_view> SplitMessage(std::string_view buffer, size_t* consumed);

// The bytes a reader needs in its buffer before SplitMessage can return the
// message that `buffer` starts with (at least kLengthBytes; a known length once
// the prefix is in). Lets a reader size one read for a whole message.
size_t BytesNeeded(std::string_view buffer);

}  // namespace drawbridge::lane

#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

// JSON pieces of compact JWS parsing that every token parser here shares. Each
// failure is InvalidArgument, its message starting with `what_token` (e.g.
// "malformed workload token") so that the caller's own input is named.
namespace drawbridge::pki::jose {

// The three dot-separated parts of a compact JWS of at most max_bytes.
absl::StatusOr<std::vector<std::string_view>> SplitCompact(std::string_view compact,
                                                           size_t max_bytes,
                                                           std::string_view what_token);

// A base64url part that must decode to a JSON object; `part_name` is "header"
// or "payload".
absl::StatusOr<nlohmann::json> DecodeObject(std::string_view part, std::string_view part_name,
                                            std::string_view what_token);

// A member that must be a non-empty string of at most max_len bytes.
absl::StatusOr<std::string> RequiredString(const nlohmann::json& object, const char* name,
                                           size_t max_len, std::string_view what_token);

}  // namespace drawbridge::pki::jose

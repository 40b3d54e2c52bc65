#include "pki/jose_json.h"

#include "common/encoding.h"
#include "common/strings.h"

namespace drawbridge::pki::jose {

absl::StatusOr<std::vector<std::string_view>> SplitCompact(std::string_view compact,
                                                           size_t max_bytes,
                                                           std::string_view what_token) {
  if (compact.empty()) {
    return absl::InvalidArgumentError(common::StrCat(what_token, ": empty"));
  }
  if (compact.size() > max_bytes) {
    return absl::InvalidArgumentError(common::StrCat(what_token, ": too large"));
  }
  std::vector<std::string_view> parts = common::Split(compact, '.');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        common::StrCat(what_token, ": expected three dot-separated parts"));
  }
  return parts;
}

absl::StatusOr<nlohmann::json> DecodeObject(std::string_view part, std::string_view part_name,
                                            std::string_view what_token) {
  auto raw = common::Base64UrlDecode(part);
  if (!raw) {
    return absl::InvalidArgumentError(
        common::StrCat(what_token, ": ", part_name, " is not base64url"));
  }
  nlohmann::json j = nlohmann::json::parse(*raw, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        common::StrCat(what_token, ": ", part_name, " is not a JSON object"));
  }
  return j;
}

absl::StatusOr<std::string> RequiredString(const nlohmann::json& object, const char* name,
                                           size_t max_len, std::string_view what_token) {
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) {
    return absl::InvalidArgumentError(
        common::StrCat(what_token, ": \"", name, "\" missing or not a string"));
  }
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > max_len) {
    return absl::InvalidArgumentError(
        common::StrCat(what_token, ": \"", name, "\" empty or too long"));
  }
  return s;
}

}  // namespace drawbridge::pki::jose

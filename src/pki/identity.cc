#include "pki/identity.h"

#include "common/strings.h"

namespace drawbridge::pki {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 63 || !IsLowerAlnum(name[0])) {
    return false;
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view KindName(IdentityKind kind) {
  switch (kind) {
    case IdentityKind::kAgent:
      return "agent";
    case IdentityKind::kClient:
      return "client";
    case IdentityKind::kAdmin:
      return "admin";
  }
  return "agent";
}

std::string Identity::ToString() const { return common::StrCat(KindName(kind), "/", name); }

std::string Identity::SpiffeId(std::string_view trust_domain) const {
  return common::StrCat("spiffe://", trust_domain, "/", ToString());
}

absl::StatusOr<Identity> ParseIdentity(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return absl::InvalidArgumentError(common::StrCat("invalid identity \"", text.substr(0, 80),
                                                     "\": expected KIND/NAME, e.g. agent/acme"));
  }
  std::string_view kind = text.substr(0, slash);
  std::string_view name = text.substr(slash + 1);
  Identity id;
  if (kind == "agent") {
    id.kind = IdentityKind::kAgent;
  } else if (kind == "client") {
    id.kind = IdentityKind::kClient;
  } else if (kind == "admin") {
    id.kind = IdentityKind::kAdmin;
  } else {
    return absl::InvalidArgumentError(common::StrCat("invalid identity \"", text.substr(0, 80),
                                                     "\": KIND must be agent, client or admin"));
  }
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        common::StrCat("invalid identity \"", text.substr(0, 80),
                       "\": NAME must match [a-z0-9][a-z0-9._-]{0,62}"));
  }
  id.name = std::string(name);
  return id;
}

absl::StatusOr<Identity> ParseSpiffeId(std::string_view uri, std::string_view trust_domain) {
  std::string prefix = common::StrCat("spiffe://", trust_domain, "/");
  if (uri.size() <= prefix.size() || uri.substr(0, prefix.size()) != prefix) {
    return absl::PermissionDeniedError("certificate identity is not in this trust domain");
  }
  return ParseIdentity(uri.substr(prefix.size()));
}

absl::Status ValidateTrustDomain(std::string_view td) {
  bool ok = !td.empty() && td.size() <= 255 && IsLowerAlnum(td.front()) && IsLowerAlnum(td.back());
  for (char c : td) {
    ok = ok && (IsLowerAlnum(c) || c == '.' || c == '-' || c == '_');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        common::StrCat("invalid trust domain \"", td.substr(0, 80),
                       "\": use a lower-case DNS-like name such as example.com"));
  }
  return absl::OkStatus();
}

}  // namespace drawbridge::pki

#include "server/identity_directory.h"

#include "absl/strings/cord.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::server {

absl::StatusOr<std::unique_ptr<IdentityDirectory>> IdentityDirectory::Load(store::Store* store) {
  std::unique_ptr<IdentityDirectory> dir(new IdentityDirectory(store));
  ASSIGN_OR_RETURN(auto identities, store->ListIdentities());
  absl::MutexLock lock(&dir->mu_);
  for (auto& id : identities) {
    ASSIGN_OR_RETURN(auto keys, store->ListKeys(id.identity));
    for (auto& k : keys) {
      dir->keys_[k.key_id] = std::move(k);
    }
    dir->identities_[id.identity] = std::move(id);
  }
  return dir;
}

absl::Status IdentityDirectory::CheckActive(const std::string& identity,
                                            const std::string& key_id) const {
  // The reason code rides as a payload, for audit records and alert rules.
  auto refuse = [](std::string message, std::string_view code) {
    absl::Status s = absl::PermissionDeniedError(message);
    s.SetPayload(kReasonCodePayload, absl::Cord(absl::string_view(code.data(), code.size())));
    return s;
  };
  absl::MutexLock lock(&mu_);
  auto id = identities_.find(identity);
  if (id == identities_.end()) {
    return refuse(common::StrCat("identity ", identity, " does not exist"), "unknown_identity");
  }
  if (!id->second.enabled) {
    return refuse(common::StrCat("identity ", identity, " is disabled"), "identity_disabled");
  }
  auto key = keys_.find(key_id);
  if (key == keys_.end() || key->second.identity != identity) {
    return refuse(common::StrCat("key ", key_id, " is not a key of ", identity), "unknown_key");
  }
  if (key->second.removed_at != 0) {
    return refuse(common::StrCat("key ", key_id, " has been removed"), "key_removed");
  }
  return absl::OkStatus();
}

std::string ReasonCodeOf(const absl::Status& status) {
  if (status.ok()) {
    return "";
  }
  if (auto payload = status.GetPayload(kReasonCodePayload)) {
    return std::string(*payload);
  }
  return status.code() == absl::StatusCode::kUnauthenticated ? "unauthenticated"
                                                             : "permission_denied";
}

absl::StatusOr<store::IdentityRecord> IdentityDirectory::GetIdentity(const std::string& identity) {
  {
    absl::MutexLock lock(&mu_);
    auto it = identities_.find(identity);
    if (it != identities_.end()) {
      return it->second;
    }
  }
  if (!store_->shared()) {
    return absl::NotFoundError(common::StrCat("identity ", identity, " not found"));
  }
  absl::MutexLock write(&write_mu_);
  ASSIGN_OR_RETURN(store::IdentityRecord record, store_->GetIdentity(identity));
  ASSIGN_OR_RETURN(std::vector<store::KeyRecord> keys, store_->ListKeys(identity));
  absl::MutexLock lock(&mu_);
  for (auto& k : keys) {
    keys_[k.key_id] = std::move(k);
  }
  identities_[identity] = record;
  return record;
}

absl::StatusOr<store::KeyRecord> IdentityDirectory::GetKey(const std::string& key_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = keys_.find(key_id);
    if (it != keys_.end()) {
      return it->second;
    }
  }
  if (!store_->shared()) {
    return absl::NotFoundError(common::StrCat("key ", key_id, " not found"));
  }
  absl::MutexLock write(&write_mu_);
  ASSIGN_OR_RETURN(store::KeyRecord key, store_->GetKey(key_id));
  ASSIGN_OR_RETURN(store::IdentityRecord identity, store_->GetIdentity(key.identity));
  absl::MutexLock lock(&mu_);
  identities_[identity.identity] = std::move(identity);
  keys_[key_id] = key;
  return key;
}

absl::StatusOr<int> IdentityDirectory::Refresh() {
  std::vector<std::pair<std::string, std::string>> revoked;  // (identity, key id or "")
  {
    absl::MutexLock write(&write_mu_);
    ASSIGN_OR_RETURN(std::vector<store::IdentityRecord> identities, store_->ListIdentities());
    ASSIGN_OR_RETURN(std::vector<store::KeyRecord> keys, store_->ListAllKeys());
    std::map<std::string, store::IdentityRecord> new_identities;
    std::map<std::string, store::KeyRecord> new_keys;
    for (auto& id : identities) {
      std::string name = id.identity;
      new_identities.emplace(std::move(name), std::move(id));
    }
    for (auto& k : keys) {
      std::string key_id = k.key_id;
      new_keys.emplace(std::move(key_id), std::move(k));
    }
    absl::MutexLock lock(&mu_);
    for (const auto& [name, old] : identities_) {
      auto now = new_identities.find(name);
      // Identities are never deleted; one that vanished counts as disabled.
      if (old.enabled && (now == new_identities.end() || !now->second.enabled)) {
        revoked.emplace_back(name, "");
      }
    }
    for (const auto& [key_id, old] : keys_) {
      auto now = new_keys.find(key_id);
      if (old.removed_at == 0 && (now == new_keys.end() || now->second.removed_at != 0)) {
        revoked.emplace_back(old.identity, key_id);
      }
    }
    identities_ = std::move(new_identities);
    keys_ = std::move(new_keys);
  }
  for (const auto& [identity, key_id] : revoked) {
    NotifyRevoked(identity, key_id);
  }
  return static_cast<int>(revoked.size());
}

std::vector<store::IdentityRecord> IdentityDirectory::ListIdentities() const {
  absl::MutexLock lock(&mu_);
  std::vector<store::IdentityRecord> out;
  for (const auto& [name, rec] : identities_) {
    out.push_back(rec);
  }
  return out;
}

std::vector<store::KeyRecord> IdentityDirectory::ListKeys(const std::string& identity) const {
  absl::MutexLock lock(&mu_);
  std::vector<store::KeyRecord> out;
  for (const auto& [id, rec] : keys_) {
    if (rec.identity == identity) {
      out.push_back(rec);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.created_at, a.key_id) < std::tie(b.created_at, b.key_id);
  });
  return out;
}

absl::Status IdentityDirectory::CreateIdentity(const store::IdentityRecord& identity,
                                               const store::KeyRecord& key) {
  absl::MutexLock write(&write_mu_);
  RETURN_IF_ERROR(store_->CreateIdentity(identity, key));
  absl::MutexLock lock(&mu_);
  identities_[identity.identity] = identity;
  keys_[key.key_id] = key;
  return absl::OkStatus();
}

void IdentityDirectory::SetRevocationListener(RevocationListener listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void IdentityDirectory::NotifyRevoked(const std::string& identity, const std::string& key_id) {
  RevocationListener listener;
  {
    absl::MutexLock lock(&listener_mu_);
    listener = listener_;
  }
  if (listener) {
    listener(identity, key_id);
  }
}

absl::Status IdentityDirectory::SetEnabled(const std::string& identity, bool enabled, int64_t now) {
  {
    absl::MutexLock write(&write_mu_);
    RETURN_IF_ERROR(store_->SetIdentityEnabled(identity, enabled, now));
    absl::MutexLock lock(&mu_);
    auto& rec = identities_[identity];
    rec.enabled = enabled;
    rec.updated_at = now;
  }
  if (!enabled) {
    NotifyRevoked(identity, "");
  }
  return absl::OkStatus();
}

absl::Status IdentityDirectory::AddKey(const store::KeyRecord& key) {
  absl::MutexLock write(&write_mu_);
  RETURN_IF_ERROR(store_->AddKey(key));
  absl::MutexLock lock(&mu_);
  keys_[key.key_id] = key;
  return absl::OkStatus();
}

absl::Status IdentityDirectory::RemoveKey(const std::string& identity, const std::string& key_id,
                                          int64_t now) {
  {
    absl::MutexLock write(&write_mu_);
    RETURN_IF_ERROR(store_->RemoveKey(identity, key_id, now));
    absl::MutexLock lock(&mu_);
    keys_[key_id].removed_at = now;
  }
  NotifyRevoked(identity, key_id);
  return absl::OkStatus();
}

}  // namespace drawbridge::server

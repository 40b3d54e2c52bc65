#include "agent/local_audit.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/files.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::agent {
namespace {

constexpr char kSealingKey[] = "audit-sealing.key";

absl::StatusOr<common::PKeyPtr> LoadOrCreateSealingKey(const std::string& path) {
  if (common::PathExists(path)) {
    ASSIGN_OR_RETURN(mode_t mode, common::FileMode(path));
    if ((mode & 077) != 0) {
      return absl::PermissionDeniedError(
          common::StrCat(path, " is readable by group or others; run chmod 600 ", path));
    }
    ASSIGN_OR_RETURN(std::string pem, common::ReadFile(path));
    return pki::PrivateKeyFromPem(pem);
  }
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  ASSIGN_OR_RETURN(std::string pem, pki::PrivateKeyToPem(key.get()));
  RETURN_IF_ERROR(common::WriteFileAtomic(path, pem, 0600));
  return key;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalAudit>> LocalAudit::Open(const std::string& data_dir,
                                                             const pki::Credential& credential) {
  RETURN_IF_ERROR(common::EnsurePrivateDir(data_dir));
  std::unique_ptr<LocalAudit> a(new LocalAudit());
  const std::string lock_path = common::JoinPath(data_dir, "agent.lock");
  a->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (a->lock_fd_ < 0) {
    return absl::PermissionDeniedError(
        common::StrCat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(a->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        common::StrCat("another agent is using ", data_dir,
                       "; give each agent (and each instance of one identity) its own --data-dir"));
  }

  if (credential.holds_no_secret()) {
    // No credential key to sign with (a workload token), or one in a PKCS#11
    // token that should sign enrollments only, not every record: a key of the
    // data directory's own, which proves nothing to the server and only seals
    // this log.
    ASSIGN_OR_RETURN(a->key_, LoadOrCreateSealingKey(common::JoinPath(data_dir, kSealingKey)));
  } else {
    ASSIGN_OR_RETURN(a->key_, pki::PrivateKeyFromPem(credential.private_key_pem));
  }
  ASSIGN_OR_RETURN(std::string public_pem, pki::PublicKeyToPem(a->key_.get()));
  const std::string db = common::JoinPath(data_dir, kAgentAuditDb);
  const std::string pub = common::JoinPath(data_dir, kAgentAuditPub);
  if (common::PathExists(pub)) {
    ASSIGN_OR_RETURN(std::string existing, common::ReadFile(pub));
    if (existing != public_pem) {
      // Signed with an earlier credential key: keep it for auditors, start anew.
      std::string suffix = common::StrCat(".", ::time(nullptr), ".retired");
      std::error_code ec;
      for (const char* ext : {"", "-wal", "-shm"}) {
        std::string from = common::StrCat(db, ext);
        if (std::filesystem::exists(from, ec)) {
          std::filesystem::rename(from, common::StrCat(db, suffix, ext), ec);
        }
      }
      std::filesystem::rename(pub, common::StrCat(pub, suffix), ec);
      common::LogWarn("agent.audit_log_retired",
                      {{"old_log", common::StrCat(db, suffix)},
                       {"reason", "the credential key changed; a new log starts"}});
    }
  }
  RETURN_IF_ERROR(common::WriteFileAtomic(pub, public_pem, 0644));
  audit::AuditLog::Options options;
  options.signing_key = a->key_.get();
  ASSIGN_OR_RETURN(a->log_, audit::AuditLog::Open(db, options));
  return a;
}

LocalAudit::~LocalAudit() {
  log_.reset();  // commits what is queued
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
  }
}

}  // namespace drawbridge::agent

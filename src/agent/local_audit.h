#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "audit/audit_log.h"
#include "common/openssl_util.h"
#include "pki/credential.h"

namespace drawbridge::agent {

// The agent's own audit log (DESIGN §5): every connection it made or refused, in
// the server's schema and hash chain, so the customer can audit what was reached
// without trusting the server. In DATA_DIR:
//   agent-audit.db    the log (SQLite, tables audit_*)
//   agent-audit.pub   the public key its checkpoints are signed with: the
//                     credential's key, whose id the server also lists
//                     (`admin key list`), so an auditor can tie the log to the
//                     identity. `drawbridge audit verify --data-dir DATA_DIR`.
//   agent.lock        held while an agent uses the directory; two agents (even
//                     two instances of one identity) need two directories, or
//                     their chains would interleave.
// A new credential key starts a new log; the old one is kept as
// agent-audit.db.<unix time>.retired with its .pub, still verifiable.
class LocalAudit {
 public:
  static absl::StatusOr<std::unique_ptr<LocalAudit>> Open(const std::string& data_dir,
                                                          const pki::Credential& credential);
  ~LocalAudit();
  LocalAudit(const LocalAudit&) = delete;
  LocalAudit& operator=(const LocalAudit&) = delete;

  audit::AuditLog* log() { return log_.get(); }

 private:
  LocalAudit() = default;
  int lock_fd_ = -1;
  common::PKeyPtr key_;  // outlives log_
  std::unique_ptr<audit::AuditLog> log_;
};

inline constexpr char kAgentAuditDb[] = "agent-audit.db";
inline constexpr char kAgentAuditPub[] = "agent-audit.pub";

}  // namespace drawbridge::agent

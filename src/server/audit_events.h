#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "audit/audit_log.h"
#include "audit/record.h"

// How the server's services write the audit trail (docs/audit.md lists every
// record they produce).
namespace drawbridge::server {

// The IP of a gRPC peer ("ipv4:10.0.0.1:5555" -> "10.0.0.1"), or "" — the
// source_address of records, so alert rules can group by host.
std::string PeerIp(const std::string& grpc_peer);

// Appends `record` to `log` and calls `done` once it is durable (or failed). With
// no log (unit tests of a single service) `done` runs at once with OK. `done`
// runs on the audit writer thread: it must not block. A record that gates an
// action (a dial's "open", a certificate's issue) is appended with kDropOnFailure
// so that the action is refused when the log cannot be written (fail closed);
// every other record is kept until durable (AuditLog::Retention).
void AuditAppend(
    audit::AuditLog* log, audit::Record record, std::function<void(absl::Status)> done = nullptr,
    audit::AuditLog::Retention retention = audit::AuditLog::Retention::kKeepUntilDurable);

// What a caller refused because the audit log cannot be written is told.
inline constexpr char kAuditUnavailableMessage[] =
    "the server cannot write its audit log, so it refuses new connections and "
    "certificates until it can (fail closed)";

// An Authentication failure record for a call refused by AuthenticateCaller.
audit::Record AuthFailureRecord(const std::string& rpc, const std::string& grpc_peer,
                                const absl::Status& refusal);

}  // namespace drawbridge::server

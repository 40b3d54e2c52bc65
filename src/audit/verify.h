#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace drawbridge::audit {

struct VerifyResult {
  bool ok = false;
  uint64_t records = 0;        // retained records whose chain checked out
  uint64_t first_bad_seq = 0;  // 0 if ok
  std::string problem;         // what is wrong at first_bad_seq; empty if ok
  uint64_t first_seq = 0;      // retained range (0, 0 when empty)
  uint64_t last_seq = 0;
  uint64_t anchor_seq = 0;          // records <= anchor_seq were pruned by retention
  uint64_t checkpoints = 0;         // checkpoints whose signature verified
  bool signatures_checked = false;  // a public key was given
  bool head_verified = false;       // the signed head matched the last record
};

// Verifies an audit log offline (for an auditor, on a copy: the database is opened
// read-only and never written; copy the -wal file too, or use `sqlite3 .backup`, or
// the copy misses the newest records and verification reports them missing).
//
// Recomputes the chain from the retention anchor (the signed checkpoint the
// retained records start after): seq continuity, every prev_hash and hash,
// non-decreasing time, every checkpoint's signature and that its hash is the hash of
// its record, and that the signed head names the last record. With an empty
// `audit_public_key_pem` only the chain is checked (signatures_checked = false).
//
// On tampering the result is OK-status with ok = false and first_bad_seq the first
// sequence number that is wrong:
//   - an edited record: its seq (the content no longer matches its hash; if the
//     editor recomputed that hash too, the next link breaks and the edited record is
//     still the one named, unless a signed checkpoint vouches for it);
//   - a deleted record: the missing seq;
//   - an inserted record (later ones renumbered): the first inserted seq;
//   - reordered records: the lower of the positions;
//   - a truncated tail: the first missing seq (from the signed head, at once, or
//     from a checkpoint past the end).
//
// Limits, honestly:
//   - Someone who can write the database and rewrites the whole chain from some
//     record on (recomputing every hash) is caught only by the signatures: the
//     reported seq is then that of the first checkpoint, or the head, past the edit.
//     Without a key such a rewrite, and truncation of the tail, go undetected.
//   - Restoring an older copy of the whole database (a rollback) or deleting it is
//     not detectable offline; ship records off the host (SIEM export) for that.
//   - Pruning is signed (the head names the anchor), so dropping old records is
//     detected unless done with the audit key.
// Errors (not tampering): NotFound if the file or the audit tables are missing,
// InvalidArgument for a bad public key.
absl::StatusOr<VerifyResult> VerifyAuditLog(const std::string& db_path,
                                            const std::string& audit_public_key_pem);

}  // namespace drawbridge::audit

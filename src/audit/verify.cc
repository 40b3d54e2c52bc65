#include "audit/verify.h"

#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>

#include "audit/internal/db.h"
#include "audit/record.h"
#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::audit {
namespace {

using internal::Stmt;

// How many recent hashes the walk remembers to recognise inserted records.
constexpr size_t kLookback = 4096;

struct Checkpoint {
  internal::CheckpointRow row;
  bool signature_ok = false;
};

class Verifier {
 public:
  Verifier(sqlite3* db, EVP_PKEY* key) : db_(db), key_(key) {}

  absl::StatusOr<VerifyResult> Run() {
    result_.signatures_checked = key_ != nullptr;
    if (key_ != nullptr) {
      ASSIGN_OR_RETURN(alg_, pki::AlgorithmOf(key_));
    }
    RETURN_IF_ERROR(LoadCheckpoints());
    auto anchor = internal::ReadAnchor(db_);
    if (!anchor.ok()) {
      Fail(1, common::StrCat("the retention anchor is unreadable: ", anchor.status().message()));
      return Finish();
    }
    anchor_ = *anchor;
    ASSIGN_OR_RETURN(head_, internal::ReadHead(db_));
    if (head_.has_value()) {
      head_signature_ok_ =
          !result_.signatures_checked || Verify(internal::HeadMessage(*head_), head_->signature);
      if (head_signature_ok_ && result_.signatures_checked) {
        // The signed head is authoritative for where the retained chain starts, so
        // dropping old records and moving the (unsigned) meta anchor is caught.
        anchor_ = internal::Anchor{head_->anchor_seq, head_->anchor_hash};
      }
    }
    result_.anchor_seq = anchor_.seq;
    RETURN_IF_ERROR(Walk());
    if (walked_to_end_) {
      CheckTail();
    }
    return Finish();
  }

 private:
  bool Verify(const std::string& message, const std::string& signature_b64) {
    auto sig = common::Base64UrlDecode(signature_b64);
    return sig.has_value() && pki::VerifyJose(key_, alg_, message, *sig).ok();
  }

  // Keeps the problem with the lowest seq (the first found among equals).
  void Fail(uint64_t seq, std::string problem) {
    if (!failed_ || seq < result_.first_bad_seq) {
      failed_ = true;
      result_.first_bad_seq = seq;
      result_.problem = std::move(problem);
    }
  }

  absl::StatusOr<VerifyResult> Finish() {
    result_.ok = !failed_;
    return result_;
  }

  absl::Status LoadCheckpoints() {
    Stmt s(db_, "SELECT seq, hash, time_ms, signature FROM audit_checkpoints ORDER BY seq");
    RETURN_IF_ERROR(s.Prepared());
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      Checkpoint cp;
      cp.row.seq = static_cast<uint64_t>(s.Int(0));
      cp.row.hash = s.Text(1);
      cp.row.time_ms = s.Int(2);
      cp.row.signature = s.Text(3);
      if (s.Type(1) != SQLITE_TEXT || s.Type(2) != SQLITE_INTEGER || s.Type(3) != SQLITE_TEXT) {
        Fail(cp.row.seq, common::StrCat("checkpoint at seq ", cp.row.seq, " is malformed"));
      } else if (result_.signatures_checked) {
        cp.signature_ok = Verify(
            internal::CheckpointMessage(cp.row.seq, cp.row.hash, cp.row.time_ms), cp.row.signature);
        if (cp.signature_ok) {
          ++result_.checkpoints;
        } else {
          Fail(cp.row.seq, common::StrCat("checkpoint at seq ", cp.row.seq,
                                          " has an invalid signature (forged, altered, or "
                                          "signed by another key)"));
        }
      }
      checkpoints_.emplace(cp.row.seq, std::move(cp));
    }
    if (rc != SQLITE_DONE) {
      return internal::SqliteError(db_, "reading audit checkpoints");
    }
    return absl::OkStatus();
  }

  bool Vouched(uint64_t seq, const std::string& hash) const {
    auto it = checkpoints_.find(seq);
    return it != checkpoints_.end() && it->second.signature_ok && it->second.row.hash == hash;
  }

  void Remember(uint64_t seq, const std::string& hash) {
    recent_.emplace(hash, seq);
    order_.push_back(hash);
    if (order_.size() > kLookback) {
      recent_.erase(order_.front());
      order_.pop_front();
    }
  }

  absl::Status Walk() {
    Stmt s(db_,
           common::StrCat("SELECT ", internal::kRecordColumns, " FROM audit_records ORDER BY seq"));
    RETURN_IF_ERROR(s.Prepared());
    uint64_t expected = anchor_.seq + 1;
    std::string prev_hash = anchor_.hash;
    bool prev_vouched = true;  // the anchor is signed (or genesis)
    int64_t last_time = std::numeric_limits<int64_t>::min();
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      const int64_t raw_seq = s.Int(0);
      if (raw_seq <= static_cast<int64_t>(anchor_.seq)) {
        Fail(raw_seq <= 0 ? 1 : static_cast<uint64_t>(raw_seq),
             common::StrCat("record ", raw_seq, " lies before the retention anchor (seq ",
                            anchor_.seq, ")"));
        return absl::OkStatus();
      }
      const uint64_t seq = static_cast<uint64_t>(raw_seq);
      if (seq > expected) {
        Fail(expected,
             expected + 1 == seq
                 ? common::StrCat("record ", expected, " is missing (deleted)")
                 : common::StrCat("records ", expected, " to ", seq - 1, " are missing (deleted)"));
        return absl::OkStatus();
      }
      auto rec = internal::ReadRecordRow(s);
      if (!rec.ok()) {
        Fail(seq, common::StrCat("record ", seq, " is malformed: ", rec.status().message()));
        return absl::OkStatus();
      }
      const bool self_consistent = ComputeHash(*rec) == rec->hash;
      if (rec->prev_hash != prev_hash) {
        auto earlier = recent_.find(rec->prev_hash);
        if (earlier != recent_.end()) {
          Fail(earlier->second + 1,
               common::StrCat("record ", seq, " follows record ", earlier->second, ": records ",
                              earlier->second + 1, " to ", seq - 1,
                              " were inserted (or it was moved)"));
        } else if (!self_consistent || prev_vouched) {
          Fail(seq, common::StrCat("record ", seq,
                                   " does not link to the previous record (its prev_hash or "
                                   "content was altered)"));
        } else {
          Fail(seq - 1, common::StrCat("record ", seq - 1, " is not the record that record ", seq,
                                       " was chained to: it was replaced or rewritten (or record ",
                                       seq, " was)"));
        }
        return absl::OkStatus();
      }
      if (!self_consistent) {
        Fail(seq,
             common::StrCat("record ", seq, " does not match its hash: its content was altered"));
        return absl::OkStatus();
      }
      if (rec->time_unix_ms < last_time) {
        Fail(seq, common::StrCat("record ", seq, " is older than record ", seq - 1,
                                 " (records reordered or time altered)"));
        return absl::OkStatus();
      }
      auto cp = checkpoints_.find(seq);
      if (cp != checkpoints_.end() && cp->second.row.hash != rec->hash) {
        Fail(seq, common::StrCat("record ", seq, " does not match the checkpoint at seq ", seq,
                                 " (the chain was rewritten from here or earlier)"));
        return absl::OkStatus();
      }
      if (result_.first_seq == 0) {
        result_.first_seq = seq;
      }
      result_.last_seq = seq;
      ++result_.records;
      prev_vouched = Vouched(seq, rec->hash);
      if (prev_vouched) {
        last_vouched_seq_ = seq;
      }
      Remember(seq, rec->hash);
      prev_hash = rec->hash;
      last_time = rec->time_unix_ms;
      expected = seq + 1;
    }
    if (rc != SQLITE_DONE) {
      return internal::SqliteError(db_, "reading audit records");
    }
    walked_to_end_ = true;
    last_seq_ = expected - 1;
    last_hash_ = prev_hash;
    return absl::OkStatus();
  }

  void CheckTail() {
    const uint64_t next = last_seq_ + 1;
    auto past = checkpoints_.upper_bound(last_seq_);
    if (past != checkpoints_.end()) {
      Fail(next, common::StrCat("records from ", next, " are missing: a checkpoint exists at seq ",
                                past->first, " (tail truncated)"));
    }
    if (!head_.has_value()) {
      if (result_.signatures_checked && last_seq_ > 0) {
        Fail(next, common::StrCat("the signed head is missing: records after ", last_seq_,
                                  " may have been truncated (records after the checkpoint at ",
                                  last_vouched_seq_, " are not vouched for)"));
      }
      return;
    }
    if (!head_signature_ok_) {
      Fail(next, common::StrCat("the signed head has an invalid signature: it was altered (tail "
                                "truncated?) or signed by another key; records after the "
                                "checkpoint at ",
                                last_vouched_seq_, " are not vouched for"));
      return;
    }
    if (head_->seq > last_seq_) {
      Fail(next, common::StrCat("records ", next, " to ", head_->seq,
                                " are missing: the signed head names seq ", head_->seq,
                                " (tail truncated)"));
    } else if (head_->seq < last_seq_) {
      Fail(head_->seq + 1, common::StrCat("records ", head_->seq + 1, " to ", last_seq_,
                                          " were added after the last signed commit (forged)"));
    } else if (head_->hash != last_hash_) {
      Fail(last_seq_, common::StrCat("record ", last_seq_, " does not match the signed head"));
    } else {
      result_.head_verified = result_.signatures_checked;
    }
  }

  sqlite3* db_;
  EVP_PKEY* key_;
  pki::KeyAlgorithm alg_ = pki::KeyAlgorithm::kEs256;
  VerifyResult result_;
  bool failed_ = false;
  std::map<uint64_t, Checkpoint> checkpoints_;
  internal::Anchor anchor_;
  std::optional<internal::HeadRow> head_;
  bool head_signature_ok_ = false;
  bool walked_to_end_ = false;
  uint64_t last_seq_ = 0;
  std::string last_hash_;
  uint64_t last_vouched_seq_ = 0;
  std::unordered_map<std::string, uint64_t> recent_;
  std::deque<std::string> order_;
};

}  // namespace

absl::StatusOr<VerifyResult> VerifyAuditLog(const std::string& db_path,
                                            const std::string& audit_public_key_pem) {
  common::PKeyPtr key;
  if (!audit_public_key_pem.empty()) {
    auto parsed = pki::PublicKeyFromPem(audit_public_key_pem);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(common::StrCat(
          "audit public key is not a valid PEM public key: ", parsed.status().message()));
    }
    key = *std::move(parsed);
    if (!pki::AlgorithmOf(key.get()).ok()) {
      return absl::InvalidArgumentError("audit public key must be ES256 (P-256) or Ed25519");
    }
  }
  ASSIGN_OR_RETURN(internal::DbPtr db, internal::OpenDb(db_path, /*read_only=*/true));
  ASSIGN_OR_RETURN(bool has_tables, internal::HasAuditTables(db.get()));
  if (!has_tables) {
    return absl::NotFoundError(common::StrCat(db_path, " holds no audit log"));
  }
  // One read transaction: a consistent snapshot even if a server is appending.
  RETURN_IF_ERROR(internal::Exec(db.get(), "BEGIN"));
  Verifier verifier(db.get(), key.get());
  auto result = verifier.Run();
  internal::Exec(db.get(), "COMMIT").IgnoreError();
  return result;
}

}  // namespace drawbridge::audit

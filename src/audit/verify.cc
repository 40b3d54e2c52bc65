#include "audit/verify.h"

#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>

#include "audit/internal/chain.h"
#include "audit/internal/verify_chain.h"
#include "audit/record.h"
#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::audit {
namespace {

// How many recent hashes the walk remembers to recognise inserted records.
constexpr size_t kLookback = 4096;

struct Checkpoint {
  internal::CheckpointRow row;
  bool signature_ok = false;
};

class Verifier {
 public:
  // `replica`: the chain is that replica's in a shared store, and every record
  // must say so (empty: a single node's chain, whose records name none).
  Verifier(internal::ChainReader* chain, EVP_PKEY* key, std::string replica)
      : chain_(chain), key_(key), replica_(std::move(replica)) {}

  absl::StatusOr<VerifyResult> Run() {
    result_.signatures_checked = key_ != nullptr;
    if (key_ != nullptr) {
      ASSIGN_OR_RETURN(alg_, pki::AlgorithmOf(key_));
    }
    RETURN_IF_ERROR(LoadCheckpoints());
    auto anchor = chain_->ReadAnchor();
    if (!anchor.ok()) {
      Fail(1, common::StrCat("the retention anchor is unreadable: ", anchor.status().message()));
      return Finish();
    }
    anchor_ = *anchor;
    ASSIGN_OR_RETURN(head_, chain_->ReadHead());
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
    return chain_->ForEachCheckpoint([&](const internal::CheckpointRow& row, bool well_formed) {
      Checkpoint cp;
      cp.row = row;
      if (!well_formed) {
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
    });
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
    expected_ = anchor_.seq + 1;
    prev_hash_ = anchor_.hash;
    RETURN_IF_ERROR(
        chain_->ForEachRecord({}, [&](const internal::RawRecord& raw) { return Step(raw); }));
    if (!stopped_) {
      walked_to_end_ = true;
      last_seq_ = expected_ - 1;
      last_hash_ = prev_hash_;
    }
    return absl::OkStatus();
  }

  // One record of the walk; false (and stopped_) at the first problem.
  bool Step(const internal::RawRecord& raw) {
    stopped_ = true;
    const int64_t raw_seq = raw.seq;
    if (raw_seq <= static_cast<int64_t>(anchor_.seq)) {
      Fail(raw_seq <= 0 ? 1 : static_cast<uint64_t>(raw_seq),
           common::StrCat("record ", raw_seq, " lies before the retention anchor (seq ",
                          anchor_.seq, ")"));
      return false;
    }
    const uint64_t seq = static_cast<uint64_t>(raw_seq);
    if (seq > expected_) {
      Fail(expected_,
           expected_ + 1 == seq
               ? common::StrCat("record ", expected_, " is missing (deleted)")
               : common::StrCat("records ", expected_, " to ", seq - 1, " are missing (deleted)"));
      return false;
    }
    auto rec = internal::ParseRawRecord(raw);
    if (!rec.ok()) {
      Fail(seq, common::StrCat("record ", seq, " is malformed: ", rec.status().message()));
      return false;
    }
    const bool self_consistent = ComputeHash(*rec) == rec->hash;
    if (rec->prev_hash != prev_hash_) {
      auto earlier = recent_.find(rec->prev_hash);
      if (earlier != recent_.end()) {
        Fail(earlier->second + 1,
             common::StrCat("record ", seq, " follows record ", earlier->second, ": records ",
                            earlier->second + 1, " to ", seq - 1,
                            " were inserted (or it was moved)"));
      } else if (!self_consistent || prev_vouched_) {
        Fail(seq, common::StrCat("record ", seq,
                                 " does not link to the previous record (its prev_hash or "
                                 "content was altered)"));
      } else {
        Fail(seq - 1, common::StrCat("record ", seq - 1, " is not the record that record ", seq,
                                     " was chained to: it was replaced or rewritten (or record ",
                                     seq, " was)"));
      }
      return false;
    }
    if (!self_consistent) {
      Fail(seq,
           common::StrCat("record ", seq, " does not match its hash: its content was altered"));
      return false;
    }
    if (rec->time_unix_ms < last_time_) {
      Fail(seq, common::StrCat("record ", seq, " is older than record ", seq - 1,
                               " (records reordered or time altered)"));
      return false;
    }
    if (!replica_.empty()) {
      auto named = rec->details.find("replica");
      if (named == rec->details.end() || !named->is_string() ||
          named->get<std::string>() != replica_) {
        Fail(seq, common::StrCat("record ", seq, " does not belong to replica ", replica_,
                                 "'s chain (copied from another chain?)"));
        return false;
      }
    }
    auto cp = checkpoints_.find(seq);
    if (cp != checkpoints_.end() && cp->second.row.hash != rec->hash) {
      Fail(seq, common::StrCat("record ", seq, " does not match the checkpoint at seq ", seq,
                               " (the chain was rewritten from here or earlier)"));
      return false;
    }
    if (result_.first_seq == 0) {
      result_.first_seq = seq;
    }
    result_.last_seq = seq;
    ++result_.records;
    prev_vouched_ = Vouched(seq, rec->hash);
    if (prev_vouched_) {
      last_vouched_seq_ = seq;
    }
    Remember(seq, rec->hash);
    prev_hash_ = rec->hash;
    last_time_ = rec->time_unix_ms;
    expected_ = seq + 1;
    stopped_ = false;
    return true;
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

  internal::ChainReader* chain_;
  EVP_PKEY* key_;
  const std::string replica_;
  // The walk's position.
  uint64_t expected_ = 1;
  std::string prev_hash_;
  bool prev_vouched_ = true;  // the anchor is signed (or genesis)
  int64_t last_time_ = std::numeric_limits<int64_t>::min();
  bool stopped_ = false;
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

absl::StatusOr<common::PKeyPtr> ParseAuditPublicKey(const std::string& pem) {
  auto parsed = pki::PublicKeyFromPem(pem);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(common::StrCat(
        "audit public key is not a valid PEM public key: ", parsed.status().message()));
  }
  if (!pki::AlgorithmOf(parsed->get()).ok()) {
    return absl::InvalidArgumentError("audit public key must be ES256 (P-256) or Ed25519");
  }
  return parsed;
}

absl::StatusOr<VerifyResult> VerifyChain(internal::ChainReader* chain, EVP_PKEY* key,
                                         const std::string& replica) {
  Verifier verifier(chain, key, replica);
  return verifier.Run();
}

absl::StatusOr<VerifyResult> VerifyAuditLog(const std::string& db_path,
                                            const std::string& audit_public_key_pem) {
  common::PKeyPtr key;
  if (!audit_public_key_pem.empty()) {
    ASSIGN_OR_RETURN(key, ParseAuditPublicKey(audit_public_key_pem));
  }
  // One read transaction: a consistent snapshot even if a server is appending.
  ASSIGN_OR_RETURN(std::unique_ptr<internal::ChainReader> chain,
                   internal::OpenSqliteChainReader(db_path, /*snapshot=*/true));
  return VerifyChain(chain.get(), key.get(), "");
}

}  // namespace drawbridge::audit

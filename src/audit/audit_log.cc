#include "audit/audit_log.h"

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "audit/internal/chain.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::audit {
namespace internal {

// Everything the writer and Prune share, guarded by AuditLog::db_mu_.
struct AuditLogState {
  std::unique_ptr<ChainWriter> storage;
  EVP_PKEY* key = nullptr;
  pki::KeyAlgorithm alg = pki::KeyAlgorithm::kEs256;
  uint64_t last_seq = 0;
  std::string last_hash = std::string(kGenesisHash);
  Anchor anchor;
  uint64_t last_checkpoint_seq = 0;
  int64_t last_checkpoint_ms = 0;
  int64_t next_prune_ms = 0;
};

}  // namespace internal

namespace {

using internal::AuditLogState;

constexpr size_t kMaxBatch = 10000;
constexpr int64_t kPruneIntervalMs = 24LL * 3600 * 1000;

// The AuditLog whose writer runs on this thread, so that an on_durable that calls
// Append/Flush neither blocks on nor waits for itself.
thread_local const AuditLog* tls_writer = nullptr;

absl::StatusOr<std::string> Sign(const AuditLogState& st, const std::string& message) {
  ASSIGN_OR_RETURN(std::string sig, pki::SignJose(st.key, message));
  return common::Base64UrlEncode(sig);
}

absl::StatusOr<internal::CheckpointRow> MakeCheckpoint(const AuditLogState& st, uint64_t seq,
                                                       const std::string& hash, int64_t now_ms) {
  ASSIGN_OR_RETURN(std::string sig, Sign(st, internal::CheckpointMessage(seq, hash, now_ms)));
  return internal::CheckpointRow{seq, hash, now_ms, sig};
}

absl::StatusOr<internal::HeadRow> MakeHead(const AuditLogState& st, uint64_t seq,
                                           const std::string& hash, const internal::Anchor& anchor,
                                           int64_t now_ms) {
  internal::HeadRow head{seq, hash, anchor.seq, anchor.hash, now_ms, ""};
  ASSIGN_OR_RETURN(head.signature, Sign(st, internal::HeadMessage(head)));
  return head;
}

void SafeCall(const std::function<void(absl::Status)>& cb, absl::Status status) {
  if (!cb) {
    return;
  }
  try {
    cb(std::move(status));
  } catch (...) {
    common::LogError("audit_callback_threw");
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path, Options options) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::ChainWriter> storage,
                   internal::OpenSqliteChainWriter(path));
  return Open(std::move(storage), std::move(options));
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(
    std::unique_ptr<internal::ChainWriter> storage, Options options) {
  const common::Clock* clock = options.clock ? options.clock : common::Clock::Real();
  auto st = std::make_unique<AuditLogState>();
  st->key = options.signing_key;
  if (st->key != nullptr) {
    ASSIGN_OR_RETURN(st->alg, pki::AlgorithmOf(st->key));
  }
  const std::string what = storage->Describe();
  ASSIGN_OR_RETURN(internal::ChainTail tail, storage->Load());
  st->storage = std::move(storage);
  st->anchor = tail.anchor;
  st->last_seq = tail.last_seq;
  st->last_hash = tail.last_hash;
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock->Now().time_since_epoch())
          .count();
  st->last_checkpoint_ms = now_ms;
  if (tail.last_checkpoint.has_value()) {
    st->last_checkpoint_seq = tail.last_checkpoint->seq;
    st->last_checkpoint_ms = tail.last_checkpoint->time_ms;
  }
  st->next_prune_ms = now_ms + kPruneIntervalMs;

  if (const std::optional<internal::HeadRow>& head = tail.head; head.has_value()) {
    if (st->key == nullptr) {
      return absl::FailedPreconditionError(
          common::StrCat(what, " is signed; opening it needs the audit signing key"));
    }
    auto sig = common::Base64UrlDecode(head->signature);
    if (!sig || !pki::VerifyJose(st->key, st->alg, internal::HeadMessage(*head), *sig).ok()) {
      return absl::FailedPreconditionError(
          common::StrCat(what,
                         " was signed with a different audit key (or its head was altered); run "
                         "`drawbridge audit verify` with the old key's public key"));
    }
    if (head->seq != st->last_seq || head->hash != st->last_hash ||
        head->anchor_seq != st->anchor.seq || head->anchor_hash != st->anchor.hash) {
      return absl::DataLossError(common::StrCat(
          what, " does not match its signed head (seq ", head->seq, ", last record ", st->last_seq,
          "): records were removed or altered. Refusing to append, which would sign over the "
          "damage; run `drawbridge audit verify` and move the audit log aside to start a new one"));
    }
  } else if (st->key != nullptr && st->last_seq > 0) {
    common::LogWarn("audit_log_unsigned_history",
                    {{"log", what}, {"last_seq", common::StrCat(st->last_seq)}});
  }

  std::unique_ptr<AuditLog> log(new AuditLog(std::move(st), options));
  {
    absl::MutexLock lock(&log->mu_);
    log->last_time_ms_ = tail.last_time_ms;
  }
  if (options.retention.count() > 0) {
    auto pruned = log->Prune(log->NowMs() - options.retention.count());
    if (!pruned.ok()) {
      return pruned.status();
    }
  }
  log->writer_ = std::thread([raw = log.get()] { raw->WriterLoop(); });
  return log;
}

AuditLog::AuditLog(std::unique_ptr<internal::AuditLogState> state, Options options)
    : options_(options),
      clock_(options.clock ? options.clock : common::Clock::Real()),
      state_(std::move(state)) {}

AuditLog::~AuditLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) {
    writer_.join();
  }
}

int64_t AuditLog::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_->Now().time_since_epoch())
      .count();
}

bool AuditLog::HasRoom() const { return queue_.size() < options_.max_queue || stopping_; }
bool AuditLog::HasWork() const { return !queue_.empty() || stopping_; }

void AuditLog::Append(Record record, std::function<void(absl::Status)> on_durable,
                      Retention retention) {
  absl::MutexLock lock(&mu_);
  if (tls_writer != this) {
    mu_.Await(absl::Condition(this, &AuditLog::HasRoom));
  }
  last_time_ms_ = std::max(last_time_ms_, NowMs());
  record.time_unix_ms = last_time_ms_;
  queue_.push_back(Pending{std::move(record), std::move(on_durable), retention});
  ++enqueued_;
}

absl::Status AuditLog::LimitPagesForTesting(int64_t max_pages) {
  absl::MutexLock lock(&db_mu_);
  return state_->storage->LimitPagesForTesting(max_pages);
}

absl::Status AuditLog::StorageStatus() const {
  absl::MutexLock lock(&mu_);
  return storage_;
}

absl::Status AuditLog::AppendSync(Record record) {
  if (tls_writer == this) {
    return absl::FailedPreconditionError(
        "AppendSync called from an on_durable callback would wait for itself");
  }
  absl::Notification done;
  absl::Status result;
  Append(std::move(record), [&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

void AuditLog::Flush() {
  if (tls_writer == this) {
    return;
  }
  absl::MutexLock lock(&mu_);
  const uint64_t ticket = enqueued_;
  auto reached = [this, ticket]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= ticket; };
  mu_.Await(absl::Condition(&reached));
}

AuditLog::Stats AuditLog::GetStats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void AuditLog::WriterLoop() {
  tls_writer = this;
  for (;;) {
    std::deque<Pending> batch;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(this, &AuditLog::HasWork), absl::Seconds(1));
      size_t take = std::min(queue_.size(), kMaxBatch);
      for (size_t i = 0; i < take; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      // Stop only once nothing is left, including what on_durable callbacks of the
      // last batch appended.
      stop = stopping_ && batch.empty();
    }
    if (!batch.empty()) {
      CommitBatch(&batch);
    }
    Maintenance();
    if (stop) {
      break;
    }
    // Storage failing: pace the retries of what was kept rather than spin.
    absl::MutexLock lock(&mu_);
    if (!storage_.ok()) {
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           absl::Milliseconds(options_.retry_after_failure.count()));
    }
  }
  tls_writer = nullptr;
}

void AuditLog::CommitBatch(std::deque<Pending>* batch) {
  // Per record: the status its on_durable gets. Malformed records are refused
  // without taking a seq; a failed commit fails every record of the batch.
  std::vector<absl::Status> results(batch->size());
  uint64_t appended = 0;
  uint64_t checkpoints = 0;
  absl::Status commit;
  {
    absl::MutexLock lock(&db_mu_);
    AuditLogState& st = *state_;
    uint64_t seq = st.last_seq;
    std::string hash = st.last_hash;
    uint64_t checkpoint_seq = st.last_checkpoint_seq;
    int64_t checkpoint_ms = st.last_checkpoint_ms;
    const int64_t now_ms = NowMs();
    std::vector<std::string> details(batch->size());  // canonical: what the hash covers
    internal::ChainWriter::Batch rows;
    auto build_and_commit = [&]() -> absl::Status {
      for (size_t i = 0; i < batch->size(); ++i) {
        Record& r = (*batch)[i].record;
        if (!options_.replica_id.empty() && (r.details.is_object() || r.details.is_null())) {
          // The hash covers it: a record cannot be moved to another replica's chain.
          r.details["replica"] = options_.replica_id;
        }
        std::vector<std::string> redacted;
        results[i] = NormalizeForAppend(&r, &redacted, &details[i]);
        if (!results[i].ok()) {
          continue;
        }
        r.seq = seq + 1;
        r.prev_hash = hash;
        r.hash = ComputeHash(r, details[i]);
        for (const std::string& field : redacted) {
          common::LogWarn("audit_secret_redacted",
                          {{"seq", common::StrCat(r.seq)}, {"field", field}});
        }
        rows.records.emplace_back(&r, details[i]);
        seq = r.seq;
        hash = r.hash;
        ++appended;
        if (st.key != nullptr && options_.checkpoint_every_records > 0 &&
            seq % options_.checkpoint_every_records == 0) {
          ASSIGN_OR_RETURN(internal::CheckpointRow cp, MakeCheckpoint(st, seq, hash, now_ms));
          rows.checkpoints.push_back(std::move(cp));
          checkpoint_seq = seq;
          checkpoint_ms = now_ms;
          ++checkpoints;
        }
      }
      if (appended == 0) {
        return absl::OkStatus();
      }
      if (st.key != nullptr) {
        if (seq > checkpoint_seq &&
            now_ms - checkpoint_ms >=
                std::chrono::milliseconds(options_.checkpoint_every).count()) {
          ASSIGN_OR_RETURN(internal::CheckpointRow cp, MakeCheckpoint(st, seq, hash, now_ms));
          rows.checkpoints.push_back(std::move(cp));
          checkpoint_seq = seq;
          checkpoint_ms = now_ms;
          ++checkpoints;
        }
        ASSIGN_OR_RETURN(rows.head, MakeHead(st, seq, hash, st.anchor, now_ms));
      }
      return st.storage->Commit(rows);
    };
    try {
      commit = build_and_commit();
    } catch (const std::exception& e) {
      commit = absl::InternalError(common::StrCat("audit commit failed: ", e.what()));
    }
    if (commit.ok()) {
      st.last_seq = seq;
      st.last_hash = hash;
      st.last_checkpoint_seq = checkpoint_seq;
      st.last_checkpoint_ms = checkpoint_ms;
    }
  }
  // After a failed commit, records kept until durable go back to the head of
  // the queue, in order (unless the log is being destroyed: then nothing could
  // ever commit them).
  std::deque<Pending> kept;
  std::vector<size_t> answer;  // indexes of the batch whose on_durable runs now
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
  }
  uint64_t failed = 0;
  for (size_t i = 0; i < batch->size(); ++i) {
    Pending& p = (*batch)[i];
    if (!commit.ok() && results[i].ok() && p.retention == Retention::kKeepUntilDurable &&
        !stopping) {
      if (!p.told_failure) {
        SafeCall(p.on_durable, commit);
        p.told_failure = true;
      }
      kept.push_back(std::move(p));
      continue;
    }
    if (!results[i].ok() || !commit.ok()) {
      ++failed;
    }
    answer.push_back(i);
  }
  if (!commit.ok() && stopping && failed > 0) {
    common::LogError("audit_records_lost", {{"records", common::StrCat(failed)},
                                            {"error", std::string(commit.message())}});
  }
  absl::Status storage_before;
  {
    absl::MutexLock lock(&mu_);
    if (commit.ok() && appended > 0) {
      stats_.records += appended;
      stats_.commits += 1;
      stats_.checkpoints += checkpoints;
    }
    stats_.failed += failed;
    if (!kept.empty()) {
      stats_.retried += 1;
      queue_.insert(queue_.begin(), std::make_move_iterator(kept.begin()),
                    std::make_move_iterator(kept.end()));
    }
    storage_before = storage_;
    storage_ = commit.ok() ? absl::OkStatus()
                           : absl::UnavailableError(
                                 common::StrCat("cannot write the audit log: ", commit.message()));
  }
  if (!commit.ok() && storage_before.ok()) {  // once per outage, not per retry
    common::LogError("audit_commit_failed", {{"records", common::StrCat(batch->size())},
                                             {"error", std::string(commit.message())}});
  }
  if (options_.on_storage_state && storage_before.ok() != commit.ok()) {
    options_.on_storage_state(commit.ok() ? absl::OkStatus() : StorageStatus());
  }
  if (commit.ok() && appended > 0 && options_.on_committed) {
    std::vector<Record> committed;
    committed.reserve(appended);
    for (size_t i = 0; i < batch->size(); ++i) {
      if (results[i].ok()) {
        committed.push_back((*batch)[i].record);
      }
    }
    try {
      options_.on_committed(committed);
    } catch (const std::exception& e) {
      common::LogError("audit_observer_failed", {{"error", e.what()}});
    }
  }
  for (size_t i : answer) {
    Pending& p = (*batch)[i];
    if (!p.told_failure) {  // exactly once: a kept record's caller heard already
      SafeCall(p.on_durable, results[i].ok() ? commit : results[i]);
    }
  }
  absl::MutexLock lock(&mu_);
  done_ += answer.size();
}

void AuditLog::Maintenance() {
  const int64_t now_ms = NowMs();
  bool prune = false;
  {
    absl::MutexLock lock(&db_mu_);
    if (options_.retention.count() > 0 && now_ms >= state_->next_prune_ms) {
      state_->next_prune_ms = now_ms + kPruneIntervalMs;
      prune = true;
    }
  }
  absl::Status s = CheckpointIfDue(now_ms);
  if (!s.ok()) {
    common::LogError("audit_checkpoint_failed", {{"error", std::string(s.message())}});
  }
  if (prune) {
    auto pruned = Prune(now_ms - options_.retention.count());
    if (!pruned.ok()) {
      common::LogError("audit_prune_failed", {{"error", std::string(pruned.status().message())}});
    }
  }
}

absl::Status AuditLog::CheckpointIfDue(int64_t now_ms) {
  absl::MutexLock lock(&db_mu_);
  AuditLogState& st = *state_;
  if (st.key == nullptr || st.last_seq <= st.last_checkpoint_seq ||
      now_ms - st.last_checkpoint_ms <
          std::chrono::milliseconds(options_.checkpoint_every).count()) {
    return absl::OkStatus();
  }
  return CheckpointLocked(now_ms);
}

absl::Status AuditLog::Checkpoint() {
  absl::MutexLock lock(&db_mu_);
  AuditLogState& st = *state_;
  if (st.key == nullptr || st.last_seq == 0 || st.last_seq == st.last_checkpoint_seq) {
    return absl::OkStatus();
  }
  return CheckpointLocked(NowMs());
}

absl::Status AuditLog::CheckpointLocked(int64_t now_ms) {
  AuditLogState& st = *state_;
  ASSIGN_OR_RETURN(internal::CheckpointRow cp,
                   MakeCheckpoint(st, st.last_seq, st.last_hash, now_ms));
  internal::ChainWriter::Batch rows;
  rows.checkpoints.push_back(std::move(cp));
  RETURN_IF_ERROR(st.storage->Commit(rows));
  st.last_checkpoint_seq = st.last_seq;
  st.last_checkpoint_ms = now_ms;
  absl::MutexLock lock(&mu_);
  stats_.checkpoints += 1;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> AuditLog::Prune(int64_t before_unix_ms) {
  absl::MutexLock lock(&db_mu_);
  AuditLogState& st = *state_;
  // The cut: the newest record older than the cutoff that can anchor the rest. With
  // a key it must be a signed checkpoint; times never decrease with seq, so every
  // record before it is older too.
  ASSIGN_OR_RETURN(std::optional<internal::Anchor> cut,
                   st.storage->FindPrunePoint(before_unix_ms, /*signed_only=*/st.key != nullptr));
  if (!cut.has_value() || cut->seq <= st.anchor.seq) {
    return uint64_t{0};
  }
  const internal::Anchor anchor = *cut;
  std::optional<internal::HeadRow> head;
  if (st.key != nullptr) {
    ASSIGN_OR_RETURN(head, MakeHead(st, st.last_seq, st.last_hash, anchor, NowMs()));
  }
  ASSIGN_OR_RETURN(uint64_t deleted, st.storage->Prune(anchor, head));
  st.anchor = anchor;
  common::LogInfo("audit_pruned", {{"log", st.storage->Describe()},
                                   {"records", common::StrCat(deleted)},
                                   {"anchor_seq", common::StrCat(anchor.seq)}});
  return deleted;
}

}  // namespace drawbridge::audit

#include "audit/internal/postgres_chain.h"

#include <utility>

#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"
#include "store/store.h"

namespace drawbridge::audit::internal {
namespace {

using store::PgResult;
using store::PgSession;

std::string Num(int64_t v) { return std::to_string(v); }
std::string Num(uint64_t v) { return std::to_string(v); }

// Rows per INSERT statement: 11 parameters each, well under PostgreSQL's 65535.
constexpr size_t kInsertChunk = 500;
// Rows per page when reading a chain.
constexpr int kPage = 1000;

std::optional<HeadRow> HeadFrom(const PgResult& r) {
  if (r.rows() == 0) {
    return std::nullopt;
  }
  return HeadRow{static_cast<uint64_t>(r.Int(0, 0)),
                 r.Text(0, 1),
                 static_cast<uint64_t>(r.Int(0, 2)),
                 r.Text(0, 3),
                 r.Int(0, 4),
                 r.Text(0, 5)};
}

constexpr char kHeadSelect[] =
    "SELECT seq, hash, anchor_seq, anchor_hash, time_ms, signature FROM audit_heads "
    "WHERE replica_id=$1";

absl::Status UpsertHead(PgSession& pg, const std::string& replica, const HeadRow& h) {
  return pg
      .Exec(
          "INSERT INTO audit_heads(replica_id, seq, hash, anchor_seq, anchor_hash, time_ms, "
          "signature) VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT(replica_id) DO UPDATE SET "
          "seq=EXCLUDED.seq, hash=EXCLUDED.hash, anchor_seq=EXCLUDED.anchor_seq, "
          "anchor_hash=EXCLUDED.anchor_hash, time_ms=EXCLUDED.time_ms, "
          "signature=EXCLUDED.signature",
          {replica, Num(h.seq), h.hash, Num(h.anchor_seq), h.anchor_hash, Num(h.time_ms),
           h.signature},
          "audit head")
      .status();
}

absl::StatusOr<Anchor> ReadChainAnchor(PgSession& pg, const std::string& replica) {
  ASSIGN_OR_RETURN(PgResult r,
                   pg.Exec("SELECT anchor_seq, anchor_hash FROM audit_chains WHERE replica_id=$1",
                           {replica}, "audit chain"));
  if (r.rows() == 0) {
    return absl::NotFoundError(
        common::StrCat("replica ", replica, " has no audit chain in the store"));
  }
  return Anchor{static_cast<uint64_t>(r.Int(0, 0)), r.Text(0, 1)};
}

class PgChainWriter : public ChainWriter {
 public:
  PgChainWriter(const std::string& conninfo, std::string replica)
      : replica_(std::move(replica)), pg_(conninfo, [this] { return LockChain(); }) {}

  std::string Describe() const override {
    return common::StrCat("audit chain of replica ", replica_, " in ",
                          store::RedactConninfo(pg_.conninfo()));
  }

  absl::StatusOr<ChainTail> Load() override {
    ChainTail tail;
    ASSIGN_OR_RETURN(tail.anchor, ReadChainAnchor(pg_, replica_));
    tail.last_seq = tail.anchor.seq;
    tail.last_hash = tail.anchor.hash;
    ASSIGN_OR_RETURN(PgResult last,
                     pg_.Exec("SELECT seq, hash, time_ms FROM audit_records WHERE replica_id=$1 "
                              "ORDER BY seq DESC LIMIT 1",
                              {replica_}, "last audit record"));
    if (last.rows() == 1) {
      tail.last_seq = static_cast<uint64_t>(last.Int(0, 0));
      tail.last_hash = last.Text(0, 1);
      tail.last_time_ms = last.Int(0, 2);
    }
    ASSIGN_OR_RETURN(PgResult cp, pg_.Exec("SELECT seq, hash, time_ms, signature FROM "
                                           "audit_checkpoints WHERE replica_id=$1 ORDER BY seq "
                                           "DESC LIMIT 1",
                                           {replica_}, "last audit checkpoint"));
    if (cp.rows() == 1) {
      tail.last_checkpoint = CheckpointRow{static_cast<uint64_t>(cp.Int(0, 0)), cp.Text(0, 1),
                                           cp.Int(0, 2), cp.Text(0, 3)};
    }
    ASSIGN_OR_RETURN(PgResult head, pg_.Exec(kHeadSelect, {replica_}, "audit head"));
    tail.head = HeadFrom(head);
    return tail;
  }

  absl::Status Commit(const Batch& batch) override {
    return pg_.Transaction([&]() -> absl::Status {
      for (size_t start = 0; start < batch.records.size(); start += kInsertChunk) {
        const size_t end = std::min(batch.records.size(), start + kInsertChunk);
        std::string sql =
            common::StrCat("INSERT INTO audit_records(replica_id, ", kRecordColumns, ") VALUES ");
        std::vector<std::string> params;
        params.reserve((end - start) * 12);
        for (size_t i = start; i < end; ++i) {
          const auto& [r, details] = batch.records[i];
          const size_t base = params.size();
          sql += common::StrCat(i == start ? "" : ",", "(");
          for (size_t p = 1; p <= 12; ++p) {
            sql += common::StrCat(p == 1 ? "" : ",", "$", base + p);
          }
          sql += ")";
          for (std::string v : {replica_, Num(r->seq), Num(r->time_unix_ms),
                                Num(int64_t{r->class_uid}), r->class_name, r->activity, r->outcome,
                                r->actor, r->source_address, details, r->prev_hash, r->hash}) {
            params.push_back(std::move(v));
          }
        }
        RETURN_IF_ERROR(pg_.Exec(sql, params, "audit records").status());
      }
      for (const CheckpointRow& cp : batch.checkpoints) {
        RETURN_IF_ERROR(
            pg_.Exec("INSERT INTO audit_checkpoints(replica_id, seq, hash, time_ms, signature) "
                     "VALUES($1,$2,$3,$4,$5) ON CONFLICT(replica_id, seq) DO UPDATE SET "
                     "hash=EXCLUDED.hash, time_ms=EXCLUDED.time_ms, signature=EXCLUDED.signature",
                     {replica_, Num(cp.seq), cp.hash, Num(cp.time_ms), cp.signature},
                     "audit checkpoint")
                .status());
      }
      if (batch.head.has_value()) {
        RETURN_IF_ERROR(UpsertHead(pg_, replica_, *batch.head));
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<Anchor>> FindPrunePoint(int64_t before_ms,
                                                       bool signed_only) override {
    ASSIGN_OR_RETURN(
        PgResult r,
        pg_.Exec(signed_only
                     ? "SELECT r.seq, r.hash FROM audit_checkpoints c JOIN audit_records r ON "
                       "r.replica_id = c.replica_id AND r.seq = c.seq WHERE r.replica_id=$1 AND "
                       "r.time_ms < $2 AND r.hash = c.hash ORDER BY r.seq DESC LIMIT 1"
                     : "SELECT seq, hash FROM audit_records WHERE replica_id=$1 AND time_ms < $2 "
                       "ORDER BY seq DESC LIMIT 1",
                 {replica_, Num(before_ms)}, "audit prune point"));
    if (r.rows() == 0) {
      return std::optional<Anchor>();
    }
    return std::optional<Anchor>(Anchor{static_cast<uint64_t>(r.Int(0, 0)), r.Text(0, 1)});
  }

  absl::StatusOr<uint64_t> Prune(const Anchor& anchor,
                                 const std::optional<HeadRow>& head) override {
    uint64_t deleted = 0;
    RETURN_IF_ERROR(pg_.Transaction([&]() -> absl::Status {
      ASSIGN_OR_RETURN(PgResult del,
                       pg_.Exec("DELETE FROM audit_records WHERE replica_id=$1 AND seq <= $2",
                                {replica_, Num(anchor.seq)}, "audit prune"));
      deleted = static_cast<uint64_t>(del.changed());
      RETURN_IF_ERROR(pg_.Exec("DELETE FROM audit_checkpoints WHERE replica_id=$1 AND seq < $2",
                               {replica_, Num(anchor.seq)}, "audit checkpoint prune")
                          .status());
      RETURN_IF_ERROR(pg_.Exec("UPDATE audit_chains SET anchor_seq=$2, anchor_hash=$3 WHERE "
                               "replica_id=$1",
                               {replica_, Num(anchor.seq), anchor.hash}, "audit anchor")
                          .status());
      if (head.has_value()) {
        RETURN_IF_ERROR(UpsertHead(pg_, replica_, *head));
      }
      return absl::OkStatus();
    }));
    return deleted;
  }

 private:
  // On every new connection: the chain is this process's alone while the
  // session lasts (a session lock ends with the connection, so a replica that
  // died frees its chain for its restart).
  absl::Status LockChain() {
    ASSIGN_OR_RETURN(PgResult r,
                     pg_.Exec("SELECT pg_try_advisory_lock(hashtext('drawbridge-audit-chain'), "
                              "hashtext($1))",
                              {replica_}, "audit chain lock"));
    if (r.rows() != 1 || r.Text(0, 0) != "t") {
      return absl::FailedPreconditionError(common::StrCat(
          "another process is writing the audit chain of replica ", replica_,
          ": each replica needs its own data directory (its replica-id file names its chain)"));
    }
    return absl::OkStatus();
  }

  const std::string replica_;
  PgSession pg_;
};

class PgChainReader : public ChainReader {
 public:
  PgChainReader(PgSession* pg, std::unique_ptr<PgSession> owned, std::string replica)
      : pg_(pg), owned_(std::move(owned)), replica_(std::move(replica)) {}

  absl::StatusOr<Anchor> ReadAnchor() override { return ReadChainAnchor(*pg_, replica_); }

  absl::StatusOr<std::optional<HeadRow>> ReadHead() override {
    ASSIGN_OR_RETURN(PgResult r, pg_->Exec(kHeadSelect, {replica_}, "audit head"));
    return HeadFrom(r);
  }

  absl::Status ForEachCheckpoint(
      const std::function<void(const CheckpointRow&, bool well_formed)>& fn) override {
    ASSIGN_OR_RETURN(PgResult r, pg_->Exec("SELECT seq, hash, time_ms, signature FROM "
                                           "audit_checkpoints WHERE replica_id=$1 ORDER BY seq",
                                           {replica_}, "audit checkpoints"));
    for (int i = 0; i < r.rows(); ++i) {
      fn(CheckpointRow{static_cast<uint64_t>(r.Int(i, 0)), r.Text(i, 1), r.Int(i, 2), r.Text(i, 3)},
         /*well_formed=*/true);  // the columns' types are enforced
    }
    return absl::OkStatus();
  }

  absl::Status ForEachRecord(const Range& range,
                             const std::function<bool(const RawRecord&)>& fn) override {
    uint64_t after = range.after_seq;
    for (;;) {
      ASSIGN_OR_RETURN(
          PgResult r,
          pg_->Exec(common::StrCat("SELECT ", kRecordColumns,
                                   " FROM audit_records WHERE replica_id=$1 AND time_ms >= $2 "
                                   "AND time_ms < $3 AND seq > $4 ORDER BY seq LIMIT ",
                                   kPage),
                    {replica_, Num(range.from_ms), Num(range.to_ms), Num(after)}, "audit records"));
      for (int i = 0; i < r.rows(); ++i) {
        RawRecord raw;
        raw.seq = r.Int(i, 0);
        raw.time_ms = r.Int(i, 1);
        raw.class_uid = r.Int(i, 2);
        raw.class_name = r.Text(i, 3);
        raw.activity = r.Text(i, 4);
        raw.outcome = r.Text(i, 5);
        raw.actor = r.Text(i, 6);
        raw.source_address = r.Text(i, 7);
        raw.details = r.Text(i, 8);
        raw.prev_hash = r.Text(i, 9);
        raw.hash = r.Text(i, 10);
        if (!fn(raw)) {
          return absl::OkStatus();
        }
        after = static_cast<uint64_t>(raw.seq);
      }
      if (r.rows() < kPage) {
        return absl::OkStatus();
      }
    }
  }

  absl::StatusOr<uint64_t> LastSeq() override {
    ASSIGN_OR_RETURN(PgResult r, pg_->Exec("SELECT COALESCE(MAX(seq), 0) FROM audit_records WHERE "
                                           "replica_id=$1",
                                           {replica_}, "last audit seq"));
    return static_cast<uint64_t>(r.Int(0, 0));
  }

 private:
  PgSession* pg_;
  std::unique_ptr<PgSession> owned_;
  const std::string replica_;
};

}  // namespace

std::string EndorsementMessage(const std::string& replica_id, const std::string& public_key_pem) {
  return common::StrCat("drawbridge-audit-chain|", replica_id, "|",
                        common::Base64UrlEncode(pki::Sha256(public_key_pem)));
}

absl::Status RegisterChain(PgSession* pg, const ChainInfo& info) {
  return pg->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(PgResult r, pg->Exec("SELECT public_key_pem FROM audit_chains WHERE "
                                          "replica_id=$1 FOR UPDATE",
                                          {info.replica_id}, "audit chain"));
    if (r.rows() == 1) {
      if (r.Text(0, 0) != info.public_key_pem) {
        return absl::FailedPreconditionError(common::StrCat(
            "the store's audit chain of replica ", info.replica_id,
            " is signed with another audit key than this data directory's; give this replica "
            "a new id (remove DATA_DIR/replica-id) to start a new chain, keeping the old one "
            "verifiable"));
      }
      return pg
          ->Exec(
              "UPDATE audit_chains SET endorser_cert_pem=$2, endorsement=$3 WHERE "
              "replica_id=$1",
              {info.replica_id, info.endorser_cert_pem, info.endorsement},
              "audit chain endorsement")
          .status();
    }
    return pg
        ->Exec(
            "INSERT INTO audit_chains(replica_id, public_key_pem, endorser_cert_pem, "
            "endorsement, anchor_seq, anchor_hash, created_at) VALUES($1,$2,$3,$4,0,$5,$6)",
            {info.replica_id, info.public_key_pem, info.endorser_cert_pem, info.endorsement,
             std::string(kGenesisHash), Num(info.created_at)},
            "audit chain")
        .status();
  });
}

std::unique_ptr<ChainWriter> PostgresChainWriter(const std::string& conninfo,
                                                 const std::string& replica_id) {
  return std::make_unique<PgChainWriter>(conninfo, replica_id);
}

absl::StatusOr<std::unique_ptr<PostgresChains>> PostgresChains::Open(const std::string& conninfo) {
  std::unique_ptr<PostgresChains> chains(new PostgresChains(conninfo));
  ASSIGN_OR_RETURN(PgResult t, chains->pg_.Exec("SELECT to_regclass('audit_chains') IS NOT NULL",
                                                {}, "audit tables"));
  if (t.rows() != 1 || t.Text(0, 0) != "t") {
    return absl::NotFoundError(common::StrCat(store::RedactConninfo(conninfo),
                                              " holds no audit chains (no replica has run "
                                              "against it with this version)"));
  }
  RETURN_IF_ERROR(
      chains->pg_.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}, "snapshot").status());
  return chains;
}

PostgresChains::~PostgresChains() { pg_.Exec("COMMIT", {}, "end snapshot").IgnoreError(); }

absl::StatusOr<std::vector<ChainInfo>> PostgresChains::List() {
  ASSIGN_OR_RETURN(PgResult r,
                   pg_.Exec("SELECT replica_id, public_key_pem, endorser_cert_pem, endorsement, "
                            "created_at FROM audit_chains ORDER BY created_at, replica_id",
                            {}, "audit chains"));
  std::vector<ChainInfo> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({r.Text(i, 0), r.Text(i, 1), r.Text(i, 2), r.Text(i, 3), r.Int(i, 4)});
  }
  return out;
}

std::unique_ptr<ChainReader> PostgresChains::Reader(const std::string& replica_id) {
  return std::make_unique<PgChainReader>(&pg_, nullptr, replica_id);
}

std::unique_ptr<ChainReader> PostgresChainReader(const std::string& conninfo,
                                                 const std::string& replica_id) {
  auto pg = std::make_unique<PgSession>(conninfo);
  PgSession* raw = pg.get();
  return std::make_unique<PgChainReader>(raw, std::move(pg), replica_id);
}

}  // namespace drawbridge::audit::internal

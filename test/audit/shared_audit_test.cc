// The audit trail of replicas sharing a PostgreSQL store: one chain per
// replica, verified and queried all at once, against a real PostgreSQL server
// started for this binary (a fresh database per test).
#include "audit/shared_audit.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <string>
#include <vector>

#include "audit/record.h"
#include "common/clock.h"
#include "pki/certs.h"
#include "pki/keys.h"
#include "store/store.h"
#include "testing/postgres_server.h"

namespace drawbridge::audit {
namespace {

using std::chrono::seconds;

common::PKeyPtr NewKey() {
  auto key = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

std::unique_ptr<pki::CertificateAuthority> NewCa(const std::string& trust_domain) {
  auto ca = pki::CertificateAuthority::CreateNew(trust_domain, *common::Clock::Real());
  EXPECT_TRUE(ca.ok()) << ca.status();
  return *std::move(ca);
}

Record Conn(int i, const std::string& actor) {
  return MakeRecord(EventClass::kNetworkActivity, "connect", kOutcomeSuccess, actor,
                    "10.0.0.7:40000", {{"destination", "gitlab.corp:443"}, {"n", i}});
}

// One replica: its audit key and its chain, opened as the server opens it.
struct Replica {
  std::string id;
  common::PKeyPtr key;
  std::unique_ptr<AuditLog> log;
};

class SharedAuditTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pg = testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    postgres_ = std::move(*pg);
  }
  static void TearDownTestSuite() { postgres_.reset(); }

  void SetUp() override {
    static std::atomic<int> next{0};
    auto uri = postgres_->CreateDatabase("shared_audit_" + std::to_string(next++));
    ASSERT_TRUE(uri.ok()) << uri.status();
    uri_ = *uri;
    // The store's migrations create the audit tables, as a replica's start does.
    auto store = store::OpenStore(uri_);
    ASSERT_TRUE(store.ok()) << store.status();
    ca_ = NewCa("example.test");
  }

  AuditLog::Options LogOptions(EVP_PKEY* key) const {
    AuditLog::Options options;
    options.signing_key = key;
    options.checkpoint_every_records = 5;
    options.retention = std::chrono::milliseconds(0);
    return options;
  }

  Replica StartReplica(const std::string& id) {
    Replica r;
    r.id = id;
    r.key = NewKey();
    Register(id, r.key.get());
    auto log = OpenSharedAuditLog(uri_, id, LogOptions(r.key.get()));
    EXPECT_TRUE(log.ok()) << log.status();
    if (log.ok()) {
      r.log = std::move(*log);
    }
    return r;
  }

  void Register(const std::string& id, EVP_PKEY* key) {
    const auto& m = ca_->material();
    ASSERT_TRUE(RegisterSharedAuditChain(uri_, id, key, m.intermediate_key.get(),
                                         pki::CertToPem(m.intermediate_cert.get()), 1000)
                    .ok());
  }

  std::vector<ChainVerifyResult> Verify(const std::string& roots_pem = "",
                                        bool chain_only = false) {
    auto results = VerifySharedAuditLog(uri_, roots_pem.empty() ? ca_->TrustBundlePem() : roots_pem,
                                        chain_only);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *results : std::vector<ChainVerifyResult>{};
  }

  // Runs SQL as an intruder with write access to the database would.
  void Sql(const std::string& sql) {
    PGconn* conn = PQconnectdb(uri_.c_str());
    ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
    PGresult* res = PQexec(conn, sql.c_str());
    EXPECT_EQ(PQresultStatus(res), PGRES_COMMAND_OK) << PQerrorMessage(conn);
    PQclear(res);
    PQfinish(conn);
  }

  static std::unique_ptr<testing::PostgresServer> postgres_;
  std::string uri_;
  std::unique_ptr<pki::CertificateAuthority> ca_;
};

std::unique_ptr<testing::PostgresServer> SharedAuditTest::postgres_;

std::map<std::string, ChainVerifyResult> ByReplica(const std::vector<ChainVerifyResult>& v) {
  std::map<std::string, ChainVerifyResult> out;
  for (const auto& r : v) {
    out[r.replica_id] = r;
  }
  return out;
}

TEST_F(SharedAuditTest, EveryReplicaChainVerifiesWithItsEndorsedKey) {
  std::vector<Replica> replicas;
  for (const char* id : {"aaaa0001", "bbbb0002", "cccc0003"}) {
    replicas.push_back(StartReplica(id));
  }
  for (int i = 0; i < 12; ++i) {
    for (Replica& r : replicas) {
      ASSERT_TRUE(r.log->AppendSync(Conn(i, "client/" + r.id)).ok());
    }
  }
  replicas.clear();  // close: each writes its signed head

  auto results = ByReplica(Verify());
  ASSERT_EQ(results.size(), 3u);
  for (const auto& [id, r] : results) {
    EXPECT_TRUE(r.ok()) << id << ": " << r.result.problem << r.key_problem;
    EXPECT_TRUE(r.key_endorsed) << id;
    EXPECT_EQ(r.result.records, 12u) << id;
    EXPECT_EQ(r.result.checkpoints, 2u) << id;  // seq 5 and 10
    EXPECT_TRUE(r.result.head_verified) << id;
  }
}

TEST_F(SharedAuditTest, QueryMergesAllChainsAndEveryRecordNamesItsReplica) {
  {
    Replica a = StartReplica("aaaa0001");
    Replica b = StartReplica("bbbb0002");
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(a.log->AppendSync(Conn(i, "client/a")).ok());
      ASSERT_TRUE(b.log->AppendSync(Conn(i, "client/b")).ok());
    }
  }
  auto all = QuerySharedAuditLog(uri_, QueryFilter{});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 8u);
  std::map<std::string, int> per_replica;
  for (size_t i = 0; i < all->size(); ++i) {
    const Record& r = (*all)[i];
    ASSERT_TRUE(r.details.contains("replica"));
    const std::string replica = r.details["replica"];
    EXPECT_EQ(r.actor, replica == "aaaa0001" ? "client/a" : "client/b");
    ++per_replica[replica];
    if (i > 0) {
      EXPECT_LE((*all)[i - 1].time_unix_ms, r.time_unix_ms) << "merged by time";
    }
  }
  EXPECT_EQ(per_replica["aaaa0001"], 4);
  EXPECT_EQ(per_replica["bbbb0002"], 4);

  QueryFilter by_actor;
  by_actor.identity = "client/b";
  auto only_b = QuerySharedAuditLog(uri_, by_actor);
  ASSERT_TRUE(only_b.ok());
  EXPECT_EQ(only_b->size(), 4u);

  auto one_chain = QuerySharedAuditLog(uri_, QueryFilter{}, "aaaa0001");
  ASSERT_TRUE(one_chain.ok());
  ASSERT_EQ(one_chain->size(), 4u);
  for (size_t i = 0; i < one_chain->size(); ++i) {
    EXPECT_EQ((*one_chain)[i].seq, i + 1);
  }
  auto last = LastSharedAuditSeq(uri_, "bbbb0002");
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, 4u);
}

TEST_F(SharedAuditTest, AnEditedRecordIsNamedWithItsReplicaAndTheOthersStayOk) {
  {
    Replica a = StartReplica("aaaa0001");
    Replica b = StartReplica("bbbb0002");
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(a.log->AppendSync(Conn(i, "client/a")).ok());
      ASSERT_TRUE(b.log->AppendSync(Conn(i, "client/b")).ok());
    }
  }
  Sql("UPDATE audit_records SET actor = 'client/mallory' "
      "WHERE replica_id = 'bbbb0002' AND seq = 3");
  auto results = ByReplica(Verify());
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results["aaaa0001"].ok());
  EXPECT_FALSE(results["bbbb0002"].ok());
  EXPECT_EQ(results["bbbb0002"].result.first_bad_seq, 3u);
  EXPECT_TRUE(results["bbbb0002"].key_endorsed) << "the key is fine, the record is not";
}

TEST_F(SharedAuditTest, ARecordMovedToAnotherReplicasChainIsCaught) {
  // The replica id is under the hash: a record copied into another chain (with
  // that chain's seq and link fixed up) does not verify there.
  {
    Replica a = StartReplica("aaaa0001");
    Replica b = StartReplica("bbbb0002");
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(a.log->AppendSync(Conn(i, "client/a")).ok());
      ASSERT_TRUE(b.log->AppendSync(Conn(i, "client/b")).ok());
    }
  }
  Sql("DELETE FROM audit_heads");
  Sql("UPDATE audit_records AS t SET replica_id = 'bbbb0002', seq = 4, "
      "prev_hash = (SELECT hash FROM audit_records WHERE replica_id = 'bbbb0002' AND seq = 3) "
      "WHERE t.replica_id = 'aaaa0001' AND t.seq = 3");
  auto results = ByReplica(Verify("", /*chain_only=*/true));
  EXPECT_FALSE(results["bbbb0002"].result.ok);
  EXPECT_EQ(results["bbbb0002"].result.first_bad_seq, 4u);
}

TEST_F(SharedAuditTest, AKeySwappedInTheStoreIsNotEndorsed) {
  // An intruder with write access to PostgreSQL rewrites a chain and signs it
  // with a key of their own: the chain checks out against that key, but the key
  // is not the one the CA endorsed.
  {
    Replica a = StartReplica("aaaa0001");
    ASSERT_TRUE(a.log->AppendSync(Conn(1, "client/a")).ok());
  }
  common::PKeyPtr intruder = NewKey();
  auto pem = pki::PublicKeyToPem(intruder.get());
  ASSERT_TRUE(pem.ok());
  Sql("UPDATE audit_chains SET public_key_pem = '" + *pem + "'");
  auto results = Verify();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].key_endorsed);
  EXPECT_NE(results[0].key_problem.find("endorsement does not verify"), std::string::npos)
      << results[0].key_problem;
  EXPECT_FALSE(results[0].ok());
}

TEST_F(SharedAuditTest, AnEndorsementFromAnotherDeploymentsCaIsRefused) {
  {
    Replica a = StartReplica("aaaa0001");
    ASSERT_TRUE(a.log->AppendSync(Conn(1, "client/a")).ok());
  }
  auto other = NewCa("other.test");
  auto results = Verify(other->TrustBundlePem());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].key_endorsed);
  EXPECT_NE(results[0].key_problem.find("not signed by the given root CA"), std::string::npos)
      << results[0].key_problem;
  EXPECT_FALSE(results[0].ok());
  // The hash chain alone still checks out.
  auto chain_only = Verify("", /*chain_only=*/true);
  ASSERT_EQ(chain_only.size(), 1u);
  EXPECT_TRUE(chain_only[0].ok());
}

TEST_F(SharedAuditTest, ARegisteredChainKeepsItsKey) {
  common::PKeyPtr key = NewKey();
  Register("aaaa0001", key.get());
  Register("aaaa0001", key.get());  // the same key again: renewed, fine
  common::PKeyPtr other = NewKey();
  const auto& m = ca_->material();
  absl::Status s = RegisterSharedAuditChain(uri_, "aaaa0001", other.get(), m.intermediate_key.get(),
                                            pki::CertToPem(m.intermediate_cert.get()), 1000);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
}

TEST_F(SharedAuditTest, TwoWritersOfOneChainAreRefused) {
  // Two replicas started from copies of one data directory would interleave
  // one chain's seqs; the second is refused while the first holds the chain.
  Replica a = StartReplica("aaaa0001");
  auto second = OpenSharedAuditLog(uri_, "aaaa0001", LogOptions(a.key.get()));
  EXPECT_FALSE(second.ok());
  ASSERT_TRUE(a.log->AppendSync(Conn(1, "client/a")).ok());
  a.log.reset();
  auto reopened = OpenSharedAuditLog(uri_, "aaaa0001", LogOptions(a.key.get()));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_TRUE((*reopened)->AppendSync(Conn(2, "client/a")).ok());
  reopened->reset();
  auto results = Verify();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[0].result.records, 2u);
}

TEST_F(SharedAuditTest, ARecordIsAcknowledgedOnlyOnceDurableInPostgres) {
  Replica a = StartReplica("aaaa0001");
  ASSERT_TRUE(a.log->AppendSync(Conn(0, "client/a")).ok());
  ASSERT_TRUE(postgres_->Stop().ok());

  // A record that gates an action (an allowed dial, an enrollment) is never
  // acknowledged while PostgreSQL is down: its caller hears the error and
  // fails closed.
  std::promise<absl::Status> gate;
  a.log->Append(
      Conn(1, "client/a"), [&](absl::Status s) { gate.set_value(s); },
      AuditLog::Retention::kDropOnFailure);
  auto gate_result = gate.get_future();
  ASSERT_EQ(gate_result.wait_for(seconds(20)), std::future_status::ready);
  EXPECT_FALSE(gate_result.get().ok());

  // A fact (a connection closed) is kept in order and lands once PostgreSQL is
  // back, without a restart of the log.
  a.log->Append(Conn(2, "client/a"));
  ASSERT_TRUE(postgres_->Restart().ok());
  a.log->Flush();
  a.log.reset();

  auto results = Verify();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].ok()) << results[0].result.problem;
  EXPECT_EQ(results[0].result.records, 2u);
  auto records = QuerySharedAuditLog(uri_, QueryFilter{});
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].details["n"], 0);
  EXPECT_EQ((*records)[1].details["n"], 2) << "the gating record was dropped, not written";
}

}  // namespace
}  // namespace drawbridge::audit

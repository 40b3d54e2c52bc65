#include "store/store.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <thread>

#include "testing/postgres_server.h"
#include "testing/temp_dir.h"

namespace drawbridge::store {
namespace {

KeyRecord Key(const std::string& id, const std::string& identity) {
  return KeyRecord{id, identity, "ES256", "PEM", 100, 0};
}

// Every behaviour of the store contract, checked on both implementations: the
// embedded SQLite database and PostgreSQL (a real server started for this
// binary, a fresh database per test).
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    auto pg = testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    postgres_ = std::move(*pg);
  }
  static void TearDownTestSuite() { postgres_.reset(); }

  void SetUp() override {
    if (GetParam() == "sqlite") {
      location_ = dir_.File("state.db");
    } else {
      static std::atomic<int> next{0};
      auto uri = postgres_->CreateDatabase("store_test_" + std::to_string(next++));
      ASSERT_TRUE(uri.ok()) << uri.status();
      location_ = *uri;
    }
    auto store = OpenStore(location_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  static std::unique_ptr<testing::PostgresServer> postgres_;
  testing::TempDir dir_;
  std::string location_;
  std::unique_ptr<Store> store_;
};

std::unique_ptr<testing::PostgresServer> StoreTest::postgres_;

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& param_info) { return param_info.param; });

TEST_P(StoreTest, IdentityLifecycle) {
  Store& s = *store_;
  ASSERT_TRUE(
      s.CreateIdentity({"agent/a", true, {"10.0.0.0/8"}, 100, 100}, Key("k1", "agent/a")).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      s.CreateIdentity({"agent/a", true, {}, 100, 100}, Key("k2", "agent/a"))));
  // The failed create must not leave its key behind (atomic).
  EXPECT_TRUE(absl::IsNotFound(s.GetKey("k2").status()));

  auto got = s.GetIdentity("agent/a");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->enabled);
  EXPECT_EQ(got->cidrs, std::vector<std::string>{"10.0.0.0/8"});

  ASSERT_TRUE(s.SetIdentityEnabled("agent/a", false, 200).ok());
  EXPECT_FALSE(s.GetIdentity("agent/a")->enabled);
  EXPECT_EQ(s.GetIdentity("agent/a")->updated_at, 200);
  EXPECT_TRUE(absl::IsNotFound(s.SetIdentityEnabled("agent/none", false, 1)));
  EXPECT_EQ(s.ListIdentities()->size(), 1u);
}

TEST_P(StoreTest, KeyRotation) {
  Store& s = *store_;
  ASSERT_TRUE(s.CreateIdentity({"client/c", true, {}, 1, 1}, Key("k1", "client/c")).ok());
  ASSERT_TRUE(s.AddKey(Key("k2", "client/c")).ok());
  EXPECT_TRUE(absl::IsNotFound(s.AddKey(Key("k3", "client/none"))));
  EXPECT_EQ(s.ListKeys("client/c")->size(), 2u);
  EXPECT_TRUE(absl::IsNotFound(s.RemoveKey("agent/other", "k1", 5)));
  ASSERT_TRUE(s.RemoveKey("client/c", "k1", 5).ok());
  EXPECT_EQ(s.GetKey("k1")->removed_at, 5);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.RemoveKey("client/c", "k1", 6)));
}

TEST_P(StoreTest, TokenIdsAreSingleUseAcrossReopen) {
  ASSERT_TRUE(store_->ConsumeTokenId("jti-1", 1000, 500).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store_->ConsumeTokenId("jti-1", 1000, 501)));
  store_.reset();
  auto reopened = OpenStore(location_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*reopened)->ConsumeTokenId("jti-1", 1000, 502)));
  // Once past its expiry the id is forgotten (the token fails the time check anyway).
  EXPECT_TRUE((*reopened)->ConsumeTokenId("jti-1", 3000, 2000).ok());
}

TEST_P(StoreTest, Certificates) {
  ASSERT_TRUE(store_->RecordCertificate({"ab", "agent/a", "k1", 1, 2}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(store_->RecordCertificate({"ab", "agent/a", "k1", 1, 2})));
  EXPECT_EQ(store_->GetCertificate("ab")->key_id, "k1");
  EXPECT_TRUE(absl::IsNotFound(store_->GetCertificate("cd").status()));
}

// Two handles on one database (two replicas on PostgreSQL; two opens of one
// file on SQLite) see each other's writes, and a token id used through one is
// refused through the other.
TEST_P(StoreTest, TwoHandlesShareOneState) {
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(store_->CreateIdentity({"agent/a", true, {}, 1, 1}, Key("k1", "agent/a")).ok());
  EXPECT_TRUE((*other)->GetIdentity("agent/a").ok());
  ASSERT_TRUE((*other)->SetIdentityEnabled("agent/a", false, 2).ok());
  EXPECT_FALSE(store_->GetIdentity("agent/a")->enabled);
  ASSERT_TRUE(store_->ConsumeTokenId("jti-x", 1000, 10).ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*other)->ConsumeTokenId("jti-x", 1000, 11)));
  EXPECT_TRUE(absl::IsAlreadyExists(
      (*other)->CreateIdentity({"agent/a", true, {}, 3, 3}, Key("k9", "agent/a"))));
}

// A server learns of identity and key changes through a version (and, on a
// shared store, a notification to the others); token ids and certificates are
// not cached state and move neither.
TEST_P(StoreTest, ChangesMoveTheStateVersion) {
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok()) << other.status();
  const bool shared = GetParam() == "postgres";
  EXPECT_EQ(store_->shared(), shared);
  int64_t v0 = *store_->StateVersion();
  if (shared) {
    (*other)->WaitForChange(std::chrono::milliseconds(10));  // starts listening
  }
  ASSERT_TRUE(store_->CreateIdentity({"agent/a", true, {}, 1, 1}, Key("k1", "agent/a")).ok());
  int64_t v1 = *store_->StateVersion();
  EXPECT_NE(v1, v0);
  if (shared) {
    EXPECT_EQ(*(*other)->StateVersion(), v1);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE((*other)->WaitForChange(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  }
  ASSERT_TRUE(store_->SetIdentityEnabled("agent/a", false, 2).ok());
  int64_t v2 = *store_->StateVersion();
  EXPECT_NE(v2, v1);
  ASSERT_TRUE(store_->AddKey(Key("k2", "agent/a")).ok());
  ASSERT_TRUE(store_->RemoveKey("agent/a", "k1", 3).ok());
  int64_t v3 = *store_->StateVersion();
  EXPECT_NE(v3, v2);
  // A failed change moves nothing; neither do token ids and certificates.
  EXPECT_FALSE(store_->RemoveKey("agent/a", "k1", 4).ok());
  ASSERT_TRUE(store_->ConsumeTokenId("jti", 100, 1).ok());
  ASSERT_TRUE(store_->RecordCertificate({"01", "agent/a", "k2", 1, 2}).ok());
  EXPECT_EQ(*store_->StateVersion(), v3);
  auto keys = store_->ListAllKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].key_id, "k1");
  EXPECT_NE((*keys)[0].removed_at, 0);
}

TEST_P(StoreTest, PolicyIsOneRecordAndMovesTheVersion) {
  EXPECT_TRUE(absl::IsNotFound(store_->GetPolicy().status()));
  int64_t v0 = *store_->StateVersion();
  ASSERT_TRUE(store_->SetPolicy({"rules: []\n", 10}).ok());
  EXPECT_EQ(store_->GetPolicy()->yaml, "rules: []\n");
  const std::string yaml = "rules:\n  - name: 'it''s'\n";
  ASSERT_TRUE(store_->SetPolicy({yaml, 20}).ok());
  auto got = store_->GetPolicy();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->yaml, yaml);
  EXPECT_EQ(got->updated_at, 20);
  EXPECT_NE(*store_->StateVersion(), v0);
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*other)->GetPolicy()->yaml, yaml);
}

TEST_P(StoreTest, ReplicasHeartbeatLeaveAndAgeOut) {
  ASSERT_TRUE(store_->HeartbeatReplica({"r1", "10.0.0.1:8443", 100, 0}).ok());
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->HeartbeatReplica({"r2", "10.0.0.2:8443", 200, 0}).ok());
  auto live = store_->ListReplicas(std::chrono::seconds(3));
  ASSERT_TRUE(live.ok()) << live.status();
  ASSERT_EQ(live->size(), 2u);
  EXPECT_EQ((*live)[0].id, "r1");
  EXPECT_EQ((*live)[1].advertise, "10.0.0.2:8443");
  EXPECT_EQ((*live)[1].started_at, 200);
  EXPECT_LT((*live)[0].heartbeat_age_ms, 3000);
  // A heartbeat refreshes, never duplicates.
  ASSERT_TRUE(store_->HeartbeatReplica({"r1", "10.0.0.1:8443", 100, 0}).ok());
  EXPECT_EQ(store_->ListReplicas(std::chrono::seconds(3))->size(), 2u);
  // A clean leave is at once; a silent one ages out.
  ASSERT_TRUE((*other)->RemoveReplica("r2").ok());
  EXPECT_EQ(store_->ListReplicas(std::chrono::seconds(3))->size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(store_->ListReplicas(std::chrono::milliseconds(200))->empty());
}

TEST_P(StoreTest, SessionKillRequestsAreFirstWinsAndAgeOut) {
  const std::string id(32, 'a');
  EXPECT_TRUE(absl::IsNotFound(store_->GetSessionKill(id).status()));
  ASSERT_TRUE(store_->RequestSessionKill({id, "ended by an administrator", 1000, "", ""}).ok());
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok());
  auto pending = (*other)->PendingSessionKills(990);
  ASSERT_TRUE(pending.ok()) << pending.status();
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].conn_id, id);
  EXPECT_EQ((*pending)[0].reason, "ended by an administrator");
  EXPECT_TRUE(store_->PendingSessionKills(1001)->empty());  // older than asked
  // The replica holding the session completes it; a second completion loses.
  ASSERT_TRUE((*other)->CompleteSessionKill(id, "r2", R"({"client":"client/c"})").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->CompleteSessionKill(id, "r1", "{}")));
  auto done = store_->GetSessionKill(id);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->done_by, "r2");
  EXPECT_EQ(done->session_json, R"({"client":"client/c"})");
  EXPECT_TRUE(store_->PendingSessionKills(0)->empty());
  EXPECT_TRUE(
      absl::IsFailedPrecondition(store_->CompleteSessionKill(std::string(32, 'b'), "r1", "{}")));
  // A new request for the same id is pending again; an hour later the old one is gone.
  ASSERT_TRUE(store_->RequestSessionKill({id, "again", 2000, "", ""}).ok());
  EXPECT_EQ(store_->GetSessionKill(id)->done_by, "");
  ASSERT_TRUE(
      store_->RequestSessionKill({std::string(32, 'c'), "later", 2000 + 3601, "", ""}).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetSessionKill(id).status()));
}

TEST_P(StoreTest, PkiMaterialIsFirstWinsAndAllOrNothing) {
  EXPECT_TRUE(absl::IsNotFound(store_->GetPkiMaterial().status()));
  ASSERT_TRUE(store_->PutPkiMaterial({{"root.crt", "R"}, {"intermediate.key.sealed", "S"}}).ok());
  auto other = OpenStore(location_);
  ASSERT_TRUE(other.ok());
  // A second init racing the first loses as a whole.
  EXPECT_TRUE(absl::IsAlreadyExists((*other)->PutPkiMaterial({{"a.crt", "A"}, {"root.crt", "X"}})));
  auto got = (*other)->GetPkiMaterial();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 2u);
  EXPECT_EQ(got->at("root.crt"), "R");
  EXPECT_EQ(got->at("intermediate.key.sealed"), "S");
}

// Values the store must keep exactly: quotes, separators and non-ASCII text
// travel as parameters, never as SQL.
TEST_P(StoreTest, ValuesAreParametersNotSql) {
  const std::string tricky = "client/o'brien; DROP TABLE identities; --\\ \xc3\xa9";
  ASSERT_TRUE(
      store_->CreateIdentity({tricky, true, {"10.0.0.0/8", "::1/128"}, 1, 1}, Key("k'1", tricky))
          .ok());
  auto got = store_->GetIdentity(tricky);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->identity, tricky);
  EXPECT_EQ(got->cidrs, (std::vector<std::string>{"10.0.0.0/8", "::1/128"}));
  EXPECT_EQ(store_->GetKey("k'1")->identity, tricky);
  EXPECT_EQ(store_->ListIdentities()->size(), 1u);
}

TEST(PostgresStore, UnreachableServerIsAClearUnavailableError) {
  testing::TempDir dir;
  auto store = OpenStore("postgresql://drawbridge:s3cret@/none?host=" + dir.path() + "&port=1");
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsUnavailable(store.status())) << store.status();
  const std::string message(store.status().message());
  EXPECT_NE(message.find("unreachable"), std::string::npos) << message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << "password leaked: " << message;
}

TEST(PostgresStore, RedactsPasswords) {
  EXPECT_EQ(RedactConninfo("postgres://u:pw@db.example/x"), "postgres://u:***@db.example/x");
  EXPECT_EQ(RedactConninfo("postgresql://u@h/x?password=pw&sslmode=require"),
            "postgresql://u@h/x?password=***&sslmode=require");
  EXPECT_EQ(RedactConninfo("host=h password=pw dbname=x"), "host=h password=*** dbname=x");
  EXPECT_EQ(RedactConninfo("postgresql:///x?host=/tmp/s"), "postgresql:///x?host=/tmp/s");
}

TEST(PostgresStore, NewerSchemaIsRefused) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto uri = (*pg)->CreateDatabase("newer");
  ASSERT_TRUE(uri.ok());
  ASSERT_TRUE(OpenStore(*uri).ok());
  {
    PGconn* conn = PQconnectdb(uri->c_str());
    PQclear(PQexec(conn, "INSERT INTO schema_migrations VALUES (999, 0)"));
    PQfinish(conn);
  }
  auto store = OpenStore(*uri);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_NE(std::string(store.status().message()).find("upgrade drawbridge"), std::string::npos);
}

TEST(SqliteStore, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/x/state.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(std::string(store.status().message()).find("cannot open database"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::store

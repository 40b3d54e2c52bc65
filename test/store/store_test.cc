#include "store/store.h"

#include <gtest/gtest.h>

#include "testing/temp_dir.h"

namespace drawbridge::store {
namespace {

KeyRecord Key(const std::string& id, const std::string& identity) {
  return KeyRecord{id, identity, "ES256", "PEM", 100, 0};
}

TEST(SqliteStore, IdentityLifecycle) {
  auto store = OpenSqliteStore(":memory:");
  ASSERT_TRUE(store.ok()) << store.status();
  Store& s = **store;
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

TEST(SqliteStore, KeyRotation) {
  auto store = OpenSqliteStore(":memory:");
  ASSERT_TRUE(store.ok());
  Store& s = **store;
  ASSERT_TRUE(s.CreateIdentity({"client/c", true, {}, 1, 1}, Key("k1", "client/c")).ok());
  ASSERT_TRUE(s.AddKey(Key("k2", "client/c")).ok());
  EXPECT_TRUE(absl::IsNotFound(s.AddKey(Key("k3", "client/none"))));
  EXPECT_EQ(s.ListKeys("client/c")->size(), 2u);
  EXPECT_TRUE(absl::IsNotFound(s.RemoveKey("agent/other", "k1", 5)));
  ASSERT_TRUE(s.RemoveKey("client/c", "k1", 5).ok());
  EXPECT_EQ(s.GetKey("k1")->removed_at, 5);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.RemoveKey("client/c", "k1", 6)));
}

TEST(SqliteStore, TokenIdsAreSingleUseAcrossReopen) {
  testing::TempDir dir;
  std::string path = dir.File("state.db");
  {
    auto store = OpenSqliteStore(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->ConsumeTokenId("jti-1", 1000, 500).ok());
    EXPECT_TRUE(absl::IsAlreadyExists((*store)->ConsumeTokenId("jti-1", 1000, 501)));
  }
  auto reopened = OpenSqliteStore(path);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*reopened)->ConsumeTokenId("jti-1", 1000, 502)));
  // Once past its expiry the id is forgotten (the token fails the time check anyway).
  EXPECT_TRUE((*reopened)->ConsumeTokenId("jti-1", 3000, 2000).ok());
}

TEST(SqliteStore, Certificates) {
  auto store = OpenSqliteStore(":memory:");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->RecordCertificate({"ab", "agent/a", "k1", 1, 2}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists((*store)->RecordCertificate({"ab", "agent/a", "k1", 1, 2})));
  EXPECT_EQ((*store)->GetCertificate("ab")->key_id, "k1");
}

TEST(SqliteStore, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/x/state.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(std::string(store.status().message()).find("cannot open database"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::store

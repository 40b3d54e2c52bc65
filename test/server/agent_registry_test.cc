#include "server/agent_registry.h"

#include <gtest/gtest.h>

namespace drawbridge::server {
namespace {

std::shared_ptr<AgentInstance> Instance(const std::string& identity, const std::string& id,
                                        std::vector<std::string> allow) {
  auto allowlist = policy::Allowlist::Parse(allow);
  EXPECT_TRUE(allowlist.ok()) << allowlist.status();
  return std::make_shared<AgentInstance>(identity, id, "test", "peer", allow, std::move(*allowlist),
                                         0);
}

std::shared_ptr<const policy::Policy> PolicyOf(const std::string& yaml) {
  auto p = policy::Policy::Parse(yaml);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

constexpr char kPolicy[] = R"(rules:
  - name: ci
    clients: ["client/ci"]
    agents: ["agent/acme-*"]
    destinations: ["git.corp:22", "10.0.0.0/8:443"]
)";

class RegistryTest : public ::testing::Test {
 protected:
  policy::Destination Dest(const std::string& text) { return *policy::ParseDestination(text); }
  AgentRegistry registry_;
  std::shared_ptr<const policy::Policy> policy_ = PolicyOf(kPolicy);
};

TEST_F(RegistryTest, NoAgentWhenNoneIsConnected) {
  auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 0);
  EXPECT_EQ(choice.instance, nullptr);
  EXPECT_EQ(choice.code, v1::DIAL_NO_AGENT);
}

TEST_F(RegistryTest, OnlyAgentsThePolicyAllowsAreCandidates) {
  registry_.Add(Instance("agent/other", "o1", {"git.corp:22"}));
  auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 0);
  EXPECT_EQ(choice.instance, nullptr);
  EXPECT_EQ(choice.code, v1::DIAL_NO_AGENT);
  registry_.Add(Instance("agent/acme-1", "a1", {"git.corp:22"}));
  choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 0);
  ASSERT_NE(choice.instance, nullptr);
  EXPECT_EQ(choice.instance->identity(), "agent/acme-1");
}

TEST_F(RegistryTest, AnAllowlistThatExcludesTheDestinationIsAnAgentDenial) {
  registry_.Add(Instance("agent/acme-1", "a1", {"other.corp:22"}));
  auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 0);
  EXPECT_EQ(choice.instance, nullptr);
  EXPECT_EQ(choice.code, v1::DIAL_DENIED_AGENT);
}

TEST_F(RegistryTest, EjectedAndExcludedInstancesAreSkipped) {
  auto a = Instance("agent/acme-1", "a", {"git.corp:22"});
  auto b = Instance("agent/acme-1", "b", {"git.corp:22"});
  registry_.Add(a);
  registry_.Add(b);
  a->ejected_until_ms = 1000;
  for (int i = 0; i < 20; ++i) {
    auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 500);
    ASSERT_NE(choice.instance, nullptr);
    EXPECT_EQ(choice.instance->instance_id(), "b");
  }
  // After the ejection window, `a` is eligible again; the failed one (b) is excluded.
  auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", b.get(), 1500);
  ASSERT_NE(choice.instance, nullptr);
  EXPECT_EQ(choice.instance->instance_id(), "a");
  // Everything ejected or excluded: no agent (not a denial).
  choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", b.get(), 500);
  EXPECT_EQ(choice.code, v1::DIAL_NO_AGENT);
}

TEST_F(RegistryTest, TwoChoicesPreferTheLessLoadedInstance) {
  auto busy = Instance("agent/acme-1", "busy", {"git.corp:22"});
  auto idle = Instance("agent/acme-1", "idle", {"git.corp:22"});
  busy->active_streams = 100;
  registry_.Add(busy);
  registry_.Add(idle);
  int to_idle = 0;
  for (int i = 0; i < 400; ++i) {
    auto choice = registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "", nullptr, 0);
    to_idle += choice.instance == idle ? 1 : 0;
  }
  // The busy one wins only when both random picks land on it: about 1 in 4.
  EXPECT_GT(to_idle, 250);
  EXPECT_LT(to_idle, 360);
}

TEST_F(RegistryTest, SelectorRestrictsToOneIdentity) {
  registry_.Add(Instance("agent/acme-1", "a", {"git.corp:22"}));
  registry_.Add(Instance("agent/acme-2", "b", {"git.corp:22"}));
  for (int i = 0; i < 20; ++i) {
    auto choice =
        registry_.Pick(*policy_, "client/ci", Dest("git.corp:22"), "agent/acme-2", nullptr, 0);
    ASSERT_NE(choice.instance, nullptr);
    EXPECT_EQ(choice.instance->identity(), "agent/acme-2");
  }
}

TEST_F(RegistryTest, RemoveForgetsTheInstance) {
  auto a = Instance("agent/acme-1", "a", {"git.corp:22"});
  registry_.Add(a);
  registry_.Remove(a.get());
  EXPECT_TRUE(registry_.Snapshot().empty());
  EXPECT_FALSE(a->SendOpen(v1::ControlMessage()));  // no control stream attached
}

}  // namespace
}  // namespace drawbridge::server

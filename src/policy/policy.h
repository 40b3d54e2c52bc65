#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "policy/destination.h"
#include "policy/pattern.h"

namespace drawbridge::policy {

// An identity or a family of identities in a rule: "client/frontend" (exact) or
// "client/gitserver-*" (every NAME starting with "gitserver-"; "client/*" is every
// client). `*` may appear only once, at the end of NAME; KIND is fixed by the field the
// pattern sits in (clients: client/..., agents: agent/...).
class IdentityPattern {
 public:
  // `kind` is "client" or "agent".
  static absl::StatusOr<IdentityPattern> Parse(std::string_view text, std::string_view kind);

  // `identity` is KIND/NAME as derived from a verified certificate; anything that is not
  // a well-formed identity of this pattern's kind never matches.
  bool Matches(std::string_view identity) const;
  const std::string& ToString() const { return text_; }

 private:
  IdentityPattern() = default;

  std::string text_;    // canonical text, as written
  std::string prefix_;  // "client/gitserver-" for a glob, the whole identity otherwise
  bool glob_ = false;
};

// One allow rule. Rules never deny: whatever no rule allows is denied.
struct Rule {
  std::string name;                              // unique, [a-z0-9][a-z0-9._-]{0,127}
  std::vector<std::string> clients;              // "client/NAME" or "client/PREFIX*"
  std::vector<std::string> agents;               // "agent/NAME" or "agent/PREFIX*"
  std::vector<DestinationPattern> destinations;  // see pattern.h
};

// The server's ACL (DESIGN §4): an immutable snapshot, shared as
// std::shared_ptr<const Policy> and swapped whole on reload. All methods are const and
// safe to call from any thread.
class Policy {
 public:
  static constexpr size_t kMaxYamlBytes = 1 << 20;
  static constexpr size_t kMaxRules = 10000;
  // Bound on all list entries together (YAML aliases can repeat a list cheaply), so
  // that a policy that parses is also cheap to evaluate.
  static constexpr size_t kMaxEntries = 200000;

  struct Decision {
    bool allowed = false;
    std::string rule;    // the allowing rule's name; empty when denied
    std::string reason;  // one line for logs and audit records
  };

  // Strict YAML: a top-level map with only `rules:`, a list of maps with exactly `name`,
  // `clients`, `agents` and `destinations` (non-empty lists of strings). `rules: []` is a
  // valid policy that denies everything. Every error is InvalidArgument and names the
  // rule (index, name, line) and the field.
  static absl::StatusOr<std::shared_ptr<const Policy>> Parse(std::string_view yaml);
  // The same checks for rules built in code (names, identity patterns, lists).
  static absl::StatusOr<std::shared_ptr<const Policy>> FromRules(std::vector<Rule> rules);
  // No rules: denies everything.
  static std::shared_ptr<const Policy> DenyAll();

  // The first rule (in file order) naming this client, agent and destination allows the
  // connection; otherwise it is denied.
  Decision Check(const std::string& client_identity, const std::string& agent_identity,
                 const Destination& d) const;

  // Whether any rule lets `client` reach `d` through some agent (before routing).
  bool AllowsClient(const std::string& client, const Destination& d) const;
  // Names of the rules that let `client` reach `d`, in file order.
  std::vector<std::string> MatchingRules(const std::string& client, const Destination& d) const;
  // Whether `agent` may carry `client`'s connection to `d` (the router's filter).
  bool AgentAllowed(const std::string& client, const std::string& agent,
                    const Destination& d) const;

  // Multi-line text for `drawbridge admin policy check`: the rule that allows the
  // connection, or why none does and which rules nearly match. `agent` may be empty
  // (any agent).
  std::string Explain(const std::string& client, const std::string& agent,
                      const Destination& d) const;

  // Canonical YAML; Parse(ToYaml()) gives an equivalent policy.
  std::string ToYaml() const;

  const std::vector<Rule>& rules() const { return rules_; }

 private:
  struct CompiledRule {
    std::vector<IdentityPattern> clients;
    std::vector<IdentityPattern> agents;
  };

  Policy() = default;

  // FromRules with error contexts ("rules[2] (\"x\", line 9)"); null means "rules[i]".
  static absl::StatusOr<std::shared_ptr<const Policy>> Build(
      std::vector<Rule> rules, const std::vector<std::string>* contexts);

  bool ClientMatches(size_t i, const std::string& client) const;
  bool AgentMatches(size_t i, const std::string& agent) const;
  bool DestinationMatches(size_t i, const Destination& d) const;

  std::vector<Rule> rules_;
  std::vector<CompiledRule> compiled_;  // parallel to rules_
};

}  // namespace drawbridge::policy

#include "policy/policy.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"
#include "policy/internal/text.h"

namespace drawbridge::policy {
namespace {

using internal::IsLowerAlnum;
using internal::Quote;

constexpr size_t kMaxRuleNameLength = 128;
constexpr size_t kMaxIdentityNameLength = 63;
constexpr size_t kMaxNearMisses = 20;
constexpr size_t kMaxListedEntries = 6;

bool IsNameChar(char c) { return IsLowerAlnum(c) || c == '.' || c == '_' || c == '-'; }

// NAME of an identity, as src/pki/identity.h defines it: [a-z0-9][a-z0-9._-]{0,62}.
bool ValidIdentityName(std::string_view name) {
  if (name.empty() || name.size() > kMaxIdentityNameLength || !IsLowerAlnum(name[0])) {
    return false;
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return false;
    }
  }
  return true;
}

bool ValidIdentity(std::string_view identity, std::string_view kind) {
  return identity.size() > kind.size() && identity.substr(0, kind.size()) == kind &&
         identity[kind.size()] == '/' && ValidIdentityName(identity.substr(kind.size() + 1));
}

absl::Status ValidateRuleName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxRuleNameLength && IsLowerAlnum(name[0]);
  for (char c : name) {
    ok = ok && IsNameChar(c);
  }
  if (!ok) {
    return absl::InvalidArgumentError(common::StrCat("name ", Quote(name),
                                                     " must match [a-z0-9][a-z0-9._-]* (at most ",
                                                     kMaxRuleNameLength, " characters)"));
  }
  return absl::OkStatus();
}

// Identities in messages: verified ones print as they are, anything odd is quoted.
std::string Show(std::string_view identity) {
  bool plain = !identity.empty() && identity.size() <= 100;
  for (char c : identity) {
    plain = plain && (IsNameChar(c) || c == '/' || c == '*');
  }
  return plain ? std::string(identity) : Quote(identity);
}

std::string ListSome(const std::vector<std::string>& items) {
  std::vector<std::string> shown(
      items.begin(),
      items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), kMaxListedEntries)));
  std::string out = common::Join(shown, ", ");
  if (items.size() > kMaxListedEntries) {
    common::StrAppend(&out, ", ... (", items.size(), " in all)");
  }
  return out;
}

std::vector<std::string> PatternStrings(const std::vector<DestinationPattern>& patterns) {
  std::vector<std::string> out;
  out.reserve(patterns.size());
  for (const DestinationPattern& p : patterns) {
    out.push_back(p.ToString());
  }
  return out;
}

std::string DefaultContext(size_t index, std::string_view name) {
  if (name.empty()) {
    return common::StrCat("rules[", index, "]");
  }
  return common::StrCat("rules[", index, "] (", Quote(name), ")");
}

absl::Status InContext(std::string_view context, const absl::Status& status) {
  return absl::InvalidArgumentError(common::StrCat("policy: ", context, ": ", status.message()));
}

// Why a rule that names the client misses the destination, when there is a likely
// reason worth telling an operator.
std::string DestinationMissHint(const Rule& rule, const Destination& d) {
  bool any_cidr = false;
  bool any_name = false;
  for (const DestinationPattern& p : rule.destinations) {
    if (p.MatchesHost(d)) {
      return common::StrCat("; ", p.ToString(), " names the host but not port ", d.port);
    }
    if (p.kind() == DestinationPattern::Kind::kWildcard && !d.is_ip() && d.host == p.host()) {
      return common::StrCat("; ", p.ToString(), " matches names below ", p.host(), ", not ",
                            p.host(), " itself");
    }
    any_cidr = any_cidr || p.is_cidr();
    any_name = any_name || !p.is_cidr();
  }
  if (d.is_ip() && !any_cidr) {
    return "; IP-literal destinations match only CIDR/IP entries";
  }
  if (!d.is_ip() && !any_name) {
    return "; host names are never resolved to match CIDR entries";
  }
  return "";
}

// ---- YAML ------------------------------------------------------------------------

class IgnoreEvents : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The number of YAML documents in `text`, counting no further than 2. Not
// YAML::LoadAll: in yaml-cpp 0.7 it never returns on input such as ",l" (a document
// that consumes no token is reported again and again; jbeder/yaml-cpp#1319).
size_t CountDocuments(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  IgnoreEvents ignore;
  size_t n = 0;
  while (n < 2 && parser.HandleNextDocument(ignore)) {
    ++n;
  }
  return n;
}

std::string LineOf(const YAML::Node& node) {
  YAML::Mark mark = node.Mark();
  if (mark.line < 0) {
    return "";
  }
  return common::StrCat("line ", mark.line + 1);
}

std::string YamlContext(size_t index, const std::string& name, const YAML::Node& node) {
  std::string where = LineOf(node);
  if (name.empty() && where.empty()) {
    return common::StrCat("rules[", index, "]");
  }
  if (name.empty()) {
    return common::StrCat("rules[", index, "] (", where, ")");
  }
  if (where.empty()) {
    return common::StrCat("rules[", index, "] (", Quote(name), ")");
  }
  return common::StrCat("rules[", index, "] (", Quote(name), ", ", where, ")");
}

absl::StatusOr<std::vector<std::string>> ParseStringList(const YAML::Node& node,
                                                         std::string_view field,
                                                         std::string_view example, size_t* budget) {
  if (!node.IsSequence()) {
    return absl::InvalidArgumentError(common::StrCat(
        "field \"", field, "\" must be a list of strings, e.g. [\"", example, "\"]"));
  }
  if (node.size() == 0) {
    return absl::InvalidArgumentError(common::StrCat(
        "field \"", field, "\" must not be empty (a rule that names nothing allows nothing)"));
  }
  std::vector<std::string> out;
  size_t i = 0;
  for (const YAML::Node& item : node) {
    if (*budget == 0) {
      return absl::InvalidArgumentError(
          common::StrCat("the policy has more than ", Policy::kMaxEntries, " list entries in all"));
    }
    --*budget;
    if (!item.IsScalar()) {
      return absl::InvalidArgumentError(
          common::StrCat(field, "[", i, "] must be a string, e.g. \"", example, "\""));
    }
    out.push_back(item.Scalar());
    ++i;
  }
  return out;
}

struct ParsedRule {
  Rule rule;
  std::string context;
};

absl::StatusOr<ParsedRule> ParseRule(const YAML::Node& node, size_t index, size_t* budget) {
  // The name (when there is a usable one) goes into every message about this rule.
  std::string name_for_context;
  if (node.IsMap()) {
    for (const auto& kv : node) {
      if (kv.first.IsScalar() && kv.first.Scalar() == "name" && kv.second.IsScalar()) {
        name_for_context = kv.second.Scalar();
        break;
      }
    }
  }
  ParsedRule out;
  out.context = YamlContext(index, name_for_context, node);
  if (!node.IsMap()) {
    return InContext(out.context,
                     absl::InvalidArgumentError(
                         "each rule must be a map with name, clients, agents and destinations"));
  }
  std::optional<YAML::Node> name, clients, agents, destinations;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return InContext(out.context, absl::InvalidArgumentError("field names must be strings"));
    }
    const std::string& key = kv.first.Scalar();
    std::optional<YAML::Node>* slot = nullptr;
    if (key == "name") {
      slot = &name;
    } else if (key == "clients") {
      slot = &clients;
    } else if (key == "agents") {
      slot = &agents;
    } else if (key == "destinations") {
      slot = &destinations;
    } else {
      return InContext(out.context, absl::InvalidArgumentError(common::StrCat(
                                        "unknown field ", Quote(key),
                                        "; a rule has name, clients, agents, destinations")));
    }
    if (slot->has_value()) {
      return InContext(out.context, absl::InvalidArgumentError(
                                        common::StrCat("field \"", key, "\" appears twice")));
    }
    *slot = kv.second;
  }
  const std::pair<const char*, const std::optional<YAML::Node>*> required[] = {
      {"name", &name}, {"clients", &clients}, {"agents", &agents}, {"destinations", &destinations}};
  for (const auto& [field, value] : required) {
    if (!value->has_value()) {
      return InContext(out.context,
                       absl::InvalidArgumentError(common::StrCat("missing field \"", field, "\"")));
    }
  }
  if (!name->IsScalar()) {
    return InContext(out.context, absl::InvalidArgumentError(
                                      "field \"name\" must be a string, e.g. \"frontend-to-git\""));
  }
  out.rule.name = name->Scalar();

  absl::StatusOr<std::vector<std::string>> list =
      ParseStringList(*clients, "clients", "client/frontend", budget);
  if (!list.ok()) {
    return InContext(out.context, list.status());
  }
  out.rule.clients = *std::move(list);
  list = ParseStringList(*agents, "agents", "agent/acme-*", budget);
  if (!list.ok()) {
    return InContext(out.context, list.status());
  }
  out.rule.agents = *std::move(list);
  list = ParseStringList(*destinations, "destinations", "gitlab.corp.example:443", budget);
  if (!list.ok()) {
    return InContext(out.context, list.status());
  }
  for (size_t i = 0; i < list->size(); ++i) {
    absl::StatusOr<DestinationPattern> p = DestinationPattern::Parse((*list)[i]);
    if (!p.ok()) {
      return InContext(out.context, absl::InvalidArgumentError(common::StrCat(
                                        "destinations[", i, "]: ", p.status().message())));
    }
    out.rule.destinations.push_back(*std::move(p));
  }
  return out;
}

}  // namespace

// ---- IdentityPattern ---------------------------------------------------------------

absl::StatusOr<IdentityPattern> IdentityPattern::Parse(std::string_view text,
                                                       std::string_view kind) {
  auto error = [&](std::string_view why) {
    return absl::InvalidArgumentError(common::StrCat("identity pattern ", Quote(text), ": ", why));
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return error(
        common::StrCat("expected ", kind, "/NAME or ", kind, "/PREFIX*, e.g. ", kind, "/frontend"));
  }
  std::string_view k = text.substr(0, slash);
  std::string_view name = text.substr(slash + 1);
  if (k != kind) {
    return error(common::StrCat("this list takes ", kind, "/... identities"));
  }
  IdentityPattern p;
  p.text_ = std::string(text);
  if (!name.empty() && name.back() == '*') {
    std::string_view prefix = name.substr(0, name.size() - 1);
    bool ok =
        prefix.size() <= kMaxIdentityNameLength && (prefix.empty() || IsLowerAlnum(prefix[0]));
    for (char c : prefix) {
      ok = ok && IsNameChar(c);
    }
    if (!ok) {
      return error(
          "'*' may appear only once, at the end of NAME, after a prefix of [a-z0-9][a-z0-9._-]*");
    }
    p.glob_ = true;
    p.prefix_ = std::string(text.substr(0, text.size() - 1));
    return p;
  }
  if (!ValidIdentityName(name)) {
    return error("NAME must match [a-z0-9][a-z0-9._-]{0,62}, optionally ending in '*'");
  }
  p.prefix_ = p.text_;
  return p;
}

bool IdentityPattern::Matches(std::string_view identity) const {
  if (!glob_) {
    return identity == prefix_;
  }
  size_t slash = prefix_.find('/');
  return identity.size() >= prefix_.size() && identity.substr(0, prefix_.size()) == prefix_ &&
         ValidIdentity(identity, std::string_view(prefix_).substr(0, slash));
}

// ---- Policy ------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Parse(std::string_view yaml) {
  if (yaml.size() > kMaxYamlBytes) {
    return absl::InvalidArgumentError(common::StrCat(
        "policy: ", yaml.size(), " bytes is more than the limit of ", kMaxYamlBytes, " (1 MiB)"));
  }
  std::vector<Rule> rules;
  std::vector<std::string> contexts;
  try {
    const std::string text(yaml);
    const YAML::Node root = YAML::Load(text);  // the first document
    if (root.IsNull()) {
      return absl::InvalidArgumentError(
          "policy: the document is empty; write \"rules: []\" to deny everything");
    }
    if (CountDocuments(text) > 1) {
      return absl::InvalidArgumentError(
          "policy: found more than one YAML document (\"---\"); a policy is one document");
    }
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          "policy: the top level must be a map with a \"rules\" list, e.g. \"rules: []\"");
    }
    std::optional<YAML::Node> rules_node;
    std::string rules_line;  // where the key is: a null value's own mark points past it
    for (const auto& kv : root) {
      if (!kv.first.IsScalar() || kv.first.Scalar() != "rules") {
        return absl::InvalidArgumentError(common::StrCat(
            "policy: unknown top-level key ",
            kv.first.IsScalar() ? Quote(kv.first.Scalar()) : std::string("(not a string)"),
            "; a policy has only \"rules\""));
      }
      if (rules_node.has_value()) {
        return absl::InvalidArgumentError("policy: \"rules\" appears twice");
      }
      rules_node = kv.second;
      rules_line = LineOf(kv.first);
    }
    if (!rules_node.has_value()) {
      return absl::InvalidArgumentError(
          "policy: missing \"rules\"; write \"rules: []\" to deny everything");
    }
    if (!rules_node->IsSequence()) {
      const std::string& where = rules_line;
      return absl::InvalidArgumentError(common::StrCat(
          "policy: \"rules\"", where.empty() ? "" : " (", where, where.empty() ? "" : ")",
          " must be a list of rules; write \"rules: []\" to deny everything"));
    }
    if (rules_node->size() > kMaxRules) {
      return absl::InvalidArgumentError(common::StrCat(
          "policy: ", rules_node->size(), " rules is more than the limit of ", kMaxRules));
    }
    size_t budget = kMaxEntries;
    size_t index = 0;
    for (const YAML::Node& node : *rules_node) {
      ASSIGN_OR_RETURN(ParsedRule parsed, ParseRule(node, index, &budget));
      rules.push_back(std::move(parsed.rule));
      contexts.push_back(std::move(parsed.context));
      ++index;
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(common::StrCat("policy: not valid YAML: ", e.what()));
  } catch (const std::exception& e) {
    // yaml-cpp may also throw standard exceptions (e.g. bad_alloc) on hostile input;
    // a bad policy must never take the server down.
    return absl::InvalidArgumentError(common::StrCat("policy: could not be read: ", e.what()));
  }
  return Build(std::move(rules), &contexts);
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::FromRules(std::vector<Rule> rules) {
  return Build(std::move(rules), nullptr);
}

std::shared_ptr<const Policy> Policy::DenyAll() {
  return std::shared_ptr<const Policy>(new Policy());
}

absl::StatusOr<std::shared_ptr<const Policy>> Policy::Build(
    std::vector<Rule> rules, const std::vector<std::string>* contexts) {
  if (rules.size() > kMaxRules) {
    return absl::InvalidArgumentError(
        common::StrCat("policy: ", rules.size(), " rules is more than the limit of ", kMaxRules));
  }
  std::shared_ptr<Policy> policy(new Policy());
  std::map<std::string, size_t, std::less<>> names;
  size_t entries = 0;
  for (size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    std::string context = contexts != nullptr ? (*contexts)[i] : DefaultContext(i, rule.name);
    if (absl::Status s = ValidateRuleName(rule.name); !s.ok()) {
      return InContext(context, s);
    }
    auto [it, inserted] = names.emplace(rule.name, i);
    if (!inserted) {
      return InContext(context, absl::InvalidArgumentError(common::StrCat(
                                    "name ", Quote(rule.name), " is already used by rules[",
                                    it->second, "]; rule names must be unique")));
    }
    struct Field {
      const char* name;
      const char* kind;
      const std::vector<std::string>* items;
      std::vector<IdentityPattern>* out;
    };
    CompiledRule compiled;
    for (const Field& f : {Field{"clients", "client", &rule.clients, &compiled.clients},
                           Field{"agents", "agent", &rule.agents, &compiled.agents}}) {
      if (f.items->empty()) {
        return InContext(context, absl::InvalidArgumentError(common::StrCat(
                                      "field \"", f.name,
                                      "\" must not be empty (a rule that names nothing "
                                      "allows nothing)")));
      }
      for (size_t j = 0; j < f.items->size(); ++j) {
        absl::StatusOr<IdentityPattern> p = IdentityPattern::Parse((*f.items)[j], f.kind);
        if (!p.ok()) {
          return InContext(context, absl::InvalidArgumentError(common::StrCat(
                                        f.name, "[", j, "]: ", p.status().message())));
        }
        f.out->push_back(*std::move(p));
      }
    }
    if (rule.destinations.empty()) {
      return InContext(context,
                       absl::InvalidArgumentError("field \"destinations\" must not be empty (a "
                                                  "rule that names nothing allows nothing)"));
    }
    entries += rule.clients.size() + rule.agents.size() + rule.destinations.size();
    if (entries > kMaxEntries) {
      return absl::InvalidArgumentError(
          common::StrCat("policy: more than ", kMaxEntries, " list entries in all"));
    }
    policy->compiled_.push_back(std::move(compiled));
  }
  policy->rules_ = std::move(rules);
  return std::shared_ptr<const Policy>(std::move(policy));
}

bool Policy::ClientMatches(size_t i, const std::string& client) const {
  for (const IdentityPattern& p : compiled_[i].clients) {
    if (p.Matches(client)) {
      return true;
    }
  }
  return false;
}

bool Policy::AgentMatches(size_t i, const std::string& agent) const {
  for (const IdentityPattern& p : compiled_[i].agents) {
    if (p.Matches(agent)) {
      return true;
    }
  }
  return false;
}

bool Policy::DestinationMatches(size_t i, const Destination& d) const {
  for (const DestinationPattern& p : rules_[i].destinations) {
    if (p.Matches(d)) {
      return true;
    }
  }
  return false;
}

Policy::Decision Policy::Check(const std::string& client_identity,
                               const std::string& agent_identity, const Destination& d) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (ClientMatches(i, client_identity) && AgentMatches(i, agent_identity) &&
        DestinationMatches(i, d)) {
      return Decision{
          true, rules_[i].name,
          common::StrCat("rule ", Quote(rules_[i].name), " allows ", Show(client_identity),
                         " to reach ", d.ToString(), " via ", Show(agent_identity))};
    }
  }
  return Decision{false, "",
                  common::StrCat("no rule allows ", Show(client_identity), " to reach ",
                                 d.ToString(), " via ", Show(agent_identity))};
}

bool Policy::AllowsClient(const std::string& client, const Destination& d) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (ClientMatches(i, client) && DestinationMatches(i, d)) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> Policy::MatchingRules(const std::string& client,
                                               const Destination& d) const {
  std::vector<std::string> out;
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (ClientMatches(i, client) && DestinationMatches(i, d)) {
      out.push_back(rules_[i].name);
    }
  }
  return out;
}

bool Policy::AgentAllowed(const std::string& client, const std::string& agent,
                          const Destination& d) const {
  return Check(client, agent, d).allowed;
}

std::string Policy::Explain(const std::string& client, const std::string& agent,
                            const Destination& d) const {
  const bool any_agent = agent.empty();
  std::string out;
  if (!ValidIdentity(client, "client")) {
    common::StrAppend(&out, "note: ", Show(client),
                      " is not a client identity (expected client/NAME), so no rule can "
                      "match it\n");
  }
  if (!any_agent && !ValidIdentity(agent, "agent")) {
    common::StrAppend(&out, "note: ", Show(agent),
                      " is not an agent identity (expected agent/NAME), so no rule can match "
                      "it\n");
  }

  if (any_agent) {
    std::vector<size_t> matching;
    for (size_t i = 0; i < rules_.size(); ++i) {
      if (ClientMatches(i, client) && DestinationMatches(i, d)) {
        matching.push_back(i);
      }
    }
    if (!matching.empty()) {
      common::StrAppend(&out, "allowed: ", Show(client), " may reach ", d.ToString(),
                        " through an agent named by:\n");
      for (size_t i : matching) {
        common::StrAppend(&out, "  rule ", Quote(rules_[i].name),
                          " (agents: ", ListSome(rules_[i].agents), ")\n");
      }
      return out;
    }
    common::StrAppend(&out, "denied: no rule allows ", Show(client), " to reach ", d.ToString(),
                      "\n");
  } else {
    Decision decision = Check(client, agent, d);
    if (decision.allowed) {
      common::StrAppend(&out, "allowed: ", decision.reason, "\n");
      return out;
    }
    common::StrAppend(&out, "denied: ", decision.reason, "\n");
  }

  // Near misses: rules that match all but one of client, agent and destination.
  std::vector<std::string> misses;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& rule = rules_[i];
    bool c = ClientMatches(i, client);
    bool a = any_agent || AgentMatches(i, agent);
    bool dm = DestinationMatches(i, d);
    std::string line;
    if (c && a && !dm) {
      line = common::StrCat("rule ", Quote(rule.name), " matches the client",
                            any_agent ? "" : " and agent", " but not destination ", d.ToString(),
                            " (destinations: ", ListSome(PatternStrings(rule.destinations)), ")",
                            DestinationMissHint(rule, d));
    } else if (c && !a && dm) {
      line = common::StrCat("rule ", Quote(rule.name),
                            " matches the client and destination but not agent ", Show(agent),
                            " (agents: ", ListSome(rule.agents), ")");
    } else if (!c && a && dm) {
      line = common::StrCat("rule ", Quote(rule.name), " matches the destination",
                            any_agent ? "" : " and agent", " but not client ", Show(client),
                            " (clients: ", ListSome(rule.clients), ")");
    } else {
      continue;
    }
    misses.push_back(std::move(line));
  }
  if (misses.empty()) {
    common::StrAppend(&out, "no rule comes close: none matches all but one of client",
                      any_agent ? "" : ", agent", " and destination\n");
    return out;
  }
  out += "near misses:\n";
  for (size_t i = 0; i < misses.size() && i < kMaxNearMisses; ++i) {
    common::StrAppend(&out, "  ", misses[i], "\n");
  }
  if (misses.size() > kMaxNearMisses) {
    common::StrAppend(&out, "  ... and ", misses.size() - kMaxNearMisses, " more\n");
  }
  return out;
}

std::string Policy::ToYaml() const {
  if (rules_.empty()) {
    return "rules: []\n";
  }
  // Every string is quoted: names such as "null" or "yes" must stay strings. None of
  // the validated strings can contain '"' or '\'.
  auto list = [](const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) {
      common::StrAppend(&out, i == 0 ? "" : ", ", "\"", items[i], "\"");
    }
    out += "]";
    return out;
  };
  std::string out = "rules:\n";
  for (const Rule& rule : rules_) {
    common::StrAppend(&out, "  - name: \"", rule.name, "\"\n", "    clients: ", list(rule.clients),
                      "\n", "    agents: ", list(rule.agents), "\n",
                      "    destinations: ", list(PatternStrings(rule.destinations)), "\n");
  }
  return out;
}

}  // namespace drawbridge::policy

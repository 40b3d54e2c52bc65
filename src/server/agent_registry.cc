#include "server/agent_registry.h"

#include <algorithm>

#include "common/random.h"
#include "common/strings.h"

namespace drawbridge::server {

void AgentInstance::Attach(ControlSender* sender) {
  absl::MutexLock lock(&mu_);
  sender_ = sender;
}

void AgentInstance::Detach() {
  absl::MutexLock lock(&mu_);
  sender_ = nullptr;
}

bool AgentInstance::SendOpen(const v1::ControlMessage& message) {
  absl::MutexLock lock(&mu_);
  return sender_ != nullptr && sender_->Send(message);
}

bool AgentInstance::CancelIfKey(const std::string& key_id) {
  absl::MutexLock lock(&mu_);
  if (sender_ == nullptr || (!key_id.empty() && key_id != key_id_)) {
    return false;
  }
  // Holding mu_ keeps the reactor alive: it detaches (under mu_) before finishing.
  sender_->Cancel();
  return true;
}

void AgentRegistry::Add(std::shared_ptr<AgentInstance> instance) {
  absl::MutexLock lock(&mu_);
  instances_.push_back(std::move(instance));
}

void AgentRegistry::Remove(const AgentInstance* instance) {
  absl::MutexLock lock(&mu_);
  instances_.erase(std::remove_if(instances_.begin(), instances_.end(),
                                  [instance](const auto& p) { return p.get() == instance; }),
                   instances_.end());
}

std::vector<std::shared_ptr<AgentInstance>> AgentRegistry::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return instances_;
}

AgentRegistry::Choice AgentRegistry::Pick(const policy::Policy& policy, const std::string& client,
                                          const policy::Destination& d, const std::string& selector,
                                          const AgentInstance* exclude, int64_t now_ms) const {
  std::vector<std::shared_ptr<AgentInstance>> eligible;
  bool any_allowed_identity = false;
  bool any_healthy = false;
  for (const auto& inst : Snapshot()) {
    if (!selector.empty() && inst->identity() != selector) {
      continue;
    }
    if (!policy.AgentAllowed(client, inst->identity(), d)) {
      continue;
    }
    any_allowed_identity = true;
    if (inst.get() == exclude || inst->ejected_until_ms.load(std::memory_order_relaxed) > now_ms) {
      continue;
    }
    any_healthy = true;
    if (!inst->Advertises(d)) {
      continue;
    }
    eligible.push_back(inst);
  }
  Choice choice;
  if (eligible.empty()) {
    if (any_healthy) {
      // Agents are there, but their own allowlists exclude it: the customer said no.
      choice.code = v1::DIAL_DENIED_AGENT;
      choice.reason = common::StrCat("no agent's allowlist includes ", d.ToString());
    } else {
      choice.code = v1::DIAL_NO_AGENT;
      choice.reason = any_allowed_identity
                          ? common::StrCat("no healthy agent instance may serve ", d.ToString())
                          : common::StrCat("no connected agent may serve ", d.ToString());
    }
    return choice;
  }
  // Power of two choices: cheap, and avoids herding onto one "least loaded" agent.
  const auto& a = eligible[common::RandomUniform(eligible.size())];
  const auto& b = eligible[common::RandomUniform(eligible.size())];
  choice.instance = a->active_streams.load() <= b->active_streams.load() ? a : b;
  return choice;
}

}  // namespace drawbridge::server

#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "policy/allowlist.h"
#include "policy/destination.h"
#include "policy/policy.h"

namespace drawbridge::server {

// Sends ControlMessages to one agent instance; implemented by the Control reactor.
class ControlSender {
 public:
  virtual ~ControlSender() = default;
  // Queues a message; false if the stream is closing. Call only from a gRPC
  // reaction (or an Alarm callback).
  virtual bool Send(const v1::ControlMessage& message) = 0;
  // Cancels the stream (revocation). Same calling rule as Send.
  virtual void Cancel() = 0;
};

// One connected agent process (an identity may run several for availability).
class AgentInstance {
 public:
  AgentInstance(std::string identity, std::string instance_id, std::string version,
                std::string peer, std::vector<std::string> advertised, policy::Allowlist allowlist,
                int64_t connected_since)
      : identity_(std::move(identity)),
        instance_id_(std::move(instance_id)),
        version_(std::move(version)),
        peer_(std::move(peer)),
        advertised_(std::move(advertised)),
        allowlist_(std::move(allowlist)),
        connected_since_(connected_since) {}

  const std::string& identity() const { return identity_; }
  const std::string& instance_id() const { return instance_id_; }
  const std::string& version() const { return version_; }
  const std::string& peer() const { return peer_; }
  const std::vector<std::string>& advertised() const { return advertised_; }
  int64_t connected_since() const { return connected_since_; }
  // The agent enforces its own allowlist; the server uses the advertised copy
  // only to avoid asking an agent that would refuse.
  bool Advertises(const policy::Destination& d) const { return allowlist_.AllowsName(d); }

  std::atomic<int> active_streams{0};
  std::atomic<int64_t> ejected_until_ms{0};  // common::SteadyNowMs() time

  void Attach(ControlSender* sender);
  void Detach();
  bool SendOpen(const v1::ControlMessage& message);  // any ControlMessage, really
  // Ends the Control stream if it was opened with a certificate of `key_id` (or
  // any key when empty). Call only from a gRPC callback. Returns whether it did.
  bool CancelIfKey(const std::string& key_id);
  void set_key_id(std::string key_id) { key_id_ = std::move(key_id); }  // before Add()
  const std::string& key_id() const { return key_id_; }

 private:
  const std::string identity_;
  const std::string instance_id_;
  const std::string version_;
  const std::string peer_;
  const std::vector<std::string> advertised_;
  const policy::Allowlist allowlist_;
  const int64_t connected_since_;
  std::string key_id_;  // of the certificate the Control stream was opened with
  absl::Mutex mu_;
  ControlSender* sender_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// Connected agent instances and the choice among them (DESIGN §3).
class AgentRegistry {
 public:
  void Add(std::shared_ptr<AgentInstance> instance);
  void Remove(const AgentInstance* instance);
  std::vector<std::shared_ptr<AgentInstance>> Snapshot() const;

  struct Choice {
    std::shared_ptr<AgentInstance> instance;
    v1::DialCode code = v1::DIAL_OK;  // DIAL_NO_AGENT or DIAL_DENIED_POLICY when none
    std::string reason;
  };
  // Among healthy instances whose identity the policy lets carry this client's
  // connection and whose advertised allowlist covers `d` (and, if set, whose
  // identity is `selector`): the one with fewer active streams of two random
  // picks. `exclude` is skipped (the instance that just failed).
  Choice Pick(const policy::Policy& policy, const std::string& client, const policy::Destination& d,
              const std::string& selector, const AgentInstance* exclude,
              int64_t now_ms /* common::SteadyNowMs() */) const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<AgentInstance>> instances_ ABSL_GUARDED_BY(mu_);
};

// The current policy, swapped atomically on reload.
class PolicyHolder {
 public:
  explicit PolicyHolder(std::shared_ptr<const policy::Policy> p) : policy_(std::move(p)) {}
  std::shared_ptr<const policy::Policy> Get() const {
    absl::MutexLock lock(&mu_);
    return policy_;
  }
  void Set(std::shared_ptr<const policy::Policy> p) {
    absl::MutexLock lock(&mu_);
    policy_ = std::move(p);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const policy::Policy> policy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::server

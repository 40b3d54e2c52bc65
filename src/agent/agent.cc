#include "agent/agent.h"

#include <deque>

#include "absl/strings/match.h"
#include "common/backoff.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "tunnel/dial_code.h"

namespace drawbridge::agent {
namespace {

using tunnel::kInstanceHeader;
constexpr auto kHeartbeatEvery = std::chrono::seconds(15);

v1::DialCode CodeForError(const asio::error_code& ec) {
  if (ec == asio::error::connection_refused) {
    return v1::DIAL_REFUSED;
  }
  if (ec == asio::error::timed_out || ec == asio::error::operation_aborted) {
    return v1::DIAL_TIMEOUT;
  }
  return v1::DIAL_UNREACHABLE;
}

}  // namespace

// One server the agent holds a Control stream to.
struct Agent::Link {
  // A replica's own address; for the seed, empty (the credential's address).
  std::string address;
  std::string name;                         // for logs: the address dialled
  std::unique_ptr<lane::LaneDialer> lanes;  // null without lanes
  std::thread thread;
  // Guarded by Agent::mu_.
  bool connected = false;
  std::shared_ptr<ControlStream> control;
  // Seed only: the own address of the replica its live stream reached (from
  // the ReplicaSet's `self`); empty until told, and once the stream ends.
  std::string replica_address;

  bool seed() const { return address.empty(); }
};

// The agent's end of Tunnel.Control. Writes come from our own threads, so they
// are queued with one in flight and issued outside the lock; a hold keeps the
// call open until both reading and writing have stopped.
class Agent::ControlStream final
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControlMessage> {
 public:
  ControlStream(Agent* agent, Link* link, std::shared_ptr<grpc::Channel> channel)
      : agent_(agent), link_(link), stub_(v1::Tunnel::NewStub(channel)) {}

  void Start() {
    context_.AddMetadata(kInstanceHeader, agent_->instance_id());
    stub_->async()->Control(&context_, this);
    AddHold();
    v1::AgentMessage hello;
    hello.mutable_hello()->set_instance_id(agent_->instance_id());
    hello.mutable_hello()->set_version("drawbridge-agent/0.1");
    for (const auto& a : agent_->options_.allow) {
      hello.mutable_hello()->add_allowlist(a);
    }
    Send(hello);
    StartRead(&in_);
    StartCall();
  }

  void Send(const v1::AgentMessage& message) {
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) {
        return;
      }
      queue_.push_back(message);
      if (!writing_) {
        writing_ = true;
        next = &queue_.front();
      }
    }
    if (next != nullptr) {
      StartWrite(next);
    }
  }

  void Cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    const v1::AgentMessage* next = nullptr;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      if (ok && !closed_ && !queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
        if (!ok) {
          closed_ = true;
        }
      }
    }
    if (next != nullptr) {
      StartWrite(next);
    } else {
      MaybeRelease();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        closed_ = true;
      }
      MaybeRelease();
      return;
    }
    if (in_.has_heartbeat()) {
      agent_->SetConnected(link_, true);  // the server acknowledges our hello
      if (link_->lanes) {
        link_->lanes->SetPort(in_.heartbeat().lane_port());
      }
    } else if (in_.has_replicas()) {
      agent_->OnReplicaSet(link_, in_.replicas());
    } else if (in_.has_open()) {
      agent_->HandleOpen(link_, in_.open());
    } else if (in_.has_ended()) {
      // The server ended this tunnel with an error: reset the destination's
      // socket now, even if the bridge is waiting for it to read.
      agent_->bridges_.AbortByConnId(in_.ended().conn_id(),
                                     "ended by the server: " + in_.ended().reason().substr(0, 200));
    } else if (in_.has_goaway()) {
      common::LogInfo("agent.goaway", {{"reason", in_.goaway().reason().substr(0, 200)}});
      context_.TryCancel();  // ends this stream; the control loop reconnects
      {
        absl::MutexLock lock(&mu_);
        closed_ = true;
      }
      MaybeRelease();
      return;
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = status;
  }

  // Blocks until OnDone, or until `deadline`. Returns true when done.
  bool WaitDone(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  void MaybeRelease() {
    {
      absl::MutexLock lock(&mu_);
      if (!closed_ || writing_ || released_) {
        return;
      }
      released_ = true;
    }
    RemoveHold();
  }

  Agent* agent_;
  Link* link_;
  std::unique_ptr<v1::Tunnel::Stub> stub_;
  grpc::ClientContext context_;
  v1::ControlMessage in_;
  absl::Mutex mu_;
  std::deque<v1::AgentMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(AgentOptions options) {
  RETURN_IF_ERROR(common::EnforceTls13Only());
  if (options.credential.identity.kind != pki::IdentityKind::kAgent) {
    return absl::InvalidArgumentError(common::StrCat("the agent needs an agent/* credential, not ",
                                                     options.credential.identity.ToString()));
  }
  ASSIGN_OR_RETURN(policy::Allowlist allowlist, policy::Allowlist::Parse(options.allow));
  if (options.instance_id.empty()) {
    options.instance_id = common::RandomHex(8);
  }
  std::unique_ptr<Agent> agent(new Agent(std::move(options), std::move(allowlist)));
  if (!agent->options_.data_dir.empty()) {
    ASSIGN_OR_RETURN(agent->audit_,
                     LocalAudit::Open(agent->options_.data_dir, agent->options_.credential));
    // The allowlist in force is part of the record: it bounds what was reachable.
    absl::Status started = agent->audit_->log()->AppendSync(
        audit::MakeRecord(audit::EventClass::kApiActivity, "agent_start", audit::kOutcomeSuccess,
                          agent->options_.credential.identity.ToString(), "",
                          {{"agent", agent->options_.credential.identity.ToString()},
                           {"agent_instance", agent->options_.instance_id},
                           {"server", agent->options_.credential.server_address},
                           {"key_id", agent->options_.credential.key_id},
                           {"allowlist", agent->options_.allow}}));
    RETURN_IF_ERROR(started);
  }
  ASSIGN_OR_RETURN(agent->certs_,
                   enroll::CertManager::Create({.credential = agent->options_.credential,
                                                .on_renewed =
                                                    [a = agent.get()] {
                                                      absl::MutexLock lock(&a->mu_);
                                                      ++a->renewals_;
                                                    },
                                                .proxy = agent->options_.proxy}));
  agent->certs_->StartAutoRenew();
  agent->work_.emplace(agent->io_.get_executor());
  for (int i = 0; i < agent->options_.io_threads; ++i) {
    agent->io_threads_.emplace_back([a = agent.get()] { a->io_.run(); });
  }
  {
    absl::MutexLock lock(&agent->mu_);
    agent->AddLinkLocked("");
  }
  if (!agent->options_.metrics_listen.empty()) {
    Agent* a = agent.get();
    a->metrics_registry_.AddGaugeFunction("drawbridge_agent_control_connected",
                                          "1 while a Control stream to a server is up", {}, [a] {
                                            absl::MutexLock lock(&a->mu_);
                                            return a->connected_ > 0 ? 1.0 : 0.0;
                                          });
    a->metrics_registry_.AddGaugeFunction(
        "drawbridge_agent_control_streams",
        "Control streams up: one per server replica once the replica set is known", {},
        [a] { return static_cast<double>(a->connected_streams()); });
    a->metrics_registry_.AddGaugeFunction(
        "drawbridge_certificate_expiry_seconds", "Seconds until a certificate expires",
        {{"certificate", "agent_tls"}},
        [a] { return static_cast<double>(a->certs_->Current().not_after - std::time(nullptr)); });
    metrics::Endpoint::Options eo;
    eo.listen = a->options_.metrics_listen;
    eo.registry = &a->metrics_registry_;
    eo.ready = {{"control", [a] {
                   absl::MutexLock lock(&a->mu_);
                   return a->connected_ > 0
                              ? absl::OkStatus()
                              : absl::UnavailableError("no Control stream to the server");
                 }}};
    ASSIGN_OR_RETURN(a->endpoint_, metrics::Endpoint::Start(std::move(eo)));
  }
  common::LogInfo("agent.started", {{"identity", agent->options_.credential.identity.ToString()},
                                    {"instance", agent->options_.instance_id},
                                    {"server", agent->options_.credential.server_address},
                                    {"allowlist", common::Join(agent->options_.allow, ",")}});
  return agent;
}

Agent::Agent(AgentOptions options, policy::Allowlist allowlist)
    : options_(std::move(options)), allowlist_(std::move(allowlist)) {}

Agent::~Agent() { Stop(); }

void Agent::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;  // no link is added from here on
  }
  // Each link's loop sees stopping_ within 250 ms and cancels its stream.
  std::vector<std::thread*> threads;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [address, link] : links_) {
      threads.push_back(&link->thread);
    }
  }
  for (std::thread* t : threads) {
    if (t->joinable()) {
      t->join();
    }
  }
  bridges_.CancelAllAndWait(std::chrono::seconds(10));
  std::vector<lane::LaneDialer*> dialers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [address, link] : links_) {
      if (link->lanes) {
        dialers.push_back(link->lanes.get());
      }
    }
  }
  for (lane::LaneDialer* dialer : dialers) {
    dialer->Shutdown(std::chrono::seconds(2));  // while io_ still runs
  }
  if (audit_) {
    audit_->log()->Flush();
  }
  work_.reset();
  io_.stop();
  for (auto& t : io_threads_) {
    t.join();
  }
}

Agent::Link* Agent::AddLinkLocked(const std::string& address) {
  auto link = std::make_unique<Link>();
  link->address = address;
  link->name = address.empty() ? options_.credential.server_address : address;
  if (options_.use_lanes) {
    link->lanes =
        std::make_unique<lane::LaneDialer>(io_, certs_.get(), options_.instance_id, address);
  }
  Link* raw = link.get();
  links_[address] = std::move(link);
  raw->thread = std::thread([this, raw] { ControlLoop(raw); });
  return raw;
}

bool Agent::WantedLocked(const Link& link) const {
  if (!link.seed()) {
    return replica_addresses_.contains(link.address);
  }
  auto direct_up = [&](const std::string& address) {
    auto it = links_.find(address);
    return !address.empty() && it != links_.end() && it->second->connected &&
           replica_addresses_.contains(address);
  };
  if (!link.connected) {
    // Needed only while no replica is reached at its own address.
    for (const auto& [address, other] : links_) {
      if (direct_up(address)) {
        return false;
      }
    }
    return true;
  }
  // Up: it stands in for the replica it reached until that replica's own link
  // is up (so that replica never lacks this agent meanwhile).
  return link.replica_address.empty() || !direct_up(link.replica_address);
}

int Agent::connected_streams() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

bool Agent::lanes_ready() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [address, link] : links_) {
    if (link->lanes != nullptr && link->lanes->ready() > 0) {
      return true;
    }
  }
  return false;
}

void Agent::SetConnected(Link* link, bool connected) {
  // The seed link follows the credential's addresses (failover): name the one in use.
  const std::string server = link->seed() ? certs_->CurrentAddress() : link->name;
  absl::MutexLock lock(&mu_);
  if (connected == link->connected) {
    return;
  }
  if (connected) {
    common::LogInfo("agent.control_connected",
                    {{"server", server}, {"instance", options_.instance_id}});
  }
  link->connected = connected;
  connected_ += connected ? 1 : -1;
}

bool Agent::WaitConnected(std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto up = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return connected_ > 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&up), absl::Milliseconds(timeout.count()));
}

void Agent::OnReplicaSet(Link* from, const v1::ReplicaSet& set) {
  std::set<std::string> addresses;
  std::string from_address;  // the sender's own address
  for (const auto& replica : set.replicas()) {
    const std::string& address = replica.address();
    if (replica.id() == set.self() && !set.self().empty()) {
      from_address = address;
    }
    // A replica without an address of its own (advertising the shared one, or
    // a port not yet known) is reached through the seed link.
    if (address.empty() || address == options_.credential.server_address ||
        absl::EndsWith(address, ":0") || address.size() > 300) {
      continue;
    }
    addresses.insert(address);
  }
  absl::MutexLock lock(&mu_);
  if (from->seed() && addresses.contains(from_address)) {
    from->replica_address = from_address;
  }
  if (stopping_ || addresses == replica_addresses_) {
    return;
  }
  common::LogInfo(
      "agent.replica_set",
      {{"replicas",
        common::Join(std::vector<std::string>(addresses.begin(), addresses.end()), ",")}});
  replica_addresses_ = std::move(addresses);
  for (const std::string& address : replica_addresses_) {
    if (!links_.contains(address)) {
      AddLinkLocked(address);
    }
  }
}

void Agent::ControlLoop(Link* link) {
  common::JitteredBackoff backoff(std::chrono::milliseconds(500), options_.max_backoff);
  auto stop_or_wanted = [this, link]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || WantedLocked(*link);
  };
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&stop_or_wanted));
      if (stopping_) {
        return;
      }
    }
    auto channel = link->seed() ? certs_->ChannelForNewAttempt() : certs_->ChannelTo(link->address);
    auto stream = std::make_shared<ControlStream>(this, link, std::move(channel));
    uint64_t renewals_seen = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      renewals_seen = renewals_;
      link->control = stream;
    }
    stream->Start();
    bool was_connected = false;
    bool unwanted = false;
    auto last_heartbeat = std::chrono::steady_clock::now();
    // Heartbeats while the stream lives; Stop (or the link no longer wanted) cancels it.
    while (!stream->WaitDone(absl::Now() + absl::Milliseconds(250))) {
      {
        absl::MutexLock lock(&mu_);
        was_connected = was_connected || link->connected;
        unwanted = !WantedLocked(*link);
        if (stopping_ || unwanted) {
          break;
        }
      }
      if (std::chrono::steady_clock::now() - last_heartbeat > kHeartbeatEvery) {
        last_heartbeat = std::chrono::steady_clock::now();
        v1::AgentMessage hb;
        hb.mutable_heartbeat()->set_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
        stream->Send(hb);
      }
    }
    stream->Cancel();
    stream->WaitDone(absl::InfiniteFuture());
    {
      absl::MutexLock lock(&mu_);
      link->control = nullptr;
      link->replica_address.clear();  // a new stream may reach another replica
      was_connected = was_connected || link->connected;
    }
    SetConnected(link, false);
    if (link->lanes) {
      link->lanes->SetPort(0);  // a restarted server may listen elsewhere: wait for its word
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
    }
    if (unwanted) {
      // Not an outage: the replica left the set, or (the seed) a replica's own
      // link took over. Tunnels already open go on over their own streams.
      common::LogInfo("agent.control_closed",
                      {{"server", link->name},
                       {"reason", link->seed() ? "replicas reached at their own addresses"
                                               : "no longer in the replica set"}});
      backoff.Reset();
      continue;
    }
    if (was_connected) {
      backoff.Reset();
    }
    const std::chrono::milliseconds sleep = backoff.Next();
    common::LogWarn("agent.control_lost",
                    {{"server", link->name},
                     {"error", stream->status().error_message()},
                     {"retry_in_ms", common::StrCat(static_cast<int64_t>(sleep.count()))}});
    stream.reset();
    auto stop_renewed_or_unwanted = [this, link,
                                     renewals_seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || renewals_ != renewals_seen || !WantedLocked(*link);
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_renewed_or_unwanted),
                         absl::Milliseconds(sleep.count()));
    if (stopping_) {
      return;
    }
  }
}

void Agent::Audit(audit::Record record, std::function<void(absl::Status)> done) {
  if (!audit_) {
    if (done) {
      done(absl::OkStatus());
    }
    return;
  }
  audit_->log()->Append(std::move(record), std::move(done));
}

void Agent::AuditRefusal(const v1::OpenRequest& request, std::string_view activity,
                         v1::DialCode code, const std::string& reason) {
  Audit(audit::MakeRecord(audit::EventClass::kNetworkActivity, std::string(activity),
                          audit::kOutcomeFailure, request.client().substr(0, 128), "",
                          {{"client", request.client().substr(0, 128)},
                           {"destination", request.destination().substr(0, 300)},
                           {"conn_id", common::HexEncode(request.conn_id())},
                           {"reason_code", tunnel::DialCodeName(code)},
                           {"reason", reason}}));
}

void Agent::ReportFailure(Link* link, const std::string& conn_id, v1::DialCode code,
                          const std::string& message) {
  metrics_.Dial(code)->Inc();
  v1::AgentMessage msg;
  msg.mutable_open_failed()->set_conn_id(conn_id);
  msg.mutable_open_failed()->set_code(code);
  msg.mutable_open_failed()->set_message(message);
  std::shared_ptr<ControlStream> control;
  {
    absl::MutexLock lock(&mu_);
    control = link->control;
  }
  if (control != nullptr) {
    control->Send(msg);
  }
}

void Agent::HandleOpen(Link* link, const v1::OpenRequest& request) {
  auto req = std::make_shared<v1::OpenRequest>(request);
  asio::post(io_, [this, link, req] {
    auto refuse = [&](v1::DialCode code, const std::string& why) {
      common::LogWarn("agent.refused", {{"client", req->client()},
                                        {"destination", req->destination().substr(0, 300)},
                                        {"reason", why}});
      AuditRefusal(*req, "deny", code, why);
      ReportFailure(link, req->conn_id(), code, why);
    };
    auto destination = policy::ParseDestination(req->destination());
    if (!destination.ok()) {
      refuse(v1::DIAL_BAD_REQUEST, std::string(destination.status().message()));
      return;
    }
    if (!allowlist_.AllowsName(*destination)) {
      refuse(v1::DIAL_DENIED_AGENT,
             common::StrCat(destination->ToString(), " is not in this agent's allowlist"));
      return;
    }
    if (destination->is_ip()) {
      if (auto s = allowlist_.CheckResolved(*destination, *destination->ip); !s.ok()) {
        refuse(v1::DIAL_DENIED_AGENT, std::string(s.message()));
        return;
      }
      asio::ip::tcp::endpoint ep(asio::ip::make_address(destination->ip->ToString()),
                                 destination->port);
      Connect(link, req, *destination, {ep});
      return;
    }
    // Resolve once; every address must pass, and only checked addresses are dialled.
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
    resolver->async_resolve(
        destination->host, std::to_string(destination->port),
        [this, link, req, resolver, dest = *destination](
            const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
          if (ec || results.empty()) {
            common::LogWarn("agent.dial_failed", {{"destination", dest.ToString()},
                                                  {"reason", "name does not resolve"}});
            AuditRefusal(*req, "open_failed", v1::DIAL_UNREACHABLE, "name does not resolve");
            ReportFailure(link, req->conn_id(), v1::DIAL_UNREACHABLE,
                          common::StrCat(dest.host, " does not resolve"));
            return;
          }
          std::vector<asio::ip::tcp::endpoint> endpoints;
          for (const auto& entry : results) {
            auto ip = common::ParseIp(entry.endpoint().address().to_string());
            absl::Status s = ip ? allowlist_.CheckResolved(dest, *ip)
                                : absl::PermissionDeniedError("unparseable resolved address");
            if (!s.ok()) {
              common::LogWarn("agent.refused", {{"client", req->client()},
                                                {"destination", dest.ToString()},
                                                {"reason", std::string(s.message())}});
              AuditRefusal(*req, "deny", v1::DIAL_DENIED_AGENT, std::string(s.message()));
              ReportFailure(link, req->conn_id(), v1::DIAL_DENIED_AGENT, std::string(s.message()));
              return;
            }
            endpoints.push_back(entry.endpoint());
          }
          Connect(link, req, dest, std::move(endpoints));
        });
  });
}

void Agent::Connect(Link* link, std::shared_ptr<v1::OpenRequest> request,
                    policy::Destination destination,
                    std::vector<asio::ip::tcp::endpoint> endpoints) {
  auto socket = std::make_shared<asio::ip::tcp::socket>(asio::make_strand(io_));
  auto timer = std::make_shared<asio::steady_timer>(socket->get_executor());
  auto timed_out = std::make_shared<bool>(false);
  timer->expires_after(options_.dial_timeout);
  timer->async_wait([socket, timed_out](const asio::error_code& ec) {
    if (!ec) {
      *timed_out = true;
      asio::error_code ignored;
      socket->close(ignored);
    }
  });
  asio::async_connect(
      *socket, endpoints,
      [this, link, request, destination, socket, timer, timed_out](
          const asio::error_code& ec, const asio::ip::tcp::endpoint& ep) {
        timer->cancel();
        if (ec) {
          v1::DialCode code = *timed_out ? v1::DIAL_TIMEOUT : CodeForError(ec);
          std::string why = *timed_out ? "connect timed out" : ec.message();
          common::LogWarn("agent.dial_failed",
                          {{"destination", destination.ToString()}, {"reason", why}});
          AuditRefusal(*request, "open_failed", code, why);
          ReportFailure(link, request->conn_id(), code,
                        common::StrCat("connect to ", destination.ToString(), ": ", why));
          return;
        }
        // The connection is on the agent's own record before any byte flows: the
        // Accept stream opens at once, gated until the record is durable, so that
        // this fsync overlaps the stream's setup and the server's own record.
        std::string address = ep.address().to_string();
        std::shared_ptr<tunnel::SocketBridge> bridge =
            StartAccept(link, request->conn_id(), std::move(*socket), destination.ToString(),
                        address, request->client().substr(0, 128));
        if (bridge == nullptr) {
          return;  // shutting down: Stop() cancels the bridges, start no new one
        }
        Audit(audit::MakeRecord(audit::EventClass::kNetworkActivity, "open", audit::kOutcomeSuccess,
                                request->client().substr(0, 128), "",
                                {{"client", request->client().substr(0, 128)},
                                 {"destination", destination.ToString()},
                                 {"resolved_address", address},
                                 {"conn_id", common::HexEncode(request->conn_id())}}),
              [this, link, request, bridge](absl::Status s) {
                if (s.ok()) {
                  metrics_.Dial(v1::DIAL_OK)->Inc();
                  bridge->OpenGate(s);
                  return;
                }
                common::LogError("agent.audit_failed", {{"error", std::string(s.message())}});
                // Before the server attached the stream this gives the client the
                // reason; after, the cancelled stream ends the connection.
                ReportFailure(link, request->conn_id(), v1::DIAL_INTERNAL,
                              "the agent's audit log is unavailable");
                bridge->OpenGate(absl::UnavailableError("the agent's audit log is unavailable"));
              });
      });
}

std::shared_ptr<tunnel::SocketBridge> Agent::StartAccept(Link* link, const std::string& conn_id,
                                                         asio::ip::tcp::socket socket,
                                                         const std::string& destination,
                                                         const std::string& address,
                                                         const std::string& client) {
  common::LogInfo("agent.connected_destination",
                  {{"destination", destination}, {"address", address}});
  tunnel::SocketBridge::Options opts;
  opts.open.mutable_open()->set_conn_id(conn_id);
  opts.open.mutable_open()->set_resolved_address(address);
  opts.conn_id = conn_id;
  opts.gated = true;
  const auto started = std::chrono::steady_clock::now();
  metrics_.active->Add(1);
  opts.on_done = [this, destination, conn_id, started, client](const tunnel::BridgeStats& stats) {
    common::LogInfo("agent.connection_closed",
                    {{"destination", destination},
                     {"bytes_to_destination", common::StrCat(stats.bytes_to_socket)},
                     {"bytes_from_destination", common::StrCat(stats.bytes_from_socket)},
                     {"error", stats.error}});
    metrics_.active->Add(-1);
    metrics_.bytes_up->Inc(stats.bytes_to_socket);
    metrics_.bytes_down->Inc(stats.bytes_from_socket);
    Audit(audit::MakeRecord(
        audit::EventClass::kNetworkActivity, "close", audit::kOutcomeSuccess, client, "",
        {{"client", client},
         {"destination", destination},
         {"conn_id", common::HexEncode(conn_id)},
         {"bytes_up", stats.bytes_to_socket},      // client -> destination
         {"bytes_down", stats.bytes_from_socket},  // destination -> client
         {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - started)
                             .count()},
         {"close_reason", stats.error.empty() ? std::string("closed") : stats.error}}));
  };
  opts.set = &bridges_;
  std::shared_ptr<tunnel::SocketBridge> bridge;
  if (auto lane = link->lanes ? link->lanes->NewCall("Accept") : nullptr) {
    opts.cancel_call = [lane] { lane->Cancel(); };
    bridge = tunnel::SocketBridge::Start(
        std::move(socket), std::move(opts),
        [lane](grpc::ClientContext*, grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
          lane->Bind(reactor);
        });
    if (bridge == nullptr) {
      metrics_.active->Add(-1);  // never started, so on_done will not run
    }
    return bridge;
  }
  // To the server that asked: a replica's own address, or the seed's.
  auto channel = link->seed() ? certs_->Channel() : certs_->ChannelTo(link->address);
  auto stub = std::shared_ptr<v1::Tunnel::Stub>(v1::Tunnel::NewStub(channel));
  std::string instance = options_.instance_id;
  bridge = tunnel::SocketBridge::Start(
      std::move(socket), std::move(opts),
      [stub, instance](grpc::ClientContext* ctx,
                       grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        ctx->AddMetadata(kInstanceHeader, instance);
        stub->async()->Accept(ctx, reactor);
      });
  if (bridge == nullptr) {
    metrics_.active->Add(-1);  // never started, so on_done will not run
  }
  return bridge;
}

}  // namespace drawbridge::agent

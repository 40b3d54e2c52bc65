#include "server/tunnel_service.h"

#include <grpcpp/alarm.h>

#include <chrono>
#include <deque>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/random.h"
#include "common/strings.h"
#include "server/audit_events.h"
#include "tunnel/dial_code.h"

namespace drawbridge::server {
namespace {

v1::WatchEvent ClientGoaway() {
  v1::WatchEvent goaway;
  goaway.mutable_goaway()->set_reason("server draining: connect again for new dials");
  return goaway;
}

constexpr size_t kMaxFrameBytes = 64 * 1024;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string InstanceIdOf(grpc::CallbackServerContext* context) {
  auto it = context->client_metadata().find(tunnel::kInstanceHeader);
  if (it == context->client_metadata().end() || it->second.size() > 64) {
    return "";
  }
  return std::string(it->second.data(), it->second.size());
}

// A caller of another kind than the RPC is for is refused.
absl::StatusOr<Caller> RequireKind(absl::StatusOr<Caller> caller, pki::IdentityKind kind) {
  if (caller.ok() && caller->identity.kind != kind) {
    return absl::PermissionDeniedError(common::StrCat("this RPC is for ", pki::KindName(kind),
                                                      "/* identities, not ",
                                                      caller->identity.ToString()));
  }
  return caller;
}

// Authenticates the caller and requires its kind.
absl::StatusOr<Caller> Authenticate(const ServiceContext& ctx, grpc::CallbackServerContext* context,
                                    pki::IdentityKind kind) {
  return RequireKind(
      AuthenticateCaller(*context->auth_context(), ctx.trust_domain, *ctx.directory, *ctx.clock),
      kind);
}

}  // namespace

// ---------------------------------------------------------------------------
// A tunneled connection: the client's Dial stream and, once routed, the agent's
// Accept stream. Every method runs inside a gRPC reaction (or Alarm callback), so
// calling Start*/Finish under mu_ is safe: their reactions are deferred until the
// current one returns.

class StreamEnd;

class TunnelSession : public std::enable_shared_from_this<TunnelSession> {
 public:
  enum Side { kClient = 0, kAgent = 1 };

  TunnelSession(TunnelService* service, Caller client, std::string client_instance,
                std::string peer)
      : service_(service),
        live_(service->live()),
        client_(std::move(client)),
        client_instance_(std::move(client_instance)),
        peer_(std::move(peer)) {}

  void Begin(StreamEnd* client_end);
  void AttachAgent(StreamEnd* agent_end, const Caller& agent, const std::string& instance_id,
                   const std::string& resolved_address);
  void AgentFailed(const AgentInstance* instance, v1::DialCode code, const std::string& message);
  // The Control stream of `instance` ended while this session waited for its
  // Accept stream: route elsewhere now instead of waiting for the dial timeout.
  void AgentGone(const AgentInstance* instance);
  void OnRead(Side side, bool ok);
  void OnWrite(Side side, bool ok);
  void OnCancel(Side side);
  void OnEndDone(Side side);
  ~TunnelSession() {
    absl::MutexLock lock(&live_->mu);
    live_->map.erase(this);
  }
  // Aborts the session if either end belongs to `identity` (and `key_id`, if set).
  bool RevokeIf(const std::string& identity, const std::string& key_id);
  // What the session is, once spliced; nullopt before and after.
  std::optional<SessionInfo> Info();
  // Aborts the session (with `reason`) if it is live and `end(info)` says so;
  // `info` receives what it was.
  bool EndIf(const std::function<bool(const SessionInfo&)>& end, const std::string& reason,
             SessionInfo* info = nullptr);

 private:
  enum class State { kReadingOpen, kRouting, kResult, kSpliced, kDone };

  void Route(const AgentInstance* exclude) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnTimeout(int attempt);
  // The routed instance failed before its Accept stream came: eject it for a
  // while and try one other instance, or answer `code` after a second failure.
  void RouteAgain(v1::DialCode code, const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmIdleTimer(std::chrono::steady_clock::duration after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnIdleCheck();
  // Answers the Dial once the decision is on record. A refusal may skip the
  // record (`record` false: a rate-limited flood is recorded once a second).
  void WriteResult(v1::DialCode code, const std::string& message, bool record = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The result's audit record is durable (or failed): now tell the client.
  void OnResultAudited(absl::Status status);
  // The agent connected but the "open" could not be recorded: refuse the dial.
  void RefuseUnrecorded(const absl::Status& audit_error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fields every Network Activity record of this connection carries.
  nlohmann::json AuditDetails() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Abort(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishEnd(Side side, const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartReadOn(Side side) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartWriteOn(Side side) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forward(Side side) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LogClosed(const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  TunnelService* const service_;
  const std::shared_ptr<TunnelService::LiveSessions> live_;
  const Caller client_;
  const std::string client_instance_;  // for TunnelEnded on its Watch stream
  const std::string peer_;
  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kReadingOpen;
  StreamEnd* end_[2] ABSL_GUARDED_BY(mu_) = {nullptr, nullptr};
  bool finished_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  v1::Frame read_[2];   // frame read from side i
  v1::Frame write_[2];  // frame being written to side i
  bool fin_in_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  bool fin_out_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  // Relay with one frame of lookahead per direction: while a frame is written
  // to side i (writing_[i]), the next one is read from the other side; if it
  // arrives first it waits in read_ (pending_[other]) and no read starts.
  bool writing_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  bool pending_[2] ABSL_GUARDED_BY(mu_) = {false, false};
  uint64_t bytes_[2] ABSL_GUARDED_BY(mu_) = {0, 0};  // bytes read from side i
  policy::Destination destination_ ABSL_GUARDED_BY(mu_);
  std::string selector_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<AgentInstance> instance_ ABSL_GUARDED_BY(mu_);
  bool counted_ ABSL_GUARDED_BY(mu_) = false;
  std::string agent_key_id_ ABSL_GUARDED_BY(mu_);
  std::string resolved_address_ ABSL_GUARDED_BY(mu_);
  std::string conn_id_ ABSL_GUARDED_BY(mu_);
  int attempt_ ABSL_GUARDED_BY(mu_) = 0;
  v1::DialCode result_ ABSL_GUARDED_BY(mu_) = v1::DIAL_OK;
  uint64_t rate_limited_refusals_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  const int64_t started_unix_ms_ = NowMs();
  std::chrono::steady_clock::time_point last_activity_ ABSL_GUARDED_BY(mu_);
};

class StreamEnd final : public grpc::ServerBidiReactor<v1::Frame, v1::Frame> {
 public:
  // A client's Dial stream, bound to its session from the start.
  StreamEnd(std::shared_ptr<TunnelSession> session, TunnelSession::Side side)
      : service_(nullptr), side_(side), session_(std::move(session)) {}

  // An agent's Accept stream: reads its open frame, then joins the pending session.
  StreamEnd(TunnelService* service, grpc::CallbackServerContext* context)
      : service_(service), side_(TunnelSession::kAgent), instance_id_(InstanceIdOf(context)) {
    auto caller = Authenticate(service->ctx(), context, pki::IdentityKind::kAgent);
    if (!caller.ok()) {
      AuditAppend(service->ctx().audit.get(),
                  AuthFailureRecord("Tunnel/Accept", context->peer(), caller.status()));
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    caller_ = *caller;
    StartRead(&open_);
  }

  // An agent's Accept stream arriving on a lane: already authenticated.
  StreamEnd(TunnelService* service, const Caller& caller, std::string instance_id)
      : service_(service),
        side_(TunnelSession::kAgent),
        instance_id_(std::move(instance_id)),
        caller_(caller) {
    StartRead(&open_);
  }

  void Bind(std::shared_ptr<TunnelSession> session) {
    absl::MutexLock lock(&mu_);
    session_ = std::move(session);
  }

  void OnReadDone(bool ok) override {
    auto session = Session();
    if (session) {
      session->OnRead(side_, ok);
      return;
    }
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "no open frame"));
      return;
    }
    auto pending = service_->TakePending(open_.open().conn_id());
    if (!pending) {
      Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown or expired conn_id"));
      return;
    }
    pending->AttachAgent(this, caller_, instance_id_,
                         open_.open().resolved_address().substr(0, 64));
  }
  void OnWriteDone(bool ok) override {
    if (auto session = Session()) {
      session->OnWrite(side_, ok);
    }
  }
  void OnCancel() override {
    if (auto session = Session()) {
      session->OnCancel(side_);
    }
  }
  void OnDone() override {
    if (auto session = Session()) {
      session->OnEndDone(side_);
    }
    delete this;
  }

 private:
  std::shared_ptr<TunnelSession> Session() {
    absl::MutexLock lock(&mu_);
    return session_;
  }

  TunnelService* service_;
  const TunnelSession::Side side_;
  std::string instance_id_;
  Caller caller_;
  v1::Frame open_;
  absl::Mutex mu_;
  std::shared_ptr<TunnelSession> session_ ABSL_GUARDED_BY(mu_);
};

bool TunnelSession::RevokeIf(const std::string& identity, const std::string& key_id) {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kDone) {
    return false;
  }
  bool client_match =
      client_.identity.ToString() == identity && (key_id.empty() || client_.key_id == key_id);
  bool agent_match = instance_ && end_[kAgent] != nullptr && instance_->identity() == identity &&
                     (key_id.empty() || agent_key_id_ == key_id);
  if (!client_match && !agent_match) {
    return false;
  }
  Abort(common::StrCat("credential revoked: ", identity));
  return true;
}

std::optional<SessionInfo> TunnelSession::Info() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kSpliced) {
    return std::nullopt;
  }
  return SessionInfo{common::HexEncode(conn_id_),
                     client_.identity.ToString(),
                     peer_,
                     instance_ ? instance_->identity() : "",
                     instance_ ? instance_->instance_id() : "",
                     destination_.ToString(),
                     resolved_address_,
                     bytes_[kClient],
                     bytes_[kAgent],
                     started_unix_ms_};
}

bool TunnelSession::EndIf(const std::function<bool(const SessionInfo&)>& end,
                          const std::string& reason, SessionInfo* info) {
  std::optional<SessionInfo> now = Info();
  if (!now || !end(*now)) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  if (state_ != State::kSpliced) {
    return false;  // ended meanwhile
  }
  if (info != nullptr) {
    *info = *now;
  }
  Abort(reason);
  return true;
}

void TunnelSession::Begin(StreamEnd* client_end) {
  {
    absl::MutexLock lock(&live_->mu);
    live_->map[this] = weak_from_this();
  }
  absl::MutexLock lock(&mu_);
  end_[kClient] = client_end;
  StartReadOn(kClient);
}

void TunnelSession::StartReadOn(Side side) {
  if (end_[side] != nullptr && !finished_[side]) {
    end_[side]->StartRead(&read_[side]);
  }
}

void TunnelSession::StartWriteOn(Side side) {
  if (end_[side] != nullptr && !finished_[side]) {
    end_[side]->StartWrite(&write_[side]);
  }
}

void TunnelSession::FinishEnd(Side side, const grpc::Status& status) {
  if (end_[side] != nullptr && !finished_[side]) {
    finished_[side] = true;
    end_[side]->Finish(status);
  }
}

void TunnelSession::LogClosed(const std::string& reason) {
  // Called exactly once, when a spliced session ends (either way).
  if (ServerMetrics* m = service_->ctx().metrics) {
    m->tunnels_active->Add(-1);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  common::LogInfo("dial.closed", {{"client", client_.identity.ToString()},
                                  {"destination", destination_.ToString()},
                                  {"agent", instance_ ? instance_->identity() : ""},
                                  {"instance", instance_ ? instance_->instance_id() : ""},
                                  {"bytes_up", common::StrCat(bytes_[kClient])},
                                  {"bytes_down", common::StrCat(bytes_[kAgent])},
                                  {"seconds", common::StrCat(seconds)},
                                  {"reason", reason}});
  nlohmann::json details = AuditDetails();
  details["bytes_up"] = bytes_[kClient];
  details["bytes_down"] = bytes_[kAgent];
  details["duration_ms"] = static_cast<int64_t>(seconds * 1000);
  details["close_reason"] = reason;
  AuditAppend(
      service_->ctx().audit.get(),
      audit::MakeRecord(audit::EventClass::kNetworkActivity, "close", audit::kOutcomeSuccess,
                        client_.identity.ToString(), PeerIp(peer_), std::move(details)));
}

nlohmann::json TunnelSession::AuditDetails() const {
  nlohmann::json d = {{"client", client_.identity.ToString()},
                      {"destination", destination_.ToString()},
                      {"conn_id", common::HexEncode(conn_id_)}};
  if (instance_) {
    d["agent"] = instance_->identity();
    d["agent_instance"] = instance_->instance_id();
  }
  if (!resolved_address_.empty()) {
    d["resolved_address"] = resolved_address_;
  }
  return d;
}

void TunnelSession::Abort(const std::string& reason) {
  if (state_ == State::kDone) {
    return;
  }
  bool was_spliced = state_ == State::kSpliced;
  state_ = State::kDone;
  if (!conn_id_.empty()) {
    service_->TakePending(conn_id_);
  }
  alarm_.reset();
  if (was_spliced) {
    LogClosed(reason);
    // Either end may be waiting on its socket rather than reading its stream
    // (a slow reader): name the tunnel on the client's Watch and the agent's
    // Control stream too, so both reset their sockets at once.
    service_->watchers()->NotifyEnded(client_.identity.ToString(), client_instance_, conn_id_,
                                      reason);
    if (instance_) {
      v1::ControlMessage ended;
      ended.mutable_ended()->set_conn_id(conn_id_);
      ended.mutable_ended()->set_reason(reason);
      instance_->SendOpen(ended);
    }
  }
  grpc::Status status(grpc::StatusCode::UNAVAILABLE, reason);
  FinishEnd(kClient, status);
  FinishEnd(kAgent, status);
}

void TunnelSession::WriteResult(v1::DialCode code, const std::string& message, bool record) {
  state_ = State::kResult;
  result_ = code;
  alarm_.reset();
  write_[kClient].Clear();
  write_[kClient].mutable_result()->set_code(code);
  write_[kClient].mutable_result()->set_message(message);
  if (instance_) {
    write_[kClient].mutable_result()->set_agent_instance(instance_->instance_id());
  }
  if (code == v1::DIAL_OK) {
    write_[kClient].mutable_result()->set_conn_id(conn_id_);
  }
  if (ServerMetrics* m = service_->ctx().metrics; m != nullptr && code != v1::DIAL_OK) {
    m->Dial(code)->Inc();  // an OK is counted once it is on record (OnResultAudited)
  }
  if (!record) {
    StartWriteOn(kClient);  // refused, and not to be recorded: say so at once
    return;
  }
  if (code != v1::DIAL_OK) {
    (code == v1::DIAL_DENIED_POLICY || code == v1::DIAL_DENIED_AGENT ||
             code == v1::DIAL_RATE_LIMITED
         ? common::LogWarn
         : common::LogInfo)("dial.refused", {{"client", client_.identity.ToString()},
                                             {"peer", peer_},
                                             {"destination", destination_.ToString()},
                                             {"agent", instance_ ? instance_->identity() : ""},
                                             {"result", tunnel::DialCodeName(code)},
                                             {"reason", message}});
  }
  // Denied by policy or the agent's allowlist, or malformed: "deny". The agent
  // could not connect or none was available: "open_failed". Allowed: "open".
  const bool denied = code == v1::DIAL_DENIED_POLICY || code == v1::DIAL_DENIED_AGENT ||
                      code == v1::DIAL_BAD_REQUEST || code == v1::DIAL_RATE_LIMITED;
  nlohmann::json details = AuditDetails();
  if (code != v1::DIAL_OK) {
    details["reason_code"] = tunnel::DialCodeName(code);
    details["reason"] = message;
  }
  if (code == v1::DIAL_RATE_LIMITED) {
    details["refused"] = rate_limited_refusals_;  // sums to every refusal (docs/audit.md)
  }
  audit::Record entry =
      audit::MakeRecord(audit::EventClass::kNetworkActivity,
                        code == v1::DIAL_OK ? "open" : (denied ? "deny" : "open_failed"),
                        code == v1::DIAL_OK ? audit::kOutcomeSuccess : audit::kOutcomeFailure,
                        client_.identity.ToString(), PeerIp(peer_), std::move(details));
  // Nothing is acknowledged to the client, and no byte flows, before the
  // decision is durable (invariant 6). An "open" that cannot be recorded is
  // refused (fail closed); a refusal is a fact, kept until it can be recorded.
  std::weak_ptr<TunnelSession> weak = weak_from_this();
  AuditAppend(
      service_->ctx().audit.get(), std::move(entry),
      [weak](absl::Status s) {
        if (auto self = weak.lock()) {
          self->OnResultAudited(std::move(s));
        }
      },
      code == v1::DIAL_OK ? audit::AuditLog::Retention::kDropOnFailure
                          : audit::AuditLog::Retention::kKeepUntilDurable);
}

void TunnelSession::OnResultAudited(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kResult) {
    return;  // aborted meanwhile
  }
  if (!status.ok()) {
    common::LogError("dial.audit_failed", {{"client", client_.identity.ToString()},
                                           {"destination", destination_.ToString()},
                                           {"error", std::string(status.message())}});
    if (result_ == v1::DIAL_OK) {
      RefuseUnrecorded(status);
      return;
    }
  }
  if (ServerMetrics* m = service_->ctx().metrics; m != nullptr && result_ == v1::DIAL_OK) {
    m->Dial(v1::DIAL_OK)->Inc();
    m->dial_seconds->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  }
  StartWriteOn(kClient);
}

void TunnelSession::RefuseUnrecorded(const absl::Status& audit_error) {
  // Fail closed: the agent's connection is reset before a byte flows, and the
  // client is told why. The refusal is kept for the log, which records it once
  // it can be written again: nothing that happened goes unrecorded.
  if (ServerMetrics* m = service_->ctx().metrics) {
    m->Dial(v1::DIAL_INTERNAL)->Inc();
  }
  result_ = v1::DIAL_INTERNAL;
  FinishEnd(kAgent, grpc::Status(grpc::StatusCode::UNAVAILABLE, "audit log unavailable"));
  if (!conn_id_.empty()) {
    service_->TakePending(conn_id_);
  }
  nlohmann::json details = AuditDetails();
  details["reason_code"] = "audit_unavailable";
  details["reason"] = std::string(audit_error.message());
  AuditAppend(
      service_->ctx().audit.get(),
      audit::MakeRecord(audit::EventClass::kNetworkActivity, "open_failed", audit::kOutcomeFailure,
                        client_.identity.ToString(), PeerIp(peer_), std::move(details)));
  write_[kClient].Clear();
  write_[kClient].mutable_result()->set_code(v1::DIAL_INTERNAL);
  write_[kClient].mutable_result()->set_message(kAuditUnavailableMessage);
  StartWriteOn(kClient);
}

void TunnelSession::Route(const AgentInstance* exclude) {
  auto policy = service_->policy()->Get();
  auto choice = service_->registry()->Pick(*policy, client_.identity.ToString(), destination_,
                                           selector_, exclude, common::SteadyNowMs());
  if (!choice.instance) {
    WriteResult(choice.code, choice.reason);
    return;
  }
  instance_ = choice.instance;
  state_ = State::kRouting;
  conn_id_ = common::RandomBytes(16);
  service_->AddPending(conn_id_, shared_from_this(), instance_.get());
  v1::ControlMessage message;
  message.mutable_open()->set_conn_id(conn_id_);
  message.mutable_open()->set_destination(destination_.ToString());
  message.mutable_open()->set_client(client_.identity.ToString());
  const int attempt = attempt_;
  if (!instance_->SendOpen(message)) {
    RouteAgain(v1::DIAL_NO_AGENT, "agent control stream closed");
    return;
  }
  alarm_ = std::make_unique<grpc::Alarm>();
  std::weak_ptr<TunnelSession> weak = shared_from_this();
  alarm_->Set(std::chrono::system_clock::now() + service_->options().dial_timeout,
              [weak, attempt](bool fired) {
                if (!fired) {
                  return;  // cancelled
                }
                if (auto self = weak.lock()) {
                  self->OnTimeout(attempt);
                }
              });
}

void TunnelSession::OnTimeout(int attempt) {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kRouting || attempt != attempt_) {
    return;
  }
  common::LogWarn("agent.ejected", {{"identity", instance_->identity()},
                                    {"instance", instance_->instance_id()},
                                    {"reason", "no Accept within the dial timeout"}});
  RouteAgain(v1::DIAL_TIMEOUT, "the agent did not connect in time");
}

void TunnelSession::RouteAgain(v1::DialCode code, const std::string& message) {
  service_->TakePending(conn_id_);
  instance_->ejected_until_ms.store(common::SteadyNowMs() + service_->options().eject_for.count());
  if (attempt_++ == 0) {
    Route(instance_.get());
  } else {
    WriteResult(code, message);
  }
}

void TunnelSession::ArmIdleTimer(std::chrono::steady_clock::duration after) {
  alarm_ = std::make_unique<grpc::Alarm>();
  std::weak_ptr<TunnelSession> weak = shared_from_this();
  alarm_->Set(std::chrono::system_clock::now() +
                  std::chrono::duration_cast<std::chrono::system_clock::duration>(after),
              [weak](bool fired) {
                if (!fired) {
                  return;
                }
                if (auto self = weak.lock()) {
                  self->OnIdleCheck();
                }
              });
}

void TunnelSession::OnIdleCheck() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kSpliced) {
    return;
  }
  if (writing_[kClient] || writing_[kAgent]) {
    // A write waiting for flow control is a reader behind, not an idle
    // connection: the slow end still has bytes to take.
    last_activity_ = std::chrono::steady_clock::now();
  }
  auto idle = std::chrono::steady_clock::now() - last_activity_;
  auto limit = service_->options().idle_timeout;
  if (idle >= limit) {
    Abort("idle timeout");
  } else {
    ArmIdleTimer(limit - idle);
  }
}

void TunnelSession::AgentFailed(const AgentInstance* instance, v1::DialCode code,
                                const std::string& message) {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kRouting || instance != instance_.get()) {
    return;
  }
  if (code == v1::DIAL_OK || code > v1::DIAL_INTERNAL) {
    code = v1::DIAL_INTERNAL;
  }
  WriteResult(code, message);
}

void TunnelSession::AgentGone(const AgentInstance* instance) {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kRouting || instance != instance_.get()) {
    return;
  }
  RouteAgain(v1::DIAL_NO_AGENT, "agent control stream closed");
}

void TunnelSession::AttachAgent(StreamEnd* agent_end, const Caller& agent,
                                const std::string& instance_id,
                                const std::string& resolved_address) {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kRouting || agent.identity.ToString() != instance_->identity() ||
      instance_id != instance_->instance_id()) {
    agent_end->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   "this connection was not asked of this agent instance"));
    return;
  }
  agent_end->Bind(shared_from_this());
  end_[kAgent] = agent_end;
  agent_key_id_ = agent.key_id;
  resolved_address_ = resolved_address;
  instance_->active_streams.fetch_add(1);
  counted_ = true;
  common::LogInfo("dial.allowed", {{"client", client_.identity.ToString()},
                                   {"peer", peer_},
                                   {"destination", destination_.ToString()},
                                   {"agent", instance_->identity()},
                                   {"instance", instance_->instance_id()}});
  WriteResult(v1::DIAL_OK, "");
}

void TunnelSession::OnRead(Side side, bool ok) {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kDone) {
    return;
  }
  if (state_ == State::kReadingOpen) {
    if (!ok) {
      Abort("client went away before opening");
      return;
    }
    const v1::StreamOpen& open = read_[kClient].open();
    auto destination = policy::ParseDestination(open.destination());
    if (!destination.ok()) {
      WriteResult(v1::DIAL_BAD_REQUEST, std::string(destination.status().message()));
      return;
    }
    destination_ = *destination;
    selector_ = open.agent().substr(0, 128);
    if (auto limit =
            service_->dial_limiter()->Check(client_.identity.ToString(), common::SteadyNowMs());
        !limit.allowed) {
      rate_limited_refusals_ = 1 + limit.unrecorded;  // this one and those not recorded
      WriteResult(v1::DIAL_RATE_LIMITED,
                  common::StrCat("more than ", service_->options().dial_rate_per_second,
                                 " dials per second (bursts of ", service_->options().dial_burst,
                                 ") from ", client_.identity.ToString()),
                  /*record=*/limit.record);
      return;
    }
    if (const auto& health = service_->options().store_health; health) {
      if (absl::Status store = health(); !store.ok()) {
        WriteResult(v1::DIAL_INTERNAL,
                    common::StrCat("the server cannot check identities now (shared store: ",
                                   store.message(), "); retry"));
        return;
      }
    }
    auto policy = service_->policy()->Get();
    if (!policy->AllowsClient(client_.identity.ToString(), destination_)) {
      WriteResult(v1::DIAL_DENIED_POLICY,
                  common::StrCat("no policy rule allows ", client_.identity.ToString(),
                                 " to reach ", destination_.ToString()));
      return;
    }
    Route(nullptr);
    return;
  }
  if (state_ != State::kSpliced) {
    return;
  }
  const Side other = side == kClient ? kAgent : kClient;
  if (!ok) {
    if (!fin_in_[side]) {
      Abort(side == kClient ? "client stream ended" : "agent stream ended");
    }
    return;
  }
  v1::Frame& frame = read_[side];
  last_activity_ = std::chrono::steady_clock::now();
  if (frame.data().size() > kMaxFrameBytes) {
    Abort("oversized frame");
    return;
  }
  if (writing_[other]) {
    pending_[side] = true;  // forwarded when the write in flight completes
    return;
  }
  Forward(side);
}

// read_[side] holds a frame and nothing is being written to the other side:
// forward it, and read the next frame from `side` meanwhile.
void TunnelSession::Forward(Side side) {
  const Side other = side == kClient ? kAgent : kClient;
  v1::Frame& frame = read_[side];
  write_[other].Clear();
  if (frame.fin()) {
    fin_in_[side] = true;
    write_[other].set_fin(true);
  } else {
    bytes_[side] += frame.data().size();
    if (ServerMetrics* m = service_->ctx().metrics) {
      (side == kClient ? m->bytes_up : m->bytes_down)->Inc(frame.data().size());
    }
    write_[other].mutable_data()->swap(*frame.mutable_data());
  }
  writing_[other] = true;
  StartWriteOn(other);
  if (!fin_in_[side]) {
    StartReadOn(side);
  }
}

void TunnelSession::OnWrite(Side side, bool ok) {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kDone) {
    return;
  }
  if (!ok) {
    Abort("stream write failed");
    return;
  }
  if (state_ == State::kResult) {
    if (result_ != v1::DIAL_OK) {
      state_ = State::kDone;
      FinishEnd(kClient, grpc::Status::OK);
      return;
    }
    state_ = State::kSpliced;
    if (ServerMetrics* m = service_->ctx().metrics) {
      m->tunnels_active->Add(1);
    }
    last_activity_ = std::chrono::steady_clock::now();
    ArmIdleTimer(service_->options().idle_timeout);
    StartReadOn(kClient);
    StartReadOn(kAgent);
    return;
  }
  const Side other = side == kClient ? kAgent : kClient;
  writing_[side] = false;
  if (write_[side].fin()) {
    fin_out_[side] = true;
    if (fin_out_[kClient] && fin_out_[kAgent]) {
      state_ = State::kDone;
      LogClosed("closed");
      FinishEnd(kClient, grpc::Status::OK);
      FinishEnd(kAgent, grpc::Status::OK);
    }
    return;
  }
  if (pending_[other]) {
    pending_[other] = false;
    Forward(other);
  }
}

void TunnelSession::OnCancel(Side side) {
  absl::MutexLock lock(&mu_);
  Abort(side == kClient ? "cancelled by the client" : "cancelled by the agent");
}

void TunnelSession::OnEndDone(Side side) {
  absl::MutexLock lock(&mu_);
  end_[side] = nullptr;
  finished_[side] = true;
  if (side == kAgent && counted_) {
    counted_ = false;
    instance_->active_streams.fetch_sub(1);
  }
}

namespace {

// ---------------------------------------------------------------------------
// Control: one per agent instance.

class ControlReactor final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControlMessage>,
                             public ControlSender {
 public:
  ControlReactor(TunnelService* service, grpc::CallbackServerContext* context)
      : service_(service),
        context_(context),
        peer_(context->peer()),
        instance_id_(InstanceIdOf(context)) {
    auto caller = Authenticate(service->ctx(), context, pki::IdentityKind::kAgent);
    absl::MutexLock lock(&mu_);
    if (!caller.ok()) {
      common::LogWarn("agent.refused",
                      {{"peer", peer_}, {"reason", std::string(caller.status().message())}});
      AuditAppend(service->ctx().audit.get(),
                  AuthFailureRecord("Tunnel/Control", peer_, caller.status()));
      finished_ = true;
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    if (instance_id_.empty()) {
      finished_ = true;
      Finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "missing drawbridge-instance metadata"));
      return;
    }
    caller_ = *caller;
    StartRead(&in_);
  }

  bool Send(const v1::ControlMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (finished_) {
      return false;
    }
    queue_.push_back(message);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
    return true;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (ok && !finished_ && !queue_.empty()) {
      StartWrite(&queue_.front());
    } else {
      writing_ = false;
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Close("control stream ended");
      return;
    }
    if (in_.has_hello()) {
      if (instance_) {
        Close("duplicate hello");
        return;
      }
      std::vector<std::string> entries(in_.hello().allowlist().begin(),
                                       in_.hello().allowlist().end());
      auto allowlist = policy::Allowlist::Parse(entries);
      if (!allowlist.ok()) {
        Close(common::StrCat("invalid advertised allowlist: ", allowlist.status().message()));
        return;
      }
      instance_ = std::make_shared<AgentInstance>(
          caller_.identity.ToString(), instance_id_, in_.hello().version().substr(0, 64), peer_,
          entries, std::move(*allowlist), service_->ctx().clock->NowUnix());
      instance_->set_key_id(caller_.key_id);
      instance_->Attach(this);
      service_->registry()->Add(instance_);
      v1::ControlMessage ack;  // tells the agent it is registered
      ack.mutable_heartbeat()->set_unix_ms(service_->ctx().clock->NowUnix() * 1000);
      ack.mutable_heartbeat()->set_lane_port(service_->lane_port());
      Send(ack);
      if (v1::ControlMessage replicas = service_->ReplicaSetMessage();
          replicas.replicas().replicas_size() > 0) {
        Send(replicas);
      }
      common::LogInfo("agent.connected", {{"identity", instance_->identity()},
                                          {"instance", instance_id_},
                                          {"peer", peer_},
                                          {"version", instance_->version()},
                                          {"allowlist", common::Join(entries, ",")}});
      AuditAppend(service_->ctx().audit.get(),
                  audit::MakeRecord(audit::EventClass::kAuthentication, "agent_connect",
                                    audit::kOutcomeSuccess, instance_->identity(), PeerIp(peer_),
                                    {{"agent", instance_->identity()},
                                     {"agent_instance", instance_id_},
                                     {"version", instance_->version()},
                                     {"key_id", caller_.key_id},
                                     {"peer", peer_},
                                     {"allowlist", entries}}));
    } else if (!instance_) {
      Close("the first control message must be hello");
      return;
    } else if (in_.has_open_failed()) {
      auto session = service_->TakePending(in_.open_failed().conn_id());
      if (session) {
        session->AgentFailed(instance_.get(), in_.open_failed().code(),
                             in_.open_failed().message().substr(0, 512));
      }
    }
    StartRead(&in_);
  }

  void Cancel() override { context_->TryCancel(); }

  void OnCancel() override { Close("control stream cancelled"); }
  void OnDone() override { delete this; }

 private:
  void Close(const std::string& reason) {
    if (instance_) {
      instance_->Detach();  // waits for any SendOpen in progress
      service_->registry()->Remove(instance_.get());
      // Opens already sent to this instance will never be answered.
      for (auto& session : service_->TakePendingOn(instance_.get())) {
        session->AgentGone(instance_.get());
      }
    }
    absl::MutexLock lock(&mu_);
    if (finished_) {
      return;
    }
    finished_ = true;
    if (instance_) {
      common::LogInfo(
          "agent.disconnected",
          {{"identity", instance_->identity()}, {"instance", instance_id_}, {"reason", reason}});
      AuditAppend(service_->ctx().audit.get(),
                  audit::MakeRecord(audit::EventClass::kAuthentication, "agent_disconnect",
                                    audit::kOutcomeSuccess, instance_->identity(), PeerIp(peer_),
                                    {{"agent", instance_->identity()},
                                     {"agent_instance", instance_id_},
                                     {"reason", reason}}));
    }
    Finish(grpc::Status::OK);
  }

  TunnelService* service_;
  grpc::CallbackServerContext* context_;
  std::string peer_;
  std::string instance_id_;
  Caller caller_;
  v1::AgentMessage in_;
  std::shared_ptr<AgentInstance> instance_;
  absl::Mutex mu_;
  std::deque<v1::ControlMessage> queue_ ABSL_GUARDED_BY(mu_);  // references stay valid
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------
// Watch: one per client process. Written only by the registry (NotifyEnded and
// End run under its lock) and by our own OnWriteDone.

class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent>, public WatchSink {
 public:
  WatchReactor(TunnelService* service, grpc::CallbackServerContext* context)
      : watchers_(service->shared_watchers()), instance_id_(InstanceIdOf(context)) {
    auto caller = Authenticate(service->ctx(), context, pki::IdentityKind::kClient);
    if (!caller.ok()) {
      AuditAppend(service->ctx().audit.get(),
                  AuthFailureRecord("Tunnel/Watch", context->peer(), caller.status()));
      absl::MutexLock lock(&mu_);
      FinishLocked(ToGrpcStatus(caller.status()));
      return;
    }
    if (instance_id_.empty()) {
      absl::MutexLock lock(&mu_);
      FinishLocked(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "missing drawbridge-instance metadata"));
      return;
    }
    identity_ = caller->identity.ToString();
    key_id_ = caller->key_id;
    v1::WatchEvent ready;
    ready.mutable_ready()->set_unix_ms(service->ctx().clock->NowUnix() * 1000);
    ready.mutable_ready()->set_lane_port(service->lane_port());
    Send(ready);
    watchers_->Add(identity_, instance_id_, this);
    registered_ = true;
    if (service->draining()) {
      Send(ClientGoaway());  // came back through a balancer that had not noticed yet
    }
  }

  bool Send(const v1::WatchEvent& event) override {
    absl::MutexLock lock(&mu_);
    if (ending_) {
      return false;
    }
    queue_.push_back(event);
    if (!writing_) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
    return true;
  }

  void End(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (ending_) {
      return;
    }
    ending_ = true;
    end_status_ = status;
    if (!writing_) {
      FinishLocked(status);
    }
  }

  const std::string& key_id() const override { return key_id_; }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (ok && !queue_.empty()) {
      StartWrite(&queue_.front());
      return;
    }
    writing_ = false;
    if (!ok) {
      ending_ = true;
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "watch stream write failed"));
    } else if (ending_) {
      FinishLocked(end_status_);
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    ending_ = true;
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (registered_) {
      watchers_->Remove(identity_, instance_id_, this);
    }
    delete this;
  }

 private:
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finished_) {
      finished_ = true;
      Finish(status);
    }
  }

  const std::shared_ptr<ClientWatchers> watchers_;
  const std::string instance_id_;
  std::string identity_;
  std::string key_id_;
  bool registered_ = false;
  absl::Mutex mu_;
  std::deque<v1::WatchEvent> queue_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// ---------------------------------------------------------------------------

void TunnelService::AddPending(const std::string& conn_id, std::shared_ptr<TunnelSession> session,
                               const AgentInstance* instance) {
  absl::MutexLock lock(&mu_);
  pending_[conn_id] = Pending{session, instance};
}

std::vector<std::shared_ptr<TunnelSession>> TunnelService::TakePendingOn(
    const AgentInstance* instance) {
  std::vector<std::shared_ptr<TunnelSession>> sessions;
  absl::MutexLock lock(&mu_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.instance != instance) {
      ++it;
      continue;
    }
    if (auto session = it->second.session.lock()) {
      sessions.push_back(std::move(session));
    }
    pending_.erase(it++);
  }
  return sessions;
}

std::shared_ptr<TunnelSession> TunnelService::TakePending(const std::string& conn_id) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(conn_id);
  if (it == pending_.end()) {
    return nullptr;
  }
  auto session = it->second.session.lock();
  pending_.erase(it);
  return session;
}

void TunnelService::Revoke(const std::string& identity, const std::string& key_id) {
  // The callbacks may outlive this service (shutdown): they hold what they use.
  std::weak_ptr<audit::AuditLog> audit_log = ctx_.audit;
  ForEachSession(
      [identity, key_id](TunnelSession& s) { return s.RevokeIf(identity, key_id); },
      [registry = registry_, watchers = watchers_, identity, key_id, audit_log](int tunnels) {
        // After the sessions: their TunnelEnded events go out first.
        int watches =
            watchers->EndIdentity(identity, key_id,
                                  grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                               common::StrCat("credential revoked: ", identity)));
        int controls = 0;
        for (const auto& instance : registry->Snapshot()) {
          if (instance->identity() == identity && instance->CancelIfKey(key_id)) {
            ++controls;
          }
        }
        common::LogWarn("revocation.enforced", {{"identity", identity},
                                                {"key_id", key_id.empty() ? "*" : key_id},
                                                {"tunnels_cut", common::StrCat(tunnels)},
                                                {"control_streams_cut", common::StrCat(controls)},
                                                {"watch_streams_cut", common::StrCat(watches)}});
        if (auto log = audit_log.lock()) {
          log->Append(audit::MakeRecord(audit::EventClass::kAccountChange, "revoke",
                                        audit::kOutcomeSuccess, std::string(audit::kActorSystem),
                                        "",
                                        {{"identity", identity},
                                         {"key_id", key_id.empty() ? "*" : key_id},
                                         {"tunnels_cut", tunnels},
                                         {"control_streams_cut", controls}}));
        }
      });
}

void TunnelService::ForEachSession(std::function<bool(TunnelSession&)> fn,
                                   std::function<void(int)> done) {
  // Streams may only be finished from a gRPC callback; the alarm deletes itself.
  auto* alarm = new grpc::Alarm();
  alarm->Set(std::chrono::system_clock::now(),
             [live = live_, alarm, fn = std::move(fn), done = std::move(done)](bool fired) {
               int count = 0;
               if (fired) {
                 std::vector<std::shared_ptr<TunnelSession>> sessions;
                 {
                   absl::MutexLock lock(&live->mu);
                   for (auto& [ptr, weak] : live->map) {
                     if (auto s = weak.lock()) {
                       sessions.push_back(std::move(s));
                     }
                   }
                 }
                 for (auto& s : sessions) {
                   count += fn(*s) ? 1 : 0;
                 }
               }
               if (done) {
                 done(count);
               }
               delete alarm;
             });
}

std::vector<SessionInfo> TunnelService::ListSessions() const {
  std::vector<std::shared_ptr<TunnelSession>> sessions;
  {
    absl::MutexLock lock(&live_->mu);
    for (auto& [ptr, weak] : live_->map) {
      if (auto s = weak.lock()) {
        sessions.push_back(std::move(s));
      }
    }
  }
  std::vector<SessionInfo> out;
  for (auto& s : sessions) {
    if (auto info = s->Info()) {
      out.push_back(*std::move(info));
    }
  }
  std::sort(out.begin(), out.end(), [](const SessionInfo& a, const SessionInfo& b) {
    return a.started_unix_ms != b.started_unix_ms ? a.started_unix_ms < b.started_unix_ms
                                                  : a.id < b.id;
  });
  return out;
}

void TunnelService::KillSession(const std::string& id, std::string reason,
                                std::function<void(std::optional<SessionInfo>)> done) {
  auto found = std::make_shared<std::optional<SessionInfo>>();
  ForEachSession(
      [id, reason, found](TunnelSession& s) {
        SessionInfo info;
        if (s.EndIf([&](const SessionInfo& i) { return i.id == id; }, reason, &info)) {
          *found = info;
          return true;
        }
        return false;
      },
      [found, done = std::move(done)](int) { done(*found); });
}

void TunnelService::EnforcePolicy(std::shared_ptr<const policy::Policy> policy,
                                  std::function<void(int)> done) {
  ForEachSession(
      [policy](TunnelSession& s) {
        return s.EndIf(
            [&](const SessionInfo& i) {
              auto d = policy::ParseDestination(i.destination);
              return !d.ok() || !policy->AgentAllowed(i.client, i.agent, *d);
            },
            "the policy no longer allows this connection");
      },
      std::move(done));
}

void TunnelService::SendGoaway() {
  // Control streams may only be written from a gRPC callback (see ControlReactor);
  // an immediate alarm gets us there from the caller's thread.
  goaway_alarm_ = std::make_unique<grpc::Alarm>();
  goaway_alarm_->Set(std::chrono::system_clock::now(), [registry = registry_](bool fired) {
    if (!fired) {
      return;
    }
    v1::ControlMessage goaway;
    goaway.mutable_goaway()->set_reason("server shutting down");
    for (const auto& instance : registry->Snapshot()) {
      instance->SendOpen(goaway);
    }
  });
}

void TunnelService::SendClientGoaway() {
  draining_.store(true);
  watchers_->SendAll(ClientGoaway());
}

void TunnelService::SetReplicaSet(v1::ReplicaSet set) {
  {
    absl::MutexLock lock(&replicas_->mu);
    replicas_->set = std::move(set);
  }
  // As for the goaway: written from an alarm's callback. A newer change
  // replaces a pending alarm; the one that fires sends the latest set.
  absl::MutexLock lock(&replicas_alarm_mu_);
  replicas_alarm_ = std::make_unique<grpc::Alarm>();
  replicas_alarm_->Set(std::chrono::system_clock::now(),
                       [registry = registry_, holder = replicas_](bool fired) {
                         if (!fired) {
                           return;
                         }
                         v1::ControlMessage message;
                         {
                           absl::MutexLock lock(&holder->mu);
                           *message.mutable_replicas() = holder->set;
                         }
                         for (const auto& instance : registry->Snapshot()) {
                           instance->SendOpen(message);
                         }
                       });
}

v1::ControlMessage TunnelService::ReplicaSetMessage() const {
  v1::ControlMessage message;
  absl::MutexLock lock(&replicas_->mu);
  *message.mutable_replicas() = replicas_->set;
  return message;
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::ControlMessage>* TunnelService::Control(
    grpc::CallbackServerContext* context) {
  return new ControlReactor(this, context);
}

grpc::ServerBidiReactor<v1::Frame, v1::Frame>* TunnelService::Dial(
    grpc::CallbackServerContext* context) {
  auto caller = Authenticate(ctx_, context, pki::IdentityKind::kClient);
  if (!caller.ok()) {
    common::LogWarn("dial.unauthenticated", {{"peer", context->peer()},
                                             {"reason", std::string(caller.status().message())}});
    AuditAppend(ctx_.audit.get(),
                AuthFailureRecord("Tunnel/Dial", context->peer(), caller.status()));
    auto* end = new StreamEnd(nullptr, TunnelSession::kClient);
    end->Finish(ToGrpcStatus(caller.status()));
    return end;
  }
  auto session =
      std::make_shared<TunnelSession>(this, *caller, InstanceIdOf(context), context->peer());
  auto* end = new StreamEnd(session, TunnelSession::kClient);
  session->Begin(end);
  return end;
}

grpc::ServerWriteReactor<v1::WatchEvent>* TunnelService::Watch(grpc::CallbackServerContext* context,
                                                               const v1::WatchRequest*) {
  return new WatchReactor(this, context);
}

void TunnelService::WaitForNoSessions(std::chrono::system_clock::time_point deadline) const {
  LiveSessions* live = live_.get();
  auto none = [live]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(live->mu) { return live->map.empty(); };
  absl::MutexLock lock(&live->mu);
  live->mu.AwaitWithDeadline(absl::Condition(&none), absl::FromChrono(deadline));
}

TunnelService::~TunnelService() {
  {
    absl::MutexLock lock(&reporter_mu_);
    reporter_stop_ = true;
  }
  if (reporter_.joinable()) {
    reporter_.join();
  }
}

void TunnelService::StartRateLimitReporter() {
  if (!dial_limiter_.enabled() || ctx_.audit == nullptr) {
    return;
  }
  reporter_ = std::thread([this] {
    for (;;) {
      {
        absl::MutexLock lock(&reporter_mu_);
        if (reporter_mu_.AwaitWithTimeout(absl::Condition(&reporter_stop_), absl::Seconds(1))) {
          return;
        }
      }
      for (const auto& [identity, refused] : dial_limiter_.TakeUnrecorded(common::SteadyNowMs())) {
        common::LogWarn("dial.rate_limited",
                        {{"client", identity}, {"refused", common::StrCat(refused)}});
        AuditAppend(ctx_.audit.get(),
                    audit::MakeRecord(audit::EventClass::kNetworkActivity, "deny",
                                      audit::kOutcomeFailure, identity, "",
                                      {{"client", identity},
                                       {"reason_code", "rate_limited"},
                                       {"reason", common::StrCat(refused,
                                                                 " more dials refused by the "
                                                                 "per-identity rate limit")},
                                       {"refused", refused}}));
      }
    }
  });
}

void TunnelService::EndAll(const std::string& reason, std::function<void()> done) {
  ForEachSession(
      [reason](TunnelSession& s) {
        return s.EndIf([](const SessionInfo&) { return true; }, reason);
      },
      [watchers = watchers_, reason, done = std::move(done)](int) {
        watchers->EndAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, reason));
        if (done) {
          done();
        }
      });
}

grpc::ServerBidiReactor<v1::Frame, v1::Frame>* TunnelService::Accept(
    grpc::CallbackServerContext* context) {
  return new StreamEnd(this, context);
}

grpc::ServerBidiReactor<v1::Frame, v1::Frame>* TunnelService::OpenLaneStream(
    const std::string& method, std::string_view peer_certificate_pem,
    const std::string& instance_id, const std::string& peer) {
  const bool dial = method == "Dial";
  const pki::IdentityKind kind = dial ? pki::IdentityKind::kClient : pki::IdentityKind::kAgent;
  auto caller = RequireKind(AuthenticateCertificate(peer_certificate_pem, ctx_.trust_domain,
                                                    *ctx_.directory, *ctx_.clock),
                            kind);
  if (!caller.ok()) {
    common::LogWarn(dial ? "dial.unauthenticated" : "accept.unauthenticated",
                    {{"peer", peer}, {"reason", std::string(caller.status().message())}});
    AuditAppend(ctx_.audit.get(),
                AuthFailureRecord(dial ? "Tunnel/Dial" : "Tunnel/Accept", peer, caller.status()));
    auto* end = new StreamEnd(nullptr, dial ? TunnelSession::kClient : TunnelSession::kAgent);
    end->Finish(ToGrpcStatus(caller.status()));
    return end;
  }
  if (!dial) {
    return new StreamEnd(this, *caller, instance_id);
  }
  auto session = std::make_shared<TunnelSession>(this, *caller, instance_id, peer);
  auto* end = new StreamEnd(session, TunnelSession::kClient);
  session->Begin(end);
  return end;
}

}  // namespace drawbridge::server

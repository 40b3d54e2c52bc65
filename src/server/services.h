#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "audit/query.h"
#include "common/clock.h"
#include "common/worker_pool.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "drawbridge/v1/diagnostics.grpc.pb.h"
#include "drawbridge/v1/enrollment.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/agent_registry.h"
#include "server/auth.h"
#include "server/enroller.h"
#include "server/identity_directory.h"
#include "server/server_metrics.h"
#include "server/session_info.h"

namespace drawbridge::server {

// The policy in force, for the admin API.
struct PolicySnapshot {
  std::string yaml;    // canonical
  std::string source;  // the file it is kept in
  std::vector<std::string> rule_names;
  std::string sha256;
};

// What the admin API needs from the rest of the server (Server implements it).
class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  virtual std::vector<std::shared_ptr<AgentInstance>> Agents() = 0;
  virtual std::vector<SessionInfo> Sessions() = 0;
  // `done` runs on a gRPC thread.
  virtual void KillSession(const std::string& id, const std::string& reason,
                           std::function<void(std::optional<SessionInfo>)> done) = 0;
  virtual PolicySnapshot Policy() = 0;
  // Validates `yaml` whole, keeps it (file), puts it in force and ends the live
  // connections it no longer allows. Blocking: call from a worker thread.
  virtual absl::StatusOr<int> SetPolicy(const std::string& yaml) = 0;
  // Reads this server's audit chain for TailAudit (state.db, or this replica's
  // chain in the shared store). Blocking: call from the tail's own thread.
  struct AuditReader {
    std::function<absl::StatusOr<uint64_t>()> last_seq;
    std::function<absl::StatusOr<std::vector<audit::Record>>(const audit::QueryFilter&)> query;
  };
  virtual AuditReader OwnAuditChain() = 0;
  // The live servers sharing this one's store, and this one's replica id.
  // Replicas() may ask the store: call it from a worker thread.
  virtual std::vector<store::ReplicaRecord> Replicas() = 0;
  virtual std::string ReplicaId() = 0;
};

// What every service needs; owned by Server, outlives the services.
struct ServiceContext {
  std::string trust_domain;
  IdentityDirectory* directory = nullptr;
  Enroller* enroller = nullptr;
  common::WorkerPool* pool = nullptr;  // blocking work goes here, never in reactions
  const common::Clock* clock = nullptr;
  // The audit trail; null only in tests of a single service. Shared so that
  // callbacks that may outlive a service (alarms) can hold a weak reference.
  std::shared_ptr<audit::AuditLog> audit;
  ServerMetrics* metrics = nullptr;  // never null in a running server
};

grpc::Status ToGrpcStatus(const absl::Status& status);

class EnrollmentService final : public v1::Enrollment::CallbackService {
 public:
  explicit EnrollmentService(ServiceContext ctx) : ctx_(ctx) {}
  grpc::ServerUnaryReactor* Enroll(grpc::CallbackServerContext* context,
                                   const v1::EnrollRequest* request,
                                   v1::EnrollResponse* response) override;

 private:
  ServiceContext ctx_;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  AdminService(ServiceContext ctx, AdminBackend* backend) : ctx_(ctx), backend_(backend) {}

  grpc::ServerUnaryReactor* CreateIdentity(grpc::CallbackServerContext* context,
                                           const v1::CreateIdentityRequest* request,
                                           v1::CreateIdentityResponse* response) override;
  grpc::ServerUnaryReactor* ListIdentities(grpc::CallbackServerContext* context,
                                           const v1::ListIdentitiesRequest* request,
                                           v1::ListIdentitiesResponse* response) override;
  grpc::ServerUnaryReactor* GetIdentity(grpc::CallbackServerContext* context,
                                        const v1::GetIdentityRequest* request,
                                        v1::IdentityInfo* response) override;
  grpc::ServerUnaryReactor* SetIdentityEnabled(grpc::CallbackServerContext* context,
                                               const v1::SetIdentityEnabledRequest* request,
                                               v1::IdentityInfo* response) override;
  grpc::ServerUnaryReactor* AddKey(grpc::CallbackServerContext* context,
                                   const v1::AddKeyRequest* request,
                                   v1::KeyInfo* response) override;
  grpc::ServerUnaryReactor* ListKeys(grpc::CallbackServerContext* context,
                                     const v1::ListKeysRequest* request,
                                     v1::ListKeysResponse* response) override;
  grpc::ServerUnaryReactor* RemoveKey(grpc::CallbackServerContext* context,
                                      const v1::RemoveKeyRequest* request,
                                      v1::KeyInfo* response) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const v1::ListAgentsRequest* request,
                                       v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* ListReplicas(grpc::CallbackServerContext* context,
                                         const v1::ListReplicasRequest* request,
                                         v1::ListReplicasResponse* response) override;
  grpc::ServerUnaryReactor* KillSession(grpc::CallbackServerContext* context,
                                        const v1::KillSessionRequest* request,
                                        v1::KillSessionResponse* response) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const v1::GetPolicyRequest* request,
                                      v1::PolicyInfo* response) override;
  grpc::ServerUnaryReactor* SetPolicy(grpc::CallbackServerContext* context,
                                      const v1::SetPolicyRequest* request,
                                      v1::PolicyInfo* response) override;
  grpc::ServerWriteReactor<v1::AuditBatch>* TailAudit(grpc::CallbackServerContext* context,
                                                      const v1::TailAuditRequest* request) override;

 private:
  // kChange calls are audited as Account Change with the identity's state before
  // and after; kRead calls as API Activity; kOperation (sessions, policy) as API
  // Activity "admin_change" with the details the call adds.
  enum class AdminKind { kRead, kChange, kOperation };
  template <typename Fn>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, const char* method,
                                std::string target, Fn fn, AdminKind kind);
  nlohmann::json IdentitySnapshot(const std::string& identity) const;
  // Authenticates an admin/* caller; on refusal logs it and fills `refusal` with
  // the audit record to write before answering.
  absl::StatusOr<Caller> AuthorizeAdmin(grpc::CallbackServerContext* context, const char* method,
                                        audit::Record* refusal);
  void FillIdentity(const store::IdentityRecord& record, v1::IdentityInfo* out) const;

  ServiceContext ctx_;
  AdminBackend* backend_;
};

class DiagnosticsService final : public v1::Diagnostics::CallbackService {
 public:
  explicit DiagnosticsService(ServiceContext ctx) : ctx_(ctx) {}
  grpc::ServerBidiReactor<v1::PingRequest, v1::PingResponse>* Ping(
      grpc::CallbackServerContext* context) override;

 private:
  ServiceContext ctx_;
};

}  // namespace drawbridge::server

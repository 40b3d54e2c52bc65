#pragma once

#include <memory>
#include <string>

#include "audit/audit_log.h"
#include "common/clock.h"
#include "common/worker_pool.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "drawbridge/v1/diagnostics.grpc.pb.h"
#include "drawbridge/v1/enrollment.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/auth.h"
#include "server/enroller.h"
#include "server/identity_directory.h"

namespace drawbridge::server {

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
  explicit AdminService(ServiceContext ctx) : ctx_(ctx) {}

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

 private:
  // kChange calls are audited as Account Change with the identity's state before
  // and after; kRead calls as API Activity.
  enum class AdminKind { kRead, kChange };
  template <typename Fn>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, const char* method,
                                std::string target, Fn fn, AdminKind kind);
  nlohmann::json IdentitySnapshot(const std::string& identity) const;
  void FillIdentity(const store::IdentityRecord& record, v1::IdentityInfo* out) const;

  ServiceContext ctx_;
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

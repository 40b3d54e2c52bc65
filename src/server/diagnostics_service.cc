#include <chrono>

#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "server/audit_events.h"
#include "server/services.h"

namespace drawbridge::server {
namespace {

constexpr size_t kMaxPingPayload = 4096;

// Ping-pong: one read, then one write, then the next read, so there is never more
// than one operation of each kind in flight.
class PingReactor final : public grpc::ServerBidiReactor<v1::PingRequest, v1::PingResponse> {
 public:
  PingReactor(grpc::CallbackServerContext* context, const ServiceContext& ctx) {
    auto caller =
        AuthenticateCaller(*context->auth_context(), ctx.trust_domain, *ctx.directory, *ctx.clock);
    if (!caller.ok()) {
      common::LogWarn("diagnostics.denied", {{"peer", context->peer()},
                                             {"reason", std::string(caller.status().message())}});
      AuditAppend(ctx.audit.get(),
                  AuthFailureRecord("Diagnostics/Ping", context->peer(), caller.status()));
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    caller_ = *caller;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);  // client half-closed
      return;
    }
    if (request_.payload().size() > kMaxPingPayload) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "ping payload larger than 4 KiB"));
      return;
    }
    response_.set_sequence(request_.sequence());
    response_.set_payload(request_.payload());
    response_.set_caller_spiffe_id(caller_.spiffe_id);
    response_.set_certificate_serial(caller_.serial);
    response_.set_server_time_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  Caller caller_;
  v1::PingRequest request_;
  v1::PingResponse response_;
};

}  // namespace

grpc::ServerBidiReactor<v1::PingRequest, v1::PingResponse>* DiagnosticsService::Ping(
    grpc::CallbackServerContext* context) {
  return new PingReactor(context, ctx_);
}

}  // namespace drawbridge::server

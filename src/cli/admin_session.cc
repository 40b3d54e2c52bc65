#include "cli/admin_session.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "common/process.h"
#include "common/status_macros.h"

namespace drawbridge::cli {

absl::StatusOr<Session> Connect(const AdminFlags& f) {
  if (f.credentials.empty()) {
    return absl::InvalidArgumentError(
        "--credentials FILE (or $DRAWBRIDGE_CREDENTIALS) is required");
  }
  // The session's TLS key lives only in this process's memory.
  RETURN_IF_ERROR(common::MakeNonDumpable());
  Session s;
  ASSIGN_OR_RETURN(s.credential, pki::LoadCredentialFile(f.credentials));
  enroll::CertManager::Options opts;
  opts.credential = s.credential;
  ASSIGN_OR_RETURN(s.certs, enroll::CertManager::Create(opts));
  s.stub = v1::Admin::NewStub(s.certs->Channel());
  return s;
}

absl::Status Call(const grpc::Status& st) {
  if (st.ok()) {
    return absl::OkStatus();
  }
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
}

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  return ctx;
}

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  std::printf("%s\n", out.c_str());
}

}  // namespace drawbridge::cli

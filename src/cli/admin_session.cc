#include "cli/admin_session.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "common/process.h"
#include "common/status_macros.h"
#include "pki/keys.h"
#include "pki/pkcs11_key.h"

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

absl::StatusOr<NewCredential> MakeCredential(const pki::Credential& admin,
                                             const std::string& identity_text,
                                             const std::string& algorithm) {
  NewCredential n;
  ASSIGN_OR_RETURN(n.credential.identity, pki::ParseIdentity(identity_text));
  ASSIGN_OR_RETURN(n.credential.algorithm, pki::ParseJoseName(algorithm));
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::GenerateKey(n.credential.algorithm));
  ASSIGN_OR_RETURN(n.credential.key_id, pki::KeyIdOf(key.get()));
  ASSIGN_OR_RETURN(n.credential.private_key_pem, pki::PrivateKeyToPem(key.get()));
  ASSIGN_OR_RETURN(n.public_key_pem, pki::PublicKeyToPem(key.get()));
  n.credential.trust_domain = admin.trust_domain;
  pki::CopyServerEndpoints(admin, &n.credential);
  return n;
}

absl::StatusOr<NewCredential> MakePkcs11Credential(const pki::Credential& admin,
                                                   const std::string& identity_text,
                                                   const std::string& uri,
                                                   const std::string& module) {
  NewCredential n;
  ASSIGN_OR_RETURN(n.credential.identity, pki::ParseIdentity(identity_text));
  n.credential.key_uri = uri;
  n.credential.pkcs11_module = module;
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::OpenPkcs11Key(uri, module));
  ASSIGN_OR_RETURN(common::PKeyPtr pub, pki::PublicHalfOf(key.get()));
  ASSIGN_OR_RETURN(n.credential.algorithm, pki::AlgorithmOf(pub.get()));
  ASSIGN_OR_RETURN(n.credential.key_id, pki::KeyIdOf(pub.get()));
  ASSIGN_OR_RETURN(n.public_key_pem, pki::PublicKeyToPem(pub.get()));
  n.credential.trust_domain = admin.trust_domain;
  pki::CopyServerEndpoints(admin, &n.credential);
  return n;
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

#pragma once

#include <google/protobuf/message.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/commands.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "pki/credential.h"

// What every `drawbridge admin ...` command shares: its flags and an
// authenticated connection to the Admin API.
namespace drawbridge::cli {

struct AdminFlags {
  std::string credentials;
  bool json = false;
  std::string identity;
  std::string out;
  std::vector<std::string> cidrs;
  std::string algorithm = "ES256";
  bool seal = false;  // seal the new credential's key with the environment's passphrase
  // where the new credential reaches the server (default: as the admin's does)
  std::vector<std::string> servers;
  std::string server_srv;
  // the new credential's key in a PKCS#11 token
  std::string pkcs11_key;
  std::string pkcs11_module;
  std::string kind;
  std::string key_id;
  // workload trust (identity create / key add with --oidc-issuer)
  std::string oidc_issuer;
  std::string oidc_subject;
  std::string oidc_audience = "drawbridge";
  std::string oidc_jwks_uri;
  std::string oidc_jwks_file;
  std::string oidc_ca_file;
  std::string token_file = "/var/run/secrets/tokens/drawbridge";
  // sessions / policy / audit tail
  std::string session_id;
  std::string file;
  std::string client;
  std::string agent;
  std::string destination;
  uint32_t last = 20;
  uint64_t after_seq = 0;
  bool follow = false;
};

// An authenticated admin session: enrolls with the admin credential first.
struct Session {
  pki::Credential credential;
  std::unique_ptr<enroll::CertManager> certs;
  std::unique_ptr<v1::Admin::Stub> stub;
};

absl::StatusOr<Session> Connect(const AdminFlags& f);
absl::Status Call(const grpc::Status& st);
// A context with the default 15 s deadline.
std::unique_ptr<grpc::ClientContext> Ctx();
// Protobuf JSON with the proto field names.
void PrintJson(const google::protobuf::Message& m);

// Connects and makes one unary Admin call:
//   absl::Status s = CallAdmin(f, &v1::Admin::Stub::ListAgents, request, &response);
template <typename Request, typename Response>
absl::Status CallAdmin(const AdminFlags& f,
                       grpc::Status (v1::Admin::Stub::*method)(grpc::ClientContext*, const Request&,
                                                               Response*),
                       const Request& request, Response* response) {
  absl::StatusOr<Session> session = Connect(f);
  if (!session.ok()) {
    return session.status();
  }
  auto ctx = Ctx();
  return Call(((*session->stub).*method)(ctx.get(), request, response));
}

// A new credential for `identity` (a fresh key pair of `algorithm`), pointing
// at the same server and CA as the admin's; the server learns only its public key.
struct NewCredential {
  pki::Credential credential;
  std::string public_key_pem;
};
absl::StatusOr<NewCredential> MakeCredential(const pki::Credential& admin,
                                             const std::string& identity_text,
                                             const std::string& algorithm);
// The same for a key already in a PKCS#11 token (`uri` in `module`), opened
// with the PIN from the environment: the credential names the key, holds none.
absl::StatusOr<NewCredential> MakePkcs11Credential(const pki::Credential& admin,
                                                   const std::string& identity_text,
                                                   const std::string& uri,
                                                   const std::string& module);

// agents, sessions, policy and audit tail under `admin`.
void RegisterAdminOperations(CLI::App* admin, std::shared_ptr<AdminFlags> flags, Action* run);

}  // namespace drawbridge::cli

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "cli/commands.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process.h"
#include "common/strings.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "drawbridge/v1/diagnostics.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "pki/credential.h"
#include "pki/keys.h"
#include "server/data_dir.h"
#include "server/server.h"

namespace drawbridge::cli {
namespace {

// A free loopback port (the kernel picks; we release it for the server to take).
int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

void Step(const char* text) { std::printf("\n==> %s\n", text); }

int RunDemo(bool wait) {
  // The walk-through narrates; the server's own log shows only warnings (refusals).
  common::SetLogLevel(common::LogLevel::kWarn);
  if (absl::Status s = common::MakeNonDumpable(); !s.ok()) {
    return Fail(s);
  }
  std::string dir = common::StrCat(std::filesystem::temp_directory_path().string(),
                                   "/drawbridge-demo-", ::getpid());
  std::string data = dir + "/server";
  int port = FreeLoopbackPort();
  Step("server init: root and intermediate CA (keys sealed with AES-256-GCM), admin credential");
  server::InitOptions init;
  init.data_dir = data;
  init.trust_domain = "demo.drawbridge.local";
  init.listen = common::StrCat("127.0.0.1:", port);
  if (absl::Status s = server::InitDataDir(init); !s.ok()) {
    return Fail(s);
  }
  std::printf("    data dir %s\n", data.c_str());

  Step("server: TLS 1.3 only; Enroll without a certificate, everything else needs one");
  server::ServerOptions opts;
  opts.data_dir = data;
  auto srv = server::Server::Start(opts);
  if (!srv.ok()) {
    return Fail(srv.status());
  }

  Step("admin enrolls with admin.json and creates agent/demo-agent");
  server::DataDir paths(data);
  auto admin_cred = pki::LoadCredentialFile(paths.admin_credential);
  if (!admin_cred.ok()) {
    return Fail(admin_cred.status());
  }
  auto admin = enroll::CertManager::Create({.credential = *admin_cred});
  if (!admin.ok()) {
    return Fail(admin.status());
  }
  auto agent_key = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  pki::Credential agent_cred = *admin_cred;
  agent_cred.identity = *pki::ParseIdentity("agent/demo-agent");
  agent_cred.key_id = *pki::KeyIdOf(agent_key->get());
  agent_cred.private_key_pem = *pki::PrivateKeyToPem(agent_key->get());
  std::string agent_path = dir + "/agent.json";
  if (absl::Status s = pki::SaveCredentialFile(agent_path, agent_cred); !s.ok()) {
    return Fail(s);
  }
  auto stub = v1::Admin::NewStub((*admin)->Channel());
  {
    v1::CreateIdentityRequest req;
    req.set_identity("agent/demo-agent");
    req.set_public_key_pem(*pki::PublicKeyToPem(agent_key->get()));
    v1::CreateIdentityResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = stub->CreateIdentity(&ctx, req, &resp);
    if (!st.ok()) {
      return Fail(st.error_message());
    }
    std::printf("    created %s, key %s, credential %s\n", resp.identity().identity().c_str(),
                resp.key().key_id().c_str(), agent_path.c_str());
  }

  Step("agent enrolls: fresh in-memory TLS key, signed one-time token, 1-hour certificate");
  auto agent = enroll::CertManager::Create({.credential = agent_cred});
  if (!agent.ok()) {
    return Fail(agent.status());
  }
  auto snap = (*agent)->Current();
  std::printf("    certificate %s for %s, expires %s\n", snap.serial.c_str(),
              snap.spiffe_id.c_str(), FormatTime(snap.not_after).c_str());

  Step("the admin disables agent/demo-agent; its next enrollment is refused");
  {
    v1::SetIdentityEnabledRequest req;
    req.set_identity("agent/demo-agent");
    req.set_enabled(false);
    v1::IdentityInfo resp;
    grpc::ClientContext ctx;
    (void)stub->SetIdentityEnabled(&ctx, req, &resp);
  }
  absl::Status refused = (*agent)->RenewNow();
  std::printf("    refused as expected: %s\n", std::string(refused.message()).c_str());
  if (refused.ok()) {
    return Fail("a disabled identity enrolled: this is a bug");
  }

  std::printf(
      "\nTry it yourself while this runs (Ctrl-C to stop):\n"
      "  ./build/drawbridge admin --credentials %s identity list\n"
      "  ./build/drawbridge admin --credentials %s identity enable agent/demo-agent\n"
      "  ./build/drawbridge check --credentials %s\n",
      paths.admin_credential.c_str(), paths.admin_credential.c_str(), agent_path.c_str());
  if (wait) {
    BlockTerminationSignals();
    WaitForTerminationSignal();
  }
  (*srv)->Shutdown(std::chrono::milliseconds(1000));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return kExitOk;
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, Action* run) {
  auto no_wait = std::make_shared<bool>(false);
  auto* demo = app.add_subcommand("demo", "Run a server on loopback and walk through enrollment");
  demo->add_flag("--no-wait", *no_wait,
                 "Exit after the walk-through instead of waiting for Ctrl-C");
  demo->callback([=] { *run = [=] { return RunDemo(!*no_wait); }; });
}

}  // namespace drawbridge::cli

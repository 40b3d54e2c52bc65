#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "cli/util.h"
#include "common/process.h"
#include "drawbridge/v1/diagnostics.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "pki/credential.h"

namespace drawbridge::cli {

// Enrolls with a credential and round-trips pings over an authenticated stream.
// Exit 0 means the credential, the network path and the server all work.
int RunCheck(const std::string& credentials, const std::string& proxy, int count) {
  (void)common::MakeNonDumpable();
  auto cred = pki::LoadCredentialFile(credentials);
  if (!cred.ok()) {
    return Fail(cred.status());
  }
  enroll::CertManager::Options opts;
  opts.credential = *cred;
  opts.proxy = proxy;
  auto certs = enroll::CertManager::Create(opts);
  if (!certs.ok()) {
    return Fail(certs.status());
  }
  auto snap = (*certs)->Current();
  std::printf("enrolled:    %s\nserial:      %s\nexpires:     %s\n", snap.spiffe_id.c_str(),
              snap.serial.c_str(), FormatTime(snap.not_after).c_str());
  auto stub = v1::Diagnostics::NewStub((*certs)->Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
  auto stream = stub->Ping(&ctx);
  for (int i = 0; i < count; ++i) {
    v1::PingRequest req;
    req.set_sequence(static_cast<uint64_t>(i));
    auto start = std::chrono::steady_clock::now();
    v1::PingResponse resp;
    if (!stream->Write(req) || !stream->Read(&resp)) {
      break;
    }
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("ping %d:      %.3f ms (server sees %s)\n", i, ms, resp.caller_spiffe_id().c_str());
  }
  stream->WritesDone();
  grpc::Status st = stream->Finish();
  if (!st.ok()) {
    return Fail("authenticated call refused: " + st.error_message());
  }
  std::printf("OK\n");
  return kExitOk;
}

void RegisterCheckCommand(CLI::App& app, Action* run) {
  auto credentials = std::make_shared<std::string>();
  auto count = std::make_shared<int>(3);
  auto* check = app.add_subcommand(
      "check", "Enroll with a credential and ping the server over mTLS (is this credential OK?)");
  check->add_option("--credentials", *credentials, "Credential file")
      ->required()
      ->envname("DRAWBRIDGE_CREDENTIALS");
  check->add_option("--count", *count, "Pings to send")->check(CLI::Range(0, 1000));
  auto proxy = std::make_shared<std::string>();
  check->add_option("--proxy", *proxy,
                    "How to reach the server: http://[USER:PASSWORD@]HOST:PORT of an HTTP CONNECT "
                    "proxy, or direct (default: HTTPS_PROXY unless NO_PROXY names the server)");
  check->callback([=] { *run = [=] { return RunCheck(*credentials, *proxy, *count); }; });
}

}  // namespace drawbridge::cli

// `drawbridge demo`: everything on loopback in one process, with a private HTTP
// server that only the agent may reach.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>
#include <tuple>

#include "agent/agent.h"
#include "agent/local_audit.h"
#include "audit/verify.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "client/client.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process.h"
#include "common/strings.h"
#include "pki/credential.h"
#include "pki/keys.h"
#include "server/data_dir.h"
#include "server/server.h"

namespace drawbridge::cli {
namespace {

int ListenLoopback(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

int FreeLoopbackPort() {
  int port = 0;
  int fd = ListenLoopback(&port);
  ::close(fd);
  return port;
}

// The "private" service: answers every request with one line and closes.
class PrivateHttpServer {
 public:
  PrivateHttpServer() {
    fd_ = ListenLoopback(&port_);
    thread_ = std::thread([this] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) {
          return;
        }
        char buf[4096];
        (void)::recv(c, buf, sizeof(buf), 0);
        std::string body = common::StrCat("Hello from the private network! (127.0.0.1:", port_,
                                          ", reached through the Drawbridge tunnel)\n");
        std::string reply = common::StrCat(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ", body.size(),
            "\r\nConnection: close\r\n\r\n", body);
        (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~PrivateHttpServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// What `curl -p -x http://PROXY http://TARGET/` does: CONNECT, then GET.
std::string FetchThroughProxy(int proxy_port, const std::string& target) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(proxy_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return "(cannot connect to the client proxy)";
  }
  std::string request =
      common::StrCat("CONNECT ", target, " HTTP/1.1\r\nHost: ", target,
                     "\r\n\r\nGET / HTTP/1.1\r\nHost: ", target, "\r\nConnection: close\r\n\r\n");
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string Indent(const std::string& text) {
  std::string out = "    | ";
  for (char c : text) {
    if (c == '\r') {
      continue;
    }
    out.push_back(c);
    if (c == '\n') {
      out += "    | ";
    }
  }
  return out;
}

void Step(const char* text) { std::printf("\n==> %s\n", text); }

absl::StatusOr<pki::Credential> NewIdentity(server::Server& srv, const pki::Credential& admin,
                                            const std::string& identity,
                                            const std::string& out_path) {
  auto key = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  if (!key.ok()) {
    return key.status();
  }
  pki::Credential c = admin;
  c.identity = *pki::ParseIdentity(identity);
  c.key_id = *pki::KeyIdOf(key->get());
  c.private_key_pem = *pki::PrivateKeyToPem(key->get());
  const int64_t now = std::time(nullptr);  // keys' age is checked (posture IAM-03)
  absl::Status s = srv.directory()->CreateIdentity(
      {identity, true, {"127.0.0.1/32"}, now, now},  // bound to where it runs (posture IAM-02)
      {c.key_id, identity, "ES256", *pki::PublicKeyToPem(key->get()), now, 0});
  if (s.ok()) {
    s = pki::SaveCredentialFile(out_path, c);
  }
  if (!s.ok()) {
    return s;
  }
  return c;
}

int RunDemo(bool wait) {
  if (absl::Status s = common::MakeNonDumpable(); !s.ok()) {
    return Fail(s);
  }
  // The walk-through narrates; the components log warnings only (refusals).
  common::SetLogLevel(common::LogLevel::kWarn);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep narration and warnings in order
  std::string dir = common::StrCat(std::filesystem::temp_directory_path().string(),
                                   "/drawbridge-demo-", ::getpid());
  std::string data = dir + "/server";
  PrivateHttpServer private_http;
  // Stands in for the team's alerting: the server posts alerts here (posture MON-01
  // checks that a webhook is configured and reachable).
  PrivateHttpServer alert_webhook;
  const int server_port = FreeLoopbackPort();
  const int proxy_port = FreeLoopbackPort();
  const int denied_port = FreeLoopbackPort();
  const std::string private_target = common::StrCat("127.0.0.1:", private_http.port());
  const std::string denied_target = common::StrCat("127.0.0.1:", denied_port);

  Step("server init: root + intermediate CA (keys sealed with AES-256-GCM), admin credential");
  server::InitOptions init;
  init.data_dir = data;
  init.trust_domain = "demo.drawbridge.local";
  init.listen = common::StrCat("127.0.0.1:", server_port);
  if (absl::Status s = server::InitDataDir(init); !s.ok()) {
    return Fail(s);
  }
  {
    const std::string config_path = server::DataDir(data).config;
    auto text = common::ReadFile(config_path);
    const std::string commented =
        "  # alerts:\n  #   webhook: \"https://alerts.example.com/drawbridge\"\n";
    const size_t at = text.ok() ? text->find(commented) : std::string::npos;
    if (at == std::string::npos) {
      return Fail("server init wrote no alerts section to edit");
    }
    text->replace(at, commented.size(),
                  common::StrCat("  alerts:\n    webhook: \"http://127.0.0.1:",
                                 alert_webhook.port(), "/alerts\"\n"));
    if (absl::Status s = common::WriteFileAtomic(config_path, *text, 0600); !s.ok()) {
      return Fail(s);
    }
  }
  std::string policy = common::StrCat(
      "rules:\n  - name: demo-client-to-private-web\n    clients: [\"client/demo\"]\n"
      "    agents: [\"agent/demo\"]\n    destinations: [\"",
      private_target, "\"]\n");
  if (absl::Status s = common::WriteFileAtomic(dir + "/policy.yaml", policy, 0600); !s.ok()) {
    return Fail(s);
  }
  std::printf(
      "    data dir %s\n    policy: client/demo may reach %s through agent/demo\n"
      "    alerts: posted to a webhook on 127.0.0.1:%d (a stand-in, in this process)\n",
      data.c_str(), private_target.c_str(), alert_webhook.port());

  Step("server: TLS 1.3 only, one port for enrollment, agents and clients");
  server::ServerOptions sopts;
  sopts.data_dir = data;
  sopts.policy_file = dir + "/policy.yaml";
  auto srv = server::Server::Start(sopts);
  if (!srv.ok()) {
    return Fail(srv.status());
  }
  std::printf("    listening on 127.0.0.1:%d\n", server_port);
  auto admin = pki::LoadCredentialFile(server::DataDir(data).admin_credential);
  if (!admin.ok()) {
    return Fail(admin.status());
  }
  auto agent_cred = NewIdentity(**srv, *admin, "agent/demo", dir + "/agent.json");
  auto client_cred = NewIdentity(**srv, *admin, "client/demo", dir + "/client.json");
  if (!agent_cred.ok() || !client_cred.ok()) {
    return Fail(agent_cred.ok() ? client_cred.status() : agent_cred.status());
  }

  Step("agent: enrolls (in-memory TLS key, 1-hour certificate) and dials OUT to the server");
  agent::AgentOptions aopts;
  aopts.credential = *agent_cred;
  aopts.allow = {common::StrCat("127.0.0.1/32:", private_http.port())};
  aopts.data_dir = dir + "/agent";  // the agent's own audit log
  auto agent = agent::Agent::Start(aopts);
  if (!agent.ok()) {
    return Fail(agent.status());
  }
  if (!(*agent)->WaitConnected(std::chrono::seconds(10))) {
    return Fail("the agent did not connect to the server");
  }
  std::printf("    agent/demo connected; its own allowlist: %s\n", aopts.allow[0].c_str());

  Step("client: HTTP CONNECT + SOCKS5 proxy for the application");
  client::ClientOptions copts;
  copts.credential = *client_cred;
  copts.listen = common::StrCat("127.0.0.1:", proxy_port);
  auto client = client::Client::Start(copts);
  if (!client.ok()) {
    return Fail(client.status());
  }
  std::printf("    proxy on 127.0.0.1:%d\n", proxy_port);

  Step(common::StrCat("request through the tunnel: GET http://", private_target, "/").c_str());
  std::string allowed = FetchThroughProxy(proxy_port, private_target);
  std::printf("%s\n", Indent(allowed).c_str());
  bool allowed_ok = allowed.find("Hello from the private network") != std::string::npos;

  Step(common::StrCat("a request the policy does not allow: ", denied_target).c_str());
  std::string denied = FetchThroughProxy(proxy_port, denied_target);
  std::printf("%s\n", Indent(denied).c_str());
  bool denied_ok = denied.rfind("HTTP/1.1 403", 0) == 0;

  Step("audit trail: both decisions are on record, in hash chains signed by the server and agent");
  (*srv)->audit_log()->Flush();
  bool audit_ok = true;
  for (const auto& [who, db, key] :
       {std::tuple<std::string, std::string, std::string>{"server", server::DataDir(data).database,
                                                          server::DataDir(data).audit_public_key},
        {"agent", dir + "/agent/" + agent::kAgentAuditDb,
         dir + "/agent/" + agent::kAgentAuditPub}}) {
    auto pem = common::ReadFile(key);
    auto verified = pem.ok() ? audit::VerifyAuditLog(db, *pem)
                             : absl::StatusOr<audit::VerifyResult>(pem.status());
    audit_ok = audit_ok && verified.ok() && verified->ok;
    std::printf(
        "    %s: %s\n", who.c_str(),
        verified.ok() && verified->ok
            ? common::StrCat(verified->records, " records, chain and signatures verified").c_str()
            : "verification FAILED");
  }
  allowed_ok = allowed_ok && audit_ok;

  std::printf("\n%s\n", allowed_ok && denied_ok
                            ? "Demo OK: the allowed request went through, the other was denied."
                            : "Demo FAILED: see above.");
  if (!allowed_ok || !denied_ok) {
    return kExitFailed;
  }
  std::printf(
      "\nTry it yourself while this runs (Ctrl-C to stop):\n"
      "  curl -p -x http://127.0.0.1:%d http://%s/\n"
      "  curl --socks5-hostname 127.0.0.1:%d http://%s/\n"
      "  ./build/drawbridge admin --credentials %s/admin.json identity list\n"
      "  ./build/drawbridge audit query --data-dir %s --class network_activity\n"
      "  ./build/drawbridge audit verify --data-dir %s/agent\n"
      "  ./build/drawbridge posture --credentials %s/admin.json --data-dir %s\n",
      proxy_port, private_target.c_str(), proxy_port, private_target.c_str(), data.c_str(),
      data.c_str(), dir.c_str(), data.c_str(), data.c_str());
  std::fflush(stdout);
  if (wait) {
    BlockTerminationSignals();
    WaitForTerminationSignal();
  }
  (*client)->Stop();
  (*agent)->Stop();
  (*srv)->Shutdown(std::chrono::milliseconds(1000));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return kExitOk;
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, Action* run) {
  auto no_wait = std::make_shared<bool>(false);
  auto* demo =
      app.add_subcommand("demo",
                         "Server, agent, client and a private HTTP server on loopback; one request "
                         "through the tunnel, one denied");
  demo->add_flag("--no-wait", *no_wait,
                 "Exit after the walk-through instead of waiting for Ctrl-C");
  demo->callback([=] { *run = [=] { return RunDemo(!*no_wait); }; });
}

}  // namespace drawbridge::cli

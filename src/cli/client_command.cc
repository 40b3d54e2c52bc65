#include <cstdio>

#include "cli/commands.h"
#include "cli/util.h"
#include "client/client.h"
#include "common/process.h"
#include "pki/credential.h"

namespace drawbridge::cli {

void RegisterClientCommand(CLI::App& app, Action* run) {
  auto credentials = std::make_shared<std::string>();
  auto listen = std::make_shared<std::string>();
  auto forwards = std::make_shared<std::vector<std::string>>();
  auto selector = std::make_shared<std::string>();
  auto metrics_listen = std::make_shared<std::string>();
  auto handshake_ms = std::make_shared<int>(10000);
  auto no_lanes = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "client", "Forward proxy next to the application: HTTP CONNECT + SOCKS5, port forwards");
  cmd->add_option("--credentials", *credentials, "Client credential file")
      ->envname("DRAWBRIDGE_CREDENTIALS");
  cmd->add_option("--listen", *listen, "HOST:PORT for HTTP CONNECT and SOCKS5 (same port)");
  cmd->add_option("--forward", *forwards, "LISTEN=DEST, e.g. 127.0.0.1:2222=gitlab.corp:22");
  cmd->add_option("--agent", *selector, "Only use this agent identity, e.g. agent/acme");
  auto proxy = std::make_shared<std::string>();
  cmd->add_option("--proxy", *proxy,
                  "How to reach the server: http://[USER:PASSWORD@]HOST:PORT of an HTTP CONNECT "
                  "proxy, or direct (default: HTTPS_PROXY unless NO_PROXY names the server)");
  cmd->add_option("--metrics-listen", *metrics_listen,
                  "HOST:PORT for /metrics, /healthz, /readyz (plain HTTP; default: none)");
  cmd->add_option("--handshake-timeout-ms", *handshake_ms,
                  "A connection that has not finished its CONNECT/SOCKS5 request by then is closed")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  cmd->add_flag("--no-lanes", *no_lanes,
                "Carry tunnels on gRPC streams only, never on the server's data port (lanes)");
  cmd->fallthrough();

  auto destination = std::make_shared<std::string>();
  auto* stdio = cmd->add_subcommand("stdio", "One connection over stdin/stdout (ssh ProxyCommand)");
  stdio->add_option("destination", *destination, "HOST:PORT")->required();
  stdio->callback([=] {
    *run = [=] {
      auto cred = pki::LoadCredentialFile(*credentials);
      if (!cred.ok()) {
        return Fail(cred.status());
      }
      return client::RunStdio(*cred, *proxy, *destination, *selector);
    };
  });

  cmd->callback([=] {
    if (!cmd->get_subcommands().empty()) {
      return;
    }
    *run = [=] {
      if (absl::Status s = common::MakeNonDumpable(); !s.ok()) {
        return Fail(s);
      }
      auto cred = pki::LoadCredentialFile(*credentials);
      if (!cred.ok()) {
        return Fail(cred.status());
      }
      client::ClientOptions options;
      options.credential = *cred;
      options.proxy = *proxy;
      options.listen = *listen;
      options.agent_selector = *selector;
      options.metrics_listen = *metrics_listen;
      options.handshake_timeout = std::chrono::milliseconds(*handshake_ms);
      options.use_lanes = !*no_lanes;
      for (const auto& f : *forwards) {
        auto parsed = client::ParseForward(f);
        if (!parsed.ok()) {
          return Fail(parsed.status());
        }
        options.forwards.push_back(*parsed);
      }
      BlockTerminationSignals();
      auto client = client::Client::Start(options);
      if (!client.ok()) {
        return Fail(client.status());
      }
      WaitForTerminationSignal();
      (*client)->Stop();
      return kExitOk;
    };
  });
}

}  // namespace drawbridge::cli

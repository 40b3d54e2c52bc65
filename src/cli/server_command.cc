#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/log.h"
#include "common/process.h"
#include "common/strings.h"
#include "server/data_dir.h"
#include "server/server.h"

namespace drawbridge::cli {

void RegisterServerCommands(CLI::App& app, Action* run) {
  auto* server = app.add_subcommand(
      "server", "Run the broker (or `server init` to create its data directory)");
  server->require_subcommand(0, 1);
  auto serve = std::make_shared<server::ServerOptions>();
  auto grace_ms = std::make_shared<int>(10000);
  server->add_option("--data-dir", serve->data_dir, "Data directory made by `server init`");
  server->add_option("--listen", serve->listen_override,
                     "HOST:PORT to listen on (overrides server.yaml)");
  server->add_option("--advertise", serve->advertise_override,
                     "HOST:PORT this replica is reached at (overrides server.yaml's advertise "
                     "for `admin replicas list`; credentials keep the configured one)");
  server->add_option("--store", serve->store_override,
                     "postgres:// URI of the state shared by replicas (overrides server.yaml's "
                     "store; default: state.db in the data directory)");
  server->add_option("--lane-listen", serve->lane_listen_override,
                     "Data port for tunnel bytes: \"auto\" (a free port on --listen's host), "
                     "HOST:PORT (a fixed port, for firewalls and Kubernetes Services), or \"off\" "
                     "(overrides server.yaml's lane_listen)");
  server->add_option("--policy", serve->policy_file,
                     "Policy YAML (reloaded on SIGHUP); without it every dial is denied");
  serve->metrics_listen = "";  // server.yaml's `metrics_listen` unless the flag says otherwise
  server->add_option("--metrics-listen", serve->metrics_listen,
                     "HOST:PORT for /metrics, /healthz, /readyz (plain HTTP; default: "
                     "server.yaml's metrics_listen, 127.0.0.1:9464), or \"off\"");
  auto handshake_ms = std::make_shared<int>(10000);
  server
      ->add_option("--handshake-timeout-ms", *handshake_ms,
                   "Close a connection that has not completed its TLS handshake in this long")
      ->check(CLI::Range(100, 120000));
  server
      ->add_option("--shutdown-grace-ms", *grace_ms,
                   "How long in-flight calls may run after SIGINT/SIGTERM")
      ->check(CLI::Range(0, 600000));
  server->callback([server, serve, grace_ms, handshake_ms, run] {
    if (server->get_subcommands().size() > 0) {
      return;  // `server init` set its own action
    }
    serve->handshake_timeout = std::chrono::milliseconds(*handshake_ms);
    *run = [serve, grace_ms] {
      if (serve->data_dir.empty()) {
        return Fail("--data-dir is required");
      }
      // The unsealed CA key lives in this process: no core dumps, no ptrace.
      if (absl::Status s = common::MakeNonDumpable(); !s.ok()) {
        return Fail(s);
      }
      BlockTerminationSignals();
      auto s = server::Server::Start(*serve);
      if (!s.ok()) {
        return Fail(s.status());
      }
      int sig;
      while ((sig = WaitForSignal(/*hangup=*/true)) == SIGHUP) {
        (void)(*s)->ReloadPolicy();  // logs the outcome; a bad policy keeps the old one
      }
      common::LogInfo("server.shutdown",
                      {{"signal", common::StrCat(sig)}, {"grace_ms", common::StrCat(*grace_ms)}});
      (*s)->Shutdown(std::chrono::milliseconds(*grace_ms));
      return kExitOk;
    };
  });

  auto* init = server->add_subcommand("init",
                                      "Create a data directory: CA, server TLS "
                                      "certificate, state database, first admin");
  auto opts = std::make_shared<server::InitOptions>();
  init->add_option("--data-dir", opts->data_dir, "Directory to create (must be new or empty)")
      ->required();
  init->add_option("--trust-domain", opts->trust_domain, "SPIFFE trust domain, e.g. example.com")
      ->required();
  init->add_option("--listen", opts->listen, "HOST:PORT the server will listen on")
      ->capture_default_str();
  init->add_option("--advertise", opts->advertise,
                   "HOST:PORT agents and clients dial (default: --listen)");
  init->add_option("--store", opts->store,
                   "postgres:// URI for identities, keys and certificates (default: state.db in "
                   "the data directory). If the store holds a CA already, this server joins it "
                   "as a replica: give it the first one's KEK (DRAWBRIDGE_KEK_FILE)");
  auto skip_existing = std::make_shared<bool>(false);
  init->add_flag("--skip-existing", *skip_existing,
                 "A data directory already initialised (its server.yaml present, for the same "
                 "trust domain) is left as it is and this exits 0: for a service's start command "
                 "or an init container that runs at every start");
  init->callback([opts, run, skip_existing] {
    *run = [opts, skip_existing] {
      if (*skip_existing) {
        server::DataDir existing(opts->data_dir);
        if (common::PathExists(existing.config)) {
          auto config = server::LoadConfig(existing.config);
          if (!config.ok()) {
            return Fail(config.status());
          }
          if (config->trust_domain != opts->trust_domain) {
            return Fail(absl::FailedPreconditionError(common::StrCat(
                opts->data_dir, " is initialised for trust domain ", config->trust_domain, ", not ",
                opts->trust_domain, "; left as it is")));
          }
          std::printf("%s is already initialised (trust domain %s); left as it is.\n",
                      opts->data_dir.c_str(), config->trust_domain.c_str());
          return kExitOk;
        }
      }
      absl::Status s = server::InitDataDir(*opts);
      if (!s.ok()) {
        return Fail(s);
      }
      server::DataDir dir(opts->data_dir);
      if (!common::PathExists(dir.admin_credential)) {
        std::printf(
            "Initialised %s as a replica joining the deployment in the shared store.\n"
            "  CA:               the store's (its keys sealed under %s)\n"
            "  admin credential: the first replica's (identities are in the store)\n"
            "Start the server:  drawbridge server --data-dir %s --advertise HOST:PORT\n",
            opts->data_dir.c_str(), dir.kek.c_str(), opts->data_dir.c_str());
        return kExitOk;
      }
      std::printf(
          "Initialised %s for trust domain %s.\n"
          "  CA keys:         sealed with AES-256-GCM under %s (keep it apart from backups)\n"
          "  admin credential: %s (identity %s; move it somewhere safe)\n"
          "Start the server:  drawbridge server --data-dir %s\n",
          opts->data_dir.c_str(), opts->trust_domain.c_str(), dir.kek.c_str(),
          dir.admin_credential.c_str(), server::kBootstrapAdmin, opts->data_dir.c_str());
      return kExitOk;
    };
  });
}

}  // namespace drawbridge::cli

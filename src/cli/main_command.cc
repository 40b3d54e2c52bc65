#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "common/log.h"
#include "common/process.h"
#include "common/tls_policy.h"

#ifndef DRAWBRIDGE_VERSION
#define DRAWBRIDGE_VERSION "0.0.0"
#endif

namespace drawbridge::cli {

int Main(int argc, char** argv) {
  common::TuneProcessForRelay();
  CLI::App app{"Drawbridge: zero-trust connector (server, agent, client, admin)", "drawbridge"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  std::string log_level = "info";
  std::string log_format = "text";
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));

  Action run;
  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([&run] {
    run = [] {
      std::printf("drawbridge %s\n", DRAWBRIDGE_VERSION);
      return kExitOk;
    };
  });
  RegisterServerCommands(app, &run);
  RegisterAdminCommands(app, &run);
  RegisterCheckCommand(app, &run);
  RegisterAgentCommand(app, &run);
  RegisterClientCommand(app, &run);
  RegisterDemoCommand(app, &run);
  RegisterAuditCommands(app, &run);
  RegisterPostureCommand(app, &run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  common::LogLevel level;
  common::ParseLogLevel(log_level, &level);
  common::SetLogLevel(level);
  common::SetLogFormat(log_format == "json" ? common::LogFormat::kJson : common::LogFormat::kText);
  if (absl::Status s = common::EnforceTls13Only(); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return kExitFailed;
  }
  if (!run) {
    std::fprintf(stderr, "%s", app.help().c_str());
    return kExitUsage;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: unexpected failure: %s\n", e.what());
    return kExitFailed;
  }
}

}  // namespace drawbridge::cli

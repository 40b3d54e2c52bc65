#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace drawbridge::cli {

// Each subcommand registers itself on the app and sets `*run` to its action when
// selected. Actions return the process exit code.
using Action = std::function<int()>;

void RegisterServerCommands(CLI::App& app, Action* run);
void RegisterAdminCommands(CLI::App& app, Action* run);
void RegisterCheckCommand(CLI::App& app, Action* run);
void RegisterAgentCommand(CLI::App& app, Action* run);
void RegisterClientCommand(CLI::App& app, Action* run);
void RegisterDemoCommand(CLI::App& app, Action* run);
void RegisterAuditCommands(CLI::App& app, Action* run);
void RegisterPostureCommand(CLI::App& app, Action* run);

// Entry point used by app/main.cc.
int Main(int argc, char** argv);

// Exit codes: 0 ok, 1 operation failed, 2 usage error.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

}  // namespace drawbridge::cli

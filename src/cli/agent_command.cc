#include <cstdio>

#include "agent/agent.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "common/log.h"
#include "common/process.h"
#include "common/strings.h"
#include "pki/credential.h"
#include "yaml-cpp/yaml.h"

namespace drawbridge::cli {
namespace {

// Reads `allow:` (a list of destinations) and `data_dir:` from an agent config file.
absl::Status ReadAgentConfig(const std::string& path, std::vector<std::string>* allow,
                             std::string* data_dir) {
  try {
    YAML::Node root = YAML::LoadFile(path);
    for (const auto& kv : root) {
      std::string key = kv.first.as<std::string>();
      if (key == "data_dir") {
        if (data_dir->empty()) {  // the command line wins
          *data_dir = kv.second.as<std::string>();
        }
        continue;
      }
      if (key != "allow") {
        return absl::InvalidArgumentError(common::StrCat(path, ": unknown setting \"", key, "\""));
      }
      for (const auto& entry : kv.second) {
        allow->push_back(entry.as<std::string>());
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(path + ": " + e.what());
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterAgentCommand(CLI::App& app, Action* run) {
  auto credentials = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto opts = std::make_shared<agent::AgentOptions>();
  auto* cmd = app.add_subcommand(
      "agent", "Run inside the private network: dial out to the server, connect to allowed hosts");
  cmd->add_option("--credentials", *credentials, "Agent credential file")
      ->required()
      ->envname("DRAWBRIDGE_CREDENTIALS");
  cmd->add_option("--allow", opts->allow,
                  "Destination this agent may reach (repeatable): host:443, *.corp:22, "
                  "10.0.0.0/8:443");
  cmd->add_option("--config", *config, "YAML file with `allow:` (a list of destinations)");
  cmd->add_option("--instance-id", opts->instance_id, "Name of this instance (default: random)");
  cmd->add_option("--metrics-listen", opts->metrics_listen,
                  "HOST:PORT for /metrics, /healthz, /readyz (plain HTTP; default: none)");
  cmd->add_option("--data-dir", opts->data_dir,
                  "Directory for the agent's own audit log (default: the credential file's "
                  "name with .agent-data instead of .json); one per running agent");
  auto proxy = std::make_shared<std::string>();
  cmd->add_option("--proxy", *proxy,
                  "How to reach the server: http://[USER:PASSWORD@]HOST:PORT of an HTTP CONNECT "
                  "proxy, or direct (default: HTTPS_PROXY unless NO_PROXY names the server)");
  auto no_lanes = std::make_shared<bool>(false);
  cmd->add_flag("--no-lanes", *no_lanes,
                "Carry tunnels on gRPC streams only, never on the server's data port (lanes)");
  cmd->callback([=] {
    *run = [=] {
      if (absl::Status s = common::MakeNonDumpable(); !s.ok()) {
        return Fail(s);
      }
      auto cred = pki::LoadCredentialFile(*credentials);
      if (!cred.ok()) {
        return Fail(cred.status());
      }
      agent::AgentOptions options = *opts;
      options.use_lanes = !*no_lanes;
      options.credential = *cred;
      options.proxy = *proxy;
      if (!config->empty()) {
        if (absl::Status s = ReadAgentConfig(*config, &options.allow, &options.data_dir); !s.ok()) {
          return Fail(s);
        }
      }
      if (options.data_dir.empty()) {
        std::string base = *credentials;
        if (base.size() > 5 && base.ends_with(".json")) {
          base.resize(base.size() - 5);
        }
        options.data_dir = base + ".agent-data";
      }
      if (options.allow.empty()) {
        common::LogWarn("agent.allowlist_empty", {{"effect", "every connection is refused"}});
      }
      BlockTerminationSignals();
      auto agent = agent::Agent::Start(options);
      if (!agent.ok()) {
        return Fail(agent.status());
      }
      WaitForTerminationSignal();
      (*agent)->Stop();
      return kExitOk;
    };
  });
}

}  // namespace drawbridge::cli

// `drawbridge admin agents|sessions|policy|audit ...`: what is connected, cutting a
// connection, the policy in force, and the audit trail as it is written.
#include <chrono>
#include <cstdio>

#include "audit/query.h"
#include "audit/record.h"
#include "cli/admin_session.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/strings.h"
#include "policy/destination.h"
#include "policy/policy.h"

namespace drawbridge::cli {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Duration(int64_t ms) {
  if (ms < 60'000) {
    return common::StrCat(ms / 1000, "s");
  }
  if (ms < 3'600'000) {
    return common::StrCat(ms / 60'000, "m", (ms / 1000) % 60, "s");
  }
  return common::StrCat(ms / 3'600'000, "h", (ms / 60'000) % 60, "m");
}

int AgentsList(const AdminFlags& f) {
  v1::ListAgentsResponse resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::ListAgents, v1::ListAgentsRequest(), &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
    return kExitOk;
  }
  std::printf("%-28s %-18s %-22s %-22s %-21s %-7s %s\n", "IDENTITY", "INSTANCE", "ADDRESS",
              "VERSION", "CONNECTED SINCE", "STREAMS", "ALLOWLIST");
  for (const auto& a : resp.agents()) {
    std::vector<std::string> allow(a.allowlist().begin(), a.allowlist().end());
    std::printf("%-28s %-18s %-22s %-22s %-21s %-7d %s%s\n", a.identity().c_str(),
                a.instance_id().c_str(), a.peer().c_str(), a.version().c_str(),
                FormatTime(a.connected_since_unix()).c_str(), a.active_streams(),
                common::Join(allow, ",").c_str(), a.ejected() ? "  (ejected)" : "");
  }
  return kExitOk;
}

int ReplicasList(const AdminFlags& f) {
  v1::ListReplicasResponse resp;
  if (absl::Status s =
          CallAdmin(f, &v1::Admin::Stub::ListReplicas, v1::ListReplicasRequest(), &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
    return kExitOk;
  }
  std::printf("%-18s %-28s %-21s %s\n", "REPLICA", "ADVERTISE", "STARTED", "LAST HEARTBEAT");
  for (const auto& r : resp.replicas()) {
    std::printf("%-18s %-28s %-21s %lld ms ago%s\n", r.id().c_str(), r.advertise().c_str(),
                FormatTime(r.started_at_unix()).c_str(),
                static_cast<long long>(std::max<int64_t>(0, r.heartbeat_age_ms())),
                r.self() ? "  (this server)" : "");
  }
  return kExitOk;
}

int SessionsList(const AdminFlags& f) {
  v1::ListSessionsResponse resp;
  if (absl::Status s =
          CallAdmin(f, &v1::Admin::Stub::ListSessions, v1::ListSessionsRequest(), &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
    return kExitOk;
  }
  const int64_t now = NowMs();
  std::printf("%-32s %-24s %-36s %-28s %12s %12s %s\n", "ID", "CLIENT", "AGENT", "DESTINATION",
              "UP", "DOWN", "DURATION");
  for (const auto& s : resp.sessions()) {
    std::string agent = common::StrCat(s.agent(), " (", s.agent_instance(), ")");
    std::printf("%-32s %-24s %-36s %-28s %12llu %12llu %s\n", s.id().c_str(), s.client().c_str(),
                agent.c_str(), s.destination().c_str(), (unsigned long long)s.bytes_up(),
                (unsigned long long)s.bytes_down(),
                Duration(std::max<int64_t>(0, now - s.started_unix_ms())).c_str());
  }
  return kExitOk;
}

int SessionsKill(const AdminFlags& f) {
  v1::KillSessionRequest req;
  req.set_id(f.session_id);
  v1::KillSessionResponse resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::KillSession, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    const auto& s = resp.session();
    std::printf("Ended session %s: %s -> %s via %s (%llu bytes up, %llu down).\n", s.id().c_str(),
                s.client().c_str(), s.destination().c_str(), s.agent_instance().c_str(),
                (unsigned long long)s.bytes_up(), (unsigned long long)s.bytes_down());
  }
  return kExitOk;
}

int PolicyGet(const AdminFlags& f) {
  v1::PolicyInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::GetPolicy, v1::GetPolicyRequest(), &resp);
      !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf("# %d rule(s), kept in %s, sha256 %s\n%s", resp.rule_names_size(),
                resp.source().c_str(), resp.sha256().c_str(), resp.yaml().c_str());
  }
  return kExitOk;
}

// Reads and validates a policy file, with the file named in any error.
absl::StatusOr<std::pair<std::string, std::shared_ptr<const policy::Policy>>> ReadPolicy(
    const std::string& path) {
  auto text = common::ReadFile(path);
  if (!text.ok()) {
    return text.status();
  }
  auto parsed = policy::Policy::Parse(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(common::StrCat(path, ": ", parsed.status().message()));
  }
  return std::pair{*std::move(text), *std::move(parsed)};
}

int PolicySet(const AdminFlags& f) {
  // Checked here first: a mistake is reported without a round trip, and the
  // server checks again anyway.
  auto local = ReadPolicy(f.file);
  if (!local.ok()) {
    return Fail(local.status());
  }
  v1::SetPolicyRequest req;
  req.set_yaml(local->first);
  v1::PolicyInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::SetPolicy, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "Policy set: %d rule(s), kept in %s (sha256 %.16s...); %d live connection(s) it no "
        "longer allows were ended.\n",
        resp.rule_names_size(), resp.source().c_str(), resp.sha256().c_str(),
        resp.connections_ended());
  }
  return kExitOk;
}

int PolicyCheck(const AdminFlags& f) {
  std::shared_ptr<const policy::Policy> checked;
  std::string origin;
  if (!f.file.empty()) {
    auto local = ReadPolicy(f.file);
    if (!local.ok()) {
      return Fail(local.status());
    }
    checked = local->second;
    origin = f.file;
  } else {
    // No file: the policy the server enforces now.
    v1::PolicyInfo resp;
    if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::GetPolicy, v1::GetPolicyRequest(), &resp);
        !s.ok()) {
      return Fail(s);
    }
    auto parsed = policy::Policy::Parse(resp.yaml());
    if (!parsed.ok()) {
      return Fail(parsed.status());
    }
    checked = *parsed;
    origin = "the server's policy";
  }
  if (f.client.empty() && f.destination.empty()) {
    std::printf("%s is valid: %zu rule(s).\n", origin.c_str(), checked->rules().size());
    return kExitOk;
  }
  if (f.client.empty() || f.destination.empty()) {
    return Fail("give both --client and --destination (and optionally --agent)");
  }
  auto dest = policy::ParseDestination(f.destination);
  if (!dest.ok()) {
    return Fail(dest.status());
  }
  std::printf("%s", checked->Explain(f.client, f.agent, *dest).c_str());
  bool allowed = f.agent.empty() ? checked->AllowsClient(f.client, *dest)
                                 : checked->AgentAllowed(f.client, f.agent, *dest);
  return allowed ? kExitOk : kExitFailed;
}

int AuditTail(const AdminFlags& f) {
  auto session = Connect(f);
  if (!session.ok()) {
    return Fail(session.status());
  }
  v1::TailAuditRequest req;
  req.set_after_seq(f.after_seq);
  req.set_last(f.last);
  req.set_follow(f.follow);
  grpc::ClientContext ctx;  // no deadline: --follow runs until interrupted
  auto reader = session->stub->TailAudit(&ctx, req);
  v1::AuditBatch batch;
  if (!f.json) {
    std::printf("%s", audit::FormatStreamHeader().c_str());
  }
  while (reader->Read(&batch)) {
    for (const auto& line : batch.records_json()) {
      if (f.json) {
        std::printf("%s\n", line.c_str());
      } else if (auto r = audit::FromJson(line); r.ok()) {
        std::printf("%s", audit::FormatStreamLine(*r).c_str());
      }
    }
    std::fflush(stdout);
  }
  if (absl::Status s = Call(reader->Finish()); !s.ok()) {
    return Fail(s);
  }
  return kExitOk;
}

}  // namespace

void RegisterAdminOperations(CLI::App* admin, std::shared_ptr<AdminFlags> f, Action* run) {
  auto bind = [run, f](CLI::App* cmd, std::function<int(const AdminFlags&)> fn) {
    cmd->callback([run, f, fn] { *run = [f, fn] { return fn(*f); }; });
  };
  auto group = [](CLI::App* parent, const char* name, const char* help) {
    auto* cmd = parent->add_subcommand(name, help);
    cmd->require_subcommand(1);
    cmd->fallthrough();
    return cmd;
  };

  auto* agents = group(admin, "agents", "Connected agent instances");
  bind(agents->add_subcommand("list", "Agent instances: address, version, streams, allowlist"),
       AgentsList);

  auto* replicas = group(admin, "replicas", "Servers sharing this one's store (PostgreSQL)");
  bind(replicas->add_subcommand("list", "Live replicas: id, address, last heartbeat"),
       ReplicasList);

  auto* sessions = group(admin, "sessions", "Live tunneled connections");
  bind(sessions->add_subcommand("list", "Live connections: client, agent, destination, bytes"),
       SessionsList);
  auto* kill = sessions->add_subcommand("kill", "End one live connection now");
  kill->add_option("id", f->session_id, "Session ID as `sessions list` shows it")->required();
  bind(kill, SessionsKill);

  auto* policy = group(admin, "policy", "The access policy: get, set, check");
  bind(policy->add_subcommand("get", "Print the policy in force (canonical YAML)"), PolicyGet);
  auto* set = policy->add_subcommand(
      "set", "Replace the policy (validated whole; ends connections it no longer allows)");
  set->add_option("-f,--file", f->file, "Policy YAML")->required();
  bind(set, PolicySet);
  auto* check = policy->add_subcommand(
      "check", "Validate a policy, or explain which rule lets a client reach a destination");
  check->add_option("-f,--file", f->file, "Policy YAML (default: the server's policy)");
  check->add_option("--client", f->client, "client/NAME");
  check->add_option("--destination", f->destination, "HOST:PORT");
  check->add_option("--agent", f->agent, "agent/NAME (default: any agent)");
  bind(check, PolicyCheck);

  auto* audit = group(admin, "audit", "The server's audit trail over the Admin API");
  auto* tail = audit->add_subcommand("tail", "Print the last records, and new ones with --follow");
  tail->add_option("-n,--last", f->last, "Start with the last N records")->capture_default_str();
  tail->add_option("--after", f->after_seq, "Start after this seq instead");
  tail->add_flag("-f,--follow", f->follow, "Keep printing records as they are written");
  bind(tail, AuditTail);
}

}  // namespace drawbridge::cli

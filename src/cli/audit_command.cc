#include <chrono>
#include <cstdio>

#include "agent/local_audit.h"
#include "audit/query.h"
#include "audit/record.h"
#include "audit/shared_audit.h"
#include "audit/verify.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "server/config.h"
#include "server/data_dir.h"
#include "store/store.h"

namespace drawbridge::cli {
namespace {

// Where an audit log and its public key are: a server data dir (state.db and
// audit/audit.pub; or, for a replica on a shared store, every replica's chain in
// PostgreSQL and the CA root that endorses their keys), an agent data dir
// (agent-audit.db and agent-audit.pub), explicit files (a copy handed to an
// auditor), or a shared store named with --store.
struct LogLocation {
  std::string db;
  std::string public_key;  // file; empty: none
  std::string store;       // postgres:// URI: the replicas' chains there
  std::string ca;          // shared store: the root CA certificate file
};

absl::StatusOr<LogLocation> Locate(const std::string& data_dir, const std::string& db,
                                   const std::string& public_key, const std::string& store_uri,
                                   const std::string& ca) {
  LogLocation loc{db, public_key, store_uri, ca};
  if (!loc.store.empty() && !store::IsPostgresLocation(loc.store)) {
    return absl::InvalidArgumentError("--store must be a postgres:// or postgresql:// URI");
  }
  if (!loc.store.empty() && !loc.db.empty()) {
    return absl::InvalidArgumentError("give --db FILE or --store URI, not both");
  }
  if (!data_dir.empty()) {
    server::DataDir server_dir(data_dir);
    const std::string agent_db = common::JoinPath(data_dir, agent::kAgentAuditDb);
    if (common::PathExists(server_dir.config)) {
      auto config = server::LoadConfig(server_dir.config);
      if (!config.ok()) {
        return config.status();
      }
      if (loc.db.empty() && loc.store.empty() && store::IsPostgresLocation(config->store)) {
        loc.store = config->store;
      }
      if (!loc.store.empty()) {
        loc.ca = loc.ca.empty() ? server_dir.root_cert : loc.ca;
        return loc;
      }
      loc.db = loc.db.empty() ? server_dir.database : loc.db;
      if (loc.public_key.empty()) {
        loc.public_key = server_dir.audit_public_key;
      }
    } else if (common::PathExists(agent_db)) {
      loc.db = loc.db.empty() ? agent_db : loc.db;
      if (loc.public_key.empty()) {
        loc.public_key = common::JoinPath(data_dir, agent::kAgentAuditPub);
      }
    } else {
      return absl::NotFoundError(
          common::StrCat(data_dir, " holds neither a server (server.yaml) nor an agent audit log (",
                         agent::kAgentAuditDb, ")"));
    }
  }
  if (loc.db.empty() && loc.store.empty()) {
    return absl::InvalidArgumentError(
        "give --data-dir DIR, --db FILE for a copy of a log, or --store URI for replicas' chains");
  }
  return loc;
}

// `audit verify` of every replica's chain in a shared store.
int VerifyShared(const LogLocation& loc, bool chain_only, bool json) {
  std::string roots;
  if (!chain_only) {
    if (loc.ca.empty()) {
      return Fail(
          "give --ca FILE (the deployment's root CA certificate, ca/root.crt of a "
          "replica's data directory), or --chain-only");
    }
    auto read = common::ReadFile(loc.ca);
    if (!read.ok()) {
      return Fail(common::StrCat("cannot read the root CA certificate ", loc.ca,
                                 " (give --ca FILE, or --chain-only): ", read.status().message()));
    }
    roots = *read;
  }
  auto chains = audit::VerifySharedAuditLog(loc.store, roots, chain_only);
  if (!chains.ok()) {
    return Fail(chains.status());
  }
  bool all_ok = true;
  nlohmann::json out_chains = nlohmann::json::array();
  for (const audit::ChainVerifyResult& c : *chains) {
    const audit::VerifyResult& r = c.result;
    all_ok = all_ok && c.ok();
    if (json) {
      nlohmann::json j = {{"replica", c.replica_id},
                          {"ok", c.ok()},
                          {"records", r.records},
                          {"first_seq", r.first_seq},
                          {"last_seq", r.last_seq},
                          {"anchor_seq", r.anchor_seq},
                          {"checkpoints", r.checkpoints},
                          {"key_endorsed", c.key_endorsed},
                          {"head_verified", r.head_verified}};
      if (!r.ok) {
        j["first_bad_seq"] = r.first_bad_seq;
        j["problem"] = r.problem;
      }
      if (!c.key_problem.empty()) {
        j["key_problem"] = c.key_problem;
      }
      out_chains.push_back(std::move(j));
      continue;
    }
    if (!r.ok) {
      std::printf("TAMPERED: replica %s: first bad record seq %llu: %s\n", c.replica_id.c_str(),
                  (unsigned long long)r.first_bad_seq, r.problem.c_str());
    } else if (!c.ok()) {
      std::printf("UNTRUSTED: replica %s: its chain's audit key is not the replica's: %s\n",
                  c.replica_id.c_str(), c.key_problem.c_str());
    } else {
      std::printf("OK: replica %s: %llu records (seq %llu..%llu) chain intact",
                  c.replica_id.c_str(), (unsigned long long)r.records,
                  (unsigned long long)r.first_seq, (unsigned long long)r.last_seq);
      if (r.anchor_seq > 0) {
        std::printf(", starting after pruned seq %llu", (unsigned long long)r.anchor_seq);
      }
      if (r.signatures_checked) {
        std::printf("; key endorsed by the CA; %llu signed checkpoints%s verified",
                    (unsigned long long)r.checkpoints,
                    r.head_verified ? " and the signed head" : "");
      } else {
        std::printf("; signatures NOT checked (--chain-only)");
      }
      std::printf("\n");
    }
  }
  if (json) {
    std::printf("%s\n", nlohmann::json{{"ok", all_ok}, {"chains", out_chains}}.dump().c_str());
  } else {
    std::printf("%s: %zu replica chain%s\n", all_ok ? "ALL OK" : "FAILED", chains->size(),
                chains->size() == 1 ? "" : "s");
  }
  return all_ok ? kExitOk : kExitFailed;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RegisterVerify(CLI::App* audit_cmd, Action* run) {
  struct Args {
    std::string data_dir, db, public_key, store, ca;
    bool chain_only = false;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = audit_cmd->add_subcommand(
      "verify", "Check the audit log's hash chain and signatures (offline; read-only)");
  cmd->add_option("--data-dir", args->data_dir, "Server or agent data directory");
  cmd->add_option("--db", args->db, "The log's database file (e.g. a copy of state.db)");
  cmd->add_option("--public-key", args->public_key,
                  "PEM public key the log is signed with (default: the data dir's)");
  cmd->add_option("--store", args->store,
                  "postgres:// URI of replicas' shared store: verify every replica's chain "
                  "(default with --data-dir of a replica: its server.yaml's store)");
  cmd->add_option("--ca", args->ca,
                  "Shared store: the root CA certificate that endorses the replicas' audit keys "
                  "(default: the data dir's ca/root.crt)");
  cmd->add_flag("--chain-only", args->chain_only,
                "Check only the hash chain, without signatures (no public key at hand)");
  cmd->add_flag("--json", args->json, "Print the result as one JSON object");
  cmd->callback([=] {
    *run = [=] {
      auto loc = Locate(args->data_dir, args->db, args->public_key, args->store, args->ca);
      if (!loc.ok()) {
        return Fail(loc.status());
      }
      if (!loc->store.empty()) {
        return VerifyShared(*loc, args->chain_only, args->json);
      }
      std::string pem;
      if (!args->chain_only) {
        auto read = common::ReadFile(loc->public_key);
        if (!read.ok()) {
          return Fail(common::StrCat(
              "cannot read the audit public key ", loc->public_key,
              " (give --public-key FILE, or --chain-only): ", read.status().message()));
        }
        pem = *read;
      }
      auto result = audit::VerifyAuditLog(loc->db, pem);
      if (!result.ok()) {
        return Fail(result.status());
      }
      const audit::VerifyResult& r = *result;
      if (args->json) {
        nlohmann::json out = {{"ok", r.ok},
                              {"db", loc->db},
                              {"records", r.records},
                              {"first_seq", r.first_seq},
                              {"last_seq", r.last_seq},
                              {"anchor_seq", r.anchor_seq},
                              {"checkpoints", r.checkpoints},
                              {"signatures_checked", r.signatures_checked},
                              {"head_verified", r.head_verified}};
        if (!r.ok) {
          out["first_bad_seq"] = r.first_bad_seq;
          out["problem"] = r.problem;
        }
        std::printf("%s\n", out.dump().c_str());
      } else if (r.ok) {
        std::printf("OK: %llu records (seq %llu..%llu) chain intact", (unsigned long long)r.records,
                    (unsigned long long)r.first_seq, (unsigned long long)r.last_seq);
        if (r.anchor_seq > 0) {
          std::printf(", starting after pruned seq %llu", (unsigned long long)r.anchor_seq);
        }
        if (r.signatures_checked) {
          std::printf("; %llu signed checkpoints%s verified", (unsigned long long)r.checkpoints,
                      r.head_verified ? " and the signed head" : "");
        } else {
          std::printf("; signatures NOT checked (--chain-only)");
        }
        std::printf("\n");
      } else {
        std::printf("TAMPERED: first bad record seq %llu: %s\n",
                    (unsigned long long)r.first_bad_seq, r.problem.c_str());
      }
      return r.ok ? kExitOk : kExitFailed;
    };
  });
}

void RegisterQuery(CLI::App* audit_cmd, Action* run) {
  struct Args {
    std::string data_dir, db, from, to, store;
    audit::QueryFilter filter;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = audit_cmd->add_subcommand(
      "query", "Show audit records: who reached what, when, through which agent, how much");
  cmd->add_option("--data-dir", args->data_dir, "Server or agent data directory");
  cmd->add_option("--db", args->db, "The log's database file (e.g. a copy of state.db)");
  cmd->add_option("--store", args->store,
                  "postgres:// URI of replicas' shared store: every replica's records, by time "
                  "(default with --data-dir of a replica: its server.yaml's store)");
  cmd->add_option("--from", args->from,
                  "Records at or after: 2026-12-01, 2026-12-01T10:00:00Z, or 24h / 7d ago");
  cmd->add_option("--to", args->to, "Records before (same forms)");
  cmd->add_option("--identity", args->filter.identity,
                  "Actor, client or agent identity (client/ci, agent/acme-gitlab)");
  cmd->add_option("--destination", args->filter.destination,
                  "host:port, or a prefix ending in * (gitlab.corp:*)");
  cmd->add_option("--outcome", args->filter.outcome, "success or failure")
      ->check(CLI::IsMember({"success", "failure"}));
  cmd->add_option("--class", args->filter.class_name,
                  "Event class: authentication, network_activity, account_change, "
                  "api_activity, detection_finding (or its OCSF uid)");
  cmd->add_option("--limit", args->filter.limit, "At most this many records (0: all)");
  cmd->add_flag("--json", args->json, "JSON lines (the export format) instead of a table");
  cmd->callback([=] {
    *run = [=] {
      auto loc = Locate(args->data_dir, args->db, "", args->store, "");
      if (!loc.ok()) {
        return Fail(loc.status());
      }
      audit::QueryFilter filter = args->filter;
      const int64_t now = NowMs();
      for (auto [text, bound] :
           {std::pair{&args->from, &filter.from_ms}, std::pair{&args->to, &filter.to_ms}}) {
        if (!text->empty()) {
          auto t = audit::ParseTimeArg(*text, now);
          if (!t.ok()) {
            return Fail(t.status());
          }
          *bound = *t;
        }
      }
      auto records = loc->store.empty() ? audit::QueryAuditLog(loc->db, filter)
                                        : audit::QuerySharedAuditLog(loc->store, filter);
      if (!records.ok()) {
        return Fail(records.status());
      }
      if (args->json) {
        for (const auto& r : *records) {
          std::printf("%s\n", audit::ToJsonLine(r).c_str());
        }
      } else {
        std::printf("%s", audit::FormatTable(*records).c_str());
      }
      return kExitOk;
    };
  });
}

}  // namespace

void RegisterAuditCommands(CLI::App& app, Action* run) {
  auto* audit_cmd = app.add_subcommand(
      "audit", "Verify and query a tamper-evident audit log (server's or agent's)");
  audit_cmd->require_subcommand(1);
  RegisterVerify(audit_cmd, run);
  RegisterQuery(audit_cmd, run);
}

}  // namespace drawbridge::cli

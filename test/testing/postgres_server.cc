#include "testing/postgres_server.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/strings.h"

namespace drawbridge::testing {
namespace {

// Debian installs each major version's server under /usr/lib/postgresql/N/bin.
std::string FindServerBinDir() {
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    std::string bin = entry.path().string() + "/bin";
    if (!std::filesystem::exists(bin + "/initdb")) {
      continue;
    }
    int version = std::atoi(entry.path().filename().c_str());
    if (version > best_version) {
      best_version = version;
      best = bin;
    }
  }
  return best;
}

constexpr int kPort = 5432;  // only names the socket file: there is no TCP listener

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> pg(new PostgresServer());
  pg->bin_dir_ = FindServerBinDir();
  if (pg->bin_dir_.empty()) {
    return absl::FailedPreconditionError(
        "no PostgreSQL server under /usr/lib/postgresql (scripts/install-deps.sh installs it)");
  }
  std::string tmpl = (std::filesystem::temp_directory_path() / "drawbridge-pg-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  pg->dir_ = tmpl;
  if (::geteuid() == 0) {
    struct passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      return absl::FailedPreconditionError("running as root and there is no postgres user");
    }
    if (::chown(pg->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::InternalError("cannot give the cluster directory to postgres");
    }
    pg->user_ = "postgres";
  } else {
    struct passwd* pw = ::getpwuid(::geteuid());
    pg->user_ = pw != nullptr ? pw->pw_name : "postgres";
  }
  const std::string data = pg->dir_ + "/data";
  if (pg->RunTool("initdb", {"-D", data, "-U", pg->user_, "--auth=trust", "-E", "UTF8", "--no-sync",
                             "--no-instructions"}) != 0) {
    return absl::InternalError(common::StrCat("initdb failed; see ", pg->dir_, "/commands.log"));
  }
  if (absl::Status s = pg->Restart(); !s.ok()) {
    return s;
  }
  return pg;
}

PostgresServer::~PostgresServer() {
  if (running_) {
    Stop().IgnoreError();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::Status PostgresServer::Stop() {
  if (RunTool("pg_ctl", {"-D", dir_ + "/data", "-m", "immediate", "-w", "stop"}) != 0) {
    return absl::InternalError(common::StrCat("pg_ctl stop failed; see ", dir_, "/commands.log"));
  }
  running_ = false;
  return absl::OkStatus();
}

absl::Status PostgresServer::Restart() {
  // Unix socket in our directory only; fsync on (the store's durability is
  // part of what the tests check).
  const std::string options = common::StrCat("-c listen_addresses='' -k ", dir_, " -p ", kPort,
                                             " -c fsync=on -c max_connections=200");
  if (RunTool("pg_ctl", {"-D", dir_ + "/data", "-l", dir_ + "/server.log", "-o", options, "-w",
                         "-t", "60", "start"}) != 0) {
    return absl::InternalError(common::StrCat("pg_ctl start failed; see ", dir_, "/server.log"));
  }
  running_ = true;
  return absl::OkStatus();
}

std::string PostgresServer::Uri(const std::string& database) const {
  return common::StrCat("postgresql:///", database, "?host=", dir_, "&port=", kPort,
                        "&user=", user_);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(const std::string& name) {
  PGconn* conn = PQconnectdb(Uri("postgres").c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError("cannot reach the test PostgreSQL: " + error);
  }
  PGresult* r = PQexec(conn, common::StrCat("CREATE DATABASE \"", name, "\"").c_str());
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string error = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  if (!ok) {
    return absl::InternalError("CREATE DATABASE failed: " + error);
  }
  return Uri(name);
}

int PostgresServer::RunTool(const std::string& tool, const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (::geteuid() == 0) {
    argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  }
  argv.push_back(bin_dir_ + "/" + tool);
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string log = dir_ + "/commands.log";
  pid_t pid = ::fork();
  if (pid < 0) {
    return -1;
  }
  if (pid == 0) {
    FILE* out = std::fopen(log.c_str(), "a");
    if (out != nullptr) {
      ::dup2(fileno(out), 1);
      ::dup2(fileno(out), 2);
    }
    std::vector<char*> cargv;
    for (auto& a : argv) {
      cargv.push_back(a.data());
    }
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) {
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace drawbridge::testing

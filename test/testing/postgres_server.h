#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace drawbridge::testing {

// A private PostgreSQL cluster for one test binary: initdb into a temporary
// directory, started with pg_ctl, reachable only through a Unix socket in that
// directory (no TCP listener), removed with everything in it on destruction.
// Debian's server binaries (/usr/lib/postgresql/N/bin) run as the "postgres"
// user when the test runs as root, since PostgreSQL refuses to run as root.
class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Creates an empty database and returns its postgresql:// URI.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  std::string Uri(const std::string& database) const;

  // Stops the server (immediate shutdown, as a crash would) and starts it
  // again on the same data; for outage tests.
  absl::Status Stop();
  absl::Status Restart();

  const std::string& dir() const { return dir_; }

 private:
  PostgresServer() = default;
  // Runs a server binary (as "postgres" when we are root); its output goes to
  // dir_/commands.log. The exit status, or -1 if it could not run.
  int RunTool(const std::string& tool, const std::vector<std::string>& args);

  std::string bin_dir_;
  std::string dir_;
  std::string user_;  // the cluster's superuser
  bool running_ = false;
};

}  // namespace drawbridge::testing

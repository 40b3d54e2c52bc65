#include "testing/test_store.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "common/strings.h"
#include "testing/postgres_server.h"

namespace drawbridge::testing {

std::string TestStoreLocation() {
  const char* wanted = std::getenv("DRAWBRIDGE_TEST_STORE");
  if (wanted == nullptr || std::string_view(wanted).empty() ||
      std::string_view(wanted) == "sqlite") {
    return "";
  }
  if (std::string_view(wanted) != "postgres") {
    std::fprintf(stderr, "DRAWBRIDGE_TEST_STORE must be sqlite or postgres, not %s\n", wanted);
    std::abort();
  }
  static absl::Mutex mu;
  static std::unique_ptr<PostgresServer> server;  // destroyed at exit: the cluster goes
  static int databases = 0;
  absl::MutexLock lock(&mu);
  if (server == nullptr) {
    auto started = PostgresServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "cannot start PostgreSQL for DRAWBRIDGE_TEST_STORE=postgres: %s\n",
                   std::string(started.status().message()).c_str());
      std::abort();
    }
    server = std::move(*started);
  }
  auto uri = server->CreateDatabase(common::StrCat("suite_", ++databases));
  if (!uri.ok()) {
    std::fprintf(stderr, "cannot create a test database: %s\n",
                 std::string(uri.status().message()).c_str());
    std::abort();
  }
  return *uri;
}

}  // namespace drawbridge::testing

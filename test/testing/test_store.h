#pragma once

#include <string>

namespace drawbridge::testing {

// The store a single-node suite's server uses: "" (the embedded SQLite
// default, DATA_DIR/state.db) unless the environment says
// DRAWBRIDGE_TEST_STORE=postgres; then the URI of a fresh database in a
// private PostgreSQL cluster that the test binary starts on first use
// (PostgresServer) and removes at exit. ctest runs server_test and
// tunnel_test both ways (the *_postgres entries), so the whole single-node
// behaviour is checked against each store. A cluster that cannot start is a
// fatal test error, never a silent fallback to SQLite.
std::string TestStoreLocation();

}  // namespace drawbridge::testing

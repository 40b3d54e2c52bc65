#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace drawbridge::store {

// The PostgreSQL schema as an ordered list of migrations: entry i takes the
// database from version i to i + 1 (recorded in schema_migrations). Entries
// are only ever appended, never edited once released: a replica of an older
// release refuses a database whose version it does not know.
const std::vector<std::string>& PostgresMigrations();

// pg_advisory_xact_lock id that serialises migrations of replicas starting
// together ("DRAWBRDG" in ASCII).
inline constexpr int64_t kMigrationLockId = 0x4452415742524447;

}  // namespace drawbridge::store

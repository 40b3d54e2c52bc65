#pragma once

#include <cstdint>
#include <string>

namespace drawbridge::server {

// A live tunneled connection, as `admin sessions list` shows it.
struct SessionInfo {
  std::string id;  // conn_id as 32 hex digits
  std::string client;
  std::string client_peer;
  std::string agent;
  std::string agent_instance;
  std::string destination;
  std::string resolved_address;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  int64_t started_unix_ms = 0;
};

}  // namespace drawbridge::server

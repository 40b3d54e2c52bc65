#pragma once

#include <asio.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

// Listening sockets for our own TCP servers (the client proxy, metrics endpoints).
namespace drawbridge::net {

// "127.0.0.1:1080", "[::1]:9464", "localhost:0" (as 127.0.0.1): a numeric IP and a
// port (0 picks one). InvalidArgument naming the address otherwise.
absl::StatusOr<asio::ip::tcp::endpoint> ParseListenAddress(const std::string& address);

// An acceptor bound and listening on `endpoint` (SO_REUSEADDR), or Unavailable
// with the address and the reason (in use, not local, ...).
absl::StatusOr<std::shared_ptr<asio::ip::tcp::acceptor>> Listen(asio::io_context& io,
                                                                const asio::ip::tcp::endpoint& at);

}  // namespace drawbridge::net

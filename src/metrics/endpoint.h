#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/metrics.h"

namespace drawbridge::metrics {

// A readiness condition: OK, or why the process cannot serve yet.
struct ReadyCheck {
  std::string name;  // "store", "ca", "listening", ...
  std::function<absl::Status()> check;
};

// The plaintext observability listener (DESIGN §7.4: the only one, loopback by
// default): GET /metrics (Prometheus text), /healthz (the process answers) and
// /readyz (every ReadyCheck passes; 503 naming the first that does not).
// Everything else is 404 (405 for other methods, 400 for malformed requests).
// One thread of its own; connections are closed after one response, and a
// client has 5 s to send its request.
class Endpoint {
 public:
  struct Options {
    std::string listen = "127.0.0.1:0";
    const Registry* registry = nullptr;
    std::vector<ReadyCheck> ready;
  };
  static absl::StatusOr<std::unique_ptr<Endpoint>> Start(Options options);
  ~Endpoint();

  int port() const { return port_; }

 private:
  explicit Endpoint(Options options) : options_(std::move(options)) {}
  void Accept();
  std::string Respond(const std::string& head) const;

  const Options options_;
  asio::io_context io_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace drawbridge::metrics

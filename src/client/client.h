#pragma once

#include <asio.hpp>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/proxy_protocol.h"
#include "client/tunnel_watch.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "lane/dialer.h"
#include "metrics/endpoint.h"
#include "tunnel/bridge_metrics.h"
#include "tunnel/socket_bridge.h"

namespace drawbridge::client {

struct Forward {
  std::string listen;       // 127.0.0.1:2222
  std::string destination;  // gitlab.corp:22
};

struct ClientOptions {
  pki::Credential credential;
  std::string proxy;   // how to reach the server: enroll::CertManager::Options::proxy
  std::string listen;  // CONNECT + SOCKS5 proxy; empty for none
  std::vector<Forward> forwards;
  std::string agent_selector;  // optional agent/NAME
  std::chrono::milliseconds handshake_timeout{10000};
  int io_threads = 2;
  // Carry tunnels on lanes (the server's data port) when the server offers them
  // and a probe got through; false: gRPC streams only (`--no-lanes`).
  bool use_lanes = true;
  // HOST:PORT for /metrics, /healthz, /readyz (plain HTTP, keep it on loopback);
  // empty: none.
  std::string metrics_listen;
};

// Parses "LISTEN=DEST" as given to --forward.
absl::StatusOr<Forward> ParseForward(const std::string& text);

// Maps the server's dial result to what the proxy protocols can say.
TunnelResult ResultFor(v1::DialCode code);

// `drawbridge client`: a forward proxy next to the application. Every accepted
// connection becomes one Tunnel.Dial stream.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Start(ClientOptions options);
  ~Client();
  void Stop();

  int proxy_port() const { return proxy_port_; }
  const std::vector<int>& forward_ports() const { return forward_ports_; }
  size_t active_connections() const { return bridges_.size(); }
  // Lanes are in use (the server offered them, a probe got through) and a
  // pre-opened one is ready for the next connection.
  bool lanes_ready() const { return lanes_ != nullptr && lanes_->ready() > 0; }
  int metrics_port() const { return endpoint_ ? endpoint_->port() : 0; }
  const std::string& instance_id() const { return instance_id_; }
  // True once the server has registered this client's Watch stream.
  bool WaitWatching(std::chrono::milliseconds timeout) { return watch_->WaitReady(timeout); }

  // Opens one tunnel to `destination` for an already connected socket (on a strand).
  // `reply` builds the bytes sent to the socket once the result is known.
  void Tunnel(asio::ip::tcp::socket socket, const std::string& destination,
              std::string initial_payload, std::function<std::string(const v1::DialResult&)> reply);

 private:
  // What Tunnel was asked for, kept to dial again.
  struct DialRequest {
    std::string destination;
    std::string initial_payload;
    std::function<std::string(const v1::DialResult&)> reply;
  };
  // Attempt `attempt` (from 1) of `request`. One that ends before the server
  // answered (unreachable: UNAVAILABLE) dials again, once per server address,
  // so a dial made while the client fails over reaches the next address instead
  // of resetting the application.
  void Dial(asio::ip::tcp::socket socket, std::shared_ptr<const DialRequest> request,
            size_t attempt);
  explicit Client(ClientOptions options);
  absl::Status Listen(const std::string& address, std::optional<std::string> forward_to, int* port);
  void AcceptLoop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor,
                  std::optional<std::string> forward_to);

  ClientOptions options_;
  const std::string instance_id_;  // names this process on Dial and Watch
  std::unique_ptr<enroll::CertManager> certs_;
  std::unique_ptr<TunnelWatch> watch_;
  asio::io_context io_;
  // After io_ (destroyed before it); its callbacks run on io_'s threads only.
  std::unique_ptr<lane::LaneDialer> lanes_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  std::vector<std::shared_ptr<asio::ip::tcp::acceptor>> acceptors_;
  tunnel::BridgeSet bridges_;
  int proxy_port_ = 0;
  std::vector<int> forward_ports_;
  bool stopped_ = false;
  metrics::Registry metrics_registry_;
  tunnel::BridgeMetrics metrics_{&metrics_registry_, "drawbridge_client"};
  std::unique_ptr<metrics::Endpoint> endpoint_;  // last: scrapes read the above
};

// `drawbridge client stdio DEST`: one tunnel over stdin/stdout (ssh ProxyCommand).
// Returns the process exit code.
int RunStdio(const pki::Credential& credential, const std::string& proxy,
             const std::string& destination, const std::string& agent_selector);

}  // namespace drawbridge::client

#pragma once

#include <asio.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lane/tls_context.h"
#include "lane/tls_lane.h"
#include "server/tunnel_service.h"

namespace drawbridge::server {

// The data port: lanes (docs/tunnel.md "Lanes") carry Dial and Accept streams
// over their own mTLS 1.3 connection instead of gRPC, for throughput and
// latency. Each accepted lane completes its TLS handshake (TLS 1.3 only, a
// client certificate chaining to our CA, ALPN drawbridge-lane/1) and sends its
// first frame within the handshake timeout; the certificate is then
// authenticated exactly as for a gRPC call and the stream handed to the
// TunnelService, which cannot tell a lane from a gRPC stream. A "Probe" lane
// only checks that the port works and is answered with an OK status.
class LaneListener {
 public:
  struct Options {
    std::string address;  // HOST:PORT (port 0: any)
    lane::SslContext ssl;
    TunnelService* service = nullptr;
    std::chrono::milliseconds handshake_timeout{10000};
    int threads = 2;
  };
  static absl::StatusOr<std::unique_ptr<LaneListener>> Start(Options options);
  ~LaneListener();

  int port() const { return port_; }
  // Takes no new lane; those open carry on until their streams end. Any thread.
  void StopAccepting();

 private:
  explicit LaneListener(Options options) : options_(std::move(options)) {}
  void AcceptNext();
  void OnAccepted(asio::ip::tcp::socket socket);
  // Resets every lane still open, so that the streams on them end (their
  // reactions run while the threads still do) instead of being left in
  // reference cycles when the io_context goes.
  void ResetOpenLanes();

  Options options_;
  asio::io_context io_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  absl::Mutex lanes_mu_;
  std::vector<std::weak_ptr<lane::TlsLane>> lanes_
      ABSL_GUARDED_BY(lanes_mu_);  // every one accepted
};

}  // namespace drawbridge::server

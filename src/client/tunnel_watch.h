#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace drawbridge::client {

// Keeps one Tunnel.Watch stream open to the server for this client process
// (reconnecting with exponential backoff and full jitter), and reports what the
// server says on it:
//   - `on_ended(conn_id, reason)`: the server ended that tunnel with an error
//     (revocation, `sessions kill`, policy change, idle timeout, shutdown). The
//     client resets the application's socket at once: its Dial stream may have
//     no read outstanding while the application reads slowly, so without this
//     the application would go on receiving what was queued for it.
//   - `on_refused(status)`: the server refused this identity (PERMISSION_DENIED:
//     disabled or its key removed). Every tunnel of this identity is cut.
// Callbacks run on a gRPC thread and must not block.
class TunnelWatch {
 public:
  struct Options {
    std::function<std::shared_ptr<grpc::Channel>()> channel;  // current mTLS channel
    std::string instance_id;                                  // sent as drawbridge-instance
    std::function<void(const std::string& conn_id, const std::string& reason)> on_ended;
    std::function<void(const grpc::Status& status)> on_refused;
    // The server's data port for lanes as the live stream says: its value once
    // the server registered the stream, 0 when it has none or the stream is
    // down (a restarted server may listen elsewhere: lanes wait for its word).
    std::function<void(int lane_port)> on_lane_port;
    // The server is draining (a replica about to stop): the owner opens a new
    // connection for its next dials (CertManager::Reconnect); a new stream
    // opens at once on the channel `channel` then returns. The old stream stays
    // open until that server ends it: it still names the tunnels the draining
    // server ends (its shutdown grace), which no other replica knows of.
    std::function<void()> on_goaway;
    std::chrono::milliseconds max_backoff{3000};  // as the agent's Control stream
  };

  static std::unique_ptr<TunnelWatch> Start(Options options);
  ~TunnelWatch();  // stops the stream and the thread

  // True once the server has registered the stream (within `timeout`).
  bool WaitReady(std::chrono::milliseconds timeout);

 private:
  class Stream;
  explicit TunnelWatch(Options options) : options_(std::move(options)) {}
  void Loop();
  void SetReady(bool ready);
  // Keeps a stream whose server said goaway until that server ends it.
  void KeepDraining(std::shared_ptr<Stream> stream);

  static constexpr size_t kMaxDraining = 4;
  // A goaway this soon after the stream opened: pause kQuickGoawayPause first.
  static constexpr std::chrono::milliseconds kQuickGoaway{1000};
  static constexpr std::chrono::milliseconds kQuickGoawayPause{200};

  const Options options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool goaway_ ABSL_GUARDED_BY(mu_) = false;  // the live stream said goaway
  std::shared_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);
  // Streams to draining servers, kept for their `ended` events (oldest first,
  // at most kMaxDraining: a server that keeps saying goaway cannot pile them up).
  std::vector<std::shared_ptr<Stream>> draining_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace drawbridge::client

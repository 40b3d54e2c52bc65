#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"

namespace drawbridge::tunnel {

class BridgeSet;

// Bytes read from a socket per frame (the most DESIGN allows: every frame costs
// thread hand-offs in gRPC and here, so fewer, larger frames cost less CPU per
// byte). Frames carry at most kMaxFrameBytes.
inline constexpr size_t kChunkBytes = 64 * 1024;
inline constexpr size_t kMaxFrameBytes = 64 * 1024;

struct BridgeStats {
  uint64_t bytes_from_socket = 0;  // sent up the stream
  uint64_t bytes_to_socket = 0;    // received from the stream
  v1::DialCode result = v1::DIAL_OK;
  grpc::Status status;
  std::string error;  // first local error, if any
};

// Carries one TCP socket over one gRPC bidi stream, as the calling side of
// Tunnel.Dial (client) or Tunnel.Accept (agent).
//
// Start: the open frame goes out at once; bytes flow once it is written, the
// Dial's OK result arrived and (if gated) the gate opened.
//
// Flow control: each direction is a relay with one chunk of lookahead. Up: a
// socket read of at most kChunkBytes becomes a gRPC write, and the next socket
// read runs while that write is in flight; its chunk waits until the write
// completed (gRPC applies HTTP/2 flow control), and no further read starts
// meanwhile. Down likewise: a frame read from the stream becomes a socket write
// while the next frame is read. So memory per connection is bounded by four
// chunks, backpressure runs end to end, and the socket and the stream work in
// parallel rather than taking turns.
//
// Threads: every state change runs on the socket's strand; gRPC reactions only
// post to it. gRPC calls are made from the strand without locks (a reaction may
// run inline inside them). A hold keeps the call alive until no operation is in
// flight; then the socket is closed and the object deletes itself after OnDone.
class SocketBridge final : public grpc::ClientBidiReactor<v1::Frame, v1::Frame>,
                           public std::enable_shared_from_this<SocketBridge> {
 public:
  using Bind =
      std::function<void(grpc::ClientContext*, grpc::ClientBidiReactor<v1::Frame, v1::Frame>*)>;

  struct Options {
    v1::Frame open;  // first frame sent
    // Dial: wait for the server's DialResult before moving data. `on_result`
    // returns the bytes to write to the socket first (a CONNECT or SOCKS5 reply);
    // when the result is not OK they are written and the socket is closed.
    bool expect_result = false;
    std::function<std::string(const v1::DialResult&)> on_result;
    std::string initial_payload;  // bytes already read from the socket (sent first)
    // Accept: open the stream and send the open frame at once, but move no byte in
    // either direction until OpenGate(OK). Lets the agent's audit record become
    // durable while the stream is being set up instead of before it.
    bool gated = false;
    std::function<void(const BridgeStats&)> on_done;  // once, at the very end
    class BridgeSet* set = nullptr;                   // if set, the bridge is in it while live
  };

  // The socket's executor must be a strand (asio::make_strand). `bind` attaches
  // the reactor to a call, e.g. stub->async()->Dial(ctx, reactor).
  // The bridge keeps itself alive until the call is done; the returned pointer
  // is only needed to Cancel it.
  static std::shared_ptr<SocketBridge> Start(asio::ip::tcp::socket socket, Options options,
                                             Bind bind);

  // Ends the connection (shutdown): cancels the stream and closes the socket.
  void Cancel();

  // For a `gated` bridge: OK lets bytes flow; an error ends the connection with it
  // as the reason. Call exactly once; thread-safe.
  void OpenGate(const absl::Status& status);

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  SocketBridge(asio::ip::tcp::socket socket, Options options);

  template <typename Fn>
  void OnStrand(Fn fn) {
    asio::post(socket_.get_executor(), std::move(fn));
  }
  void Begin(Bind bind);
  void HandleWriteDone(bool ok);
  void HandleReadDone(bool ok);
  void StartPumps();
  void ReadSocket();
  void SendUp();
  void DeliverDown();
  void Fail(const std::string& why);
  void MaybeRelease();

  // Declared first so it is destroyed last: the owner learns that the bridge is
  // gone only after the socket (and its executor) have been destroyed.
  struct SetMembership {
    BridgeSet* set = nullptr;
    const SocketBridge* key = nullptr;
    ~SetMembership();
  } membership_;
  asio::ip::tcp::socket socket_;
  Options options_;
  grpc::ClientContext context_;
  v1::Frame out_;              // frame being written
  v1::Frame in_;               // frame being read
  std::string socket_buffer_;  // socket read target (up)
  size_t up_pending_bytes_ = 0;
  bool up_pending_ = false;  // socket_buffer_ holds a chunk (or EOF) to send
  bool up_pending_eof_ = false;
  std::string down_buffer_;    // bytes being written to the socket (down)
  bool down_pending_ = false;  // in_ holds a frame to deliver
  std::string reply_;          // bytes written to the socket before the pumps start
  BridgeStats stats_;

  bool open_sent_ = false;
  bool result_ok_ = false;  // Dial: OK result received (Accept: always)
  bool gate_open_ = false;  // see Options::gated
  bool pumps_started_ = false;
  bool up_fin_sent_ = false;  // socket EOF forwarded
  bool up_done_ = false;      // ... and acknowledged by the stream
  bool down_done_ = false;    // fin received, socket write side shut
  bool failed_ = false;
  bool closing_ = false;    // result not OK: write the reply, then close
  bool grpc_read_ = false;  // operations in flight
  bool grpc_write_ = false;
  bool socket_read_ = false;
  bool socket_write_ = false;
  bool released_ = false;
  std::shared_ptr<SocketBridge> self_;  // dropped after OnDone
};

// Live bridges of one owner (agent or client), to cancel them all on shutdown.
class BridgeSet {
 public:
  // False once CancelAllAndWait has begun: the caller must drop the connection.
  bool Add(const std::shared_ptr<SocketBridge>& bridge);
  void Remove(const SocketBridge* bridge);
  size_t size() const;
  // Cancels every live bridge and waits up to `timeout` for them to finish.
  bool CancelAllAndWait(std::chrono::milliseconds timeout);

 private:
  mutable absl::Mutex mu_;
  std::map<const SocketBridge*, std::weak_ptr<SocketBridge>> bridges_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace drawbridge::tunnel

#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
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
  std::string error;  // first local error, if any: the socket was reset
  // Dial: the stream ended before any answer and the socket went to
  // Options::redial instead of being reset (the connection lives on there).
  bool redialed = false;
  std::string conn_id;  // the server's name for the tunnel (Dial: from the result)

  // Why a tunnel that had opened ended with an error: the local error, followed
  // by the stream's status when the server gave a reason (so "stream ended by the
  // server" says why); empty if it ended cleanly or never opened.
  std::string Failure() const {
    if (result != v1::DIAL_OK) {
      return "";
    }
    if (status.ok() || status.error_message().empty()) {
      return error;
    }
    return error.empty() ? status.error_message() : error + ": " + status.error_message();
  }
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
// Threads: state is guarded by mu_, and each event is handled on the thread it
// arrives on (a gRPC reaction or an Asio completion). The socket is
// non-blocking and is tried at once: a gRPC reaction that finds bytes waiting
// (or room to write) moves them itself, so the steady state costs no thread
// hand-off; only when the socket would block does an Asio wait take over. gRPC
// calls (Start*, TryCancel, RemoveHold) are collected under mu_ and made after
// it is released, since a reaction may run inline inside them. A hold keeps the
// call alive until no operation is in flight; then the socket is closed and the
// object deletes itself after OnDone.
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
    // The tunnel's conn_id when the caller knows it (Accept); a Dial learns it
    // from the result. Names the bridge in its set (BridgeSet::AbortByConnId).
    std::string conn_id;
    // How to cancel the call when it is not a gRPC call (a lane::LaneCall):
    // ClientContext::TryCancel does not reach it.
    std::function<void()> cancel_call;
    // Dial: if the stream ends UNAVAILABLE before the dial result (the server
    // was not reached, or went away before answering), nothing has moved in
    // either direction and the application has been told nothing: the socket
    // goes to `redial` (once, after on_done's stats say `redialed`) to be
    // dialled again, e.g. at the server's next address, instead of being reset.
    // Empty: reset it, as for any error.
    std::function<void(asio::ip::tcp::socket)> redial;
  };

  // `bind` attaches the reactor to a call, e.g. stub->async()->Dial(ctx, reactor).
  // The socket's executor runs the Asio waits (any executor; a strand is fine).
  // The bridge keeps itself alive until the call is done; the returned pointer
  // is only needed to Cancel it or open its gate.
  static std::shared_ptr<SocketBridge> Start(asio::ip::tcp::socket socket, Options options,
                                             Bind bind);

  // Ends the connection with an error: cancels the stream and resets the
  // socket (SO_LINGER 0), dropping whatever is still queued for it, so the
  // application sees an error rather than a clean end of stream.
  void Abort(const std::string& reason);
  // Abort on shutdown.
  void Cancel() { Abort("connection shut down"); }

  // For a `gated` bridge: OK lets bytes flow; an error ends the connection with it
  // as the reason. Call exactly once; thread-safe.
  void OpenGate(const absl::Status& status);

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  // gRPC calls decided under mu_, made by Run() once it is released.
  struct Calls {
    bool start_write = false;  // out_
    bool start_read = false;   // in_
    bool cancel = false;
    bool remove_hold = false;  // last: may delete this
  };

  SocketBridge(asio::ip::tcp::socket socket, Options options);
  void Run(const Calls& calls);
  void HandleWriteDone(bool ok, Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleReadDone(bool ok, Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleResult(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartPumps(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartData(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReadSocket(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnSocketRead(const asio::error_code& ec, size_t n, Calls* calls)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendUp(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeliverDown(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes reply_ (asynchronously), then runs `then` under mu_ unless it failed.
  void WriteReply(void (SocketBridge::*then)(Calls*)) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the connection: cancels the stream and closes the socket. Every error
  // resets it (abortive close, invariant 8); only a refused dial whose reply was
  // written closes it cleanly, since the reply is complete.
  enum class Close { kAbortive, kGraceful };
  void Fail(const std::string& why, Calls* calls, Close how = Close::kAbortive)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stream itself has ended (a read or write completed with !ok): fail the
  // socket as Fail does, but do not cancel the call, which finishes by itself;
  // a cancel now would replace the server's status (its reason) with CANCELLED.
  void FailStreamEnded(const std::string& why, Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeRelease(Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the socket abortively (SO_LINGER 0).
  void ResetSocket() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `fn` under mu_, then the gRPC calls it decided.
  template <typename Fn>
  void Locked(Fn fn) {
    Calls calls;
    // Run() touches the call after mu_ is released. Once this bridge has failed,
    // another thread may release it (MaybeRelease, RemoveHold, OnDone) in that
    // window, which would free it under our feet while Run() still cancels:
    // hold a reference until Run() is done.
    std::shared_ptr<SocketBridge> keep;
    {
      absl::MutexLock lock(&mu_);
      fn(&calls);
      if (calls.cancel || calls.remove_hold) {
        keep = self_;
      }
    }
    Run(calls);
  }

  // Declared first so it is destroyed last: the owner learns that the bridge is
  // gone only after the socket (and its executor) have been destroyed.
  struct SetMembership {
    BridgeSet* set = nullptr;
    const SocketBridge* key = nullptr;
    ~SetMembership();
  } membership_;
  absl::Mutex mu_;
  asio::ip::tcp::socket socket_ ABSL_GUARDED_BY(mu_);
  Options options_;
  grpc::ClientContext context_;
  // Owned by gRPC while grpc_write_ / grpc_read_; by the holder of mu_ otherwise.
  v1::Frame out_;  // frame being written
  v1::Frame in_;   // frame being read
  // Socket read target (up); allocated for a read and freed while the socket is
  // idle, so an idle connection holds no chunk buffer.
  std::unique_ptr<char[]> read_buffer_ ABSL_GUARDED_BY(mu_);
  size_t up_pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool up_pending_ ABSL_GUARDED_BY(mu_) = false;  // read_buffer_ holds a chunk (or EOF)
  bool up_pending_eof_ ABSL_GUARDED_BY(mu_) = false;
  std::string down_buffer_ ABSL_GUARDED_BY(mu_);    // bytes an Asio write is writing (down)
  bool down_pending_ ABSL_GUARDED_BY(mu_) = false;  // in_ holds a frame to deliver
  std::string reply_ ABSL_GUARDED_BY(mu_);          // written to the socket before the pumps start
  BridgeStats stats_ ABSL_GUARDED_BY(mu_);

  bool open_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool result_ok_ ABSL_GUARDED_BY(mu_) = false;  // Dial: OK result received (Accept: always)
  bool gate_open_ ABSL_GUARDED_BY(mu_) = false;  // see Options::gated
  bool pumps_started_ ABSL_GUARDED_BY(mu_) = false;
  bool up_fin_sent_ ABSL_GUARDED_BY(mu_) = false;  // socket EOF forwarded
  bool up_done_ ABSL_GUARDED_BY(mu_) = false;      // ... and acknowledged by the stream
  bool down_done_ ABSL_GUARDED_BY(mu_) = false;    // fin received, socket write side shut
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;    // result not OK: write the reply, then close
  bool grpc_read_ ABSL_GUARDED_BY(mu_) = false;  // operations in flight
  bool grpc_write_ ABSL_GUARDED_BY(mu_) = false;
  bool socket_read_ ABSL_GUARDED_BY(mu_) = false;   // an Asio wait for readability
  bool socket_write_ ABSL_GUARDED_BY(mu_) = false;  // an Asio write
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  // The stream ended before the dial result: OnDone's status decides between
  // Options::redial and the reset; the socket stays open until then.
  bool redial_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<SocketBridge> self_ ABSL_GUARDED_BY(mu_);  // dropped by OnDone
};

// Live bridges of one owner (agent or client), to cancel them all on shutdown
// and to abort the one the server names (TunnelEnded).
class BridgeSet {
 public:
  // False once CancelAllAndWait has begun: the caller must drop the connection.
  bool Add(const std::shared_ptr<SocketBridge>& bridge);
  void Remove(const SocketBridge* bridge);
  // Names a live bridge by its tunnel's conn_id.
  void SetConnId(const SocketBridge* bridge, const std::string& conn_id);
  // Aborts the bridge named `conn_id`; false if there is none (ended already).
  bool AbortByConnId(const std::string& conn_id, const std::string& reason);
  // Aborts every live bridge; returns how many.
  int AbortAll(const std::string& reason);
  size_t size() const;
  // Cancels every live bridge and waits up to `timeout` for them to finish.
  bool CancelAllAndWait(std::chrono::milliseconds timeout);

 private:
  mutable absl::Mutex mu_;
  struct Entry {
    std::weak_ptr<SocketBridge> bridge;
    std::string conn_id;  // empty until known
  };
  std::map<const SocketBridge*, Entry> bridges_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, const SocketBridge*> by_conn_id_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::shared_ptr<SocketBridge>> LiveLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
};

}  // namespace drawbridge::tunnel

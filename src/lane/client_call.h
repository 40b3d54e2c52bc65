#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/http_proxy.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "lane/tls_context.h"
#include "lane/tls_lane.h"

namespace drawbridge::lane {

// Where and how a lane connects: the server's host (from the credential), the
// data port it advertised, the name its certificate must carry, and a TLS
// context holding our current certificate.
struct LaneTarget {
  std::string host;
  uint16_t port = 0;
  std::string server_name;
  SslContext ssl;
  // Reached through this HTTP proxy (CONNECT host:port), if set.
  std::optional<common::HttpProxy> proxy;
};

// Connects to `target` (resolve, TCP, [CONNECT through the proxy,] TLS handshake, within 10 s) on
// `executor` (a strand, which the lane keeps). `done` runs on that strand.
void ConnectLane(asio::any_io_executor executor, const LaneTarget& target,
                 std::function<void(absl::StatusOr<std::shared_ptr<TlsLane>>)> done);

// Stands in for the gRPC call of a Dial or Accept stream: a
// grpc::ClientBidiReactor (tunnel::SocketBridge) is bound to it exactly as to
// a gRPC call and cannot tell the difference. The first frame written carries
// the lane's hello (method and instance id); the server's status arrives as
// the last frame, and the call then ends with it, as a gRPC call would.
//
// Semantics kept from gRPC's callback API: operations started before StartCall
// wait for it; one Read and one Write at a time; once the call has ended,
// reads and writes complete with ok=false; OnDone runs once, after every
// operation has completed and every hold is removed. Reactions run on the
// lane's strand, never inline inside the call that started the operation.
class LaneCall : public grpc::ClientCallbackReaderWriter<v1::Frame, v1::Frame>,
                 public std::enable_shared_from_this<LaneCall> {
 public:
  // `executor` must be a strand. The call keeps itself alive until OnDone.
  static std::shared_ptr<LaneCall> Create(asio::any_io_executor executor, LaneTarget target,
                                          std::string method, std::string instance_id);
  // On a lane already connected (pre-opened, lane::LaneDialer): no handshake
  // on the dial's path.
  // `reuse` runs once when the stream ends: with the lane when it ended cleanly
  // with the lane in step (the server then waits for the next stream on it),
  // with nullptr when the lane was closed.
  using Reuse = std::function<void(std::shared_ptr<TlsLane>)>;
  static std::shared_ptr<LaneCall> CreateOn(std::shared_ptr<TlsLane> lane, std::string method,
                                            std::string instance_id, Reuse reuse);
  // Before StartCall, on the thread that creates the reactor.
  void Bind(grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
    reactor_ = reactor;
    BindReactor(reactor);
  }

  // What TryCancel does for a gRPC call: ends it with CANCELLED and resets the
  // connection. Any thread, any time (before StartCall too).
  void Cancel();

  void StartCall() override;
  void Write(const v1::Frame* frame, grpc::WriteOptions options) override;
  void WritesDone() override;
  void Read(v1::Frame* frame) override;
  void AddHold(int holds) override;
  void RemoveHold() override;

 private:
  LaneCall(asio::any_io_executor executor, LaneTarget target, std::string method,
           std::string instance_id);
  // All on the strand.
  void Connect();
  void Flush();  // starts the queued read and write once connected
  void StartLaneWrite();
  void StartLaneRead();
  void OnLaneRead(absl::Status status);
  void OnLaneWrite(absl::Status status);
  // The call has ended with `status` (the first one wins). `lane_in_step`: the
  // server's OK status was read and nothing else is in flight, so the lane can
  // carry another stream.
  void End(grpc::Status status, bool lane_in_step = false);
  void MaybeDone();

  asio::any_io_executor executor_;
  LaneTarget target_;
  const std::string method_;
  const std::string instance_id_;
  grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor() { return reactor_; }

  // Strand-only state.
  grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor_ = nullptr;
  std::shared_ptr<LaneCall> self_;  // until OnDone
  std::shared_ptr<TlsLane> lane_;
  Reuse reuse_;
  bool started_ = false;
  bool connected_ = false;
  bool hello_sent_ = false;
  const v1::Frame* write_ = nullptr;  // queued or in flight
  bool write_in_flight_ = false;
  v1::Frame* read_ = nullptr;
  bool read_in_flight_ = false;
  // The status is still to be read but the reactor reads no more (a write
  // failed, or it released its hold): read frames, discarding data, until it
  // comes, as gRPC would receive it by itself.
  void AwaitStatus();
  bool draining_for_status_ = false;
  bool write_failed_ = false;
  v1::Frame drain_frame_;
  int holds_ = 0;
  bool ended_ = false;
  grpc::Status status_;
  bool done_ = false;
};

}  // namespace drawbridge::lane

#pragma once

// A harness for SocketBridge without a broker: an in-process gRPC server (plain
// TCP on loopback) whose Tunnel.Accept echoes every data frame back and answers
// a fin with a fin, and loopback TCP pairs whose one end is bridged to it. Used
// by the bridge's tests and its micro-benchmark.

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "testing/loopback.h"
#include "tunnel/socket_bridge.h"

namespace drawbridge::testing {

class EchoTunnelService final : public v1::Tunnel::CallbackService {
 public:
  // Data frames received on all streams (the open frame is not counted).
  std::atomic<uint64_t> data_frames{0};

  grpc::ServerBidiReactor<v1::Frame, v1::Frame>* Accept(grpc::CallbackServerContext*) override {
    return new Echo(this);
  }

 private:
  // Strict relay: one read, one write of the same frame, then the next read.
  class Echo final : public grpc::ServerBidiReactor<v1::Frame, v1::Frame> {
   public:
    explicit Echo(EchoTunnelService* service) : service_(service) { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      if (in_.has_open()) {
        StartRead(&in_);
        return;
      }
      if (!in_.fin()) {
        service_->data_frames.fetch_add(1);
      }
      out_.Clear();
      out_.Swap(&in_);
      StartWrite(&out_);
    }
    void OnWriteDone(bool ok) override {
      if (!ok || out_.fin()) {
        Finish(grpc::Status::OK);
        return;
      }
      StartRead(&in_);
    }
    void OnDone() override { delete this; }

   private:
    EchoTunnelService* service_;
    v1::Frame in_;
    v1::Frame out_;
  };
};

class BridgeHarness {
 public:
  BridgeHarness() : work_(asio::make_work_guard(io_)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Tunnel::NewStub(channel_);
    thread_ = std::thread([this] { io_.run(); });
  }

  ~BridgeHarness() {
    bridges_.CancelAllAndWait(std::chrono::seconds(5));
    server_->Shutdown();
    work_.reset();
    io_.stop();
    thread_.join();
  }

  EchoTunnelService& service() { return service_; }

  // Connects a loopback TCP pair, bridges one end over Tunnel.Accept and returns
  // the other (a blocking socket the caller owns), or -1.
  // `bind` attaches the bridge to another call than this harness's Accept.
  int Open(tunnel::SocketBridge::Options options,
           std::shared_ptr<tunnel::SocketBridge>* bridge = nullptr,
           tunnel::SocketBridge::Bind bind = nullptr) {
    asio::ip::tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
    int fd = ConnectToLoopback(acceptor.local_endpoint().port());
    if (fd < 0) {
      return -1;
    }
    asio::ip::tcp::socket socket(asio::make_strand(io_));
    acceptor.accept(socket);
    options.open.mutable_open()->set_conn_id("bench");
    options.set = &bridges_;
    if (!bind) {
      bind = [this](grpc::ClientContext* ctx,
                    grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        stub_->async()->Accept(ctx, reactor);
      };
    }
    auto started = tunnel::SocketBridge::Start(std::move(socket), std::move(options), bind);
    if (bridge != nullptr) {
      *bridge = started;
    }
    return fd;
  }

  size_t live_bridges() const { return bridges_.size(); }
  // The echo server's stub (it implements Accept only: a Dial ends UNIMPLEMENTED).
  v1::Tunnel::Stub* stub() { return stub_.get(); }
  tunnel::BridgeSet& bridges() { return bridges_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  EchoTunnelService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tunnel::Stub> stub_;
  tunnel::BridgeSet bridges_;
  std::thread thread_;
};

}  // namespace drawbridge::testing

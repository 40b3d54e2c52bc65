#include "lane/client_call.h"

#include "common/strings.h"

namespace drawbridge::lane {
namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(10);

grpc::Status Unavailable(const std::string& message) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
}

// One connection attempt; `done` runs exactly once.
class Connector : public std::enable_shared_from_this<Connector> {
 public:
  using Done = std::function<void(absl::StatusOr<std::shared_ptr<TlsLane>>)>;
  Connector(asio::any_io_executor executor, LaneTarget target, Done done)
      : executor_(executor),
        target_(std::move(target)),
        done_(std::move(done)),
        resolver_(executor),
        socket_(executor),
        timer_(executor) {}

  void Start() {
    timer_.expires_after(kConnectTimeout);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) {
        self->Fail(common::StrCat("lane: connecting to ", self->Where(), " timed out"));
      }
    });
    // Through a proxy, TCP goes to the proxy, which resolves the server's name.
    const std::string& host = target_.proxy ? target_.proxy->host : target_.host;
    const uint16_t port = target_.proxy ? target_.proxy->port : target_.port;
    resolver_.async_resolve(
        host, std::to_string(port),
        [self = shared_from_this()](const asio::error_code& ec,
                                    asio::ip::tcp::resolver::results_type results) {
          if (ec) {
            self->Fail(common::StrCat("lane: resolve ", self->NextHop(), ": ", ec.message()));
            return;
          }
          asio::async_connect(
              self->socket_, results,
              [self](const asio::error_code& connect_ec, const asio::ip::tcp::endpoint&) {
                if (connect_ec) {
                  self->Fail(common::StrCat("lane: connect to ", self->NextHop(), ": ",
                                            connect_ec.message()));
                  return;
                }
                if (self->target_.proxy) {
                  self->Connect();
                } else {
                  self->Handshake();
                }
              });
        });
  }

 private:
  std::string Where() const { return common::StrCat(target_.host, ":", target_.port); }
  std::string NextHop() const {
    return target_.proxy ? common::StrCat("proxy ", target_.proxy->display) : Where();
  }

  // CONNECT HOST:PORT through the proxy, then TLS inside the tunnel it opens.
  void Connect() {
    request_ = common::ConnectRequest(target_.host, target_.port, *target_.proxy);
    asio::async_write(
        socket_, asio::buffer(request_),
        [self = shared_from_this()](const asio::error_code& ec, size_t) {
          if (ec) {
            self->Fail(common::StrCat("lane: ", self->NextHop(), ": ", ec.message()));
            return;
          }
          // The answer's head only: the server says nothing before our
          // ClientHello, so nothing of the tunnel can follow it yet.
          asio::async_read_until(
              self->socket_, asio::dynamic_buffer(self->answer_, common::kMaxConnectResponse),
              "\r\n\r\n", [self](const asio::error_code& read_ec, size_t head) {
                if (read_ec) {
                  self->Fail(common::StrCat("lane: ", self->NextHop(), " answered no CONNECT: ",
                                            read_ec == asio::error::not_found
                                                ? std::string("answer longer than 8 KiB")
                                                : read_ec.message()));
                  return;
                }
                absl::Status ok = common::CheckConnectResponse(
                    std::string_view(self->answer_).substr(0, head), *self->target_.proxy);
                if (!ok.ok()) {
                  self->Fail(common::StrCat("lane: ", ok.message()));
                  return;
                }
                if (self->answer_.size() != head) {
                  self->Fail(common::StrCat("lane: ", self->NextHop(),
                                            " sent bytes after its CONNECT answer"));
                  return;
                }
                self->Handshake();
              });
        });
  }

  void Handshake() {
    if (!done_) {
      return;  // timed out meanwhile
    }
    auto ssl = NewClientSsl(target_.ssl.get(), target_.server_name);
    if (!ssl.ok()) {
      Fail(std::string(ssl.status().message()));
      return;
    }
    lane_ = TlsLane::Create(std::move(socket_), std::move(*ssl));
    // Weak: the lane keeps this callback until the handshake ends, and we keep
    // the lane; a strong reference would be a cycle that outlives an
    // io_context torn down mid-handshake. The timer's wait keeps us alive.
    lane_->Handshake([weak = weak_from_this()](absl::Status status) {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      if (!status.ok()) {
        self->Fail(std::string(status.message()));
        return;
      }
      if (self->done_) {
        self->timer_.cancel();
        Done done = std::move(self->done_);
        self->done_ = nullptr;
        done(self->lane_);
      }
    });
  }

  void Fail(const std::string& why) {
    if (!done_) {
      return;
    }
    timer_.cancel();
    resolver_.cancel();
    asio::error_code ignored;
    socket_.close(ignored);
    if (lane_) {
      lane_->Shutdown(TlsLane::Close::kAbortive);
    }
    Done done = std::move(done_);
    done_ = nullptr;
    done(absl::UnavailableError(why));
  }

  asio::any_io_executor executor_;
  LaneTarget target_;
  Done done_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<TlsLane> lane_;
  std::string request_;  // the CONNECT request, alive while it is written
  std::string answer_;   // the proxy's answer head
};

}  // namespace

void ConnectLane(asio::any_io_executor executor, const LaneTarget& target,
                 std::function<void(absl::StatusOr<std::shared_ptr<TlsLane>>)> done) {
  asio::post(executor, [executor, target, done = std::move(done)]() mutable {
    std::make_shared<Connector>(executor, target, std::move(done))->Start();
  });
}

std::shared_ptr<LaneCall> LaneCall::Create(asio::any_io_executor executor, LaneTarget target,
                                           std::string method, std::string instance_id) {
  auto call = std::shared_ptr<LaneCall>(new LaneCall(std::move(executor), std::move(target),
                                                     std::move(method), std::move(instance_id)));
  call->self_ = call;
  return call;
}

LaneCall::LaneCall(asio::any_io_executor executor, LaneTarget target, std::string method,
                   std::string instance_id)
    : executor_(std::move(executor)),
      target_(std::move(target)),
      method_(std::move(method)),
      instance_id_(std::move(instance_id)) {}

std::shared_ptr<LaneCall> LaneCall::CreateOn(std::shared_ptr<TlsLane> lane, std::string method,
                                             std::string instance_id, Reuse reuse) {
  auto call = std::shared_ptr<LaneCall>(
      new LaneCall(lane->executor(), LaneTarget{}, std::move(method), std::move(instance_id)));
  call->lane_ = std::move(lane);
  call->reuse_ = std::move(reuse);
  call->connected_ = true;
  return call;
}

void LaneCall::Cancel() {
  asio::post(executor_, [self = shared_from_this()] {
    self->End(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  });
}

void LaneCall::StartCall() {
  asio::post(executor_, [self = shared_from_this()] {
    self->started_ = true;
    if (self->ended_) {
      self->MaybeDone();  // cancelled before it started
      return;
    }
    if (self->connected_) {
      self->Flush();  // a pre-opened lane
      return;
    }
    self->Connect();
  });
}

void LaneCall::Write(const v1::Frame* frame, grpc::WriteOptions) {
  asio::post(executor_, [self = shared_from_this(), frame] {
    self->write_ = frame;
    self->StartLaneWrite();
  });
}

void LaneCall::WritesDone() {
  // Tunnel streams half-close in band (Frame.fin); nothing uses this.
  asio::post(executor_, [self = shared_from_this()] { self->reactor()->OnWritesDoneDone(false); });
}

void LaneCall::Read(v1::Frame* frame) {
  asio::post(executor_, [self = shared_from_this(), frame] {
    self->read_ = frame;
    self->StartLaneRead();
  });
}

void LaneCall::AddHold(int holds) {
  // Called by the reactor before StartCall (no reaction can run yet) and
  // otherwise from within reactions; the count is only read on the strand.
  asio::dispatch(executor_, [self = shared_from_this(), holds] { self->holds_ += holds; });
}

void LaneCall::RemoveHold() {
  asio::post(executor_, [self = shared_from_this()] {
    --self->holds_;
    self->MaybeDone();
  });
}

void LaneCall::Connect() {
  ConnectLane(executor_, target_,
              [self = shared_from_this()](absl::StatusOr<std::shared_ptr<TlsLane>> lane) {
                if (!lane.ok()) {
                  self->End(Unavailable(std::string(lane.status().message())));
                  return;
                }
                self->lane_ = std::move(*lane);
                if (self->ended_) {
                  self->lane_->Shutdown(TlsLane::Close::kAbortive);
                  return;
                }
                self->connected_ = true;
                self->Flush();
              });
}

void LaneCall::Flush() {
  StartLaneWrite();
  StartLaneRead();
}

void LaneCall::StartLaneWrite() {
  if (write_ == nullptr || write_in_flight_) {
    return;
  }
  if (ended_) {
    write_ = nullptr;
    write_in_flight_ = true;  // until the reaction ran
    asio::post(executor_, [self = shared_from_this()] {
      self->write_in_flight_ = false;
      self->reactor()->OnWriteDone(false);
      self->MaybeDone();
    });
    return;
  }
  if (!connected_) {
    return;  // Flush() starts it
  }
  write_in_flight_ = true;
  if (!hello_sent_) {
    // The hello rides on the stream's first frame (the open).
    hello_sent_ = true;
    v1::Frame first = *write_;
    first.mutable_lane()->set_method(method_);
    first.mutable_lane()->set_instance_id(instance_id_);
    lane_->Write(first, [self = shared_from_this()](absl::Status s) { self->OnLaneWrite(s); });
    return;
  }
  lane_->Write(*write_, [self = shared_from_this()](absl::Status s) { self->OnLaneWrite(s); });
}

void LaneCall::OnLaneWrite(absl::Status status) {
  write_ = nullptr;
  write_in_flight_ = false;
  if (!status.ok()) {
    // The server may have ended the stream (and closed the lane) while we were
    // writing: its status is what the reactor must see, not our write error.
    write_failed_ = true;
    AwaitStatus();
  }
  reactor()->OnWriteDone(status.ok());
  MaybeDone();
}

void LaneCall::AwaitStatus() {
  if (ended_ || !connected_ || read_in_flight_ || draining_for_status_) {
    return;
  }
  draining_for_status_ = true;
  lane_->Read(&drain_frame_, [self = shared_from_this()](absl::Status s) { self->OnLaneRead(s); });
}

void LaneCall::StartLaneRead() {
  if (read_ == nullptr || read_in_flight_) {
    return;
  }
  if (ended_) {
    read_ = nullptr;
    read_in_flight_ = true;  // until the reaction ran
    asio::post(executor_, [self = shared_from_this()] {
      self->read_in_flight_ = false;
      self->reactor()->OnReadDone(false);
      self->MaybeDone();
    });
    return;
  }
  if (!connected_ || draining_for_status_) {
    return;  // Flush() or the drain's end starts it
  }
  read_in_flight_ = true;
  lane_->Read(read_, [self = shared_from_this()](absl::Status s) { self->OnLaneRead(s); });
}

void LaneCall::OnLaneRead(absl::Status status) {
  v1::Frame* frame = draining_for_status_ ? &drain_frame_ : read_;
  if (status.ok() && frame->has_status()) {
    const int32_t code = frame->status().code();
    End(grpc::Status(code >= 0 && code <= grpc::StatusCode::UNAUTHENTICATED
                         ? static_cast<grpc::StatusCode>(code)
                         : grpc::StatusCode::UNKNOWN,
                     frame->status().message()),
        /*lane_in_step=*/code == 0 && !write_in_flight_ && !write_failed_);
    status = absl::OutOfRangeError("stream ended");
  } else if (!status.ok()) {
    End(Unavailable(common::StrCat("lane to the server broke: ", status.message())));
  }
  if (draining_for_status_) {
    if (status.ok()) {
      // Data the server sent before its status: the stream is ending anyway.
      lane_->Read(&drain_frame_,
                  [self = shared_from_this()](absl::Status s) { self->OnLaneRead(s); });
      return;
    }
    draining_for_status_ = false;
    StartLaneRead();  // a read the reactor started meanwhile now fails
    MaybeDone();
    return;
  }
  read_ = nullptr;
  read_in_flight_ = false;
  reactor()->OnReadDone(status.ok());
  MaybeDone();
}

void LaneCall::End(grpc::Status status, bool lane_in_step) {
  if (ended_) {
    return;
  }
  ended_ = true;
  status_ = std::move(status);
  Reuse reuse = std::move(reuse_);
  reuse_ = nullptr;
  if (lane_ && lane_in_step && reuse) {
    reuse(std::move(lane_));
    lane_ = nullptr;
  } else {
    if (lane_) {
      // Cancelled: reset, so the server sees the stream end at once. Ended by
      // the server's status: it has closed its side already.
      lane_->Shutdown(status_.error_code() == grpc::StatusCode::CANCELLED
                          ? TlsLane::Close::kAbortive
                          : TlsLane::Close::kGraceful,
                      std::chrono::milliseconds(0));
    }
    if (reuse) {
      reuse(nullptr);  // the lane is gone
    }
  }
  if (!connected_) {
    // Operations queued for the connection fail now.
    StartLaneWrite();
    StartLaneRead();
  }
  MaybeDone();
}

void LaneCall::MaybeDone() {
  if (!ended_ && started_ && holds_ == 0 && read_ == nullptr) {
    // The reactor is done with the stream; gRPC would still receive the status
    // by itself, so read on until it comes (nothing else is expected).
    AwaitStatus();
  }
  if (done_ || !started_ || !ended_ || holds_ > 0 || write_in_flight_ || read_in_flight_ ||
      draining_for_status_ || write_ != nullptr || read_ != nullptr) {
    return;
  }
  done_ = true;
  auto self = std::move(self_);  // may be the last reference once OnDone returns
  reactor_->OnDone(status_);
}

}  // namespace drawbridge::lane

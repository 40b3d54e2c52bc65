#include "server/lane_listener.h"

#include "common/log.h"
#include "common/strings.h"
#include "lane/tls_lane.h"
#include "net/listen.h"
#include "server/auth.h"

namespace drawbridge::server {
namespace {

// Longer than lane::LaneDialer::kPoolMaxAge, after which pools retire a lane.
constexpr auto kFirstFrameTimeout = std::chrono::seconds(60);

// Waits (up to kFirstFrameTimeout) for the first frame of the lane's next
// stream, authenticates it and hands the stream to the service. A lane carries
// one stream at a time; one whose stream ended cleanly carries the next.
void AwaitStream(std::shared_ptr<lane::TlsLane> lane, TunnelService* service);

// A lane's end of a Dial or Accept stream, behind the interface gRPC gives a
// ServerBidiReactor, so that the TunnelService's StreamEnd runs unchanged.
//
// gRPC semantics kept: the first Read returns the lane's first frame (its
// hello removed); Finish waits for a write in flight, then sends the status as
// the last frame and closes the lane; OnCancel runs once if the lane breaks
// before Finish; OnDone runs once after Finish and every operation completed.
// A lane whose peer stops reading cannot hold Finish up for long: it is reset
// after kFinishTimeout (an error status) or kCleanFinishTimeout (OK). Reactions run on the lane's
// strand, never inline.
class LaneServerCall final : public grpc::ServerCallbackReaderWriter<v1::Frame, v1::Frame>,
                             public std::enable_shared_from_this<LaneServerCall> {
 public:
  static void Start(std::shared_ptr<lane::TlsLane> lane, v1::Frame first,
                    grpc::ServerBidiReactor<v1::Frame, v1::Frame>* reactor,
                    TunnelService* service) {
    auto call = std::shared_ptr<LaneServerCall>(new LaneServerCall(std::move(lane), reactor));
    call->service_ = service;
    call->first_ = std::move(first);
    call->first_->clear_lane();
    call->self_ = call;
    call->BindReactor(reactor);
  }

  void Finish(grpc::Status status) override {
    asio::post(lane_->executor(), [self = shared_from_this(), status = std::move(status)] {
      if (self->finish_requested_) {
        return;
      }
      self->finish_requested_ = true;
      self->finish_status_ = status;
      // An error ends the stream within a second whatever the peer does
      // (revocation's bound). A clean end's status waits behind data the peer
      // has yet to read: it may take longer, but not forever.
      self->finish_timer_.expires_after(status.ok() ? kCleanFinishTimeout : kFinishTimeout);
      self->finish_timer_.async_wait([self](const asio::error_code& ec) {
        if (!ec && !self->finish_done_) {
          self->peer_gone_ = true;
          self->lane_->Shutdown(lane::TlsLane::Close::kAbortive);
        }
      });
      if (!self->write_in_flight_) {
        self->StartFinish();
      }
    });
  }

  void SendInitialMetadata() override {
    asio::post(lane_->executor(), [self = shared_from_this()] {
      self->reactor_->OnSendInitialMetadataDone(!self->peer_gone_);
    });
  }

  void Read(v1::Frame* frame) override {
    asio::post(lane_->executor(), [self = shared_from_this(), frame] {
      if (self->first_) {
        *frame = std::move(*self->first_);
        self->first_.reset();
        self->reactor_->OnReadDone(true);
        return;
      }
      if (self->finish_requested_ || self->peer_gone_) {
        self->reactor_->OnReadDone(false);
        self->MaybeDone();
        return;
      }
      self->read_in_flight_ = true;
      self->lane_->Read(frame, [self, frame](absl::Status s) {
        self->read_in_flight_ = false;
        // Only data and fin come from the peer after its first frame.
        bool ok = s.ok() && !frame->has_status() && !frame->has_lane();
        if (!ok) {
          self->PeerGone();
        }
        self->reactor_->OnReadDone(ok);
        self->MaybeDone();
      });
    });
  }

  void Write(const v1::Frame* frame, grpc::WriteOptions) override {
    asio::post(lane_->executor(), [self = shared_from_this(), frame] {
      if (self->finish_requested_ || self->peer_gone_) {
        self->reactor_->OnWriteDone(false);
        return;
      }
      self->write_in_flight_ = true;
      self->lane_->Write(*frame, [self](absl::Status s) {
        self->write_in_flight_ = false;
        if (!s.ok()) {
          self->PeerGone();
        }
        self->reactor_->OnWriteDone(s.ok());
        if (self->finish_requested_ && !self->finish_started_) {
          self->StartFinish();
        }
        self->MaybeDone();
      });
    });
  }

  void WriteAndFinish(const v1::Frame* frame, grpc::WriteOptions options,
                      grpc::Status status) override {
    Write(frame, options);
    Finish(std::move(status));
  }

 private:
  static constexpr auto kFinishTimeout = std::chrono::seconds(1);
  static constexpr auto kCleanFinishTimeout = std::chrono::minutes(5);

  LaneServerCall(std::shared_ptr<lane::TlsLane> lane,
                 grpc::ServerBidiReactor<v1::Frame, v1::Frame>* reactor)
      : lane_(std::move(lane)), reactor_(reactor), finish_timer_(lane_->executor()) {}

  grpc::internal::ServerReactor* reactor() override { return reactor_; }
  void CallOnDone() override {}  // gRPC's bookkeeping; we call OnDone ourselves

  void PeerGone() {
    peer_gone_ = true;
    if (!finish_requested_ && !cancel_reported_) {
      cancel_reported_ = true;
      reactor_->OnCancel();
    }
  }

  void StartFinish() {
    finish_started_ = true;
    if (peer_gone_) {
      lane_->Shutdown(lane::TlsLane::Close::kAbortive);
      OnFinished();
      return;
    }
    v1::Frame last;
    last.mutable_status()->set_code(finish_status_.error_code());
    last.mutable_status()->set_message(finish_status_.error_message());
    write_in_flight_ = true;
    lane_->Write(last, [self = shared_from_this()](absl::Status s) {
      self->write_in_flight_ = false;
      if (s.ok() && self->finish_status_.ok() && !self->read_in_flight_ && !self->peer_gone_) {
        // Ended cleanly with nothing in flight: the lane is in step and can
        // carry the peer's next stream (saves both ends a TLS handshake).
        AwaitStream(self->lane_, self->service_);
      } else {
        self->lane_->Shutdown(s.ok() ? lane::TlsLane::Close::kGraceful
                                     : lane::TlsLane::Close::kAbortive);
      }
      self->OnFinished();
    });
  }

  void OnFinished() {
    finish_done_ = true;
    finish_timer_.cancel();
    MaybeDone();
  }

  void MaybeDone() {
    if (done_ || !finish_done_ || read_in_flight_ || write_in_flight_) {
      return;
    }
    done_ = true;
    auto self = std::move(self_);
    reactor_->OnDone();
  }

  std::shared_ptr<lane::TlsLane> lane_;
  grpc::ServerBidiReactor<v1::Frame, v1::Frame>* reactor_;
  TunnelService* service_ = nullptr;
  std::shared_ptr<LaneServerCall> self_;  // until OnDone
  std::optional<v1::Frame> first_;
  asio::steady_timer finish_timer_;
  grpc::Status finish_status_;
  bool read_in_flight_ = false;
  bool write_in_flight_ = false;
  bool finish_requested_ = false;
  bool finish_started_ = false;
  bool finish_done_ = false;
  bool peer_gone_ = false;
  bool cancel_reported_ = false;
  bool done_ = false;
};

// Answers a lane that never becomes a stream (a probe, or a bad first frame)
// with `status`, then closes it.
void AnswerAndClose(const std::shared_ptr<lane::TlsLane>& lane, const grpc::Status& status) {
  v1::Frame last;
  last.mutable_status()->set_code(status.error_code());
  last.mutable_status()->set_message(status.error_message());
  lane->Write(last, [weak = std::weak_ptr<lane::TlsLane>(lane)](absl::Status) {
    if (auto lane = weak.lock()) {
      lane->Shutdown(lane::TlsLane::Close::kGraceful);
    }
  });
}

void AwaitStream(std::shared_ptr<lane::TlsLane> lane, TunnelService* service) {
  // A lane may be opened ahead of need (a client's or agent's pool) or be
  // waiting for its next stream: it may stay silent this long. Only holders of
  // a certificate from our CA get here, and every stream is authenticated.
  auto timer = std::make_shared<asio::steady_timer>(lane->executor());
  timer->expires_after(kFirstFrameTimeout);
  timer->async_wait([lane](const asio::error_code& ec) {
    if (!ec) {
      lane->Shutdown(lane::TlsLane::Close::kAbortive);
    }
  });
  auto first = std::make_shared<v1::Frame>();
  // The lane holds this callback until the read ends: capturing it weakly (its
  // own pending read keeps it alive) leaves no cycle behind if the server's
  // io_context is torn down while a peer's pooled lane is still silent.
  lane->Read(first.get(), [weak = std::weak_ptr<lane::TlsLane>(lane), timer, service,
                           first](absl::Status read) {
    timer->cancel();
    auto lane = weak.lock();
    if (!lane) {
      return;
    }
    if (!read.ok()) {
      if (!absl::IsOutOfRange(read)) {
        common::LogWarn("lane.no_hello",
                        {{"peer", lane->peer()}, {"reason", std::string(read.message())}});
      }
      lane->Shutdown(lane::TlsLane::Close::kAbortive);
      return;
    }
    const std::string method = first->lane().method();
    const std::string instance =
        first->lane().instance_id().size() <= 64 ? first->lane().instance_id() : "";
    if (method == "Probe") {
      const ServiceContext& ctx = service->ctx();
      auto caller = AuthenticateCertificate(lane->PeerCertificatePem(), ctx.trust_domain,
                                            *ctx.directory, *ctx.clock);
      AnswerAndClose(lane, caller.ok() ? grpc::Status::OK : ToGrpcStatus(caller.status()));
      return;
    }
    if (method != "Dial" && method != "Accept") {
      AnswerAndClose(lane, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "a lane's first frame must name Dial or Accept"));
      return;
    }
    auto* reactor =
        service->OpenLaneStream(method, lane->PeerCertificatePem(), instance, lane->peer());
    LaneServerCall::Start(lane, std::move(*first), reactor, service);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<LaneListener>> LaneListener::Start(Options options) {
  std::unique_ptr<LaneListener> l(new LaneListener(std::move(options)));
  auto endpoint = net::ParseListenAddress(l->options_.address);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  auto acceptor = net::Listen(l->io_, *endpoint);
  if (!acceptor.ok()) {
    return acceptor.status();
  }
  l->acceptor_ = std::move(*acceptor);
  l->port_ = l->acceptor_->local_endpoint().port();
  l->work_.emplace(l->io_.get_executor());
  l->AcceptNext();
  for (int i = 0; i < std::max(1, l->options_.threads); ++i) {
    l->threads_.emplace_back([io = &l->io_] { io->run(); });
  }
  return l;
}

LaneListener::~LaneListener() {
  StopAccepting();
  ResetOpenLanes();
  work_.reset();
  // What the resets set off (failed reads, the streams' ends) runs now, for up
  // to a second: the io_context runs out of work once it is all done.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!io_.stopped() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  io_.stop();
  for (auto& t : threads_) {
    t.join();
  }
}

void LaneListener::StopAccepting() {
  asio::post(io_, [this] {
    asio::error_code ignored;
    acceptor_->close(ignored);
  });
}

void LaneListener::ResetOpenLanes() {
  std::vector<std::weak_ptr<lane::TlsLane>> lanes;
  {
    absl::MutexLock lock(&lanes_mu_);
    lanes.swap(lanes_);
  }
  for (const auto& weak : lanes) {
    if (auto lane = weak.lock()) {
      lane->Shutdown(lane::TlsLane::Close::kAbortive);
    }
  }
}

void LaneListener::AcceptNext() {
  acceptor_->async_accept(
      asio::make_strand(io_), [this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) {
          return;
        }
        if (!ec) {
          OnAccepted(std::move(socket));
          AcceptNext();
          return;
        }
        // Out of file descriptors (or similar): the
        // pending connection stays queued, so an
        // immediate retry would spin. Clients use gRPC
        // streams meanwhile.
        common::LogWarn("lane.accept_failed", {{"error", ec.message()}});
        auto pause = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
        pause->async_wait([this, pause](const asio::error_code&) { AcceptNext(); });
      });
}

void LaneListener::OnAccepted(asio::ip::tcp::socket socket) {
  auto ssl = lane::NewServerSsl(options_.ssl.get());
  if (!ssl.ok()) {
    common::LogError("lane.ssl_failed", {{"error", std::string(ssl.status().message())}});
    return;
  }
  auto lane = lane::TlsLane::Create(std::move(socket), std::move(*ssl));
  {
    absl::MutexLock lock(&lanes_mu_);
    // Forget the lanes gone since the list last doubled: it stays within twice
    // the number open.
    if (lanes_.size() >= 64 && (lanes_.size() & (lanes_.size() - 1)) == 0) {
      std::erase_if(lanes_, [](const auto& weak) { return weak.expired(); });
    }
    lanes_.push_back(lane);
  }
  // The handshake must complete in time: a connection that opens and says
  // nothing holds no more than a socket for that long.
  auto timer = std::make_shared<asio::steady_timer>(lane->executor());
  timer->expires_after(options_.handshake_timeout);
  timer->async_wait([lane](const asio::error_code& ec) {
    if (!ec) {
      lane->Shutdown(lane::TlsLane::Close::kAbortive);
    }
  });
  TunnelService* service = options_.service;
  lane->Handshake([weak = std::weak_ptr<lane::TlsLane>(lane), timer, service](absl::Status status) {
    auto lane = weak.lock();
    if (!lane) {
      return;
    }
    if (!status.ok()) {
      timer->cancel();
      common::LogWarn("lane.handshake_failed",
                      {{"peer", lane->peer()}, {"reason", std::string(status.message())}});
      return;
    }
    timer->cancel();
    AwaitStream(lane, service);
  });
}

}  // namespace drawbridge::server

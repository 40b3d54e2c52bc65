#include "client/tunnel_watch.h"

#include <algorithm>
#include <utility>

#include "common/backoff.h"
#include "common/log.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "tunnel/dial_code.h"

namespace drawbridge::client {

// One attempt: reads events until the server ends the stream. Only reactions
// touch the call after StartCall, so no hold is needed.
class TunnelWatch::Stream final : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  Stream(TunnelWatch* watch, std::shared_ptr<grpc::Channel> channel)
      : watch_(watch), stub_(v1::Tunnel::NewStub(std::move(channel))) {}

  void Start() {
    context_.AddMetadata(tunnel::kInstanceHeader, watch_->options_.instance_id);
    stub_->async()->Watch(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;  // OnDone follows with the status
    }
    if (event_.has_ready()) {
      if (watch_->options_.on_lane_port) {
        watch_->options_.on_lane_port(event_.ready().lane_port());
      }
      watch_->SetReady(true);
    } else if (event_.has_ended() && watch_->options_.on_ended) {
      watch_->options_.on_ended(event_.ended().conn_id(), event_.ended().reason().substr(0, 200));
    } else if (event_.has_goaway()) {
      common::LogInfo("client.goaway", {{"reason", event_.goaway().reason().substr(0, 200)}});
      {
        absl::MutexLock lock(&watch_->mu_);
        watch_->goaway_ = true;
      }
      if (watch_->options_.on_goaway) {
        watch_->options_.on_goaway();
      }
      context_.TryCancel();  // OnDone follows; the loop reconnects at once
      return;
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  // True once OnDone ran (waits up to `timeout`).
  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  }
  grpc::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  TunnelWatch* const watch_;
  std::unique_ptr<v1::Tunnel::Stub> stub_;
  grpc::ClientContext context_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<TunnelWatch> TunnelWatch::Start(Options options) {
  std::unique_ptr<TunnelWatch> watch(new TunnelWatch(std::move(options)));
  watch->thread_ = std::thread([w = watch.get()] { w->Loop(); });
  return watch;
}

TunnelWatch::~TunnelWatch() {
  std::shared_ptr<Stream> stream;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    stream = stream_;
  }
  if (stream) {
    stream->Cancel();
  }
  thread_.join();
}

bool TunnelWatch::WaitReady(std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&ready_), absl::Milliseconds(timeout.count()));
}

void TunnelWatch::SetReady(bool ready) {
  absl::MutexLock lock(&mu_);
  ready_ = ready;
}

void TunnelWatch::Loop() {
  common::JitteredBackoff backoff(std::chrono::milliseconds(500), options_.max_backoff);
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  while (true) {
    auto stream = std::make_shared<Stream>(this, options_.channel());
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      stream_ = stream;
    }
    stream->Start();
    while (!stream->WaitDone(absl::Milliseconds(250))) {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        break;
      }
    }
    stream->Cancel();
    stream->WaitDone(absl::InfiniteDuration());
    bool was_ready = false;
    bool goaway = false;
    {
      absl::MutexLock lock(&mu_);
      stream_ = nullptr;
      was_ready = ready_;
      ready_ = false;
      goaway = std::exchange(goaway_, false);
      if (stopping_) {
        return;
      }
    }
    if (options_.on_lane_port) {
      options_.on_lane_port(0);
    }
    grpc::Status status = stream->status();
    if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED && options_.on_refused) {
      options_.on_refused(status);
    }
    if (!goaway) {
      common::LogInfo("client.watch_lost", {{"code", std::to_string(status.error_code())},
                                            {"reason", status.error_message().substr(0, 200)}});
    }
    if (was_ready) {
      backoff.Reset();
    }
    if (goaway) {
      continue;  // not an outage: the server asked us to move, on a new connection
    }
    const std::chrono::milliseconds wait = backoff.Next();
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(wait.count()))) {
      return;
    }
  }
}

}  // namespace drawbridge::client

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
    if (Draining()) {
      // Only the tunnels this server still carries matter now; the live
      // stream (on the new connection) speaks for readiness and lanes.
      if (event_.has_ended() && watch_->options_.on_ended) {
        watch_->options_.on_ended(event_.ended().conn_id(), event_.ended().reason().substr(0, 200));
      }
      StartRead(&event_);
      return;
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
      // Keep reading: the loop opens the next stream and keeps this one for
      // the `ended` events of the tunnels still on this server.
      {
        absl::MutexLock lock(&mu_);
        draining_ = true;
      }
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  // True once OnDone ran or the server said goaway (waits up to `timeout`).
  bool WaitDoneOrDraining(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done_or_draining = [this]()
                                ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ || draining_; };
    return mu_.AwaitWithTimeout(absl::Condition(&done_or_draining), timeout);
  }
  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  }
  bool Draining() {
    absl::MutexLock lock(&mu_);
    return draining_;
  }
  bool Done() {
    absl::MutexLock lock(&mu_);
    return done_;
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
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // the server said goaway
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
  std::vector<std::shared_ptr<Stream>> draining;
  {
    absl::MutexLock lock(&mu_);
    draining.swap(draining_);
  }
  for (const auto& d : draining) {
    d->Cancel();
  }
  for (const auto& d : draining) {
    d->WaitDone(absl::InfiniteDuration());  // its reactions use this object
  }
}

void TunnelWatch::KeepDraining(std::shared_ptr<Stream> stream) {
  std::shared_ptr<Stream> evicted;
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(draining_, [](const std::shared_ptr<Stream>& d) { return d->Done(); });
    draining_.push_back(std::move(stream));
    if (draining_.size() > kMaxDraining) {
      evicted = draining_.front();
      draining_.erase(draining_.begin());
    }
  }
  if (evicted) {
    evicted->Cancel();
    evicted->WaitDone(absl::InfiniteDuration());
  }
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
    const auto started = std::chrono::steady_clock::now();
    while (!stream->WaitDoneOrDraining(absl::Milliseconds(250))) {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        break;
      }
    }
    const bool moved = stream->Draining() && !stream->Done();
    if (moved) {
      {
        absl::MutexLock lock(&mu_);
        stream_ = nullptr;
      }
      KeepDraining(stream);
    } else {
      stream->Cancel();
      stream->WaitDone(absl::InfiniteDuration());
    }
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
      // Not an outage: the server asked us to move, on a new connection. If
      // that lands on the same draining server again (one replica, or a
      // balancer that has not noticed yet), it says goaway at once: pause a
      // little then, rather than spin.
      if (std::chrono::steady_clock::now() - started < kQuickGoaway) {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping),
                                 absl::Milliseconds(kQuickGoawayPause.count()))) {
          return;
        }
      }
      continue;
    }
    const std::chrono::milliseconds wait = backoff.Next();
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(wait.count()))) {
      return;
    }
  }
}

}  // namespace drawbridge::client

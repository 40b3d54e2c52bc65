#include "tunnel/socket_bridge.h"

#include <utility>

#include "common/log.h"

namespace drawbridge::tunnel {

namespace {

bool WouldBlock(const asio::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

}  // namespace

std::shared_ptr<SocketBridge> SocketBridge::Start(asio::ip::tcp::socket socket, Options options,
                                                  Bind bind) {
  std::shared_ptr<SocketBridge> bridge(new SocketBridge(std::move(socket), std::move(options)));
  {
    absl::MutexLock lock(&bridge->mu_);
    bridge->self_ = bridge;
  }
  if (bridge->options_.set != nullptr) {
    if (!bridge->options_.set->Add(bridge)) {
      absl::MutexLock lock(&bridge->mu_);
      bridge->ResetSocket();  // shutting down: never starts, and the application sees why
      bridge->self_.reset();
      return nullptr;
    }
    // Set the fields one by one: a temporary SetMembership would Remove() on destruction.
    bridge->membership_.set = bridge->options_.set;
    bridge->membership_.key = bridge.get();
    bridge->options_.set->SetConnId(bridge.get(), bridge->options_.conn_id);
  }
  // No reaction runs before StartCall, and a concurrent Cancel only marks the
  // context (TryCancel before the call starts cancels it when it does).
  bind(&bridge->context_, bridge.get());
  // The hold keeps OnDone away until MaybeRelease: we call into the stream
  // outside reactions. (Only valid once bound to the call.)
  bridge->AddHold();
  bridge->StartWrite(&bridge->out_);
  if (bridge->options_.expect_result) {
    bridge->StartRead(&bridge->in_);
  }
  bridge->StartCall();
  return bridge;
}

void SocketBridge::OpenGate(const absl::Status& status) {
  Locked([this, &status](Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!status.ok()) {
      Fail(std::string(status.message()), calls);
    } else {
      gate_open_ = true;
      StartPumps(calls);
    }
    MaybeRelease(calls);
  });
}

void SocketBridge::Abort(const std::string& reason) {
  Locked([this, &reason](Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Fail(reason, calls);
    MaybeRelease(calls);
  });
}

SocketBridge::SocketBridge(asio::ip::tcp::socket socket, Options options)
    : socket_(std::move(socket)), options_(std::move(options)) {
  stats_.conn_id = options_.conn_id;
  result_ok_ = !options_.expect_result;
  gate_open_ = !options_.gated;
  // In flight from the start (Start issues them), so that a Cancel before the
  // call is bound cannot release it.
  out_ = options_.open;
  grpc_write_ = true;
  grpc_read_ = options_.expect_result;  // the DialResult; data reads start with the pumps
  asio::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.non_blocking(true, ec);
}

void SocketBridge::Run(const Calls& calls) {
  if (calls.start_write) {
    StartWrite(&out_);
  }
  if (calls.start_read) {
    StartRead(&in_);
  }
  if (calls.cancel) {
    context_.TryCancel();
    if (options_.cancel_call) {
      options_.cancel_call();
    }
  }
  if (calls.remove_hold) {
    RemoveHold();  // last statement touching `this`: OnDone may follow at once
  }
}

void SocketBridge::OnWriteDone(bool ok) {
  Locked([this, ok](Calls* calls)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { HandleWriteDone(ok, calls); });
}

void SocketBridge::OnReadDone(bool ok) {
  Locked([this, ok](Calls* calls)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { HandleReadDone(ok, calls); });
}

void SocketBridge::OnDone(const grpc::Status& status) {
  // `keep` holds us alive through this function; dropping self_ may otherwise
  // delete us. The owner hears of our end from ~SetMembership, after the socket
  // is destroyed.
  std::shared_ptr<SocketBridge> keep;
  BridgeStats stats;
  std::optional<asio::ip::tcp::socket> redial;
  {
    absl::MutexLock lock(&mu_);
    keep = std::move(self_);
    stats_.status = status;
    if (std::exchange(redial_pending_, false)) {
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        stats_.redialed = true;
        redial.emplace(std::move(socket_));
      } else {
        ResetSocket();
      }
    }
    stats = stats_;
  }
  if (options_.on_done) {
    options_.on_done(stats);
  }
  if (redial) {
    options_.redial(std::move(*redial));
  }
}

SocketBridge::SetMembership::~SetMembership() {
  if (set != nullptr) {
    set->Remove(key);
  }
}

void SocketBridge::HandleWriteDone(bool ok, Calls* calls) {
  grpc_write_ = false;
  if (!ok) {
    FailStreamEnded("stream write failed", calls);
  } else if (!open_sent_) {
    open_sent_ = true;
    StartPumps(calls);
  } else if (up_fin_sent_ && !up_pending_) {
    up_done_ = true;
  } else if (!failed_) {
    SendUp(calls);
  }
  MaybeRelease(calls);
}

void SocketBridge::HandleReadDone(bool ok, Calls* calls) {
  grpc_read_ = false;
  if (failed_ || closing_) {
    // nothing more to do
  } else if (!ok) {
    // The server ended the stream. Normal only once both directions are done.
    if (!(up_done_ && down_done_)) {
      FailStreamEnded("stream ended by the server", calls);
    }
  } else if (in_.has_result()) {
    HandleResult(calls);
  } else if (!result_ok_) {
    Fail("data before the dial result", calls);
  } else if (in_.data().size() > kMaxFrameBytes) {
    Fail("oversized frame", calls);
  } else if (socket_write_) {
    down_pending_ = true;  // delivered when the socket write in flight completes
  } else {
    DeliverDown(calls);
  }
  MaybeRelease(calls);
}

void SocketBridge::HandleResult(Calls* calls) {
  if (!options_.expect_result || result_ok_) {
    Fail("unexpected dial result on an established stream", calls);
    return;
  }
  stats_.result = in_.result().code();
  if (stats_.conn_id.empty() && !in_.result().conn_id().empty()) {
    stats_.conn_id = in_.result().conn_id().substr(0, 64);
    if (options_.set != nullptr) {
      options_.set->SetConnId(this, stats_.conn_id);
    }
  }
  reply_ = options_.on_result ? options_.on_result(in_.result()) : std::string();
  if (in_.result().code() == v1::DIAL_OK) {
    result_ok_ = true;
    StartPumps(calls);
    return;
  }
  // Tell the application why (HTTP/SOCKS reply), then close.
  closing_ = true;
  WriteReply(nullptr);
}

void SocketBridge::WriteReply(void (SocketBridge::*then)(Calls*)) {
  socket_write_ = true;
  asio::async_write(socket_, asio::buffer(reply_), [this, then](asio::error_code ec, size_t) {
    Locked([this, then, ec](Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      socket_write_ = false;
      if (ec) {
        Fail("socket write failed: " + ec.message(), calls);
      } else if (then == nullptr) {
        Fail("dial refused", calls, Close::kGraceful);  // the reply says why, completely
      } else if (!failed_) {
        (this->*then)(calls);
      }
      MaybeRelease(calls);
    });
  });
}

// Starts both directions once the open frame is out, (for Dial) the result
// arrived and (if gated) the gate opened: first the reply to the application,
// then socket reads and stream reads.
void SocketBridge::StartPumps(Calls* calls) {
  if (pumps_started_ || !open_sent_ || !result_ok_ || !gate_open_ || failed_) {
    return;
  }
  pumps_started_ = true;
  if (reply_.empty()) {
    StartData(calls);
  } else {
    WriteReply(&SocketBridge::StartData);
  }
}

void SocketBridge::StartData(Calls* calls) {
  grpc_read_ = true;
  calls->start_read = true;
  if (!options_.initial_payload.empty()) {
    out_.Clear();
    out_.set_data(std::move(options_.initial_payload));
    options_.initial_payload.clear();
    stats_.bytes_from_socket += out_.data().size();
    grpc_write_ = true;
    calls->start_write = true;
  }
  ReadSocket(calls);
}

// Reads the next chunk: at once if bytes are waiting, else when they arrive.
// Only while nothing is pending and no read or wait is in flight.
void SocketBridge::ReadSocket(Calls* calls) {
  if (read_buffer_ == nullptr) {
    read_buffer_.reset(new char[kChunkBytes]);
  }
  asio::error_code ec;
  size_t n = socket_.read_some(asio::buffer(read_buffer_.get(), kChunkBytes), ec);
  if (!WouldBlock(ec)) {
    OnSocketRead(ec, n, calls);
    return;
  }
  read_buffer_.reset();  // idle: wait without a buffer
  socket_read_ = true;
  socket_.async_wait(asio::ip::tcp::socket::wait_read, [this](asio::error_code wait_ec) {
    Locked([this, wait_ec](Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      socket_read_ = false;
      if (failed_) {
        // closed meanwhile
      } else if (wait_ec) {
        Fail("socket read failed: " + wait_ec.message(), calls);
      } else {
        ReadSocket(calls);
      }
      MaybeRelease(calls);
    });
  });
}

void SocketBridge::OnSocketRead(const asio::error_code& ec, size_t n, Calls* calls) {
  if (ec && ec != asio::error::eof) {
    Fail("socket read failed: " + ec.message(), calls);
    return;
  }
  up_pending_ = true;
  up_pending_bytes_ = ec ? 0 : n;
  up_pending_eof_ = static_cast<bool>(ec);
  SendUp(calls);
}

// Writes the chunk read from the socket, once the stream write before it
// completed, and reads the next one meanwhile.
void SocketBridge::SendUp(Calls* calls) {
  if (!up_pending_ || grpc_write_ || failed_) {
    return;
  }
  up_pending_ = false;
  out_.Clear();
  if (up_pending_eof_) {
    out_.set_fin(true);
    up_fin_sent_ = true;
  } else {
    out_.set_data(read_buffer_.get(), up_pending_bytes_);
    stats_.bytes_from_socket += up_pending_bytes_;
  }
  grpc_write_ = true;
  calls->start_write = true;
  if (!up_fin_sent_ && !socket_read_) {
    ReadSocket(calls);  // read_buffer_ was copied into out_: free to reuse
  }
}

// `in_` holds a frame read from the stream and no socket write is in flight:
// write its bytes (at once, as far as the socket takes them) and read the next
// frame meanwhile.
void SocketBridge::DeliverDown(Calls* calls) {
  if (in_.fin()) {
    asio::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    down_done_ = true;
    return;
  }
  const std::string& data = in_.data();
  stats_.bytes_to_socket += data.size();
  size_t written = 0;
  asio::error_code ec;
  while (written < data.size()) {
    written += socket_.write_some(asio::buffer(data.data() + written, data.size() - written), ec);
    if (ec) {
      break;
    }
  }
  if (ec && !WouldBlock(ec)) {
    Fail("socket write failed: " + ec.message(), calls);
    return;
  }
  if (written < data.size()) {
    down_buffer_.assign(data, written, std::string::npos);
    socket_write_ = true;
    asio::async_write(socket_, asio::buffer(down_buffer_), [this](asio::error_code wec, size_t) {
      Locked([this, wec](Calls* calls) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        socket_write_ = false;
        if (wec) {
          Fail("socket write failed: " + wec.message(), calls);
        } else if (down_pending_ && !failed_) {
          down_pending_ = false;
          DeliverDown(calls);
        }
        MaybeRelease(calls);
      });
    });
  }
  grpc_read_ = true;
  calls->start_read = true;
}

void SocketBridge::FailStreamEnded(const std::string& why, Calls* calls) {
  if (options_.redial && !result_ok_ && !closing_ && !failed_) {
    // No dial result yet (result_ok_ is set from the start when none is
    // expected; closing_ once a refusal came), so no byte has moved and the
    // socket has no operation in flight: keep it for OnDone, whose status tells
    // whether to dial again.
    failed_ = true;
    redial_pending_ = true;
    stats_.error = why;
    return;
  }
  const bool cancel_before = calls->cancel;
  Fail(why, calls);
  calls->cancel = cancel_before;
}

void SocketBridge::Fail(const std::string& why, Calls* calls, Close how) {
  if (failed_ || released_) {
    return;
  }
  failed_ = true;
  if (how == Close::kAbortive && stats_.error.empty()) {
    stats_.error = why;
  }
  calls->cancel = true;
  if (how == Close::kAbortive) {
    ResetSocket();
    return;
  }
  asio::error_code ec;
  socket_.close(ec);  // pending Asio waits and writes complete with operation_aborted
}

void SocketBridge::ResetSocket() {
  // RST instead of FIN, and the kernel drops what it still had queued for the
  // application: truncated data must never look complete (invariant 8).
  asio::error_code ec;
  socket_.set_option(asio::socket_base::linger(true, 0), ec);
  socket_.close(ec);  // pending Asio waits and writes complete with operation_aborted
}

void SocketBridge::MaybeRelease(Calls* calls) {
  bool finished = failed_ || (up_done_ && down_done_);
  if (released_ || !finished || grpc_read_ || grpc_write_ || socket_read_ || socket_write_) {
    return;
  }
  released_ = true;
  if (!redial_pending_) {
    asio::error_code ec;
    socket_.close(ec);
  }
  calls->remove_hold = true;
}

}  // namespace drawbridge::tunnel

namespace drawbridge::tunnel {

bool BridgeSet::Add(const std::shared_ptr<SocketBridge>& bridge) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return false;
  }
  bridges_[bridge.get()] = Entry{bridge, ""};
  return true;
}

void BridgeSet::Remove(const SocketBridge* bridge) {
  absl::MutexLock lock(&mu_);
  auto it = bridges_.find(bridge);
  if (it == bridges_.end()) {
    return;
  }
  if (!it->second.conn_id.empty()) {
    by_conn_id_.erase(it->second.conn_id);
  }
  bridges_.erase(it);
}

void BridgeSet::SetConnId(const SocketBridge* bridge, const std::string& conn_id) {
  absl::MutexLock lock(&mu_);
  auto it = bridges_.find(bridge);
  if (it == bridges_.end() || conn_id.empty()) {
    return;
  }
  it->second.conn_id = conn_id;
  by_conn_id_[conn_id] = bridge;
}

bool BridgeSet::AbortByConnId(const std::string& conn_id, const std::string& reason) {
  std::shared_ptr<SocketBridge> bridge;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_conn_id_.find(conn_id);
    if (it == by_conn_id_.end()) {
      return false;
    }
    bridge = bridges_.at(it->second).bridge.lock();
  }
  if (bridge == nullptr) {
    return false;
  }
  bridge->Abort(reason);  // outside mu_: the bridge's own lock comes first
  return true;
}

int BridgeSet::AbortAll(const std::string& reason) {
  std::vector<std::shared_ptr<SocketBridge>> live;
  {
    absl::MutexLock lock(&mu_);
    live = LiveLocked();
  }
  for (auto& b : live) {
    b->Abort(reason);
  }
  return static_cast<int>(live.size());
}

std::vector<std::shared_ptr<SocketBridge>> BridgeSet::LiveLocked() const {
  std::vector<std::shared_ptr<SocketBridge>> live;
  for (const auto& [ptr, entry] : bridges_) {
    if (auto b = entry.bridge.lock()) {
      live.push_back(std::move(b));
    }
  }
  return live;
}

size_t BridgeSet::size() const {
  absl::MutexLock lock(&mu_);
  return bridges_.size();
}

bool BridgeSet::CancelAllAndWait(std::chrono::milliseconds timeout) {
  std::vector<std::shared_ptr<SocketBridge>> live;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;  // no new bridges from here on
    live = LiveLocked();
  }
  for (auto& b : live) {
    b->Cancel();
  }
  live.clear();
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return bridges_.empty(); };
  return mu_.AwaitWithTimeout(absl::Condition(&empty), absl::Milliseconds(timeout.count()));
}

}  // namespace drawbridge::tunnel

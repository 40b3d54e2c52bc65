#include "tunnel/socket_bridge.h"

#include "common/log.h"

namespace drawbridge::tunnel {

std::shared_ptr<SocketBridge> SocketBridge::Start(asio::ip::tcp::socket socket, Options options,
                                                  Bind bind) {
  std::shared_ptr<SocketBridge> bridge(new SocketBridge(std::move(socket), std::move(options)));
  bridge->self_ = bridge;
  if (bridge->options_.set != nullptr) {
    if (!bridge->options_.set->Add(bridge)) {
      bridge->self_.reset();  // shutting down: never starts; the socket closes with it
      return nullptr;
    }
    // Set the fields one by one: a temporary SetMembership would Remove() on destruction.
    bridge->membership_.set = bridge->options_.set;
    bridge->membership_.key = bridge.get();
  }
  bridge->OnStrand([bridge, bind = std::move(bind)] { bridge->Begin(bind); });
  return bridge;
}

void SocketBridge::OpenGate(const absl::Status& status) {
  OnStrand([self = shared_from_this(), status] {
    if (!status.ok()) {
      self->Fail(std::string(status.message()));
    } else {
      self->gate_open_ = true;
      self->StartPumps();
    }
    self->MaybeRelease();
  });
}

void SocketBridge::Cancel() {
  OnStrand([self = shared_from_this()] {
    self->Fail("connection shut down");
    self->MaybeRelease();
  });
}

SocketBridge::SocketBridge(asio::ip::tcp::socket socket, Options options)
    : socket_(std::move(socket)), options_(std::move(options)) {
  socket_buffer_.resize(kChunkBytes);
  result_ok_ = !options_.expect_result;
  gate_open_ = !options_.gated;
  asio::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void SocketBridge::Begin(Bind bind) {
  bind(&context_, this);
  // The hold keeps OnDone away until MaybeRelease: we call into the stream from
  // the strand, outside any reaction. (Only valid once bound to the call.)
  AddHold();
  out_ = options_.open;
  grpc_write_ = true;
  StartWrite(&out_);
  if (options_.expect_result) {
    grpc_read_ = true;  // the DialResult; data reads start with the pumps
    StartRead(&in_);
  }
  StartCall();
}

void SocketBridge::OnWriteDone(bool ok) {
  OnStrand([this, ok] { HandleWriteDone(ok); });
}

void SocketBridge::OnReadDone(bool ok) {
  OnStrand([this, ok] { HandleReadDone(ok); });
}

void SocketBridge::OnDone(const grpc::Status& status) {
  // `keep` holds us alive through this function: the posted task may run (and
  // drop self_) on another thread before asio::post has even returned. The owner
  // hears of our end from ~SetMembership, after the socket is destroyed.
  std::shared_ptr<SocketBridge> keep = self_;
  OnStrand([keep, status] {
    keep->stats_.status = status;
    if (keep->options_.on_done) {
      keep->options_.on_done(keep->stats_);
    }
    keep->self_.reset();
  });
}

SocketBridge::SetMembership::~SetMembership() {
  if (set != nullptr) {
    set->Remove(key);
  }
}

void SocketBridge::HandleWriteDone(bool ok) {
  grpc_write_ = false;
  if (!ok) {
    Fail("stream write failed");
  } else if (!open_sent_) {
    open_sent_ = true;
    StartPumps();
  } else if (up_fin_sent_) {
    up_done_ = true;
  } else if (!failed_) {
    SendUp();
  }
  MaybeRelease();
}

void SocketBridge::HandleReadDone(bool ok) {
  grpc_read_ = false;
  if (failed_ || closing_) {
    MaybeRelease();
    return;
  }
  if (!ok) {
    // The server ended the stream. Normal only once both directions are done.
    if (!(up_done_ && down_done_)) {
      Fail("stream ended by the server");
    }
    MaybeRelease();
    return;
  }
  if (in_.has_result()) {
    if (!options_.expect_result || result_ok_) {
      Fail("unexpected dial result on an established stream");
    } else {
      stats_.result = in_.result().code();
      reply_ = options_.on_result ? options_.on_result(in_.result()) : std::string();
      if (in_.result().code() == v1::DIAL_OK) {
        result_ok_ = true;
        StartPumps();
      } else {
        // Tell the application why (HTTP/SOCKS reply), then close.
        closing_ = true;
        socket_write_ = true;
        asio::async_write(socket_, asio::buffer(reply_), [this](asio::error_code, size_t) {
          socket_write_ = false;
          Fail("dial refused");
          MaybeRelease();
        });
      }
    }
    MaybeRelease();
    return;
  }
  if (!result_ok_) {
    Fail("data before the dial result");
  } else if (in_.data().size() > kMaxFrameBytes) {
    Fail("oversized frame");
  } else if (socket_write_) {
    down_pending_ = true;  // delivered when the socket write in flight completes
  } else {
    DeliverDown();
  }
  MaybeRelease();
}

// `in_` holds a frame read from the stream and no socket write is in flight:
// hand its bytes to the socket and read the next frame meanwhile.
void SocketBridge::DeliverDown() {
  if (in_.fin()) {
    asio::error_code ec;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    down_done_ = true;
    return;
  }
  stats_.bytes_to_socket += in_.data().size();
  down_buffer_.clear();
  down_buffer_.swap(*in_.mutable_data());
  socket_write_ = true;
  asio::async_write(socket_, asio::buffer(down_buffer_), [this](asio::error_code ec, size_t) {
    socket_write_ = false;
    if (ec) {
      Fail("socket write failed: " + ec.message());
    } else if (down_pending_ && !failed_) {
      down_pending_ = false;
      DeliverDown();
    }
    MaybeRelease();
  });
  grpc_read_ = true;
  StartRead(&in_);
}

// Starts both directions once the open frame is out, (for Dial) the result
// arrived and (if gated) the gate opened: first the reply to the application, then socket reads and
// stream reads.
void SocketBridge::StartPumps() {
  if (pumps_started_ || !open_sent_ || !result_ok_ || !gate_open_ || failed_) {
    return;
  }
  pumps_started_ = true;
  auto start = [this] {
    if (failed_) {
      return;
    }
    // Dial: the read loop stopped at the result; restart it. Accept: start it.
    grpc_read_ = true;
    StartRead(&in_);
    if (!options_.initial_payload.empty()) {
      out_.Clear();
      out_.set_data(std::move(options_.initial_payload));
      options_.initial_payload.clear();
      stats_.bytes_from_socket += out_.data().size();
      grpc_write_ = true;
      StartWrite(&out_);
    }
    ReadSocket();
  };
  if (reply_.empty()) {
    start();
    return;
  }
  socket_write_ = true;
  asio::async_write(socket_, asio::buffer(reply_), [this, start](asio::error_code ec, size_t) {
    socket_write_ = false;
    if (ec) {
      Fail("socket write failed: " + ec.message());
    } else {
      start();
    }
    MaybeRelease();
  });
}

void SocketBridge::ReadSocket() {
  socket_read_ = true;
  socket_.async_read_some(asio::buffer(socket_buffer_), [this](asio::error_code ec, size_t n) {
    socket_read_ = false;
    if (failed_) {
      MaybeRelease();
      return;
    }
    if (ec && ec != asio::error::eof) {
      Fail("socket read failed: " + ec.message());
      MaybeRelease();
      return;
    }
    up_pending_ = true;
    up_pending_bytes_ = ec ? 0 : n;
    up_pending_eof_ = static_cast<bool>(ec);
    SendUp();
    MaybeRelease();
  });
}

// Writes the chunk read from the socket, once the stream write before it
// completed, and starts the next socket read meanwhile.
void SocketBridge::SendUp() {
  if (!up_pending_ || grpc_write_) {
    return;
  }
  up_pending_ = false;
  out_.Clear();
  if (up_pending_eof_) {
    out_.set_fin(true);
    up_fin_sent_ = true;
  } else {
    out_.set_data(socket_buffer_.data(), up_pending_bytes_);
    stats_.bytes_from_socket += up_pending_bytes_;
  }
  grpc_write_ = true;
  StartWrite(&out_);
  if (!up_fin_sent_) {
    ReadSocket();  // socket_buffer_ was copied into out_: free to reuse
  }
}

void SocketBridge::Fail(const std::string& why) {
  if (failed_ || released_) {
    return;
  }
  failed_ = true;
  if (stats_.error.empty()) {
    stats_.error = why;
  }
  context_.TryCancel();
  asio::error_code ec;
  socket_.close(ec);
}

void SocketBridge::MaybeRelease() {
  bool finished = failed_ || (up_done_ && down_done_);
  if (released_ || !finished || grpc_read_ || grpc_write_ || socket_read_ || socket_write_) {
    return;
  }
  released_ = true;
  asio::error_code ec;
  socket_.close(ec);
  // Last statement touching `this`: OnDone (which deletes) may follow at once.
  RemoveHold();
}

}  // namespace drawbridge::tunnel

namespace drawbridge::tunnel {

bool BridgeSet::Add(const std::shared_ptr<SocketBridge>& bridge) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return false;
  }
  bridges_[bridge.get()] = bridge;
  return true;
}

void BridgeSet::Remove(const SocketBridge* bridge) {
  absl::MutexLock lock(&mu_);
  bridges_.erase(bridge);
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
    for (auto& [ptr, weak] : bridges_) {
      if (auto b = weak.lock()) {
        live.push_back(std::move(b));
      }
    }
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

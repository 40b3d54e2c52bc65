#include "lane/tls_lane.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/openssl_util.h"
#include "common/strings.h"
#include "lane/framing.h"

namespace drawbridge::lane {
namespace {

// Room for the largest message with its prefix: one read buffer always fits a
// whole message, so a message is never parsed from two buffers.
constexpr size_t kReadBufferBytes = kMaxMessageBytes + kLengthBytes;

// SSL's write BIO: appends every record to the std::string in its data
// pointer (TlsLane::cipher_), which TlsLane sends itself.
int AppendRecords(BIO* bio, const char* data, size_t len, size_t* written) {
  static_cast<std::string*>(BIO_get_data(bio))->append(data, len);
  *written = len;
  return 1;
}

long AppendControl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }

int AppendCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* AppendMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "drawbridge lane records");
    if (m != nullptr) {
      BIO_meth_set_write_ex(m, AppendRecords);
      BIO_meth_set_ctrl(m, AppendControl);
      BIO_meth_set_create(m, AppendCreate);
    }
    return m;
  }();
  return method;
}

// TLS 1.3 adds 22 bytes per record of at most 16 KiB (header, type, tag).
size_t CiphertextBound(size_t plaintext) { return plaintext + (plaintext / 16384 + 1) * 22 + 64; }

std::string PeerName(const asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) {
    return "unknown";
  }
  if (ep.address().is_v6()) {
    return common::StrCat("ipv6:[", ep.address().to_string(), "]:", ep.port());
  }
  return common::StrCat("ipv4:", ep.address().to_string(), ":", ep.port());
}

}  // namespace

std::shared_ptr<TlsLane> TlsLane::Create(asio::ip::tcp::socket socket, SslPtr ssl) {
  return std::shared_ptr<TlsLane>(new TlsLane(std::move(socket), std::move(ssl)));
}

TlsLane::TlsLane(asio::ip::tcp::socket socket, SslPtr ssl)
    : socket_(std::move(socket)), ssl_(std::move(ssl)) {
  peer_ = PeerName(socket_);
  asio::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.non_blocking(true, ec);
  // A peer that vanished without a FIN (host down, network cut) is noticed
  // within about 30 s, as gRPC's keepalive notices it on the other streams.
  socket_.set_option(asio::socket_base::keep_alive(true), ec);
  const int fd = socket_.native_handle();
  const int idle = 20, interval = 5, count = 2;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  BIO* rbio = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* wbio = AppendMethod() != nullptr ? BIO_new(AppendMethod()) : nullptr;
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    broken_ = true;  // every operation fails: no way to reach the socket
    return;
  }
  BIO_set_data(wbio, &cipher_);
  SSL_set_bio(ssl_.get(), rbio, wbio);
}

TlsLane::~TlsLane() {
  asio::error_code ignored;
  socket_.close(ignored);
}

void TlsLane::Handshake(Done done) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), done = std::move(done)]() mutable {
    self->handshake_done_ = std::move(done);
    self->DoHandshake();
  });
}

void TlsLane::Read(v1::Frame* frame, Done done) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), frame, done = std::move(done)]() mutable {
               self->read_frame_ = frame;
               self->read_done_ = std::move(done);
               self->DoRead();
             });
}

void TlsLane::Write(const v1::Frame& frame, Done done) {
  // Serialized here, so the caller may reuse `frame` at once.
  std::string message;
  const size_t size = frame.ByteSizeLong();
  message.reserve(kLengthBytes + size);
  AppendLengthPrefix(size, &message);
  frame.AppendToString(&message);
  asio::post(socket_.get_executor(), [self = shared_from_this(), message = std::move(message),
                                      done = std::move(done)]() mutable {
    self->out_ = std::move(message);
    self->write_done_ = std::move(done);
    self->DoWrite();
  });
}

absl::Status TlsLane::SslFailure(const char* what, int ssl_error) {
  std::string detail = common::DrainOpenSslErrors();
  if (ssl_error == SSL_ERROR_SYSCALL && detail.empty()) {
    detail = errno != 0 ? std::strerror(errno) : "connection closed";
  }
  long verify = SSL_get_verify_result(ssl_.get());
  if (verify != X509_V_OK) {
    detail = common::StrCat(detail, detail.empty() ? "" : "; ",
                            "certificate: ", X509_verify_cert_error_string(verify));
  }
  return absl::UnavailableError(common::StrCat("lane ", what, " failed: ", detail));
}

bool TlsLane::WaitFor(int ssl_error, void (TlsLane::*retry)()) {
  asio::socket_base::wait_type type;
  if (ssl_error == SSL_ERROR_WANT_READ) {
    type = asio::socket_base::wait_read;
  } else if (ssl_error == SSL_ERROR_WANT_WRITE) {
    type = asio::socket_base::wait_write;
  } else {
    return false;
  }
  // A failed or cancelled wait retries too: the retry sees closed_, or SSL
  // reports the socket's error itself.
  socket_.async_wait(
      type, [self = shared_from_this(), retry](const asio::error_code&) { ((*self).*retry)(); });
  return true;
}

void TlsLane::DoHandshake() {
  if (!handshake_done_) {
    return;
  }
  if (closed_ || broken_) {
    CompleteHandshake(absl::UnavailableError("lane closed"));
    return;
  }
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_.get());
  int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), rc);
  absl::Status flush_error;
  Flush flushed = FlushCipher(&flush_error);  // our flight, or the alert of a failure
  if (rc != 1 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
    broken_ = true;
    CompleteHandshake(SslFailure("handshake", err));
    return;
  }
  if (flushed == Flush::kFailed) {
    broken_ = true;
    CompleteHandshake(std::move(flush_error));
    return;
  }
  if (flushed == Flush::kWouldBlock) {
    // Called again once writable: a finished handshake reports 1 again, an
    // unfinished one goes on where it stopped.
    WaitFor(SSL_ERROR_WANT_WRITE, &TlsLane::DoHandshake);
    return;
  }
  if (rc == 1) {
    CompleteHandshake(absl::OkStatus());
    return;
  }
  WaitFor(err, &TlsLane::DoHandshake);
}

void TlsLane::DoRead() {
  if (!read_done_) {
    return;
  }
  if (closed_ || broken_) {
    CompleteRead(absl::UnavailableError("lane closed"));
    return;
  }
  for (;;) {
    std::string_view have;
    if (in_) {
      have = std::string_view(in_.get() + in_begin_, in_end_ - in_begin_);
    }
    size_t consumed = 0;
    auto message = SplitMessage(have, &consumed);
    if (!message.ok()) {
      CompleteRead(message.status());
      return;
    }
    if (consumed > 0) {
      bool parsed = read_frame_->ParseFromArray(message->data(), static_cast<int>(message->size()));
      in_begin_ += consumed;
      if (in_begin_ == in_end_) {
        in_begin_ = in_end_ = 0;
      }
      CompleteRead(parsed ? absl::OkStatus()
                          : absl::InvalidArgumentError("malformed lane message"));
      return;
    }
    if (!in_) {
      in_.reset(new char[kReadBufferBytes]);  // not zeroed: only read bytes are used
      in_begin_ = in_end_ = 0;
    } else if (kReadBufferBytes - in_begin_ < BytesNeeded(have)) {
      std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_.get(), in_.get() + in_end_, kReadBufferBytes - in_end_, &n);
    if (cipher_sent_ < cipher_.size() && !awaiting_writable_) {
      // Reading made SSL answer (a key update): the write side sends it.
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->DoWrite(); });
    }
    if (rc == 1) {
      in_end_ += n;
      continue;
    }
    int err = SSL_get_error(ssl_.get(), rc);
    if (err == SSL_ERROR_ZERO_RETURN) {
      CompleteRead(in_end_ > in_begin_
                       ? absl::UnavailableError("lane closed in the middle of a message")
                       : absl::OutOfRangeError("lane closed by the peer"));
      return;
    }
    if (in_begin_ == in_end_) {
      in_.reset();  // idle: hold no buffer while waiting
      in_begin_ = in_end_ = 0;
    }
    if (!WaitFor(err, &TlsLane::DoRead)) {
      broken_ = true;
      CompleteRead(SslFailure("read", err));
    }
    return;
  }
}

TlsLane::Flush TlsLane::FlushCipher(absl::Status* error) {
  while (cipher_sent_ < cipher_.size()) {
    ssize_t n = ::send(socket_.native_handle(), cipher_.data() + cipher_sent_,
                       cipher_.size() - cipher_sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      cipher_sent_ += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Flush::kWouldBlock;
    }
    *error = absl::UnavailableError(common::StrCat("lane write failed: ", std::strerror(errno)));
    return Flush::kFailed;
  }
  cipher_.clear();  // keeps its capacity until the write completes
  cipher_sent_ = 0;
  return Flush::kDone;
}

void TlsLane::AwaitWritable() {
  if (awaiting_writable_) {
    return;
  }
  awaiting_writable_ = true;
  // A failed or cancelled wait retries too: DoWrite sees closed_, or send()
  // reports the socket's error.
  socket_.async_wait(asio::socket_base::wait_write,
                     [self = shared_from_this()](const asio::error_code&) {
                       self->awaiting_writable_ = false;
                       self->DoWrite();
                     });
}

void TlsLane::DoWrite() {
  if (closed_ || broken_) {
    if (write_done_) {
      CompleteWrite(absl::UnavailableError("lane closed"));
    }
    return;
  }
  for (;;) {
    absl::Status error;
    switch (FlushCipher(&error)) {
      case Flush::kFailed:
        broken_ = true;
        if (write_done_) {
          CompleteWrite(std::move(error));
        }
        return;
      case Flush::kWouldBlock:
        AwaitWritable();
        return;
      case Flush::kDone:
        break;
    }
    if (!write_done_) {
      return;  // only flushed what reading produced
    }
    if (out_.empty()) {
      CompleteWrite(absl::OkStatus());
      return;
    }
    // The whole message at once: the records land in cipher_ (never a partial
    // write, the BIO takes everything), sent by the next FlushCipher.
    cipher_.reserve(CiphertextBound(out_.size()));
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_write_ex(ssl_.get(), out_.data(), out_.size(), &n);
    if (rc != 1) {
      int err = SSL_get_error(ssl_.get(), rc);
      broken_ = true;
      CompleteWrite(SslFailure("write", err));
      return;
    }
    out_ = std::string();
  }
}

void TlsLane::CompleteHandshake(absl::Status status) {
  Done done = std::move(handshake_done_);
  handshake_done_ = nullptr;
  done(std::move(status));
}

void TlsLane::CompleteRead(absl::Status status) {
  Done done = std::move(read_done_);
  read_done_ = nullptr;
  read_frame_ = nullptr;
  done(std::move(status));
}

void TlsLane::CompleteWrite(absl::Status status) {
  Done done = std::move(write_done_);
  write_done_ = nullptr;
  out_ = std::string();
  if (cipher_.empty() || broken_) {
    cipher_ = std::string();  // an idle lane holds no write buffer
    cipher_sent_ = 0;
  }
  done(std::move(status));
}

void TlsLane::Shutdown(Close how, std::chrono::milliseconds linger) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), how, linger] {
    if (self->closed_) {
      return;
    }
    self->closed_ = true;
    asio::error_code ignored;
    self->socket_.cancel(ignored);  // waits in flight retry, see closed_ and fail
    if (how == Close::kAbortive) {
      self->socket_.set_option(asio::socket_base::linger(true, 0), ignored);
      self->CloseSocket();
      return;
    }
    if (!self->broken_ && SSL_is_init_finished(self->ssl_.get())) {
      ERR_clear_error();
      SSL_shutdown(self->ssl_.get());  // best effort: close_notify if there is room
      ERR_clear_error();
    }
    if (!self->broken_) {
      absl::Status unused;
      self->FlushCipher(&unused);
    }
    self->socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    self->Linger(linger);
  });
}

void TlsLane::Linger(std::chrono::milliseconds linger) {
  if (linger.count() <= 0) {
    CloseSocket();
    return;
  }
  linger_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor());
  linger_timer_->expires_after(linger);
  linger_timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (!ec) {
      self->CloseSocket();
    }
  });
  Drain();
}

void TlsLane::Drain() {
  // Discard whatever the peer still sends until it closes too.
  if (!scratch_) {
    scratch_.reset(new char[kScratchBytes]);
  }
  socket_.async_read_some(asio::buffer(scratch_.get(), kScratchBytes),
                          [self = shared_from_this()](const asio::error_code& ec, size_t) {
                            if (ec || !self->socket_.is_open()) {
                              self->CloseSocket();
                              return;
                            }
                            self->Drain();
                          });
}

void TlsLane::CloseSocket() {
  if (linger_timer_) {
    linger_timer_->cancel();
  }
  asio::error_code ignored;
  socket_.close(ignored);
}

bool TlsLane::LooksAlive() {
  char byte;
  ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::string TlsLane::PeerCertificatePem() { return lane::PeerCertificatePem(ssl_.get()); }

}  // namespace drawbridge::lane

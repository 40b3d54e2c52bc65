#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "drawbridge/v1/tunnel.pb.h"
#include "lane/tls_context.h"

namespace drawbridge::lane {

// One TLS 1.3 connection carrying length-prefixed v1::Frame messages
// (lane/framing.h), driven by OpenSSL on the non-blocking socket; Asio only
// waits for readability or writability. OpenSSL reads the socket itself (read
// ahead, 64 KiB at a time); what it writes goes to a buffer of ours instead,
// so the records of one message (up to five of 16 KiB) leave in one send()
// rather than one system call, and one loopback segment, per record.
//
// Threads: every method may be called from any thread; the work runs on the
// lane's strand (the socket's executor must be a strand), so SSL is only ever
// used by one thread at a time. Completions run on that strand, never inline
// inside the call that started them. At most one Read and one Write may be in
// flight; they proceed independently (a slow reader never blocks a writer).
class TlsLane : public std::enable_shared_from_this<TlsLane> {
 public:
  using Done = std::function<void(absl::Status)>;

  // `socket` is connected and its executor is a strand.
  static std::shared_ptr<TlsLane> Create(asio::ip::tcp::socket socket, SslPtr ssl);
  ~TlsLane();

  // Runs the TLS handshake (client or server, as `ssl` was set up).
  void Handshake(Done done);
  // The next message, parsed into *frame. Errors: OutOfRange when the peer
  // closed cleanly (close_notify or EOF between messages), InvalidArgument for
  // a malformed message, Unavailable when the connection broke.
  void Read(v1::Frame* frame, Done done);
  // Writes one message (the frame serialized and length-prefixed here).
  void Write(const v1::Frame& frame, Done done);
  // Ends the connection; operations in flight complete with an error. Graceful:
  // after the writes so far, send close_notify and half-close, then drain the
  // peer's bytes for up to `linger` before closing (closing with unread bytes
  // would reset the connection and could destroy our last message in the
  // peer's receive queue). Abortive: reset at once (SO_LINGER 0).
  enum class Close { kGraceful, kAbortive };
  void Shutdown(Close how, std::chrono::milliseconds linger = std::chrono::seconds(2));

  // For an idle lane (no operation in flight, nothing expected from the peer):
  // false if the peer has closed or reset it, or sent anything at all.
  bool LooksAlive();

  // After a successful handshake: the verified peer's leaf certificate (PEM).
  std::string PeerCertificatePem();
  // "ipv4:1.2.3.4:5" or "ipv6:[::1]:5", as gRPC names peers.
  const std::string& peer() const { return peer_; }
  asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  TlsLane(asio::ip::tcp::socket socket, SslPtr ssl);
  void DoHandshake();
  void DoRead();
  void DoWrite();
  // Sends what SSL wrote into cipher_. kWouldBlock: the socket is full (the
  // caller waits for writability); kFailed: the connection broke.
  enum class Flush { kDone, kWouldBlock, kFailed };
  Flush FlushCipher(absl::Status* error);
  // Waits (once) for writability, then runs DoWrite.
  void AwaitWritable();
  // Waits until the socket can do what SSL asked for (`ssl_error` is
  // SSL_ERROR_WANT_READ or _WANT_WRITE), then runs `retry`; false for any
  // other error.
  bool WaitFor(int ssl_error, void (TlsLane::*retry)());
  void CompleteRead(absl::Status status);
  void CompleteWrite(absl::Status status);
  void CompleteHandshake(absl::Status status);
  void Linger(std::chrono::milliseconds linger);
  void Drain();
  void CloseSocket();
  absl::Status SslFailure(const char* what, int ssl_error);

  asio::ip::tcp::socket socket_;
  SslPtr ssl_;
  std::string peer_;
  bool closed_ = false;
  bool broken_ = false;  // a fatal SSL error: SSL must not be used again

  Done handshake_done_;

  // Read side: in_[in_begin_, in_end_) holds bytes not yet parsed. Freed
  // whenever empty, so an idle lane holds no read buffer.
  std::unique_ptr<char[]> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  v1::Frame* read_frame_ = nullptr;
  Done read_done_;

  // Write side: out_ is the message still to be encrypted (empty once it is),
  // cipher_[cipher_sent_, cipher_.size()) the records SSL produced that the
  // socket has not taken yet. Both are freed when a write completes.
  std::string out_;
  std::string cipher_;
  size_t cipher_sent_ = 0;
  bool awaiting_writable_ = false;
  Done write_done_;

  std::unique_ptr<asio::steady_timer> linger_timer_;
  static constexpr size_t kScratchBytes = 4096;
  std::unique_ptr<char[]> scratch_;  // bytes drained while lingering
};

}  // namespace drawbridge::lane

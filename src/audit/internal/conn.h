#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

// A blocking outbound TCP connection, optionally TLS (1.2+, peer verified), for
// the export and webhook threads. Never used on a gRPC or Asio thread.
namespace drawbridge::audit::internal {

struct ConnOptions {
  std::string address;  // HOST:PORT, [V6]:PORT
  bool tls = false;
  std::string ca_file;                      // PEM bundle to verify the peer; empty: system roots
  std::string ca_pem;                       // or the bundle itself (wins over ca_file)
  std::string server_name;                  // for SNI and verification; empty: HOST of address
  std::chrono::milliseconds timeout{5000};  // connect, handshake and each write
};

class Conn {
 public:
  static absl::StatusOr<std::unique_ptr<Conn>> Dial(const ConnOptions& options);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  absl::Status WriteAll(std::string_view data);
  // Reads what is available (blocking up to the timeout); "" at EOF.
  absl::StatusOr<std::string> ReadSome();
  // Whether the peer has closed or reset the connection, without blocking.
  // TCP accepts writes into its buffer after the peer has gone; checking this
  // before and after writing is how a sender notices that records may be lost.
  bool PeerClosed();

 private:
  Conn(int fd, SSL_CTX* ctx, SSL* ssl, std::chrono::milliseconds timeout)
      : fd_(fd), ctx_(ctx), ssl_(ssl), timeout_(timeout) {}
  int fd_;
  SSL_CTX* ctx_;
  SSL* ssl_;
  std::chrono::milliseconds timeout_;
};

// Blocks SIGPIPE for the calling thread. TLS writes go through write(2), which
// raises SIGPIPE when the receiver has gone; export and webhook threads call this
// first so that a vanished SIEM is an error to retry, not the end of the process.
void BlockSigpipeInThisThread();

// HOST and PORT of "HOST:PORT" / "[V6]:PORT"; InvalidArgument otherwise.
absl::Status SplitHostPort(const std::string& address, std::string* host, std::string* port);

}  // namespace drawbridge::audit::internal

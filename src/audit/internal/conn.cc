#include "audit/internal/conn.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/openssl_util.h"
#include "common/strings.h"

namespace drawbridge::audit::internal {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) {
    return "unknown TLS error";
  }
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

// Adds every certificate of a PEM bundle to the context's trust store.
bool LoadCaPem(SSL_CTX* ctx, const std::string& pem) {
  common::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (bio) {
    common::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) {
      break;
    }
    added += X509_STORE_add_cert(store, cert.get()) == 1 ? 1 : 0;
  }
  ERR_clear_error();  // the read past the last certificate
  return added > 0;
}

// Waits until fd is ready for `events` or the timeout passes.
bool WaitFd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

absl::StatusOr<int> ConnectTcp(const std::string& host, const std::string& port,
                               std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::UnavailableError(common::StrCat(host, " does not resolve: ", gai_strerror(rc)));
  }
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      last = strerror(errno);
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = strerror(errno);
      close(fd);
      continue;
    }
    if (!WaitFd(fd, POLLOUT, timeout)) {
      last = "connect timed out";
      close(fd);
      continue;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = strerror(err);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  return absl::UnavailableError(common::StrCat("cannot connect to ", host, ":", port, ": ", last));
}

}  // namespace

void BlockSigpipeInThisThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

absl::Status SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) {
    return absl::InvalidArgumentError(
        common::StrCat("address \"", address.substr(0, 200), "\" must be HOST:PORT"));
  }
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (host->empty() || port->find_first_not_of("0123456789") != std::string::npos ||
      port->size() > 5 || std::stoi(*port) < 1 || std::stoi(*port) > 65535) {
    return absl::InvalidArgumentError(
        common::StrCat("address \"", address.substr(0, 200), "\" must be HOST:PORT"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Conn>> Conn::Dial(const ConnOptions& options) {
  std::string host, port;
  if (absl::Status s = SplitHostPort(options.address, &host, &port); !s.ok()) {
    return s;
  }
  auto fd = ConnectTcp(host, port, options.timeout);
  if (!fd.ok()) {
    return fd.status();
  }
  if (!options.tls) {
    return std::unique_ptr<Conn>(new Conn(*fd, nullptr, nullptr, options.timeout));
  }
  // TLS: blocking handshake with a socket timeout; the fd goes back to blocking.
  fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{static_cast<time_t>(options.timeout.count() / 1000),
             static_cast<suseconds_t>((options.timeout.count() % 1000) * 1000)};
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = nullptr;
  auto fail = [&](std::string what) -> absl::Status {
    std::string detail = OpenSslError();
    if (ssl != nullptr) {
      SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    close(*fd);
    return absl::UnavailableError(
        common::StrCat("TLS to ", options.address, ": ", what, " (", detail, ")"));
  };
  if (ctx == nullptr) {
    return fail("cannot create context");
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!options.ca_pem.empty()) {
    if (!LoadCaPem(ctx, options.ca_pem)) {
      return fail("the CA bundle holds no certificate");
    }
  } else if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
      return fail(common::StrCat("cannot load CA file ", options.ca_file));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return fail("cannot load the system CA roots");
  }
  ssl = SSL_new(ctx);
  if (ssl == nullptr) {
    return fail("cannot create session");
  }
  const std::string name = options.server_name.empty() ? host : options.server_name;
  SSL_set_tlsext_host_name(ssl, name.c_str());
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  bool is_ip = name.find_first_not_of("0123456789.") == std::string::npos ||
               name.find(':') != std::string::npos;
  if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1
            : X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0) != 1) {
    return fail("bad server name");
  }
  SSL_set_fd(ssl, *fd);
  if (SSL_connect(ssl) != 1) {
    long verify = SSL_get_verify_result(ssl);
    return fail(verify != X509_V_OK ? common::StrCat("certificate not trusted: ",
                                                     X509_verify_cert_error_string(verify))
                                    : std::string("handshake failed"));
  }
  return std::unique_ptr<Conn>(new Conn(*fd, ctx, ssl, options.timeout));
}

Conn::~Conn() {
  if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);
    SSL_free(ssl_);
  }
  if (ctx_ != nullptr) {
    SSL_CTX_free(ctx_);
  }
  close(fd_);
}

absl::Status Conn::WriteAll(std::string_view data) {
  while (!data.empty()) {
    if (ssl_ != nullptr) {
      int n =
          SSL_write(ssl_, data.data(), static_cast<int>(std::min<size_t>(data.size(), 1 << 20)));
      if (n <= 0) {
        return absl::UnavailableError(common::StrCat("TLS write failed: ", OpenSslError()));
      }
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFd(fd_, POLLOUT, timeout_)) {
        return absl::DeadlineExceededError("write timed out (receiver not reading)");
      }
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return absl::UnavailableError(common::StrCat("write failed: ", strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Conn::ReadSome() {
  char buf[16384];
  if (ssl_ != nullptr) {
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n > 0) {
      return std::string(buf, static_cast<size_t>(n));
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_ZERO_RETURN) {
      return std::string();
    }
    return absl::UnavailableError(common::StrCat("TLS read failed: ", OpenSslError()));
  }
  for (;;) {
    if (!WaitFd(fd_, POLLIN, timeout_)) {
      return absl::DeadlineExceededError("read timed out");
    }
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      continue;
    }
    if (n < 0) {
      return absl::UnavailableError(common::StrCat("read failed: ", strerror(errno)));
    }
    return std::string(buf, static_cast<size_t>(n));
  }
}

bool Conn::PeerClosed() {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) {
    return false;
  }
  if ((p.revents & (POLLERR | POLLHUP)) != 0) {
    return true;
  }
  // Readable: a syslog receiver never sends anything, so this is EOF, a reset,
  // or (TLS) a close_notify / session ticket. Peek at the raw bytes.
  char c;
  ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
    return true;
  }
  if (n > 0 && ssl_ != nullptr) {
    // Let OpenSSL consume post-handshake messages; application data or a
    // close_notify means the peer is done with us.
    int flags = fcntl(fd_, F_GETFL);
    fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    char buf[256];
    int r = SSL_read(ssl_, buf, sizeof(buf));
    int err = SSL_get_error(ssl_, r);
    fcntl(fd_, F_SETFL, flags);
    return !(r <= 0 && (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE));
  }
  return false;
}

}  // namespace drawbridge::audit::internal

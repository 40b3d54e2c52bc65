#include "client/client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "client/http_connect.h"
#include "client/socks5.h"
#include "common/encoding.h"
#include "common/log.h"
#include "common/process.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "net/listen.h"
#include "tunnel/dial_code.h"

namespace drawbridge::client {
namespace {

// Reads the proxy handshake (CONNECT or SOCKS5) from a fresh connection, then
// hands the socket to a tunnel.
class Handshake : public std::enable_shared_from_this<Handshake> {
 public:
  Handshake(Client* client, asio::ip::tcp::socket socket, std::chrono::milliseconds timeout)
      : client_(client), socket_(std::move(socket)), timer_(socket_.get_executor()) {
    timer_.expires_after(timeout);
  }

  void Start() {
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        self->socket_.close(ignored);  // handshake too slow
      }
    });
    Read();
  }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](const asio::error_code& ec, size_t n) {
                              if (ec) {
                                self->timer_.cancel();
                                return;  // closed or timed out before a request: nothing to answer
                              }
                              self->Consume(std::string_view(self->buffer_.data(), n));
                            });
  }

  void Consume(std::string_view bytes) {
    if (protocol_ == ProxyProtocol::kUnknown) {
      protocol_ = DetectProtocol(static_cast<uint8_t>(bytes[0]));
      if (protocol_ == ProxyProtocol::kUnknown) {
        common::LogWarn("client.bad_handshake",
                        {{"reason", std::string(UnknownProtocolReason(bytes[0]))}});
        timer_.cancel();
        return;  // socket closes with us
      }
    }
    size_t consumed = 0;
    if (protocol_ == ProxyProtocol::kHttpConnect) {
      auto state = http_.Feed(bytes, &consumed);
      if (state == HttpConnectParser::State::kError) {
        return Refuse(http_.ErrorReply(), http_.error_reason());
      }
      if (state == HttpConnectParser::State::kDone) {
        return Open(http_.target(), std::string(bytes.substr(consumed)));
      }
      return Read();
    }
    auto state = socks_.Feed(bytes, &consumed);
    if (state == Socks5Parser::State::kError) {
      return Refuse(socks_.ErrorReply(), socks_.error_reason());
    }
    if (state == Socks5Parser::State::kGreetingDone) {
      // Answer "no authentication", then continue with what is left.
      pending_ = std::string(bytes.substr(consumed));
      auto reply = std::make_shared<std::string>(Socks5MethodReply());
      asio::async_write(socket_, asio::buffer(*reply),
                        [self = shared_from_this(), reply](const asio::error_code& ec, size_t) {
                          if (ec) {
                            self->timer_.cancel();
                            return;
                          }
                          std::string rest = std::move(self->pending_);
                          if (rest.empty()) {
                            self->Read();
                          } else {
                            self->Consume(rest);
                          }
                        });
      return;
    }
    if (state == Socks5Parser::State::kDone) {
      return Open(socks_.target(), std::string(bytes.substr(consumed)));
    }
    Read();
  }

  void Refuse(std::string reply, const std::string& reason) {
    common::LogWarn("client.bad_request",
                    {{"protocol", std::string(ProxyProtocolName(protocol_))}, {"reason", reason}});
    auto buf = std::make_shared<std::string>(std::move(reply));
    asio::async_write(socket_, asio::buffer(*buf),
                      [self = shared_from_this(), buf](const asio::error_code&, size_t) {
                        self->timer_.cancel();
                        asio::error_code ignored;
                        self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
                      });
  }

  void Open(const std::string& target, std::string payload) {
    timer_.cancel();
    ProxyProtocol protocol = protocol_;
    client_->Tunnel(std::move(socket_), target, std::move(payload),
                    [protocol](const v1::DialResult& result) {
                      TunnelResult r = ResultFor(result.code());
                      if (protocol == ProxyProtocol::kSocks5) {
                        return Socks5Reply(r);
                      }
                      if (r == TunnelResult::kInternal && !result.message().empty()) {
                        // The server says why (e.g. it cannot write its audit log): the
                        // application's error should too. Sanitised by HttpConnectReply.
                        return HttpConnectReply(
                            500, common::StrCat("the server could not open the connection: ",
                                                result.message().substr(0, 300)));
                      }
                      return HttpConnectReply(r);
                    });
  }

  Client* client_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, 4096> buffer_;
  ProxyProtocol protocol_ = ProxyProtocol::kUnknown;
  HttpConnectParser http_;
  Socks5Parser socks_;
  std::string pending_;
};

}  // namespace

absl::StatusOr<Forward> ParseForward(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size()) {
    return absl::InvalidArgumentError(
        common::StrCat("--forward \"", text, "\" must be LISTEN=DEST, e.g. 127.0.0.1:2222=git:22"));
  }
  Forward f{text.substr(0, eq), text.substr(eq + 1)};
  RETURN_IF_ERROR(net::ParseListenAddress(f.listen).status());
  return f;
}

TunnelResult ResultFor(v1::DialCode code) {
  switch (code) {
    case v1::DIAL_OK:
      return TunnelResult::kOk;
    case v1::DIAL_DENIED_POLICY:
    case v1::DIAL_DENIED_AGENT:
      return TunnelResult::kDeniedByPolicy;
    case v1::DIAL_REFUSED:
      return TunnelResult::kConnectionRefused;
    case v1::DIAL_UNREACHABLE:
      return TunnelResult::kAgentUnreachable;
    case v1::DIAL_TIMEOUT:
      return TunnelResult::kTimeout;
    case v1::DIAL_NO_AGENT:
      return TunnelResult::kNoAgent;
    case v1::DIAL_BAD_REQUEST:
      return TunnelResult::kBadRequest;
    case v1::DIAL_RATE_LIMITED:
      return TunnelResult::kRateLimited;
    default:
      return TunnelResult::kInternal;
  }
}

Client::Client(ClientOptions options)
    : options_(std::move(options)), instance_id_(common::RandomHex(8)) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Start(ClientOptions options) {
  RETURN_IF_ERROR(common::EnforceTls13Only());
  if (options.credential.identity.kind != pki::IdentityKind::kClient) {
    return absl::InvalidArgumentError(common::StrCat("the client needs a client/* credential, not ",
                                                     options.credential.identity.ToString()));
  }
  if (options.listen.empty() && options.forwards.empty()) {
    return absl::InvalidArgumentError("nothing to do: give --listen and/or --forward");
  }
  std::unique_ptr<Client> client(new Client(std::move(options)));
  ASSIGN_OR_RETURN(client->certs_,
                   enroll::CertManager::Create({.credential = client->options_.credential,
                                                .proxy = client->options_.proxy}));
  client->certs_->StartAutoRenew();
  Client* self = client.get();
  if (client->options_.use_lanes) {
    client->lanes_ =
        std::make_unique<lane::LaneDialer>(client->io_, client->certs_.get(), client->instance_id_);
  }
  client->watch_ = TunnelWatch::Start({
      .channel = [self] { return self->certs_->ChannelForNewAttempt(); },
      .instance_id = client->instance_id_,
      .on_ended =
          [self](const std::string& conn_id, const std::string& reason) {
            self->bridges_.AbortByConnId(conn_id, "ended by the server: " + reason);
          },
      .on_refused =
          [self](const grpc::Status& status) {
            int n = self->bridges_.AbortAll("refused by the server: " + status.error_message());
            common::LogWarn("client.refused", {{"reason", status.error_message().substr(0, 200)},
                                               {"tunnels_reset", std::to_string(n)}});
          },
      .on_lane_port =
          [self](int lane_port) {
            if (self->lanes_) {
              self->lanes_->SetPort(lane_port);
            }
          },
      .on_goaway =
          [self] {
            self->certs_->Reconnect();
            if (self->lanes_) {
              self->lanes_->SetPort(0);  // pre-opened lanes go to the draining server
            }
          },
  });
  if (!client->options_.listen.empty()) {
    RETURN_IF_ERROR(client->Listen(client->options_.listen, std::nullopt, &client->proxy_port_));
  }
  for (const auto& f : client->options_.forwards) {
    int port = 0;
    RETURN_IF_ERROR(client->Listen(f.listen, f.destination, &port));
    client->forward_ports_.push_back(port);
  }
  client->work_.emplace(client->io_.get_executor());
  for (int i = 0; i < client->options_.io_threads; ++i) {
    client->io_threads_.emplace_back([c = client.get()] { c->io_.run(); });
  }
  if (!client->options_.metrics_listen.empty()) {
    Client* c = client.get();
    c->metrics_registry_.AddGaugeFunction(
        "drawbridge_certificate_expiry_seconds", "Seconds until a certificate expires",
        {{"certificate", "client_tls"}},
        [c] { return static_cast<double>(c->certs_->Current().not_after - std::time(nullptr)); });
    metrics::Endpoint::Options eo;
    eo.listen = c->options_.metrics_listen;
    eo.registry = &c->metrics_registry_;
    eo.ready = {{"certificate", [c] {
                   return c->certs_->Current().not_after > std::time(nullptr)
                              ? absl::OkStatus()
                              : absl::UnavailableError("the client certificate has expired");
                 }}};
    ASSIGN_OR_RETURN(c->endpoint_, metrics::Endpoint::Start(std::move(eo)));
  }
  return client;
}

absl::Status Client::Listen(const std::string& address, std::optional<std::string> forward_to,
                            int* port) {
  ASSIGN_OR_RETURN(asio::ip::tcp::endpoint endpoint, net::ParseListenAddress(address));
  ASSIGN_OR_RETURN(std::shared_ptr<asio::ip::tcp::acceptor> acceptor, net::Listen(io_, endpoint));
  *port = acceptor->local_endpoint().port();
  common::LogInfo("client.listening",
                  {{"address", common::StrCat(endpoint.address().to_string(), ":", *port)},
                   {"mode", forward_to ? common::StrCat("forward to ", *forward_to)
                                       : std::string("CONNECT+SOCKS5")}});
  acceptors_.push_back(acceptor);
  AcceptLoop(acceptor, std::move(forward_to));
  return absl::OkStatus();
}

void Client::AcceptLoop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor,
                        std::optional<std::string> forward_to) {
  acceptor->async_accept(asio::make_strand(io_), [this, acceptor, forward_to](
                                                     const asio::error_code& ec,
                                                     asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) {
      return;
    }
    if (!ec) {
      if (forward_to) {
        Tunnel(std::move(socket), *forward_to, "", [](const v1::DialResult&) {
          return std::string();  // a plain forward has no handshake to answer
        });
      } else {
        std::make_shared<Handshake>(this, std::move(socket), options_.handshake_timeout)->Start();
      }
    }
    AcceptLoop(acceptor, forward_to);
  });
}

void Client::Tunnel(asio::ip::tcp::socket socket, const std::string& destination,
                    std::string initial_payload,
                    std::function<std::string(const v1::DialResult&)> reply) {
  Dial(std::move(socket),
       std::make_shared<const DialRequest>(
           DialRequest{destination, std::move(initial_payload), std::move(reply)}),
       1);
}

void Client::Dial(asio::ip::tcp::socket socket, std::shared_ptr<const DialRequest> request,
                  size_t attempt) {
  const std::string& destination = request->destination;
  tunnel::SocketBridge::Options opts;
  opts.open.mutable_open()->set_destination(destination);
  opts.open.mutable_open()->set_agent(options_.agent_selector);
  opts.expect_result = true;
  opts.initial_payload = request->initial_payload;
  opts.set = &bridges_;
  metrics_.active->Add(1);
  opts.on_result = [this, request](const v1::DialResult& result) {
    metrics_.Dial(result.code())->Inc();
    if (result.code() != v1::DIAL_OK) {
      common::LogWarn("client.dial_refused",
                      {{"destination", request->destination},
                       {"result", std::string(TunnelResultName(ResultFor(result.code())))},
                       {"reason", result.message()}});
    }
    return request->reply(result);
  };
  opts.on_done = [this, request](const tunnel::BridgeStats& stats) {
    const std::string& destination = request->destination;
    metrics_.active->Add(-1);
    metrics_.bytes_up->Inc(stats.bytes_from_socket);
    metrics_.bytes_down->Inc(stats.bytes_to_socket);
    if (stats.redialed) {
      common::LogInfo("client.redial",
                      {{"destination", destination}, {"reason", stats.Failure().substr(0, 300)}});
    } else if (std::string failure = stats.Failure(); !failure.empty()) {
      // The application's socket was reset (or will see the failure as one).
      common::LogWarn("client.tunnel_reset", {{"destination", destination},
                                              {"conn_id", common::HexEncode(stats.conn_id)},
                                              {"error", failure}});
    }
  };
  if (attempt < certs_->AddressCount()) {
    opts.redial = [this, request, attempt](asio::ip::tcp::socket again) {
      // Out of the gRPC reaction that ended the first stream: the next one is
      // started from the socket's strand.
      auto executor = again.get_executor();
      asio::post(executor, [this, request, attempt, again = std::move(again)]() mutable {
        Dial(std::move(again), request, attempt + 1);
      });
    };
  }
  if (auto lane = lanes_ ? lanes_->NewCall("Dial") : nullptr) {
    opts.cancel_call = [lane] { lane->Cancel(); };
    tunnel::SocketBridge::Start(
        std::move(socket), std::move(opts),
        [lane](grpc::ClientContext*, grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
          lane->Bind(reactor);
        });
    return;
  }
  auto stub =
      std::shared_ptr<v1::Tunnel::Stub>(v1::Tunnel::NewStub(certs_->ChannelForNewAttempt()));
  tunnel::SocketBridge::Start(
      std::move(socket), std::move(opts),
      [stub, instance = instance_id_](grpc::ClientContext* ctx,
                                      grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        ctx->AddMetadata(tunnel::kInstanceHeader, instance);
        stub->async()->Dial(ctx, reactor);
      });
}

Client::~Client() { Stop(); }

void Client::Stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  for (auto& a : acceptors_) {
    asio::post(a->get_executor(), [a] {
      asio::error_code ignored;
      a->close(ignored);
    });
  }
  watch_.reset();
  bridges_.CancelAllAndWait(std::chrono::seconds(10));
  if (lanes_) {
    lanes_->Shutdown(std::chrono::seconds(2));  // while io_ still runs
  }
  work_.reset();
  io_.stop();
  for (auto& t : io_threads_) {
    t.join();
  }
  acceptors_.clear();
}

// stdio: a socketpair stands in for the TCP socket; two threads copy between it
// and stdin/stdout with blocking I/O.
int RunStdio(const pki::Credential& credential, const std::string& proxy,
             const std::string& destination, const std::string& agent_selector) {
  if (!common::EnforceTls13Only().ok() || !common::MakeNonDumpable().ok()) {
    std::fprintf(stderr, "error: cannot set up the process\n");
    return 1;
  }
  auto certs = enroll::CertManager::Create({.credential = credential, .proxy = proxy});
  if (!certs.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(certs.status().message()).c_str());
    return 1;
  }
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    std::perror("socketpair");
    return 1;
  }
  // Outlives `io`: the bridge leaves it from its destructor, after its socket
  // (registered with `io`) is gone.
  tunnel::BridgeSet bridges;
  asio::io_context io;
  asio::ip::tcp::socket socket(asio::make_strand(io));
  asio::error_code ec;
  socket.assign(asio::ip::tcp::v4(), fds[0], ec);
  absl::Mutex mu;
  bool done = false;
  v1::DialCode result = v1::DIAL_INTERNAL;
  std::string message;
  std::string error;  // the tunnel ended with an error after it was open
  tunnel::SocketBridge::Options opts;
  opts.open.mutable_open()->set_destination(destination);
  opts.open.mutable_open()->set_agent(agent_selector);
  opts.expect_result = true;
  opts.set = &bridges;
  opts.on_result = [&](const v1::DialResult& r) {
    absl::MutexLock lock(&mu);
    result = r.code();
    message = r.message();
    return std::string();
  };
  opts.on_done = [&](const tunnel::BridgeStats& stats) {
    absl::MutexLock lock(&mu);
    error = stats.Failure();
    done = true;
  };
  auto stub =
      std::shared_ptr<v1::Tunnel::Stub>(v1::Tunnel::NewStub((*certs)->ChannelForNewAttempt()));
  tunnel::SocketBridge::Start(
      std::move(socket), std::move(opts),
      [stub](grpc::ClientContext* ctx, grpc::ClientBidiReactor<v1::Frame, v1::Frame>* reactor) {
        stub->async()->Dial(ctx, reactor);
      });
  std::thread io_thread([&io] {
    auto guard = asio::make_work_guard(io);
    io.run_for(std::chrono::hours(24 * 365));
  });
  int local = fds[1];
  std::thread up([local] {
    char buf[32768];
    while (true) {
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        ::shutdown(local, SHUT_WR);
        return;
      }
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(local, buf + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) {
          continue;
        }
        if (w <= 0) {
          return;
        }
        off += w;
      }
    }
  });
  up.detach();  // may stay blocked on stdin; the process exits when the tunnel ends
  char buf[32768];
  while (true) {
    ssize_t n = ::read(local, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    if (::write(STDOUT_FILENO, buf, static_cast<size_t>(n)) != n) {
      break;
    }
  }
  ::close(STDOUT_FILENO);
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(5));
  }
  // on_done runs inside the bridge's last gRPC reaction, which still holds the
  // bridge: wait until it is destroyed (its socket with it) before `io` stops
  // and goes, or that destructor would touch a freed io_context (seen as an
  // ASan heap-use-after-free when the dial was refused).
  bridges.CancelAllAndWait(std::chrono::seconds(5));
  io.stop();
  io_thread.join();
  absl::MutexLock lock(&mu);
  if (result != v1::DIAL_OK) {
    std::fprintf(stderr, "drawbridge: cannot reach %s: %s\n", destination.c_str(), message.c_str());
    return 1;
  }
  if (!done || !error.empty()) {
    // A socketpair has no reset to pass on: the exit status is how ssh learns
    // that the stream was cut rather than closed.
    std::fprintf(stderr, "drawbridge: connection to %s failed: %s\n", destination.c_str(),
                 done ? error.c_str() : "did not end in time");
    return 1;
  }
  return 0;
}

}  // namespace drawbridge::client

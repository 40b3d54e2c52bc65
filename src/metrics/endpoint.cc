#include "metrics/endpoint.h"

#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "metrics/http.h"
#include "net/listen.h"

namespace drawbridge::metrics {
namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(5);

// One request, one response, then close.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::ip::tcp::socket socket, std::function<std::string(const std::string&)> respond)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        buffer_(kMaxRequestHead),
        respond_(std::move(respond)) {}

  void Start() {
    auto self = shared_from_this();
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        self->socket_.close(ignored);
      }
    });
    asio::async_read_until(socket_, buffer_, "\r\n\r\n",
                           [self](const asio::error_code& ec, size_t n) { self->OnRead(ec, n); });
  }

 private:
  void OnRead(const asio::error_code& ec, size_t n) {
    std::string head;
    if (!ec) {
      head.assign(asio::buffers_begin(buffer_.data()), asio::buffers_begin(buffer_.data()) + n);
    } else if (ec != asio::error::not_found) {
      return;  // closed, reset or timed out: nobody to answer
    }
    // not_found: the head filled the buffer without ending; respond() says 400.
    response_ = respond_(head);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(response_), [self](const asio::error_code&, size_t) {
      asio::error_code ignored;
      self->socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      self->socket_.close(ignored);
      self->timer_.cancel();
    });
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  asio::streambuf buffer_;
  std::function<std::string(const std::string&)> respond_;
  std::string response_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Endpoint>> Endpoint::Start(Options options) {
  ASSIGN_OR_RETURN(asio::ip::tcp::endpoint at, net::ParseListenAddress(options.listen));
  std::unique_ptr<Endpoint> e(new Endpoint(std::move(options)));
  ASSIGN_OR_RETURN(e->acceptor_, net::Listen(e->io_, at));
  e->port_ = e->acceptor_->local_endpoint().port();
  e->Accept();
  e->thread_ = std::thread([raw = e.get()] { raw->io_.run(); });
  common::LogInfo("metrics.listening",
                  {{"address", common::StrCat(at.address().to_string(), ":", e->port_)},
                   {"paths", "/metrics /healthz /readyz"}});
  return e;
}

Endpoint::~Endpoint() {
  asio::post(io_, [this] {
    asio::error_code ignored;
    acceptor_->close(ignored);
  });
  io_.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Endpoint::Accept() {
  acceptor_->async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) {
      return;
    }
    if (!ec) {
      std::make_shared<Connection>(std::move(socket), [this](const std::string& head) {
        return Respond(head);
      })->Start();
    }
    Accept();
  });
}

std::string Endpoint::Respond(const std::string& head) const {
  auto request = ParseHttpRequestHead(head);
  if (!request.ok()) {
    return HttpResponse(400, "Bad Request", "text/plain", "bad request\n");
  }
  if (request->method != "GET") {
    return HttpResponse(405, "Method Not Allowed", "text/plain", "only GET\n");
  }
  if (request->path == "/metrics") {
    return HttpResponse(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                        options_.registry ? options_.registry->Render() : "");
  }
  if (request->path == "/healthz") {
    return HttpResponse(200, "OK", "text/plain", "ok\n");
  }
  if (request->path == "/readyz") {
    for (const auto& c : options_.ready) {
      absl::Status s = c.check();
      if (!s.ok()) {
        return HttpResponse(503, "Service Unavailable", "text/plain",
                            common::StrCat("not ready: ", c.name, ": ", s.message(), "\n"));
      }
    }
    return HttpResponse(200, "OK", "text/plain", "ready\n");
  }
  return HttpResponse(404, "Not Found", "text/plain", "try /metrics, /healthz or /readyz\n");
}

}  // namespace drawbridge::metrics

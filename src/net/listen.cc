#include "net/listen.h"

#include "common/strings.h"

namespace drawbridge::net {

absl::StatusOr<asio::ip::tcp::endpoint> ParseListenAddress(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        common::StrCat("listen address \"", address, "\" must be HOST:PORT"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  asio::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  const std::string port_text = address.substr(colon + 1);
  int port = -1;
  if (!port_text.empty() && port_text.size() <= 5 &&
      port_text.find_first_not_of("0123456789") == std::string::npos) {
    port = std::stoi(port_text);
  }
  if (ec || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(common::StrCat(
        "listen address \"", address, "\" must be a numeric IP and port, e.g. 127.0.0.1:1080"));
  }
  return asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(port));
}

absl::StatusOr<std::shared_ptr<asio::ip::tcp::acceptor>> Listen(asio::io_context& io,
                                                                const asio::ip::tcp::endpoint& at) {
  auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(io);
  asio::error_code ec;
  acceptor->open(at.protocol(), ec);
  if (!ec) {
    acceptor->set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
    acceptor->bind(at, ec);
  }
  if (!ec) {
    acceptor->listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError(common::StrCat("cannot listen on ", at.address().to_string(), ":",
                                                 at.port(), ": ", ec.message()));
  }
  return acceptor;
}

}  // namespace drawbridge::net

// The proxy port's first bytes come from any local application: HTTP CONNECT heads
// and SOCKS5 greetings/requests. Both parsers are fed the input whole and in chunks
// whose sizes derive from the first byte (a first byte of 0 means one byte at a time),
// and must agree: an incremental parser that answers differently depending on how
// TCP split the bytes is a bug. Reply builders must never let a message split the
// reply.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "client/http_connect.h"
#include "client/proxy_protocol.h"
#include "client/socks5.h"
#include "common/ip.h"
#include "fuzz/fuzz_util.h"

namespace drawbridge::fuzz {
namespace {

using client::HttpConnectParser;
using client::Socks5Parser;

// Chunk sizes from a small LCG seeded by the first input byte: 1..64 bytes.
class Chunker {
 public:
  explicit Chunker(uint8_t seed) : max_(1 + (seed & 0x3f)), state_(seed * 2654435761u + 1) {}
  size_t Next() {
    state_ = state_ * 1664525u + 1013904223u;
    return 1 + (state_ >> 16) % max_;
  }

 private:
  uint32_t max_;
  uint32_t state_;
};

struct HttpOutcome {
  HttpConnectParser::State state = HttpConnectParser::State::kNeedMore;
  size_t consumed = 0;
  std::string target;
  std::string host;
  uint16_t port = 0;
  int status = 0;
  std::string reason;
  bool operator==(const HttpOutcome&) const = default;
};

HttpOutcome RunHttp(std::string_view input, std::optional<Chunker> chunker) {
  HttpConnectParser parser;
  HttpOutcome out;
  size_t pos = 0;
  do {
    size_t n = chunker ? std::min(chunker->Next(), input.size() - pos) : input.size() - pos;
    size_t consumed = ~size_t{0};
    out.state = parser.Feed(input.substr(pos, n), &consumed);
    DB_FUZZ_CHECK(consumed <= n);
    DB_FUZZ_CHECK(out.state != HttpConnectParser::State::kNeedMore || consumed == n);
    DB_FUZZ_CHECK(out.state == parser.state());
    out.consumed += consumed;
    pos += n;
  } while (out.state == HttpConnectParser::State::kNeedMore && pos < input.size());

  // Final states stay final and take nothing more.
  size_t again = ~size_t{0};
  if (out.state != HttpConnectParser::State::kNeedMore) {
    DB_FUZZ_CHECK(parser.Feed(input, &again) == out.state);
    DB_FUZZ_CHECK(again == 0);
  }
  out.target = parser.target();
  out.host = parser.host();
  out.port = parser.port();
  out.status = parser.error_status();
  out.reason = parser.error_reason();
  return out;
}

void CheckHttpReply(const std::string& reply) {
  DB_FUZZ_CHECK(reply.rfind("HTTP/1.1 ", 0) == 0);
  size_t end = reply.find("\r\n\r\n");
  DB_FUZZ_CHECK(end != std::string::npos);
  size_t cl = reply.find("\r\nContent-Length: ");
  DB_FUZZ_CHECK(cl != std::string::npos && cl < end);
  size_t length = std::stoul(reply.substr(cl + 18));
  DB_FUZZ_CHECK(end + 4 + length == reply.size());
  std::string_view body = std::string_view(reply).substr(end + 4);
  for (size_t i = 0; i < body.size(); ++i) {
    uint8_t c = static_cast<uint8_t>(body[i]);
    DB_FUZZ_CHECK(i + 1 == body.size() ? c == '\n' : (c >= 0x20 && c != 0x7f));
  }
}

void CheckHttp(std::string_view input) {
  HttpOutcome whole = RunHttp(input, std::nullopt);
  HttpOutcome chunked = RunHttp(
      input, input.empty() ? std::nullopt
                           : std::optional<Chunker>(Chunker(static_cast<uint8_t>(input[0]))));
  DB_FUZZ_CHECK(whole == chunked);
  DB_FUZZ_CHECK(whole.consumed <= input.size());
  DB_FUZZ_CHECK(whole.consumed <= HttpConnectParser::kMaxHead + 1);

  switch (whole.state) {
    case HttpConnectParser::State::kDone: {
      DB_FUZZ_CHECK(whole.consumed >= 4 && input.substr(whole.consumed - 4, 4) == "\r\n\r\n");
      DB_FUZZ_CHECK(whole.consumed <= HttpConnectParser::kMaxHead);
      DB_FUZZ_CHECK(input.substr(0, 8) == "CONNECT ");
      DB_FUZZ_CHECK(whole.port != 0 && !whole.host.empty());
      if (whole.target.front() == '[') {
        std::optional<common::IpAddress> ip = common::ParseIp(whole.host);
        DB_FUZZ_CHECK(ip.has_value());
        DB_FUZZ_CHECK(whole.host.find(':') != std::string::npos);
      } else {
        DB_FUZZ_CHECK(client::IsValidTargetHostName(whole.host));
        DB_FUZZ_CHECK(whole.target.rfind(whole.host + ":", 0) == 0);
      }
      DB_FUZZ_CHECK(whole.status == 0);
      break;
    }
    case HttpConnectParser::State::kError:
      DB_FUZZ_CHECK(whole.status == 400 || whole.status == 405 || whole.status == 431 ||
                    whole.status == 505);
      DB_FUZZ_CHECK(!whole.reason.empty());
      DB_FUZZ_CHECK(whole.target.empty() && whole.port == 0);
      CheckHttpReply(client::HttpConnectReply(whole.status, whole.reason));
      break;
    case HttpConnectParser::State::kNeedMore:
      DB_FUZZ_CHECK(whole.consumed == input.size());
      DB_FUZZ_CHECK(whole.target.empty());
      break;
  }
}

struct SocksOutcome {
  Socks5Parser::State state = Socks5Parser::State::kNeedMore;
  size_t consumed = 0;
  size_t greeting_consumed = 0;  // 0 if the greeting never completed
  std::string target;
  std::string host;
  uint16_t port = 0;
  int address_type = 0;
  int code = 0;
  std::string reason;
  std::string reply;
  bool operator==(const SocksOutcome&) const = default;
};

SocksOutcome RunSocks(std::string_view input, std::optional<Chunker> chunker) {
  Socks5Parser parser;
  SocksOutcome out;
  size_t pos = 0;
  bool more = true;
  while (more) {
    size_t n = chunker ? std::min(chunker->Next(), input.size() - pos) : input.size() - pos;
    std::string_view chunk = input.substr(pos, n);
    size_t offset = 0;
    do {
      size_t consumed = ~size_t{0};
      out.state = parser.Feed(chunk.substr(offset), &consumed);
      DB_FUZZ_CHECK(consumed <= chunk.size() - offset);
      DB_FUZZ_CHECK(out.state != Socks5Parser::State::kNeedMore ||
                    consumed == chunk.size() - offset);
      offset += consumed;
      out.consumed += consumed;
      if (out.state == Socks5Parser::State::kGreetingDone) {
        DB_FUZZ_CHECK(out.greeting_consumed == 0);  // once only
        out.greeting_consumed = out.consumed;
      } else if (out.state != Socks5Parser::State::kNeedMore) {
        more = false;
        break;
      }
    } while (offset < chunk.size());
    pos += n;
    more = more && pos < input.size();
  }

  if (out.state == Socks5Parser::State::kDone || out.state == Socks5Parser::State::kError) {
    size_t again = ~size_t{0};
    DB_FUZZ_CHECK(parser.Feed(input, &again) == out.state);
    DB_FUZZ_CHECK(again == 0);
  }
  out.target = parser.target();
  out.host = parser.host();
  out.port = parser.port();
  out.address_type = static_cast<int>(parser.address_type());
  out.code = static_cast<int>(parser.error_code());
  out.reason = parser.error_reason();
  out.reply = parser.ErrorReply();
  return out;
}

void CheckSocks(std::string_view input) {
  SocksOutcome whole = RunSocks(input, std::nullopt);
  SocksOutcome chunked = RunSocks(
      input, input.empty() ? std::nullopt
                           : std::optional<Chunker>(Chunker(static_cast<uint8_t>(input[0]))));
  DB_FUZZ_CHECK(whole == chunked);
  DB_FUZZ_CHECK(whole.consumed <= input.size());
  // The longest greeting (2 + 255) plus the longest request (5 + 255 + 2).
  DB_FUZZ_CHECK(whole.consumed <= 257 + 262);
  DB_FUZZ_CHECK(whole.greeting_consumed == 0 ||
                (whole.greeting_consumed >= 3 && whole.greeting_consumed <= 257));

  switch (whole.state) {
    case Socks5Parser::State::kDone: {
      DB_FUZZ_CHECK(whole.greeting_consumed != 0);
      DB_FUZZ_CHECK(whole.port != 0 && !whole.host.empty());
      auto type = static_cast<Socks5Parser::AddressType>(whole.address_type);
      if (type == Socks5Parser::AddressType::kDomain) {
        DB_FUZZ_CHECK(client::IsValidTargetHostName(whole.host));
        DB_FUZZ_CHECK(whole.target.rfind(whole.host + ":", 0) == 0);
      } else {
        // IP targets are already in their one canonical spelling.
        std::optional<common::IpAddress> ip = common::ParseIp(whole.host);
        DB_FUZZ_CHECK(ip.has_value());
        DB_FUZZ_CHECK(ip->ToString() == whole.host);
        DB_FUZZ_CHECK(ip->is_v4 == (type == Socks5Parser::AddressType::kIpv4));
        DB_FUZZ_CHECK(ip->is_v4 ? whole.target.front() != '[' : whole.target.front() == '[');
      }
      break;
    }
    case Socks5Parser::State::kError:
      DB_FUZZ_CHECK(!whole.reason.empty());
      DB_FUZZ_CHECK(whole.target.empty());
      DB_FUZZ_CHECK(
          whole.reply.empty() || whole.reply == client::Socks5NoAcceptableMethodsReply() ||
          whole.reply == client::Socks5Reply(static_cast<client::Socks5ReplyCode>(whole.code)));
      break;
    case Socks5Parser::State::kGreetingDone:
    case Socks5Parser::State::kNeedMore:
      DB_FUZZ_CHECK(whole.consumed == input.size());
      DB_FUZZ_CHECK(whole.target.empty());
      break;
  }
}

}  // namespace
}  // namespace drawbridge::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  if (size > 0) {
    client::ProxyProtocol protocol = client::DetectProtocol(data[0]);
    DB_FUZZ_CHECK((protocol == client::ProxyProtocol::kUnknown) ==
                  !client::UnknownProtocolReason(data[0]).empty());
  }
  fuzz::CheckHttp(input);
  fuzz::CheckSocks(input);

  // Whatever the message, the reply stays one well-formed response.
  int status = size >= 2 ? (data[0] << 8 | data[1]) % 700 : 500;
  fuzz::CheckHttpReply(client::HttpConnectReply(status, input));
  return 0;
}

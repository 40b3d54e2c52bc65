#include "client/socks5.h"

#include <cstring>
#include <initializer_list>
#include <optional>

#include "common/ip.h"
#include "common/strings.h"

namespace drawbridge::client {
namespace {

constexpr uint8_t kVersion = 0x05;
constexpr uint8_t kMethodNoAuth = 0x00;
constexpr uint8_t kMethodNoneAcceptable = 0xFF;
constexpr uint8_t kCommandConnect = 0x01;
constexpr uint8_t kCommandBind = 0x02;
constexpr uint8_t kCommandUdpAssociate = 0x03;

bool IsHostNameByte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (uint8_t b : bytes) {
    out.push_back(static_cast<char>(b));
  }
  return out;
}

}  // namespace

Socks5Parser::State Socks5Parser::Feed(std::string_view bytes, size_t* consumed) {
  *consumed = 0;
  if (state_ == State::kGreetingDone) {
    state_ = State::kNeedMore;
  }
  if (state_ != State::kNeedMore) {
    return state_;
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    *consumed = i + 1;
    Step(static_cast<uint8_t>(bytes[i]));
    if (state_ != State::kNeedMore) {
      return state_;
    }
  }
  return state_;
}

void Socks5Parser::Step(uint8_t c) {
  switch (phase_) {
    case Phase::kGreetingVersion:
      if (c != kVersion) {
        // Not a SOCKS5 peer: any reply would be in a protocol it does not speak.
        FailGreeting({}, "greeting is not SOCKS version 5");
        return;
      }
      phase_ = Phase::kGreetingMethodCount;
      return;

    case Phase::kGreetingMethodCount:
      if (c == 0) {
        FailGreeting(Socks5NoAcceptableMethodsReply(),
                     "SOCKS5 greeting offers no authentication methods");
        return;
      }
      methods_left_ = c;
      phase_ = Phase::kGreetingMethods;
      return;

    case Phase::kGreetingMethods:
      if (c == kMethodNoAuth) {
        no_auth_offered_ = true;
      }
      if (--methods_left_ > 0) {
        return;
      }
      if (!no_auth_offered_) {
        FailGreeting(Socks5NoAcceptableMethodsReply(),
                     "SOCKS5 client did not offer \"no authentication\"; drawbridge client takes "
                     "no SOCKS credentials, remove them from the proxy URL");
        return;
      }
      phase_ = Phase::kRequestVersion;
      state_ = State::kGreetingDone;
      return;

    case Phase::kRequestVersion:
      if (c != kVersion) {
        FailRequest(Socks5ReplyCode::kGeneralFailure, "SOCKS5 request is not version 5");
        return;
      }
      phase_ = Phase::kRequestCommand;
      return;

    case Phase::kRequestCommand:
      if (c == kCommandBind || c == kCommandUdpAssociate) {
        FailRequest(Socks5ReplyCode::kCommandNotSupported,
                    c == kCommandBind ? "SOCKS5 BIND is not supported; only CONNECT is"
                                      : "SOCKS5 UDP ASSOCIATE is not supported; only CONNECT is");
        return;
      }
      if (c != kCommandConnect) {
        FailRequest(Socks5ReplyCode::kCommandNotSupported,
                    "unknown SOCKS5 command; only CONNECT is supported");
        return;
      }
      phase_ = Phase::kRequestReserved;
      return;

    case Phase::kRequestReserved:
      if (c != 0) {
        FailRequest(Socks5ReplyCode::kGeneralFailure, "SOCKS5 request reserved byte is not 0");
        return;
      }
      phase_ = Phase::kRequestAddressType;
      return;

    case Phase::kRequestAddressType:
      switch (c) {
        case static_cast<uint8_t>(AddressType::kIpv4):
          address_type_ = AddressType::kIpv4;
          address_left_ = 4;
          phase_ = Phase::kRequestAddress;
          return;
        case static_cast<uint8_t>(AddressType::kIpv6):
          address_type_ = AddressType::kIpv6;
          address_left_ = 16;
          phase_ = Phase::kRequestAddress;
          return;
        case static_cast<uint8_t>(AddressType::kDomain):
          address_type_ = AddressType::kDomain;
          phase_ = Phase::kRequestDomainLength;
          return;
        default:
          FailRequest(Socks5ReplyCode::kAddressTypeNotSupported,
                      "SOCKS5 address type is not IPv4 (1), domain name (3) or IPv6 (4)");
          return;
      }

    case Phase::kRequestDomainLength:
      if (c == 0) {
        FailRequest(Socks5ReplyCode::kGeneralFailure, "SOCKS5 request has an empty domain name");
        return;
      }
      address_left_ = c;
      phase_ = Phase::kRequestAddress;
      return;

    case Phase::kRequestAddress:
      if (address_type_ == AddressType::kDomain && !IsHostNameByte(c)) {
        FailRequest(Socks5ReplyCode::kGeneralFailure,
                    "SOCKS5 domain name contains a byte not allowed in host names");
        return;
      }
      address_.push_back(static_cast<char>(c));
      if (--address_left_ == 0) {
        phase_ = Phase::kRequestPort;
      }
      return;

    case Phase::kRequestPort:
      port_ = static_cast<uint16_t>((port_ << 8) | c);
      if (++port_bytes_ == 2) {
        FinishRequest();
      }
      return;
  }
}

void Socks5Parser::FinishRequest() {
  if (port_ == 0) {
    FailRequest(Socks5ReplyCode::kGeneralFailure, "SOCKS5 destination port is 0");
    return;
  }
  switch (address_type_) {
    case AddressType::kDomain:
      if (!IsValidTargetHostName(address_)) {
        FailRequest(Socks5ReplyCode::kGeneralFailure,
                    "SOCKS5 domain name is not a valid host name");
        return;
      }
      host_ = address_;
      break;
    case AddressType::kIpv4:
    case AddressType::kIpv6: {
      common::IpAddress ip;
      ip.is_v4 = address_type_ == AddressType::kIpv4;
      std::memcpy(ip.bytes.data(), address_.data(), address_.size());
      // Round-trip through the parser so that IPv4-mapped IPv6 reads as IPv4, the one
      // spelling policy and audit use for that host.
      std::optional<common::IpAddress> normal = common::ParseIp(ip.ToString());
      host_ = normal ? normal->ToString() : ip.ToString();
      if (normal) {
        address_type_ = normal->is_v4 ? AddressType::kIpv4 : AddressType::kIpv6;
      }
      break;
    }
  }
  address_.clear();
  target_ = address_type_ == AddressType::kIpv6 ? common::StrCat("[", host_, "]:", port_)
                                                : common::StrCat(host_, ":", port_);
  state_ = State::kDone;
}

void Socks5Parser::FailGreeting(std::string reply, std::string_view reason) {
  state_ = State::kError;
  error_code_ = Socks5ReplyCode::kGeneralFailure;
  error_reason_.assign(reason);
  error_reply_ = std::move(reply);
}

void Socks5Parser::FailRequest(Socks5ReplyCode code, std::string_view reason) {
  state_ = State::kError;
  error_code_ = code;
  error_reason_.assign(reason);
  error_reply_ = Socks5Reply(code);
  address_.clear();
  host_.clear();
  target_.clear();
  port_ = 0;
}

std::string Socks5MethodReply() { return Bytes({kVersion, kMethodNoAuth}); }

std::string Socks5NoAcceptableMethodsReply() { return Bytes({kVersion, kMethodNoneAcceptable}); }

Socks5ReplyCode Socks5ReplyCodeFor(TunnelResult result) {
  switch (result) {
    case TunnelResult::kOk:
      return Socks5ReplyCode::kSucceeded;
    case TunnelResult::kDeniedByPolicy:
      return Socks5ReplyCode::kNotAllowedByRuleset;
    case TunnelResult::kConnectionRefused:
      return Socks5ReplyCode::kConnectionRefused;
    case TunnelResult::kAgentUnreachable:
    case TunnelResult::kTimeout:
      return Socks5ReplyCode::kHostUnreachable;
    case TunnelResult::kNoAgent:
    case TunnelResult::kBadRequest:
    case TunnelResult::kInternal:
    case TunnelResult::kRateLimited:
      break;
  }
  return Socks5ReplyCode::kGeneralFailure;
}

std::string Socks5Reply(TunnelResult result) { return Socks5Reply(Socks5ReplyCodeFor(result)); }

std::string Socks5Reply(Socks5ReplyCode code) {
  // VER, REP, RSV, ATYP=IPv4, BND.ADDR=0.0.0.0, BND.PORT=0.
  return Bytes({kVersion, static_cast<uint8_t>(code), 0x00, 0x01, 0, 0, 0, 0, 0, 0});
}

}  // namespace drawbridge::client

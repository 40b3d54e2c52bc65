#include "tunnel/dial_code.h"

namespace drawbridge::tunnel {

const char* DialCodeName(v1::DialCode code) {
  switch (code) {
    case v1::DIAL_OK:
      return "ok";
    case v1::DIAL_DENIED_POLICY:
      return "denied_policy";
    case v1::DIAL_DENIED_AGENT:
      return "denied_agent";
    case v1::DIAL_REFUSED:
      return "refused";
    case v1::DIAL_UNREACHABLE:
      return "unreachable";
    case v1::DIAL_TIMEOUT:
      return "timeout";
    case v1::DIAL_NO_AGENT:
      return "no_agent";
    case v1::DIAL_BAD_REQUEST:
      return "bad_request";
    case v1::DIAL_RATE_LIMITED:
      return "rate_limited";
    default:
      return "internal";
  }
}

}  // namespace drawbridge::tunnel

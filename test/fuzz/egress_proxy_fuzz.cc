// The egress proxy parsers over arbitrary bytes: a proxy URL and a NO_PROXY
// list (from the environment or a flag) and a proxy's answer to CONNECT (from
// the network). The first byte picks the parser. Failures must be
// InvalidArgument (Unavailable for a well-formed refusal), and a parsed URL's
// display form must never carry its credentials.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/http_proxy.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  if (size == 0) {
    return 0;
  }
  std::string input(fuzz::AsView(data + 1, size - 1));
  switch (data[0] % 3) {
    case 0: {
      auto p = common::ParseHttpProxyUrl(input);
      if (!p.ok()) {
        DB_FUZZ_CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
        break;
      }
      DB_FUZZ_CHECK(p->port != 0 && !p->host.empty());
      DB_FUZZ_CHECK(p->display.find('@') == std::string::npos);
      std::string request = common::ConnectRequest("broker.example", 8443, *p);
      DB_FUZZ_CHECK(common::StartsWith(request, "CONNECT broker.example:8443 HTTP/1.1\r\n"));
      break;
    }
    case 1: {
      size_t split = input.find('\n');
      std::string list = input.substr(0, split);
      std::string host = split == std::string::npos ? "broker.example" : input.substr(split + 1);
      (void)common::NoProxyMatches(list, host, 8443);
      DB_FUZZ_CHECK(common::NoProxyMatches("*", host, 8443));
      break;
    }
    default: {
      common::HttpProxy proxy{"proxy", 3128, "", "http://proxy:3128"};
      absl::Status s = common::CheckConnectResponse(input, proxy);
      DB_FUZZ_CHECK(s.ok() || s.code() == absl::StatusCode::kInvalidArgument ||
                    s.code() == absl::StatusCode::kUnavailable);
      for (char c : std::string(s.message())) {
        DB_FUZZ_CHECK(static_cast<unsigned char>(c) >= 32 && static_cast<unsigned char>(c) < 127);
      }
      break;
    }
  }
  return 0;
}

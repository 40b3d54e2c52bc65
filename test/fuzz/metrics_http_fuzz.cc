// metrics::ParseHttpRequestHead over arbitrary bytes: what a scraper (or anyone who
// can reach the metrics listener) sends. A parse either fails with InvalidArgument
// or yields a token method and an absolute, printable path.

#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "metrics/http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  auto r = metrics::ParseHttpRequestHead(fuzz::AsView(data, size));
  if (!r.ok()) {
    DB_FUZZ_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  DB_FUZZ_CHECK(size <= metrics::kMaxRequestHead);
  DB_FUZZ_CHECK(!r->method.empty() && r->method.size() <= 16);
  DB_FUZZ_CHECK(!r->path.empty() && r->path[0] == '/');
  for (char c : r->path) {
    DB_FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f);
  }
  DB_FUZZ_CHECK(r->path.find('?') == std::string::npos);
  return 0;
}

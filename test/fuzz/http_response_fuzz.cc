// common::ParseHttpResponse over arbitrary bytes: what an OIDC issuer's HTTPS
// server (or anyone able to answer in its place) sends back. A parse either
// fails with InvalidArgument or yields a status of three digits and a body no
// larger than the limit and never larger than the input.

#include <cstddef>
#include <cstdint>

#include "common/http_response.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  constexpr size_t kLimit = 4096;
  auto r = common::ParseHttpResponse(fuzz::AsView(data, size), kLimit);
  if (!r.ok()) {
    DB_FUZZ_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  DB_FUZZ_CHECK(r->status >= 100 && r->status <= 999);
  DB_FUZZ_CHECK(r->body.size() <= kLimit && r->body.size() <= size);
  return 0;
}

// ParseCredential over arbitrary bytes (a credential file is operator-supplied and
// may be damaged or hostile). Whatever parses must survive Serialize -> Parse
// unchanged, since `drawbridge` writes credentials with SerializeCredential.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "pki/credential.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  std::string_view input = fuzz::AsView(data, size);

  // HostOf sees the same untrusted server_address; it must never read out of bounds.
  std::string host = pki::HostOf(input);
  DB_FUZZ_CHECK(host.size() <= input.size());

  absl::StatusOr<pki::Credential> credential = pki::ParseCredential(input);
  if (!credential.ok()) {
    return 0;
  }
  absl::StatusOr<pki::Credential> again =
      pki::ParseCredential(pki::SerializeCredential(*credential));
  DB_FUZZ_CHECK(again.ok());
  DB_FUZZ_CHECK(again->identity == credential->identity);
  DB_FUZZ_CHECK(again->trust_domain == credential->trust_domain);
  DB_FUZZ_CHECK(again->key_id == credential->key_id);
  DB_FUZZ_CHECK(again->algorithm == credential->algorithm);
  DB_FUZZ_CHECK(again->private_key_pem == credential->private_key_pem);
  DB_FUZZ_CHECK(again->server_address == credential->server_address);
  DB_FUZZ_CHECK(again->server_name == credential->server_name);
  DB_FUZZ_CHECK(again->ca_bundle_pem == credential->ca_bundle_pem);
  return 0;
}

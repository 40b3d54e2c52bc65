#include "common/tls_policy.h"

#include <openssl/conf.h>
#include <openssl/ssl.h>

#include <mutex>

#include "common/openssl_util.h"

namespace drawbridge::common {
namespace {

constexpr char kConfig[] = R"(
drawbridge_conf = drawbridge_init
[drawbridge_init]
ssl_conf = drawbridge_ssl
[drawbridge_ssl]
system_default = drawbridge_tls
[drawbridge_tls]
Protocol = -ALL, TLSv1.3
MinProtocol = TLSv1.3
)";

absl::Status Apply() {
  // Load the system configuration first (once), so that a later implicit load by
  // gRPC or OpenSSL cannot replace ours.
  if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, nullptr) != 1) {
    return OpenSslError("cannot initialise OpenSSL");
  }
  CONF* conf = NCONF_new(nullptr);
  if (conf == nullptr) {
    return OpenSslError("cannot allocate OpenSSL config");
  }
  BioPtr bio(BIO_new_mem_buf(kConfig, sizeof(kConfig) - 1));
  long error_line = 0;
  absl::Status status;
  if (NCONF_load_bio(conf, bio.get(), &error_line) <= 0) {
    status = OpenSslError("cannot parse the built-in TLS policy");
  } else if (CONF_modules_load(conf, "drawbridge_conf", 0) <= 0) {
    status = OpenSslError("cannot apply the built-in TLS policy");
  }
  NCONF_free(conf);
  return status;
}

}  // namespace

absl::Status EnforceTls13Only() {
  static std::once_flag once;
  static absl::Status result;
  std::call_once(once, [] { result = Apply(); });
  return result;
}

}  // namespace drawbridge::common

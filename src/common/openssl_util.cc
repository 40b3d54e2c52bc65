#include "common/openssl_util.h"

#include <openssl/err.h>

#include "common/strings.h"

namespace drawbridge::common {

std::string DrainOpenSslErrors() {
  std::string out;
  unsigned long err;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out;
}

absl::Status OpenSslError(const std::string& what) {
  std::string detail = DrainOpenSslErrors();
  return absl::InternalError(detail.empty() ? what : StrCat(what, ": ", detail));
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

}  // namespace drawbridge::common

#include "pki/credential.h"

#include <algorithm>

#include "common/dns_srv.h"
#include "common/files.h"
#include "common/http_proxy.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "pki/certs.h"
#include "pki/passphrase_seal.h"
#include "pki/pkcs11_key.h"

namespace drawbridge::pki {
namespace {

using nlohmann::json;

absl::Status Bad(std::string_view why) {
  return absl::InvalidArgumentError(common::StrCat("invalid credential file: ", why));
}

absl::StatusOr<std::string> Field(const json& j, const char* name, bool required = true) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (!required) {
      return std::string();
    }
    return Bad(common::StrCat("field \"", name, "\" missing"));
  }
  if (!it->is_string()) {
    return Bad(common::StrCat("field \"", name, "\" must be a string"));
  }
  return it->get<std::string>();
}

}  // namespace

absl::Status ValidateServerAddress(std::string_view address) {
  std::string host;
  std::optional<uint16_t> port;
  if (address.size() > 300 || !common::SplitHostOptionalPort(address, &host, &port) || !port ||
      !common::ValidHostName(host)) {
    return absl::InvalidArgumentError(common::StrCat("server address \"", address.substr(0, 100),
                                                     "\" is not HOST:PORT (port 1-65535)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateServerEndpoints(const Credential& c) {
  if (c.fallback_addresses.size() > kMaxFallbackAddresses) {
    return absl::InvalidArgumentError("at most 16 fallback addresses");
  }
  for (size_t i = 0; i < c.fallback_addresses.size(); ++i) {
    const std::string& a = c.fallback_addresses[i];
    RETURN_IF_ERROR(ValidateServerAddress(a));
    if (a == c.server_address ||
        std::find(c.fallback_addresses.begin(),
                  c.fallback_addresses.begin() + static_cast<ptrdiff_t>(i),
                  a) != c.fallback_addresses.begin() + static_cast<ptrdiff_t>(i)) {
      return absl::InvalidArgumentError(common::StrCat("server address ", a, " is listed twice"));
    }
  }
  if (!c.dns_srv.empty()) {
    RETURN_IF_ERROR(common::ValidateSrvName(c.dns_srv));
  }
  return absl::OkStatus();
}

void CopyServerEndpoints(const Credential& from, Credential* to) {
  to->server_address = from.server_address;
  to->fallback_addresses = from.fallback_addresses;
  to->dns_srv = from.dns_srv;
  to->server_name = from.server_name;
  to->ca_bundle_pem = from.ca_bundle_pem;
}

std::string HostOf(std::string_view address) {
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    return std::string(address.substr(1, close == std::string_view::npos ? 0 : close - 1));
  }
  auto colon = address.rfind(':');
  return std::string(address.substr(0, colon));
}

absl::StatusOr<Credential> ParseCredential(std::string_view json_text) {
  if (json_text.size() > 256 * 1024) {
    return Bad("larger than 256 KiB");
  }
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Bad("not a JSON object");
  }
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || version->get<int>() != 1) {
    return Bad("unsupported \"version\" (expected 1)");
  }
  Credential c;
  ASSIGN_OR_RETURN(std::string identity, Field(j, "identity"));
  ASSIGN_OR_RETURN(c.identity, ParseIdentity(identity));
  ASSIGN_OR_RETURN(c.trust_domain, Field(j, "trust_domain"));
  RETURN_IF_ERROR(ValidateTrustDomain(c.trust_domain));
  ASSIGN_OR_RETURN(c.token_file, Field(j, "token_file", /*required=*/false));
  if (c.uses_workload_token()) {
    if (j.contains("private_key_pem") || j.contains("key_id")) {
      return Bad("a credential with \"token_file\" holds no key");
    }
    if (c.token_file.front() != '/' || c.token_file.size() > 4096) {
      return Bad("\"token_file\" must be an absolute path");
    }
  } else {
    ASSIGN_OR_RETURN(c.key_id, Field(j, "key_id"));
    ASSIGN_OR_RETURN(std::string alg, Field(j, "algorithm"));
    ASSIGN_OR_RETURN(c.algorithm, ParseJoseName(alg));
    ASSIGN_OR_RETURN(c.key_uri, Field(j, "key_uri", /*required=*/false));
    if (c.uses_pkcs11_key()) {
      if (j.contains("private_key_pem")) {
        return Bad("a credential with \"key_uri\" holds no private key");
      }
      if (absl::Status s = ValidatePkcs11Uri(c.key_uri); !s.ok()) {
        return Bad(std::string(s.message()));
      }
      ASSIGN_OR_RETURN(c.pkcs11_module, Field(j, "pkcs11_module"));
      if (c.pkcs11_module.empty() || c.pkcs11_module.front() != '/' ||
          c.pkcs11_module.size() > 4096) {
        return Bad("\"pkcs11_module\" must be an absolute path");
      }
    } else {
      ASSIGN_OR_RETURN(c.private_key_pem, Field(j, "private_key_pem"));
    }
  }
  ASSIGN_OR_RETURN(c.server_address, Field(j, "server_address"));
  ASSIGN_OR_RETURN(c.server_name, Field(j, "server_name", /*required=*/false));
  ASSIGN_OR_RETURN(c.ca_bundle_pem, Field(j, "ca_bundle_pem"));
  ASSIGN_OR_RETURN(c.dns_srv, Field(j, "dns_srv", /*required=*/false));
  if (auto it = j.find("fallback_addresses"); it != j.end()) {
    if (!it->is_array() || it->size() > kMaxFallbackAddresses) {
      return Bad("\"fallback_addresses\" must be a list of at most 16 HOST:PORT strings");
    }
    for (const auto& a : *it) {
      if (!a.is_string()) {
        return Bad("\"fallback_addresses\" must be a list of at most 16 HOST:PORT strings");
      }
      c.fallback_addresses.push_back(a.get<std::string>());
    }
  }
  if (c.server_address.find(':') == std::string::npos) {
    return Bad("\"server_address\" must be HOST:PORT");
  }
  if (absl::Status s = ValidateServerEndpoints(c); !s.ok()) {
    return Bad(std::string(s.message()));
  }
  if (c.server_name.empty()) {
    c.server_name = HostOf(c.server_address);
  }
  if (!CertsFromPem(c.ca_bundle_pem).ok()) {
    return Bad("\"ca_bundle_pem\" holds no certificate");
  }
  if (c.holds_no_secret()) {
    return c;  // a PKCS#11 key is checked against key_id when it is opened
  }
  if (IsSealedPem(c.private_key_pem)) {
    c.key_sealed = true;  // checked against key_id once unsealed
    return c;
  }
  auto key = PrivateKeyFromPem(c.private_key_pem);
  if (!key.ok()) {
    return Bad("\"private_key_pem\" is not an ECDSA P-256 or Ed25519 private key");
  }
  if (*AlgorithmOf(key->get()) != c.algorithm) {
    return Bad("\"algorithm\" does not match the private key");
  }
  ASSIGN_OR_RETURN(std::string key_id, KeyIdOf(key->get()));
  if (key_id != c.key_id) {
    return Bad("\"key_id\" does not match the private key");
  }
  return c;
}

absl::Status UnsealCredential(Credential& c, std::string_view passphrase) {
  if (!c.key_sealed) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(common::PKeyPtr key, UnsealPrivateKeyPem(c.private_key_pem, passphrase));
  if (*AlgorithmOf(key.get()) != c.algorithm) {
    return Bad("\"algorithm\" does not match the sealed private key");
  }
  ASSIGN_OR_RETURN(std::string key_id, KeyIdOf(key.get()));
  if (key_id != c.key_id) {
    return Bad("\"key_id\" does not match the sealed private key");
  }
  ASSIGN_OR_RETURN(c.private_key_pem, PrivateKeyToPem(key.get()));
  c.key_sealed = false;
  return absl::OkStatus();
}

std::string SerializeCredential(const Credential& c) {
  json j = {{"version", 1},
            {"identity", c.identity.ToString()},
            {"trust_domain", c.trust_domain},
            {"server_address", c.server_address},
            {"server_name", c.server_name},
            {"ca_bundle_pem", c.ca_bundle_pem}};
  if (!c.fallback_addresses.empty()) {
    j["fallback_addresses"] = c.fallback_addresses;
  }
  if (!c.dns_srv.empty()) {
    j["dns_srv"] = c.dns_srv;
  }
  if (c.uses_workload_token()) {
    j["token_file"] = c.token_file;
  } else {
    j["key_id"] = c.key_id;
    j["algorithm"] = std::string(JoseName(c.algorithm));
    if (c.uses_pkcs11_key()) {
      j["key_uri"] = c.key_uri;
      j["pkcs11_module"] = c.pkcs11_module;
    } else {
      j["private_key_pem"] = c.private_key_pem;
    }
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<Credential> LoadCredentialFile(const std::string& path) {
  ASSIGN_OR_RETURN(mode_t mode, common::FileMode(path));
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  auto c = ParseCredential(text);
  if (!c.ok()) {
    return absl::Status(c.status().code(), common::StrCat(path, ": ", c.status().message()));
  }
  if ((mode & 077) != 0 && !c->holds_no_secret()) {
    return absl::PermissionDeniedError(common::StrCat(
        "credential file ", path, " is readable by group or others; run chmod 600 ", path));
  }
  if (c->key_sealed) {
    ASSIGN_OR_RETURN(std::optional<std::string> passphrase, PassphraseFromEnvironment());
    if (!passphrase) {
      return absl::FailedPreconditionError(common::StrCat(
          "the key in ", path,
          " is sealed with a passphrase: give it in DRAWBRIDGE_KEY_PASSPHRASE_FD (a file "
          "descriptor to read it from) or DRAWBRIDGE_KEY_PASSPHRASE"));
    }
    if (absl::Status s = UnsealCredential(*c, *passphrase); !s.ok()) {
      return absl::Status(s.code(), common::StrCat(path, ": ", s.message()));
    }
  }
  if (c->uses_pkcs11_key()) {
    // Open it now: a wrong PIN or a missing token is named at start, not at
    // the first renewal.
    auto key = SigningKeyOf(*c);
    if (!key.ok()) {
      return absl::Status(key.status().code(), common::StrCat(path, ": ", key.status().message()));
    }
  }
  return c;
}

absl::StatusOr<common::PKeyPtr> SigningKeyOf(const Credential& c) {
  if (!c.uses_pkcs11_key()) {
    return PrivateKeyFromPem(c.private_key_pem);
  }
  ASSIGN_OR_RETURN(common::PKeyPtr key, OpenPkcs11Key(c.key_uri, c.pkcs11_module));
  ASSIGN_OR_RETURN(common::PKeyPtr pub, PublicHalfOf(key.get()));
  if (*AlgorithmOf(pub.get()) != c.algorithm || *KeyIdOf(pub.get()) != c.key_id) {
    return absl::FailedPreconditionError(common::StrCat(
        "the key ", c.key_uri, " in the PKCS#11 token is not the credential's key ", c.key_id));
  }
  return key;
}

absl::Status SaveCredentialFile(const std::string& path, const Credential& credential) {
  if (common::PathExists(path)) {
    return absl::AlreadyExistsError(
        common::StrCat(path, " already exists; refusing to overwrite a credential file"));
  }
  return common::WriteFileAtomic(path, SerializeCredential(credential), 0600);
}

}  // namespace drawbridge::pki

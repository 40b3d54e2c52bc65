#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "pki/identity.h"
#include "pki/keys.h"

namespace drawbridge::pki {

// What an operator hands to an agent, client or admin: a 0600 JSON file.
//   {"version":1, "identity":"agent/acme", "trust_domain":"example.com",
//    "key_id":"...", "algorithm":"ES256", "private_key_pem":"-----BEGIN PRIVATE KEY...",
//    "server_address":"broker.example.com:8443", "server_name":"broker.example.com",
//    "ca_bundle_pem":"-----BEGIN CERTIFICATE..."}
// Optional: "fallback_addresses":["broker-2.example.com:8443", ...] and
// "dns_srv":"_drawbridge._tcp.example.com" (docs/enrollment.md, "Several server
// addresses"). The private key signs enrollment tokens only; TLS keys are made
// fresh in memory.
struct Credential {
  Identity identity;
  std::string trust_domain;
  std::string key_id;
  KeyAlgorithm algorithm = KeyAlgorithm::kEs256;
  std::string private_key_pem;
  std::string server_address;  // HOST:PORT to dial
  // Tried after server_address, in this order, when it cannot be reached. Every
  // address must lead to the same service: the same CA and server_name.
  std::vector<std::string> fallback_addresses;
  // An SRV name whose targets (RFC 2782 order) are tried before server_address.
  std::string dns_srv;
  std::string server_name;    // name to verify in the server certificate; default: HOST
  std::string ca_bundle_pem;  // pinned roots; no system roots are ever used
  // Workload identity (docs/enrollment.md): instead of a key, a file holding a
  // token from an issuer the identity trusts, read again at every enrollment.
  // Such a credential holds no secret (key_id and private_key_pem are empty).
  std::string token_file;

  // A key kept in a PKCS#11 token instead of private_key_pem (which is then
  // empty): its RFC 7512 URI and the token's module (pki/pkcs11_key.h). The
  // PIN comes from the environment, like a sealed key's passphrase.
  std::string key_uri;
  std::string pkcs11_module;

  // private_key_pem is sealed with a passphrase (pki/passphrase_seal.h) and
  // must be unsealed (UnsealCredential) before use.
  bool key_sealed = false;

  bool uses_workload_token() const { return !token_file.empty(); }
  bool uses_pkcs11_key() const { return !key_uri.empty(); }
  // The file holds no secret (a token file path, or a key in a token).
  bool holds_no_secret() const { return uses_workload_token() || uses_pkcs11_key(); }
};

// Opens a sealed credential key in memory: checks it is the key `key_id` and
// `algorithm` name, and replaces private_key_pem with its unsealed PEM.
absl::Status UnsealCredential(Credential& credential, std::string_view passphrase);

// The key that signs enrollment tokens: the file's own (unsealed) key, or the
// one in the PKCS#11 token, opened with the PIN from PassphraseFromEnvironment().
absl::StatusOr<common::PKeyPtr> SigningKeyOf(const Credential& credential);

// Strict parse: every field present and well-formed, the private key matching the
// declared algorithm and key id. Errors never echo key material.
absl::StatusOr<Credential> ParseCredential(std::string_view json_text);
std::string SerializeCredential(const Credential& credential);

// Refuses files holding a key that group or others can read (like ssh does for
// identity files); a workload or PKCS#11 credential holds no secret and may be
// shared. A sealed key is unsealed with PassphraseFromEnvironment(); a PKCS#11
// key is opened with it as the PIN and checked against key_id.
absl::StatusOr<Credential> LoadCredentialFile(const std::string& path);
// Writes with mode 0600; refuses to replace an existing file.
absl::Status SaveCredentialFile(const std::string& path, const Credential& credential);

// At most this many fallback addresses in a credential.
inline constexpr size_t kMaxFallbackAddresses = 16;

// Checks HOST:PORT or [V6]:PORT: a non-empty host and a port in 1-65535.
absl::Status ValidateServerAddress(std::string_view address);
// Checks the fields that say where the server is: server_address,
// fallback_addresses (at most 16, no repeats) and dns_srv.
absl::Status ValidateServerEndpoints(const Credential& credential);
// Copies where and how to reach the server (addresses, SRV name, server name,
// pinned CA) from `from`: a credential an admin writes reaches the server as
// the admin's does, unless told otherwise.
void CopyServerEndpoints(const Credential& from, Credential* to);

// Host part of HOST:PORT or [V6]:PORT.
std::string HostOf(std::string_view address);

}  // namespace drawbridge::pki

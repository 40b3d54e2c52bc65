#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace drawbridge::lane {

// ALPN protocol of a lane: a lane handshake with anything else (a gRPC client
// dialling the data port, a lane dialling the gRPC port) fails at once.
inline constexpr char kAlpn[] = "drawbridge-lane/1";

using SslContext = std::shared_ptr<SSL_CTX>;
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// TLS 1.3 only, mutual authentication against `trust_pem` (the pinned CA bundle;
// never the system roots), no session tickets or cache (a lane is one stream;
// resumption would only widen what a stolen ticket could do).
//
// Server side: presents `chain_pem` (leaf first) with `key_pem` and requires a
// client certificate that chains to `trust_pem`.
absl::StatusOr<SslContext> MakeServerContext(const std::string& chain_pem,
                                             const std::string& key_pem,
                                             const std::string& trust_pem);
// Client side: presents `chain_pem` with `key_pem` and verifies the server
// against `trust_pem` and the name given to NewClientSsl.
absl::StatusOr<SslContext> MakeClientContext(const std::string& chain_pem,
                                             const std::string& key_pem,
                                             const std::string& trust_pem);

// One connection's SSL for a client: SNI and the name (DNS name or IP address)
// the server's certificate must carry.
absl::StatusOr<SslPtr> NewClientSsl(SSL_CTX* ctx, const std::string& server_name);
absl::StatusOr<SslPtr> NewServerSsl(SSL_CTX* ctx);

// The verified peer's leaf certificate as PEM ("" if none).
std::string PeerCertificatePem(SSL* ssl);

}  // namespace drawbridge::lane

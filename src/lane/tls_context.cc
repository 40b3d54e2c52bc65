#include "lane/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "common/ip.h"
#include "common/openssl_util.h"
#include "common/status_macros.h"

namespace drawbridge::lane {
namespace {

// The lane's read-ahead: OpenSSL pulls up to this much ciphertext per read
// system call instead of one record header and one record at a time.
constexpr long kReadBufferBytes = 64 * 1024;

common::BioPtr MemoryBio(const std::string& pem) {
  return common::BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::Status UseChainAndKey(SSL_CTX* ctx, const std::string& chain_pem,
                            const std::string& key_pem) {
  common::BioPtr chain = MemoryBio(chain_pem);
  common::X509Ptr leaf(PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr));
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) {
    return common::OpenSslError("lane: cannot use the certificate");
  }
  while (X509* extra = PEM_read_bio_X509(chain.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      return common::OpenSslError("lane: cannot use the certificate chain");
    }
  }
  ERR_clear_error();  // the loop ends on "no start line"
  common::BioPtr key = MemoryBio(key_pem);
  common::PKeyPtr pkey(PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr));
  if (!pkey || SSL_CTX_use_PrivateKey(ctx, pkey.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return common::OpenSslError("lane: cannot use the private key");
  }
  return absl::OkStatus();
}

absl::Status TrustOnly(SSL_CTX* ctx, const std::string& trust_pem) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  common::BioPtr bio = MemoryBio(trust_pem);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    int ok = X509_STORE_add_cert(store, cert);
    X509_free(cert);
    if (ok != 1) {
      return common::OpenSslError("lane: cannot add a trusted certificate");
    }
    ++added;
  }
  ERR_clear_error();
  if (added == 0) {
    return absl::InvalidArgumentError("lane: the trust bundle holds no certificate");
  }
  return absl::OkStatus();
}

// What both sides share: TLS 1.3 only, our certificate and key, the pinned CA.
absl::StatusOr<SslContext> NewContext(const SSL_METHOD* method, const std::string& chain_pem,
                                      const std::string& key_pem, const std::string& trust_pem) {
  SslContext ctx(SSL_CTX_new(method), SSL_CTX_free);
  if (!ctx) {
    return common::OpenSslError("lane: SSL_CTX_new");
  }
  SSL_CTX* c = ctx.get();
  if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    return common::OpenSslError("lane: cannot require TLS 1.3");
  }
  // Prefer AES-128-GCM: as strong for this use and cheaper per byte with AES-NI.
  if (SSL_CTX_set_ciphersuites(
          c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256") != 1) {
    return common::OpenSslError("lane: cannot set the cipher suites");
  }
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  // Idle lanes give their record buffers back; partial writes are retried with
  // the same buffer (it never moves while a write is pending).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_read_ahead(c, 1);
  SSL_CTX_set_default_read_buffer_len(c, kReadBufferBytes);
  RETURN_IF_ERROR(UseChainAndKey(c, chain_pem, key_pem));
  RETURN_IF_ERROR(TrustOnly(c, trust_pem));
  return ctx;
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  // `in` is a list of length-prefixed names; only ours is accepted.
  const size_t ours = std::strlen(kAlpn);
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) {
      break;
    }
    if (len == ours && std::memcmp(in + i + 1, kAlpn, ours) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

}  // namespace

absl::StatusOr<SslContext> MakeServerContext(const std::string& chain_pem,
                                             const std::string& key_pem,
                                             const std::string& trust_pem) {
  ASSIGN_OR_RETURN(SslContext ctx, NewContext(TLS_server_method(), chain_pem, key_pem, trust_pem));
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_alpn_select_cb(c, SelectAlpn, nullptr);
  return ctx;
}

absl::StatusOr<SslContext> MakeClientContext(const std::string& chain_pem,
                                             const std::string& key_pem,
                                             const std::string& trust_pem) {
  ASSIGN_OR_RETURN(SslContext ctx, NewContext(TLS_client_method(), chain_pem, key_pem, trust_pem));
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  const size_t n = std::strlen(kAlpn);
  std::string protos(1, static_cast<char>(n));
  protos += kAlpn;
  if (SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(protos.data()),
                              static_cast<unsigned int>(protos.size())) != 0) {
    return common::OpenSslError("lane: cannot set ALPN");
  }
  return ctx;
}

absl::StatusOr<SslPtr> NewClientSsl(SSL_CTX* ctx, const std::string& server_name) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl) {
    return common::OpenSslError("lane: SSL_new");
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (common::ParseIp(server_name).has_value()) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) != 1) {
      return common::OpenSslError("lane: bad server address");
    }
  } else {
    if (X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size()) != 1 ||
        SSL_set_tlsext_host_name(ssl.get(), server_name.c_str()) != 1) {
      return common::OpenSslError("lane: bad server name");
    }
  }
  SSL_set_connect_state(ssl.get());
  return ssl;
}

absl::StatusOr<SslPtr> NewServerSsl(SSL_CTX* ctx) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl) {
    return common::OpenSslError("lane: SSL_new");
  }
  SSL_set_accept_state(ssl.get());
  return ssl;
}

std::string PeerCertificatePem(SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) {
    return "";
  }
  common::BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), peer) != 1) {
    return "";
  }
  return common::BioToString(bio.get());
}

}  // namespace drawbridge::lane

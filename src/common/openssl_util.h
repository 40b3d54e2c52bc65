#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"

namespace drawbridge::common {

// RAII owners for the OpenSSL handles we use.
struct OsslDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
  void operator()(BIO* p) const { BIO_free_all(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); }
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
};

using PKeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter>;
using PKeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslDeleter>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OsslDeleter>;
using X509Ptr = std::unique_ptr<X509, OsslDeleter>;
using X509ReqPtr = std::unique_ptr<X509_REQ, OsslDeleter>;
using X509StorePtr = std::unique_ptr<X509_STORE, OsslDeleter>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OsslDeleter>;
using BioPtr = std::unique_ptr<BIO, OsslDeleter>;
using BignumPtr = std::unique_ptr<BIGNUM, OsslDeleter>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OsslDeleter>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, OsslDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), OsslDeleter>;

// Drains OpenSSL's thread-local error queue into one line (for logs; never
// contains key material).
std::string DrainOpenSslErrors();

// An InternalError whose message is `what` plus the drained OpenSSL errors.
absl::Status OpenSslError(const std::string& what);

// Reads everything written to a memory BIO.
std::string BioToString(BIO* bio);

}  // namespace drawbridge::common

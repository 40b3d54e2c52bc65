#include "pki/certs.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/pem.h>

#include <cstring>

#include "common/encoding.h"
#include "common/ip.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/keys.h"

namespace drawbridge::pki {

using common::OpenSslError;
using common::PKeyPtr;
using common::X509Ptr;

namespace {

constexpr int64_t kDay = 86400;

int64_t Asn1TimeToUnix(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) {
    return 0;
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string NameEntry(X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) {
    return "";
  }
  ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, s);
  if (len < 0) {
    return "";
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return OpenSslError(common::StrCat("cannot build extension ", OBJ_nid2sn(nid)));
  }
  int rc = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (rc != 1) {
    return OpenSslError("cannot add extension");
  }
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  // 128 random bits with the top bit cleared keeps the INTEGER positive, 16 bytes.
  std::string bytes = common::RandomBytes(16);
  bytes[0] = static_cast<char>(bytes[0] & 0x7f);
  bytes[0] = static_cast<char>(bytes[0] | 0x01);  // never a leading zero byte
  common::BignumPtr bn(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), 16, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslError("cannot set serial");
  }
  return absl::OkStatus();
}

struct CertSpec {
  EVP_PKEY* subject_key;
  X509_NAME* subject;
  X509* issuer_cert;  // null: self-signed
  EVP_PKEY* issuer_key;
  int64_t not_before;
  int64_t not_after;
  std::vector<std::pair<int, std::string>> extensions;
};

absl::StatusOr<X509Ptr> Build(const CertSpec& spec) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) {
    return OpenSslError("cannot allocate certificate");
  }
  RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  X509_NAME* issuer_name =
      spec.issuer_cert ? X509_get_subject_name(spec.issuer_cert) : spec.subject;
  if (X509_set_subject_name(cert.get(), spec.subject) != 1 ||
      X509_set_issuer_name(cert.get(), issuer_name) != 1 ||
      X509_set_pubkey(cert.get(), spec.subject_key) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(spec.not_before)) ==
          nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(spec.not_after)) ==
          nullptr) {
    return OpenSslError("cannot fill certificate");
  }
  X509* issuer = spec.issuer_cert ? spec.issuer_cert : cert.get();
  for (const auto& [nid, value] : spec.extensions) {
    RETURN_IF_ERROR(AddExt(cert.get(), issuer, nid, value));
  }
  ASSIGN_OR_RETURN(KeyAlgorithm alg, AlgorithmOf(spec.issuer_key));
  const EVP_MD* md = alg == KeyAlgorithm::kEs256 ? EVP_sha256() : nullptr;
  if (X509_sign(cert.get(), spec.issuer_key, md) <= 0) {
    return OpenSslError("cannot sign certificate");
  }
  return cert;
}

std::unique_ptr<X509_NAME, common::OsslDeleter> MakeName(
    const std::vector<std::pair<std::string, std::string>>& entries) {
  std::unique_ptr<X509_NAME, common::OsslDeleter> name(X509_NAME_new());
  for (const auto& [field, value] : entries) {
    X509_NAME_add_entry_by_txt(name.get(), field.c_str(), MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  }
  return name;
}

}  // namespace

absl::StatusOr<X509Ptr> CertFromPem(std::string_view pem) {
  common::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a valid PEM certificate");
  }
  return X509Ptr(cert);
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(std::string_view pem) {
  common::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> out;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(cert);
  }
  common::DrainOpenSslErrors();  // the end of input shows up as an error
  if (out.empty()) {
    return absl::InvalidArgumentError("no PEM certificate found");
  }
  return out;
}

std::string CertToPem(X509* cert) {
  common::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return common::BioToString(bio.get());
}

absl::StatusOr<CertificateInfo> InspectCertificate(X509* cert) {
  CertificateInfo info;
  common::BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!serial) {
    return OpenSslError("cannot read serial");
  }
  char* hex = BN_bn2hex(serial.get());
  info.serial = common::ToLower(hex);
  OPENSSL_free(hex);
  info.subject_cn = NameEntry(X509_get_subject_name(cert), NID_commonName);
  info.issuer_cn = NameEntry(X509_get_issuer_name(cert), NID_commonName);
  std::string ou = NameEntry(X509_get_subject_name(cert), NID_organizationalUnitName);
  if (ou.rfind("key:", 0) == 0) {
    info.key_id = ou.substr(4);
  }
  info.not_before = Asn1TimeToUnix(X509_get0_notBefore(cert));
  info.not_after = Asn1TimeToUnix(X509_get0_notAfter(cert));
  info.is_ca = X509_check_ca(cert) != 0;
  common::GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_URI || gn->type == GEN_DNS) {
        const ASN1_IA5STRING* s =
            gn->type == GEN_URI ? gn->d.uniformResourceIdentifier : gn->d.dNSName;
        std::string v(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<size_t>(ASN1_STRING_length(s)));
        (gn->type == GEN_URI ? info.uri_sans : info.dns_sans).push_back(v);
      } else if (gn->type == GEN_IPADD) {
        const ASN1_OCTET_STRING* s = gn->d.iPAddress;
        common::IpAddress ip;
        int len = ASN1_STRING_length(s);
        if (len == 4 || len == 16) {
          ip.is_v4 = len == 4;
          std::memcpy(ip.bytes.data(), ASN1_STRING_get0_data(s), static_cast<size_t>(len));
          info.ip_sans.push_back(ip.ToString());
        }
      }
    }
  }
  return info;
}

absl::StatusOr<std::string> CreateCsrDer(EVP_PKEY* key) {
  common::X509ReqPtr req(X509_REQ_new());
  ASSIGN_OR_RETURN(KeyAlgorithm alg, AlgorithmOf(key));
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_pubkey(req.get(), key) != 1 ||
      X509_REQ_sign(req.get(), key, alg == KeyAlgorithm::kEs256 ? EVP_sha256() : nullptr) <= 0) {
    return OpenSslError("cannot create certificate request");
  }
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) {
    return OpenSslError("cannot encode certificate request");
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<PKeyPtr> PublicKeyFromCsrDer(std::string_view der) {
  if (der.empty() || der.size() > 16384) {
    return absl::InvalidArgumentError("certificate request missing or too large");
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  common::X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("malformed certificate request");
  }
  EVP_PKEY* key = X509_REQ_get_pubkey(req.get());
  if (key == nullptr) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("certificate request has no usable public key");
  }
  PKeyPtr owned(key);
  if (!AlgorithmOf(key).ok()) {
    return absl::InvalidArgumentError("certificate request key must be ECDSA P-256 or Ed25519");
  }
  if (X509_REQ_verify(req.get(), key) != 1) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("certificate request signature does not verify");
  }
  return owned;
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::CreateNew(
    std::string_view trust_domain, const common::Clock& clock) {
  int64_t now = clock.NowUnix();
  Material m;
  ASSIGN_OR_RETURN(m.root_key, GenerateKey(KeyAlgorithm::kEs256));
  ASSIGN_OR_RETURN(m.intermediate_key, GenerateKey(KeyAlgorithm::kEs256));
  std::string td(trust_domain);
  // Leaves may only carry URIs in our trust domain and the DNS/IP names of servers.
  auto root_name =
      MakeName({{"O", "Drawbridge"}, {"CN", common::StrCat("Drawbridge Root CA ", td)}});
  CertSpec root{m.root_key.get(),
                root_name.get(),
                nullptr,
                m.root_key.get(),
                now - 60,
                now + 3650 * kDay,
                {{NID_basic_constraints, "critical,CA:TRUE,pathlen:1"},
                 {NID_key_usage, "critical,keyCertSign,cRLSign"},
                 {NID_subject_key_identifier, "hash"}}};
  ASSIGN_OR_RETURN(m.root_cert, Build(root));
  auto inter_name =
      MakeName({{"O", "Drawbridge"}, {"CN", common::StrCat("Drawbridge Intermediate CA ", td)}});
  CertSpec inter{m.intermediate_key.get(),
                 inter_name.get(),
                 m.root_cert.get(),
                 m.root_key.get(),
                 now - 60,
                 now + 1825 * kDay,
                 {{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"},
                  {NID_authority_key_identifier, "keyid:always"}}};
  ASSIGN_OR_RETURN(m.intermediate_cert, Build(inter));
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(m)));
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::FromMaterial(
    Material m) {
  if (!m.root_cert || !m.intermediate_cert || !m.intermediate_key) {
    return absl::InvalidArgumentError("CA material incomplete");
  }
  if (X509_check_private_key(m.intermediate_cert.get(), m.intermediate_key.get()) != 1) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("intermediate CA key does not match its certificate");
  }
  EVP_PKEY* root_pub = X509_get0_pubkey(m.root_cert.get());
  if (root_pub == nullptr || X509_verify(m.intermediate_cert.get(), root_pub) != 1) {
    common::DrainOpenSslErrors();
    return absl::InvalidArgumentError("intermediate CA is not signed by the root CA");
  }
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(m)));
}

absl::StatusOr<X509Ptr> CertificateAuthority::Issue(const LeafSpec& spec) const {
  if (spec.public_key == nullptr || spec.not_after <= spec.not_before) {
    return absl::InvalidArgumentError("leaf certificate needs a key and a positive lifetime");
  }
  // A leaf never outlives its issuer.
  int64_t issuer_end = Asn1TimeToUnix(X509_get0_notAfter(material_.intermediate_cert.get()));
  if (spec.not_after > issuer_end) {
    return absl::FailedPreconditionError("intermediate CA expires before the requested leaf");
  }
  std::vector<std::pair<std::string, std::string>> entries = {{"O", "Drawbridge"}};
  if (!spec.key_id.empty()) {
    entries.emplace_back("OU", common::StrCat("key:", spec.key_id));
  }
  entries.emplace_back("CN", spec.common_name);
  auto subject = MakeName(entries);
  std::string san;
  auto append = [&san](const std::string& item) {
    common::StrAppend(&san, san.empty() ? "" : ",", item);
  };
  if (!spec.spiffe_id.empty()) {
    append(common::StrCat("URI:", spec.spiffe_id));
  }
  for (const auto& d : spec.dns_names) {
    append(common::StrCat("DNS:", d));
  }
  for (const auto& ip : spec.ip_addresses) {
    append(common::StrCat("IP:", ip));
  }
  std::string eku;
  if (spec.server_auth) {
    eku = "serverAuth";
  }
  if (spec.client_auth) {
    common::StrAppend(&eku, eku.empty() ? "" : ",", "clientAuth");
  }
  CertSpec leaf{spec.public_key,
                subject.get(),
                material_.intermediate_cert.get(),
                material_.intermediate_key.get(),
                spec.not_before,
                spec.not_after,
                {{NID_basic_constraints, "critical,CA:FALSE"},
                 {NID_key_usage, "critical,digitalSignature"},
                 {NID_subject_key_identifier, "hash"},
                 {NID_authority_key_identifier, "keyid:always"}}};
  if (!eku.empty()) {
    leaf.extensions.emplace_back(NID_ext_key_usage, eku);
  }
  if (!san.empty()) {
    leaf.extensions.emplace_back(NID_subject_alt_name, "critical," + san);
  }
  return Build(leaf);
}

std::string CertificateAuthority::TrustBundlePem() const {
  return CertToPem(material_.root_cert.get());
}

std::string CertificateAuthority::ChainPem(X509* leaf) const {
  return CertToPem(leaf) + CertToPem(material_.intermediate_cert.get());
}

absl::Status VerifyChain(X509* leaf, const std::vector<X509*>& intermediates,
                         std::string_view roots_pem, int64_t at) {
  ASSIGN_OR_RETURN(auto roots, CertsFromPem(roots_pem));
  common::X509StorePtr store(X509_STORE_new());
  for (auto& r : roots) {
    X509_STORE_add_cert(store.get(), r.get());
  }
  common::X509StackPtr chain(sk_X509_new_null());
  for (X509* c : intermediates) {
    X509_up_ref(c);
    sk_X509_push(chain.get(), c);
  }
  common::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, chain.get());
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(at));
  if (X509_verify_cert(ctx.get()) != 1) {
    std::string why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    common::DrainOpenSslErrors();
    return absl::PermissionDeniedError(common::StrCat("certificate chain does not verify: ", why));
  }
  return absl::OkStatus();
}

}  // namespace drawbridge::pki

// Writes the seed corpora under test/fuzz/corpus/ (one folder per target): real
// tokens, credentials, CSRs, certificates and a sealed blob made with our own code,
// plus near-misses that each fail one check. Keys are fresh on every run, so the
// bytes change; the shapes do not.
//
//   cmake --build build-fuzz --target gen_seeds
//   build-fuzz/test/fuzz/gen_seeds test/fuzz/corpus

#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/strings.h"
#include "fuzz/fuzz_util.h"
#include "pki/certs.h"
#include "pki/credential.h"
#include "pki/jwt.h"
#include "pki/key_encryption.h"
#include "pki/keys.h"

namespace drawbridge::fuzz {
namespace {

namespace fs = std::filesystem;

template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "gen_seeds: %s\n", std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*v);
}

class SeedWriter {
 public:
  explicit SeedWriter(fs::path root) : root_(std::move(root)) {}

  void Write(std::string_view target, std::string_view name, std::string_view bytes) {
    fs::path dir = root_ / target;
    fs::create_directories(dir);
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "gen_seeds: cannot write %s/%s\n", std::string(target).c_str(),
                   std::string(name).c_str());
      std::exit(1);
    }
  }

 private:
  fs::path root_;
};

std::string Compact(std::string_view header, std::string_view payload, std::string_view sig) {
  return common::StrCat(common::Base64UrlEncode(header), ".", common::Base64UrlEncode(payload), ".",
                        common::Base64UrlEncode(sig));
}

// The NUL-separated form jwt_fuzz encodes itself.
std::string Raw(std::string_view header, std::string_view payload, std::string_view sig) {
  return common::StrCat(header, std::string(1, '\0'), payload, std::string(1, '\0'), sig);
}

std::string ReplaceOnce(std::string text, std::string_view from, std::string_view to) {
  size_t pos = text.find(from);
  if (pos != std::string::npos) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

void JwtSeeds(SeedWriter& w, int64_t now) {
  auto es_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  auto ed_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEdDsa));
  auto tls_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  pki::EnrollmentClaims claims;
  claims.subject = "agent/acme";
  claims.audience = "example.com";
  claims.issued_at = now;
  claims.expires_at = now + 3600;
  claims.token_id = "0123456789abcdef0123456789abcdef";
  claims.tls_key_thumbprint = Must(pki::JwkThumbprint(tls_key.get()));
  w.Write("jwt_fuzz", "valid_es256.jwt",
          Must(pki::SignEnrollmentToken(es_key.get(), Must(pki::KeyIdOf(es_key.get())), claims)));
  claims.not_before = now - 60;
  claims.subject = "client/laptop";
  w.Write("jwt_fuzz", "valid_eddsa_nbf.jwt",
          Must(pki::SignEnrollmentToken(ed_key.get(), Must(pki::KeyIdOf(ed_key.get())), claims)));

  const std::string header = R"({"alg":"ES256","typ":"JWT","kid":"k1"})";
  const std::string payload =
      common::StrCat(R"({"sub":"agent/acme","aud":"example.com","iat":)", now, R"(,"exp":)",
                     now + 3600, R"(,"jti":"0123456789abcdef","cnf":{"jkt":"x"}})");
  const std::string sig(64, '\x01');
  w.Write("jwt_fuzz", "aud_array.jwt",
          Compact(header, ReplaceOnce(payload, R"("example.com")", R"(["example.com"])"), sig));
  w.Write("jwt_fuzz", "alg_none.jwt", Compact(R"({"alg":"none","kid":"k1"})", payload, ""));
  w.Write("jwt_fuzz", "alg_hs256.jwt", Compact(R"({"alg":"HS256","kid":"k1"})", payload, sig));
  w.Write("jwt_fuzz", "jku_header.jwt",
          Compact(R"({"alg":"ES256","kid":"k1","jku":"https://x"})", payload, sig));
  w.Write("jwt_fuzz", "padded_sig.jwt", Compact(header, payload, sig) + "==");
  w.Write("jwt_fuzz", "two_parts.jwt",
          common::StrCat(common::Base64UrlEncode(header), ".", common::Base64UrlEncode(payload)));
  w.Write("jwt_fuzz", "raw_valid.bin", Raw(header, payload, sig));
  w.Write("jwt_fuzz", "raw_eddsa_typ.bin",
          Raw(R"({"alg":"EdDSA","typ":"JWS","kid":"k1"})", payload, sig));
  w.Write("jwt_fuzz", "raw_iat_float.bin",
          Raw(header, ReplaceOnce(payload, R"("iat":)", R"("iat":1.5,"x":)"), sig));
  w.Write(
      "jwt_fuzz", "raw_exp_huge.bin",
      Raw(header, ReplaceOnce(payload, R"("exp":)", R"("exp":18446744073709551615,"y":)"), sig));
  w.Write("jwt_fuzz", "raw_no_cnf.bin",
          Raw(header, ReplaceOnce(payload, R"("cnf":{"jkt":"x"})", R"("cnf":"x")"), sig));
  w.Write("jwt_fuzz", "raw_short_jti.bin",
          Raw(header, ReplaceOnce(payload, "0123456789abcdef", "short"), sig));
}

void CredentialSeeds(SeedWriter& w, const pki::CertificateAuthority& ca) {
  auto es_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  auto ed_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEdDsa));
  pki::Credential c;
  c.identity = {pki::IdentityKind::kAgent, "acme"};
  c.trust_domain = "example.com";
  c.key_id = Must(pki::KeyIdOf(es_key.get()));
  c.algorithm = pki::KeyAlgorithm::kEs256;
  c.private_key_pem = Must(pki::PrivateKeyToPem(es_key.get()));
  c.server_address = "broker.example.com:8443";
  c.server_name = "broker.example.com";
  c.ca_bundle_pem = ca.TrustBundlePem();
  const std::string valid = pki::SerializeCredential(c);
  w.Write("credential_fuzz", "valid_es256.json", valid);
  w.Write("credential_fuzz", "version_2.json",
          ReplaceOnce(valid, R"("version": 1)", R"("version": 2)"));
  w.Write("credential_fuzz", "no_port.json",
          ReplaceOnce(valid, "broker.example.com:8443", "broker.example.com"));
  w.Write("credential_fuzz", "bad_identity.json", ReplaceOnce(valid, "agent/acme", "robot/acme"));
  w.Write("credential_fuzz", "bad_trust_domain.json",
          ReplaceOnce(valid, R"("example.com")", R"("Example.COM")"));
  w.Write("credential_fuzz", "alg_mismatch.json", ReplaceOnce(valid, R"("ES256")", R"("EdDSA")"));
  w.Write("credential_fuzz", "wrong_key_id.json",
          ReplaceOnce(valid, c.key_id, std::string(c.key_id.size(), 'A')));

  pki::Credential e = c;
  e.identity = {pki::IdentityKind::kClient, "laptop"};
  e.key_id = Must(pki::KeyIdOf(ed_key.get()));
  e.algorithm = pki::KeyAlgorithm::kEdDsa;
  e.private_key_pem = Must(pki::PrivateKeyToPem(ed_key.get()));
  e.server_address = "[::1]:8443";
  e.server_name = "";
  w.Write("credential_fuzz", "valid_eddsa_v6.json", pki::SerializeCredential(e));
  e.ca_bundle_pem = "";
  w.Write("credential_fuzz", "empty_bundle.json", pki::SerializeCredential(e));
}

void IdentitySeeds(SeedWriter& w) {
  const std::string_view seeds[][2] = {
      {"agent.txt", "agent/acme-gitlab"},
      {"client.txt", "client/laptop.1"},
      {"admin.txt", "admin/root_2"},
      {"spiffe.txt", "spiffe://example.com/agent/acme"},
      {"spiffe_other_domain.txt", "spiffe://evil.example/agent/acme"},
      {"spiffe_extra_path.txt", "spiffe://example.com/agent/acme/x"},
      {"trust_domain.txt", "corp-1.example.com"},
      {"bad_kind.txt", "Agent/acme"},
      {"bad_name.txt", "agent/-acme"},
      {"long_name.txt", "agent/a23456789012345678901234567890123456789012345678901234567890123"},
  };
  for (const auto& [name, text] : seeds) {
    w.Write("identity_fuzz", name, text);
  }
}

void IpSeeds(SeedWriter& w) {
  const std::string_view seeds[][2] = {
      {"v4.txt", "10.0.0.1"},
      {"v6_bracket.txt", "[::1]"},
      {"cidr_v4.txt", "10.1.2.3/8"},
      {"cidr_v6.txt", "2001:db8::1/32"},
      {"cidr_mapped.txt", "::ffff:10.1.2.3/120"},
      {"cidr_too_long.txt", "10.0.0.0/33"},
      {"cidr_v4_compat.txt", "::1.2.3.4/127"},
      {"peer_v4.txt", "ipv4:1.2.3.4:5678"},
      {"peer_v6.txt", "ipv6:[2001:db8::1]:443"},
      {"peer_v6_escaped.txt", "ipv6:%5B::1%5D:5678"},
      {"peer_v6_zone.txt", "ipv6:[fe80::1%25eth0]:443"},
      {"peer_unix.txt", "unix:/tmp/socket"},
  };
  for (const auto& [name, text] : seeds) {
    w.Write("ip_fuzz", name, text);
  }
}

void CsrSeeds(SeedWriter& w, const pki::CertificateAuthority& ca, int64_t now) {
  auto es_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  auto ed_key = Must(pki::GenerateKey(pki::KeyAlgorithm::kEdDsa));
  std::string csr = Must(pki::CreateCsrDer(es_key.get()));
  w.Write("csr_fuzz", "csr_es256.der", csr);
  w.Write("csr_fuzz", "csr_ed25519.der", Must(pki::CreateCsrDer(ed_key.get())));
  w.Write("csr_fuzz", "csr_truncated.der", csr.substr(0, csr.size() - 1));
  csr[csr.size() - 5] = static_cast<char>(csr[csr.size() - 5] ^ 0x20);
  w.Write("csr_fuzz", "csr_bad_signature.der", csr);

  pki::LeafSpec spec;
  spec.public_key = es_key.get();
  spec.common_name = "broker.example.com";
  spec.key_id = "k1";
  spec.spiffe_id = "spiffe://example.com/agent/acme";
  spec.dns_names = {"broker.example.com"};
  spec.ip_addresses = {"127.0.0.1", "::1"};
  spec.not_before = now - 60;
  spec.not_after = now + 86400;
  spec.server_auth = true;
  common::X509Ptr leaf = Must(ca.Issue(spec));
  w.Write("csr_fuzz", "chain.pem", ca.ChainPem(leaf.get()));
  w.Write("csr_fuzz", "root.pem", ca.TrustBundlePem());
  unsigned char* der = nullptr;
  int len = i2d_X509(leaf.get(), &der);
  if (len > 0) {
    w.Write("csr_fuzz", "leaf.der",
            std::string_view(reinterpret_cast<char*>(der), static_cast<size_t>(len)));
  }
  OPENSSL_free(der);
  w.Write("csr_fuzz", "empty_body.pem",
          "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
}

void EncodingSeeds(SeedWriter& w) {
  const std::string_view seeds[][2] = {
      {"b64_one_byte.txt", "QQ"},         {"b64_trailing_bits.txt", "QR"},
      {"b64_padded.txt", "QQ=="},         {"b64_url_chars.txt", "-_-_8A"},
      {"b64_std_chars.txt", "+/+/"},      {"hex_lower.txt", "00ff7f80"},
      {"hex_mixed_case.txt", "DEADbeef"}, {"hex_odd.txt", "abc"},
  };
  for (const auto& [name, text] : seeds) {
    w.Write("encoding_fuzz", name, text);
  }
}

void SealedSeeds(SeedWriter& w) {
  auto kek = pki::KeyEncryptionKey::FromBytes(std::string(kFuzzKek));
  std::string sealed = Must(kek.Seal("a sealed private key", kSealLabel));
  w.Write("sealed_fuzz", "real.bin", sealed);
  w.Write("sealed_fuzz", "truncated.bin", sealed.substr(0, sealed.size() - 1));
  w.Write("sealed_fuzz", "magic_only.bin", "DBSEAL1\n");
  w.Write("sealed_fuzz", "wrong_magic.bin", ReplaceOnce(sealed, "DBSEAL1", "DBSEAL2"));
}

}  // namespace
}  // namespace drawbridge::fuzz

int main(int argc, char** argv) {
  using namespace drawbridge;  // NOLINT(build/namespaces)
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  fuzz::SeedWriter w{std::filesystem::path(argv[1])};
  const common::Clock& clock = *common::Clock::Real();
  int64_t now = clock.NowUnix();
  auto ca = fuzz::Must(pki::CertificateAuthority::CreateNew("example.com", clock));
  fuzz::JwtSeeds(w, now);
  fuzz::CredentialSeeds(w, *ca);
  fuzz::IdentitySeeds(w);
  fuzz::IpSeeds(w);
  fuzz::CsrSeeds(w, *ca, now);
  fuzz::EncodingSeeds(w);
  fuzz::SealedSeeds(w);
  return 0;
}

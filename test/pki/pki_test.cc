#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/files.h"
#include "nlohmann/json.hpp"
#include "pki/certs.h"
#include "pki/credential.h"
#include "pki/identity.h"
#include "pki/jwt.h"
#include "pki/key_encryption.h"
#include "pki/keys.h"
#include "testing/temp_dir.h"

namespace drawbridge::pki {
namespace {

using common::Base64UrlEncode;

TEST(Identity, ParsesValidNames) {
  auto id = ParseIdentity("agent/acme-gitlab.eu_1");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->kind, IdentityKind::kAgent);
  EXPECT_EQ(id->SpiffeId("example.com"), "spiffe://example.com/agent/acme-gitlab.eu_1");
  EXPECT_TRUE(ParseIdentity("admin/" + std::string(63, 'a')).ok());
}

TEST(Identity, RejectsInvalidNames) {
  for (const char* bad : {"agent", "agent/", "Agent/x", "agent/X", "agent/-x", "robot/x",
                          "agent/a/b", "agent/a b", "/x", "agent/\xc3\xa9"}) {
    EXPECT_FALSE(ParseIdentity(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseIdentity("agent/" + std::string(64, 'a')).ok());
}

TEST(Identity, SpiffeIdMustBeOurTrustDomain) {
  EXPECT_TRUE(ParseSpiffeId("spiffe://example.com/client/x", "example.com").ok());
  EXPECT_FALSE(ParseSpiffeId("spiffe://evil.com/client/x", "example.com").ok());
  EXPECT_FALSE(ParseSpiffeId("spiffe://example.com.evil.com/client/x", "example.com").ok());
  EXPECT_FALSE(ParseSpiffeId("spiffe://example.com/", "example.com").ok());
  EXPECT_FALSE(ValidateTrustDomain("Example.com").ok());
  EXPECT_FALSE(ValidateTrustDomain("").ok());
  EXPECT_TRUE(ValidateTrustDomain("corp.example.com").ok());
}

class KeysTest : public ::testing::TestWithParam<KeyAlgorithm> {};

TEST_P(KeysTest, SignVerifyAndPemRoundTrip) {
  auto key = GenerateKey(GetParam());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*AlgorithmOf(key->get()), GetParam());
  auto sig = SignJose(key->get(), "payload");
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(sig->size(), 64u);
  auto pub = PublicKeyFromPem(*PublicKeyToPem(key->get()));
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(VerifyJose(pub->get(), GetParam(), "payload", *sig).ok());
  EXPECT_FALSE(VerifyJose(pub->get(), GetParam(), "payloaD", *sig).ok());
  KeyAlgorithm other =
      GetParam() == KeyAlgorithm::kEs256 ? KeyAlgorithm::kEdDsa : KeyAlgorithm::kEs256;
  EXPECT_FALSE(VerifyJose(pub->get(), other, "payload", *sig).ok());
  auto priv = PrivateKeyFromPem(*PrivateKeyToPem(key->get()));
  ASSERT_TRUE(priv.ok());
  EXPECT_EQ(*JwkThumbprint(priv->get()), *JwkThumbprint(pub->get()));
  EXPECT_EQ(KeyIdOf(key->get())->size(), 24u);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, KeysTest,
                         ::testing::Values(KeyAlgorithm::kEs256, KeyAlgorithm::kEdDsa));

TEST(Keys, ThumbprintsDifferPerKey) {
  auto a = GenerateKey(KeyAlgorithm::kEs256);
  auto b = GenerateKey(KeyAlgorithm::kEs256);
  EXPECT_NE(*JwkThumbprint(a->get()), *JwkThumbprint(b->get()));
}

TEST(Keys, RefusesOtherKeyTypes) {
  EVP_PKEY* rsa = EVP_RSA_gen(2048);
  ASSERT_NE(rsa, nullptr);
  common::PKeyPtr owned(rsa);
  EXPECT_FALSE(AlgorithmOf(rsa).ok());
  EXPECT_FALSE(PublicKeyFromPem(*PublicKeyToPem(rsa)).ok());
  EXPECT_FALSE(ParseJoseName("HS256").ok());
  EXPECT_FALSE(ParseJoseName("none").ok());
  EXPECT_FALSE(ParseJoseName("RS256").ok());
}

TEST(KeyEncryption, SealOpenAndTamper) {
  auto kek = KeyEncryptionKey::FromBytes(std::string(32, 'k'));
  auto sealed = kek.Seal("-----BEGIN PRIVATE KEY-----", "root-ca-key");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("BEGIN"), std::string::npos);
  EXPECT_EQ(*kek.Open(*sealed, "root-ca-key"), "-----BEGIN PRIVATE KEY-----");
  EXPECT_FALSE(kek.Open(*sealed, "intermediate-ca-key").ok());  // label is authenticated
  auto other = KeyEncryptionKey::FromBytes(std::string(32, 'j'));
  EXPECT_FALSE(other.Open(*sealed, "root-ca-key").ok());
  std::string flipped = *sealed;
  flipped[flipped.size() - 20] ^= 1;
  EXPECT_FALSE(kek.Open(flipped, "root-ca-key").ok());
  EXPECT_FALSE(kek.Open("short", "root-ca-key").ok());
}

TEST(KeyEncryption, KekFileMustBePrivate) {
  testing::TempDir dir;
  std::string path = dir.File("kek");
  ASSERT_TRUE(KeyEncryptionKey::CreateFile(path).ok());
  EXPECT_EQ(*common::FileMode(path), 0600u);
  EXPECT_TRUE(KeyEncryptionKey::LoadFile(path).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(KeyEncryptionKey::CreateFile(path).status()));
  ASSERT_TRUE(common::WriteFileAtomic(path, *common::ReadFile(path), 0644).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(KeyEncryptionKey::LoadFile(path).status()));
}

class CaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::CreateNew("example.com", clock_);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
  }
  common::FakeClock clock_{std::chrono::system_clock::from_time_t(1800000000)};
  std::unique_ptr<CertificateAuthority> ca_;
};

TEST_F(CaTest, IssuesLeafThatChainsToRoot) {
  auto key = GenerateKey(KeyAlgorithm::kEs256);
  LeafSpec spec;
  spec.public_key = key->get();
  spec.common_name = "agent/a";
  spec.key_id = "kid1";
  spec.spiffe_id = "spiffe://example.com/agent/a";
  spec.not_before = 1800000000;
  spec.not_after = 1800003600;
  spec.client_auth = true;
  auto leaf = ca_->Issue(spec);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  auto info = InspectCertificate(leaf->get());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->uri_sans, std::vector<std::string>{"spiffe://example.com/agent/a"});
  EXPECT_EQ(info->key_id, "kid1");
  EXPECT_EQ(info->issuer_cn, "Drawbridge Intermediate CA example.com");
  EXPECT_EQ(info->not_after - info->not_before, 3600);
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->serial.size(), 32u);
  X509* inter = ca_->material().intermediate_cert.get();
  EXPECT_TRUE(VerifyChain(leaf->get(), {inter}, ca_->TrustBundlePem(), 1800000100).ok());
  EXPECT_FALSE(VerifyChain(leaf->get(), {inter}, ca_->TrustBundlePem(), 1800003700).ok());
  auto other = CertificateAuthority::CreateNew("example.com", clock_);
  EXPECT_FALSE(VerifyChain(leaf->get(), {inter}, (*other)->TrustBundlePem(), 1800000100).ok());
}

TEST_F(CaTest, MaterialMustMatch) {
  auto other = CertificateAuthority::CreateNew("example.com", clock_);
  CertificateAuthority::Material m;
  m.root_cert = *CertFromPem(CertToPem(ca_->material().root_cert.get()));
  m.intermediate_cert = *CertFromPem(CertToPem((*other)->material().intermediate_cert.get()));
  m.intermediate_key =
      *PrivateKeyFromPem(*PrivateKeyToPem((*other)->material().intermediate_key.get()));
  EXPECT_FALSE(CertificateAuthority::FromMaterial(std::move(m)).ok());
}

TEST(Csr, ProvesPossession) {
  auto key = GenerateKey(KeyAlgorithm::kEs256);
  auto der = CreateCsrDer(key->get());
  ASSERT_TRUE(der.ok());
  auto pub = PublicKeyFromCsrDer(*der);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(*JwkThumbprint(pub->get()), *JwkThumbprint(key->get()));
  std::string tampered = *der;
  tampered[tampered.size() - 10] ^= 1;  // inside the signature
  EXPECT_FALSE(PublicKeyFromCsrDer(tampered).ok());
  EXPECT_FALSE(PublicKeyFromCsrDer("").ok());
  EXPECT_FALSE(PublicKeyFromCsrDer(*der + "x").ok());  // trailing garbage
}

// --- JWT -------------------------------------------------------------------

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override { key_ = std::move(*GenerateKey(KeyAlgorithm::kEs256)); }
  EnrollmentClaims Claims() {
    return EnrollmentClaims{"agent/a", "example.com",          1000,   0,
                            1100,      "0123456789abcdef0123", "thumb"};
  }
  static std::string Part(const nlohmann::json& j) { return Base64UrlEncode(j.dump()); }
  std::string Payload() {
    return Part({{"sub", "agent/a"},
                 {"aud", "example.com"},
                 {"iat", 1000},
                 {"exp", 1100},
                 {"jti", "0123456789abcdef0123"},
                 {"cnf", {{"jkt", "thumb"}}}});
  }
  common::PKeyPtr key_;
};

TEST_F(JwtTest, RoundTrip) {
  auto token = SignEnrollmentToken(key_.get(), "kid", Claims());
  ASSERT_TRUE(token.ok());
  auto parsed = ParseEnrollmentToken(*token);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->key_id, "kid");
  EXPECT_EQ(parsed->claims.subject, "agent/a");
  EXPECT_EQ(parsed->claims.tls_key_thumbprint, "thumb");
  EXPECT_TRUE(VerifyTokenSignature(*parsed, key_.get()).ok());
  auto other = GenerateKey(KeyAlgorithm::kEs256);
  EXPECT_FALSE(VerifyTokenSignature(*parsed, other->get()).ok());
}

TEST_F(JwtTest, RejectsDisallowedAlgorithms) {
  for (const char* alg : {"none", "HS256", "RS256", "ES384", "", "es256"}) {
    std::string token = Part({{"alg", alg}, {"kid", "kid"}}) + "." + Payload() + ".c2ln";
    auto parsed = ParseEnrollmentToken(token);
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << alg;
  }
  // alg none with an empty signature, the classic bypass.
  EXPECT_FALSE(
      ParseEnrollmentToken(Part({{"alg", "none"}, {"kid", "k"}}) + "." + Payload() + ".").ok());
}

TEST_F(JwtTest, RejectsMalformedStructure) {
  std::string header = Part({{"alg", "ES256"}, {"kid", "kid"}});
  std::vector<std::string> bad = {
      "",
      "a.b",
      "a.b.c.d",
      header + "." + Payload(),
      header + "." + Payload() + ".",
      header + "." + Payload() + ".***",
      "eyJ.eyJ.eyJ",
      Part(nlohmann::json::array()) + "." + Payload() + ".c2ln",
      Part({{"alg", "ES256"}}) + "." + Payload() + ".c2ln",              // no kid
      Part({{"alg", "ES256"}, {"kid", 7}}) + "." + Payload() + ".c2ln",  // kid type
      Part({{"alg", "ES256"}, {"kid", "k"}, {"crit", {"x"}}}) + "." + Payload() + ".c2ln",
      Part({{"alg", "ES256"}, {"kid", "k"}, {"jwk", {{"kty", "EC"}}}}) + "." + Payload() + ".c2ln",
      Part({{"alg", "ES256"}, {"kid", "k"}, {"typ", "JOSE+evil"}}) + "." + Payload() + ".c2ln",
      header + "." + Part({{"sub", "agent/a"}}) + ".c2ln",  // missing claims
      header + "." +
          Part({{"sub", "agent/a"},
                {"aud", "example.com"},
                {"iat", "1000"},
                {"exp", 1100},
                {"jti", "0123456789abcdef0123"},
                {"cnf", {{"jkt", "t"}}}}) +
          ".c2ln",  // iat string
      header + "." +
          Part({{"sub", "agent/a"},
                {"aud", "example.com"},
                {"iat", 1000},
                {"exp", 1100.5},
                {"jti", "0123456789abcdef0123"},
                {"cnf", {{"jkt", "t"}}}}) +
          ".c2ln",  // exp float
      header + "." +
          Part({{"sub", "agent/a"},
                {"aud", "example.com"},
                {"iat", 1000},
                {"exp", 1100},
                {"jti", "short"},
                {"cnf", {{"jkt", "t"}}}}) +
          ".c2ln",
      header + "." +
          Part({{"sub", "agent/a"},
                {"aud", "example.com"},
                {"iat", 1000},
                {"exp", 1100},
                {"jti", "0123456789abcdef0123"}}) +
          ".c2ln",  // no cnf
      std::string(kMaxTokenBytes + 1, 'a'),
  };
  for (const auto& token : bad) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseEnrollmentToken(token).status()))
        << token.substr(0, 120);
  }
}

TEST_F(JwtTest, HmacWithThePublicKeyAsSecretIsRefused) {
  // Algorithm confusion: an attacker signs HS256 using the public key PEM as the
  // HMAC secret. The parser must refuse the algorithm before any key is chosen.
  std::string token = Part({{"alg", "HS256"}, {"kid", "kid"}}) + "." + Payload() + "." +
                      Base64UrlEncode(std::string(32, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseEnrollmentToken(token).status()));
}

// --- Credential file ---------------------------------------------------------

Credential MakeCredential(CaTest* /*unused*/ = nullptr) {
  common::FakeClock clock(std::chrono::system_clock::now());
  auto ca = CertificateAuthority::CreateNew("example.com", clock);
  auto key = GenerateKey(KeyAlgorithm::kEdDsa);
  Credential c;
  c.identity = *ParseIdentity("client/ci");
  c.trust_domain = "example.com";
  c.key_id = *KeyIdOf(key->get());
  c.algorithm = KeyAlgorithm::kEdDsa;
  c.private_key_pem = *PrivateKeyToPem(key->get());
  c.server_address = "broker.example.com:8443";
  c.server_name = "broker.example.com";
  c.ca_bundle_pem = (*ca)->TrustBundlePem();
  return c;
}

TEST(Credential, RoundTripAndFileMode) {
  testing::TempDir dir;
  Credential c = MakeCredential();
  std::string path = dir.File("cred.json");
  ASSERT_TRUE(SaveCredentialFile(path, c).ok());
  EXPECT_EQ(*common::FileMode(path), 0600u);
  auto loaded = LoadCredentialFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->identity, c.identity);
  EXPECT_EQ(loaded->key_id, c.key_id);
  EXPECT_TRUE(absl::IsAlreadyExists(SaveCredentialFile(path, c)));
  ASSERT_TRUE(common::WriteFileAtomic(path, SerializeCredential(c), 0644).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(LoadCredentialFile(path).status()));
}

TEST(Credential, FallbackAddressesAndSrvNameRoundTrip) {
  Credential c = MakeCredential();
  c.fallback_addresses = {"broker-2.example.com:8443", "[2001:db8::1]:8443"};
  c.dns_srv = "_drawbridge._tcp.example.com";
  auto parsed = ParseCredential(SerializeCredential(c));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->fallback_addresses, c.fallback_addresses);
  EXPECT_EQ(parsed->dns_srv, c.dns_srv);
  // Absent fields stay absent: older readers see the same file as before.
  std::string plain = SerializeCredential(MakeCredential());
  EXPECT_EQ(plain.find("fallback_addresses"), std::string::npos);
  EXPECT_EQ(plain.find("dns_srv"), std::string::npos);
  EXPECT_TRUE(ValidateServerAddress("[::1]:1").ok());
  EXPECT_FALSE(ValidateServerAddress("[]:1").ok());
  EXPECT_FALSE(ValidateServerAddress("a:123456").ok());
  EXPECT_FALSE(ValidateServerAddress("a:-1").ok());
}

TEST(Credential, RejectsInconsistentOrMalformed) {
  Credential c = MakeCredential();
  auto j = nlohmann::json::parse(SerializeCredential(c));
  auto with = [&](const std::string& field, const nlohmann::json& value) {
    auto copy = j;
    if (value.is_null()) {
      copy.erase(field);
    } else {
      copy[field] = value;
    }
    return ParseCredential(copy.dump());
  };
  EXPECT_TRUE(ParseCredential(j.dump()).ok());
  EXPECT_FALSE(with("key_id", "000000000000000000000000").ok());
  EXPECT_FALSE(with("algorithm", "ES256").ok());
  EXPECT_FALSE(with("algorithm", "none").ok());
  EXPECT_FALSE(with("identity", "robot/x").ok());
  EXPECT_FALSE(with("server_address", "no-port").ok());
  EXPECT_FALSE(with("ca_bundle_pem", "nothing").ok());
  EXPECT_FALSE(with("private_key_pem", nullptr).ok());
  EXPECT_FALSE(with("version", 2).ok());
  EXPECT_FALSE(ParseCredential("[]").ok());
  EXPECT_FALSE(ParseCredential("{").ok());
  EXPECT_FALSE(with("fallback_addresses", "b.example.com:8443").ok());  // not a list
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({1})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({"no-port"})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({"b:0"})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({"b:65536"})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({":8443"})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({"b:1", "b:1"})).ok());
  EXPECT_FALSE(with("fallback_addresses", nlohmann::json::array({c.server_address})).ok());
  EXPECT_FALSE(
      with("fallback_addresses", nlohmann::json(std::vector<std::string>(17, "b.example.com:8443")))
          .ok());
  EXPECT_FALSE(with("dns_srv", "broker.example.com").ok());
  EXPECT_FALSE(with("dns_srv", 7).ok());
  // No error message may echo the private key.
  auto bad = with("key_id", "000000000000000000000000");
  EXPECT_EQ(std::string(bad.status().message()).find("PRIVATE"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::pki

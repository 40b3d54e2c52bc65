#include "server/enroller.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include "common/encoding.h"
#include "common/random.h"
#include "nlohmann/json.hpp"
#include "pki/jwt.h"
#include "pki/keys.h"
#include "testing/temp_dir.h"

namespace drawbridge::server {
namespace {

constexpr int64_t kNow = 1800000000;

class EnrollerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.trust_domain = "example.com";
    config_.listen = config_.advertise = "127.0.0.1:8443";
    ca_ = std::move(*pki::CertificateAuthority::CreateNew("example.com", clock_));
    OpenStore();
    agent_key_ = AddIdentity("agent/a", {});
  }

  void OpenStore() {
    enroller_.reset();
    directory_.reset();
    store_.reset();
    store_ = std::move(*store::OpenSqliteStore(dir_.File("state.db")));
    directory_ = std::move(*IdentityDirectory::Load(store_.get()));
    enroller_ =
        std::make_unique<Enroller>(config_, ca_.get(), directory_.get(), store_.get(), &clock_);
  }

  common::PKeyPtr AddIdentity(const std::string& identity, std::vector<std::string> cidrs) {
    auto key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    EXPECT_TRUE(directory_
                    ->CreateIdentity({identity, true, std::move(cidrs), kNow, kNow},
                                     {*pki::KeyIdOf(key.get()), identity, "ES256",
                                      *pki::PublicKeyToPem(key.get()), kNow, 0})
                    .ok());
    return key;
  }

  // A request as a well-behaved client builds it; tests then break one thing.
  struct Request {
    pki::EnrollmentClaims claims;
    std::string kid;
    EVP_PKEY* signer;
    common::PKeyPtr tls_key;
    std::string csr;
    std::string token;
  };

  Request Build(EVP_PKEY* signer, const std::string& subject = "agent/a") {
    Request r;
    r.signer = signer;
    r.kid = *pki::KeyIdOf(signer);
    r.tls_key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    r.csr = *pki::CreateCsrDer(r.tls_key.get());
    r.claims = {subject,
                "example.com",
                kNow,
                0,
                kNow + 120,
                common::RandomHex(16),
                *pki::JwkThumbprint(r.tls_key.get())};
    Sign(r);
    return r;
  }
  void Sign(Request& r) { r.token = *pki::SignEnrollmentToken(r.signer, r.kid, r.claims); }

  absl::StatusOr<EnrollmentResult> Enroll(
      const Request& r, std::optional<common::IpAddress> peer = common::ParseIp("127.0.0.1")) {
    refusal_ = {};
    return enroller_->Enroll(r.token, r.csr, peer, &refusal_);
  }

  void ExpectRefused(const absl::StatusOr<EnrollmentResult>& result, absl::StatusCode code,
                     const std::string& detail_part) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    EXPECT_NE(std::string(result.status().message()).find(detail_part), std::string::npos)
        << "detail: " << result.status().message();
  }

  testing::TempDir dir_;
  common::FakeClock clock_{std::chrono::system_clock::from_time_t(kNow)};
  ServerConfig config_;
  std::unique_ptr<pki::CertificateAuthority> ca_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<IdentityDirectory> directory_;
  std::unique_ptr<Enroller> enroller_;
  common::PKeyPtr agent_key_;
  EnrollmentRefusal refusal_;
};

TEST_F(EnrollerTest, IssuesCertificateWithSanIssuerAndLifetime) {
  Request r = Build(agent_key_.get());
  auto result = Enroll(r);
  ASSERT_TRUE(result.ok()) << result.status();
  auto chain = *pki::CertsFromPem(result->chain_pem);
  ASSERT_EQ(chain.size(), 2u);
  auto info = *pki::InspectCertificate(chain[0].get());
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{"spiffe://example.com/agent/a"});
  EXPECT_EQ(info.issuer_cn, "Drawbridge Intermediate CA example.com");
  // Backdated by the tolerated skew (60 s) for peers whose clock is behind.
  EXPECT_EQ(info.not_before, kNow - 60);
  EXPECT_EQ(info.not_after, kNow + 3600);
  EXPECT_TRUE(
      pki::VerifyChain(chain[0].get(), {chain[1].get()}, result->trust_bundle_pem, kNow - 59).ok());
  EXPECT_EQ(info.key_id, r.kid);
  EXPECT_EQ(X509_check_private_key(chain[0].get(), r.tls_key.get()), 1);
  EXPECT_TRUE(
      pki::VerifyChain(chain[0].get(), {chain[1].get()}, result->trust_bundle_pem, kNow + 1).ok());
  EXPECT_EQ(store_->GetCertificate(info.serial)->identity, "agent/a");
}

TEST_F(EnrollerTest, LifetimeFollowsConfig) {
  config_.certificate_lifetime_seconds = 600;
  OpenStore();
  auto result = Enroll(Build(agent_key_.get()));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->not_after, kNow + 600);
}

TEST_F(EnrollerTest, RefusesAlgNone) {
  Request r = Build(agent_key_.get());
  nlohmann::json header = {{"alg", "none"}, {"kid", r.kid}};
  std::string payload = r.token.substr(r.token.find('.') + 1);
  payload = payload.substr(0, payload.find('.'));
  r.token = common::Base64UrlEncode(header.dump()) + "." + payload + ".";
  ExpectRefused(Enroll(r), absl::StatusCode::kInvalidArgument, "not allowed");
}

TEST_F(EnrollerTest, RefusesHs256SignedWithThePublicKey) {
  Request r = Build(agent_key_.get());
  std::string public_pem = *pki::PublicKeyToPem(agent_key_.get());
  nlohmann::json header = {{"alg", "HS256"}, {"kid", r.kid}};
  std::string payload = r.token.substr(r.token.find('.') + 1);
  payload = payload.substr(0, payload.find('.'));
  std::string input = common::Base64UrlEncode(header.dump()) + "." + payload;
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), public_pem.data(), static_cast<int>(public_pem.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &mac_len);
  r.token =
      input + "." + common::Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), mac_len));
  ExpectRefused(Enroll(r), absl::StatusCode::kInvalidArgument, "not allowed");
}

TEST_F(EnrollerTest, RefusesWrongKey) {
  auto other = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  Request r = Build(other.get());
  r.kid = *pki::KeyIdOf(agent_key_.get());  // claims to be the registered key
  Sign(r);
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "signature");
  std::string generic = refusal_.public_message;

  // An unknown key id gets the same public answer: nothing to enumerate.
  Request unknown = Build(other.get());
  ExpectRefused(Enroll(unknown), absl::StatusCode::kPermissionDenied, "unknown key id");
  EXPECT_EQ(refusal_.public_message, generic);
}

TEST_F(EnrollerTest, RefusesKeyOfAnotherIdentity) {
  auto b_key = AddIdentity("agent/b", {});
  Request r = Build(b_key.get(), "agent/a");
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "belongs to agent/b");
}

TEST_F(EnrollerTest, RefusesExpiredToken) {
  Request r = Build(agent_key_.get());
  clock_.Advance(std::chrono::seconds(120 + config_.max_clock_skew_seconds));
  ExpectRefused(Enroll(r), absl::StatusCode::kUnauthenticated, "expired");
  EXPECT_NE(refusal_.public_message.find("clock"), std::string::npos);
}

TEST_F(EnrollerTest, RefusesTokenNotYetValid) {
  Request r = Build(agent_key_.get());
  r.claims.issued_at = kNow + config_.max_clock_skew_seconds + 10;
  r.claims.expires_at = r.claims.issued_at + 60;
  Sign(r);
  ExpectRefused(Enroll(r), absl::StatusCode::kUnauthenticated, "not valid yet");

  Request nbf = Build(agent_key_.get());
  nbf.claims.not_before = kNow + 200;
  nbf.claims.expires_at = kNow + 250;
  Sign(nbf);
  ExpectRefused(Enroll(nbf), absl::StatusCode::kUnauthenticated, "not valid yet");
}

TEST_F(EnrollerTest, AcceptsSkewWithinBound) {
  Request r = Build(agent_key_.get());
  r.claims.issued_at = kNow + config_.max_clock_skew_seconds - 1;
  r.claims.expires_at = r.claims.issued_at + 60;
  Sign(r);
  EXPECT_TRUE(Enroll(r).ok());
}

TEST_F(EnrollerTest, RefusesTokenLivingLongerThanFiveMinutes) {
  Request r = Build(agent_key_.get());
  r.claims.expires_at = kNow + 301;
  Sign(r);
  ExpectRefused(Enroll(r), absl::StatusCode::kUnauthenticated, "lifetime");
}

TEST_F(EnrollerTest, RefusesWrongAudience) {
  Request r = Build(agent_key_.get());
  r.claims.audience = "other.example.com";
  Sign(r);
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "audience");
}

TEST_F(EnrollerTest, RefusesReplayedTokenIdAlsoAfterRestart) {
  Request r = Build(agent_key_.get());
  ASSERT_TRUE(Enroll(r).ok());
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "replayed");
  OpenStore();  // a restarted server reads the same database
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "replayed");
  EXPECT_EQ(refusal_.public_message, "enrollment refused: token already used");
}

TEST_F(EnrollerTest, RefusesCnfNotMatchingPresentedKey) {
  Request r = Build(agent_key_.get());
  auto other_tls = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  r.csr = *pki::CreateCsrDer(other_tls.get());  // token bound to r.tls_key
  ExpectRefused(Enroll(r), absl::StatusCode::kPermissionDenied, "cnf.jkt");
}

TEST_F(EnrollerTest, RefusesMalformedCsr) {
  Request r = Build(agent_key_.get());
  r.csr = "not a csr";
  ExpectRefused(Enroll(r), absl::StatusCode::kInvalidArgument, "certificate request");
}

TEST_F(EnrollerTest, RefusesDisabledIdentity) {
  ASSERT_TRUE(directory_->SetEnabled("agent/a", false, kNow).ok());
  ExpectRefused(Enroll(Build(agent_key_.get())), absl::StatusCode::kPermissionDenied, "disabled");
  ASSERT_TRUE(directory_->SetEnabled("agent/a", true, kNow).ok());
  EXPECT_TRUE(Enroll(Build(agent_key_.get())).ok());
}

TEST_F(EnrollerTest, RefusesRemovedKeyButNotTheNewOne) {
  auto new_key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEdDsa));
  ASSERT_TRUE(directory_
                  ->AddKey({*pki::KeyIdOf(new_key.get()), "agent/a", "EdDSA",
                            *pki::PublicKeyToPem(new_key.get()), kNow, 0})
                  .ok());
  ASSERT_TRUE(directory_->RemoveKey("agent/a", *pki::KeyIdOf(agent_key_.get()), kNow).ok());
  ExpectRefused(Enroll(Build(agent_key_.get())), absl::StatusCode::kPermissionDenied, "removed");
  EXPECT_TRUE(Enroll(Build(new_key.get())).ok());
}

TEST_F(EnrollerTest, ChecksPeerAgainstIdentityCidrs) {
  auto key = AddIdentity("client/c", {"10.20.0.0/16", "2001:db8::/32"});
  ExpectRefused(Enroll(Build(key.get(), "client/c")), absl::StatusCode::kPermissionDenied,
                "outside the CIDRs");
  EXPECT_EQ(refusal_.public_message,
            "enrollment refused: source address not allowed for this identity");
  ExpectRefused(Enroll(Build(key.get(), "client/c"), std::nullopt),
                absl::StatusCode::kPermissionDenied, "outside the CIDRs");
  EXPECT_TRUE(Enroll(Build(key.get(), "client/c"), common::ParseIp("10.20.3.4")).ok());
  EXPECT_TRUE(Enroll(Build(key.get(), "client/c"), common::ParseIp("2001:db8::5")).ok());
}

TEST_F(EnrollerTest, ARefusedRequestDoesNotBurnTheTokenId) {
  Request r = Build(agent_key_.get());
  std::string good_csr = r.csr;
  r.csr = "garbage";
  ASSERT_FALSE(Enroll(r).ok());
  r.csr = good_csr;
  EXPECT_TRUE(Enroll(r).ok());
}

}  // namespace
}  // namespace drawbridge::server

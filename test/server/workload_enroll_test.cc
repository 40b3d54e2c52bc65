// Enrollment with workload identity tokens (Enroller::EnrollWorkload) and the
// JWKS cache behind it, with the issuer's HTTPS replaced by a fetcher that
// serves documents from memory and counts fetches. The real HTTPS path is
// covered by test/integration/workload_test.sh.

#include <gtest/gtest.h>

#include <map>

#include "common/clock.h"
#include "pki/certs.h"
#include "pki/keys.h"
#include "pki/workload_trust.h"
#include "server/enroller.h"
#include "server/jwks_cache.h"
#include "testing/temp_dir.h"
#include "testing/token_issuer.h"

namespace drawbridge::server {
namespace {

using nlohmann::json;
using testing::TokenIssuer;

constexpr int64_t kNow = 1800000000;
constexpr char kIssuer[] = "https://issuer.example";
constexpr char kSubject[] = "system:serviceaccount:ci:runner";

// Serves URLs from a map; counts requests per URL.
struct FakeIssuerWeb {
  std::map<std::string, std::string> documents;
  std::map<std::string, int> fetches;
  JwksCache::Fetcher Fetcher() {
    return [this](const std::string& url, const std::string&) -> absl::StatusOr<std::string> {
      ++fetches[url];
      auto it = documents.find(url);
      if (it == documents.end()) {
        return absl::UnavailableError(url + " answered HTTP 404");
      }
      return it->second;
    };
  }
  void Publish(std::initializer_list<const TokenIssuer::Key*> keys) {
    documents[std::string(kIssuer) + "/.well-known/openid-configuration"] =
        json({{"issuer", kIssuer}, {"jwks_uri", std::string(kIssuer) + "/keys"}}).dump();
    documents[std::string(kIssuer) + "/keys"] = TokenIssuer::Jwks(keys);
  }
  int KeyFetches() { return fetches[std::string(kIssuer) + "/keys"]; }
};

class WorkloadEnrollTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.trust_domain = "example.com";
    config_.listen = config_.advertise = "127.0.0.1:8443";
    ca_ = std::move(*pki::CertificateAuthority::CreateNew("example.com", clock_));
    store_ = std::move(*store::OpenSqliteStore(dir_.File("state.db")));
    directory_ = std::move(*IdentityDirectory::Load(store_.get()));
    enroller_ =
        std::make_unique<Enroller>(config_, ca_.get(), directory_.get(), store_.get(), &clock_);
    enroller_->SetJwksFetcherForTesting(web_.Fetcher());
    web_.Publish({&rsa_, &ec_});
    trust_ = {kIssuer, kSubject, "drawbridge", "", "", ""};
    ASSERT_TRUE(
        directory_->CreateIdentity({"agent/ci", true, {}, kNow, kNow}, TrustRecord(trust_)).ok());
  }

  static store::KeyRecord TrustRecord(const pki::WorkloadTrust& t) {
    return {pki::WorkloadTrustKeyId(t),  "agent/ci", std::string(pki::kWorkloadTrustAlgorithm),
            pki::WorkloadTrustToJson(t), kNow,       0};
  }

  static json Claims() {
    return {{"iss", kIssuer},     {"sub", kSubject},  {"aud", json::array({"drawbridge"})},
            {"exp", kNow + 3600}, {"iat", kNow - 10}, {"nbf", kNow - 10}};
  }

  absl::StatusOr<EnrollmentResult> Enroll(const std::string& token,
                                          const std::string& identity = "agent/ci") {
    tls_key_ = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    refusal_ = {};
    return enroller_->EnrollWorkload(identity, token, *pki::CreateCsrDer(tls_key_.get()),
                                     common::ParseIp("10.0.0.7"), &refusal_);
  }

  void ExpectRefused(const std::string& token, const std::string& reason_code,
                     absl::StatusCode code = absl::StatusCode::kPermissionDenied) {
    auto result = Enroll(token);
    ASSERT_FALSE(result.ok()) << "enrolled, but expected " << reason_code;
    EXPECT_EQ(refusal_.reason_code, reason_code) << result.status();
    EXPECT_EQ(refusal_.code, code) << result.status();
  }

  ::drawbridge::testing::TempDir dir_;
  common::FakeClock clock_{std::chrono::system_clock::from_time_t(kNow)};
  ServerConfig config_;
  std::unique_ptr<pki::CertificateAuthority> ca_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<IdentityDirectory> directory_;
  std::unique_ptr<Enroller> enroller_;
  FakeIssuerWeb web_;
  pki::WorkloadTrust trust_;
  TokenIssuer::Key rsa_ = TokenIssuer::MakeRsaKey("rsa-1");
  TokenIssuer::Key ec_ = TokenIssuer::MakeEcKey("ec-1");
  common::PKeyPtr tls_key_;
  EnrollmentRefusal refusal_;
};

TEST_F(WorkloadEnrollTest, ValidTokensEnrollBoundToTheCsrKey) {
  for (const TokenIssuer::Key* k : {&rsa_, &ec_}) {
    auto result = Enroll(TokenIssuer::Sign(*k, Claims()));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->identity, "agent/ci");
    EXPECT_EQ(result->key_id, pki::WorkloadTrustKeyId(trust_));
    auto chain = *pki::CertsFromPem(result->chain_pem);
    EXPECT_EQ(X509_check_private_key(chain[0].get(), tls_key_.get()), 1);
    auto info = *pki::InspectCertificate(chain[0].get());
    EXPECT_EQ(info.uri_sans, std::vector<std::string>{"spiffe://example.com/agent/ci"});
    // The certificate names the trust, so removing the trust revokes it.
    EXPECT_EQ(info.key_id, pki::WorkloadTrustKeyId(trust_));
  }
  // Discovery once, keys once: the second enrollment used the cache.
  EXPECT_EQ(web_.KeyFetches(), 1);
}

TEST_F(WorkloadEnrollTest, ClaimsMustMatchTheTrustAndTheClock) {
  auto with = [this](const char* name, json value) {
    json c = Claims();
    c[name] = std::move(value);
    return TokenIssuer::Sign(rsa_, c);
  };
  ExpectRefused(with("iss", "https://evil.example"), "no_workload_trust");
  ExpectRefused(with("sub", "system:serviceaccount:ci:other"), "no_workload_trust");
  ExpectRefused(with("aud", json::array({"kubernetes"})), "no_workload_trust");
  ExpectRefused(with("exp", kNow - 120), "expired", absl::StatusCode::kUnauthenticated);
  ExpectRefused(with("nbf", kNow + 600), "not_yet_valid", absl::StatusCode::kUnauthenticated);
  ExpectRefused(with("exp", kNow + 2 * 86400), "lifetime_too_long",
                absl::StatusCode::kUnauthenticated);
  // Within the tolerated skew is fine.
  EXPECT_TRUE(Enroll(with("nbf", kNow + 30)).ok());
}

TEST_F(WorkloadEnrollTest, ForgedTokensAreRefused) {
  ExpectRefused(TokenIssuer::Unsigned(Claims()), "malformed_token",
                absl::StatusCode::kInvalidArgument);
  ExpectRefused(TokenIssuer::SignHs256WithPublicKey(rsa_, Claims()), "malformed_token",
                absl::StatusCode::kInvalidArgument);
  // Signed by a key the issuer never published, under a published kid.
  TokenIssuer::Key impostor = TokenIssuer::MakeRsaKey("rsa-1");
  ExpectRefused(TokenIssuer::Sign(impostor, Claims()), "bad_signature");
  // A kid the issuer does not publish.
  TokenIssuer::Key unknown = TokenIssuer::MakeRsaKey("rsa-404");
  ExpectRefused(TokenIssuer::Sign(unknown, Claims()), "unknown_key");
  // The EC key's kid on an RS256 token.
  ExpectRefused(TokenIssuer::Sign(rsa_, Claims(), {{"alg", "RS256"}, {"kid", "ec-1"}}),
                "bad_signature");
}

TEST_F(WorkloadEnrollTest, RotatedKeysAreFetchedOnceAndUnknownKidsCannotHammerTheIssuer) {
  ASSERT_TRUE(Enroll(TokenIssuer::Sign(rsa_, Claims())).ok());
  ASSERT_EQ(web_.KeyFetches(), 1);
  // The issuer rotates: a new key, the old one gone.
  TokenIssuer::Key next = TokenIssuer::MakeRsaKey("rsa-2");
  web_.Publish({&next});
  clock_.Advance(std::chrono::seconds(JwksCache::kMinRefetch));
  auto rotated = Enroll(TokenIssuer::Sign(next, Claims()));
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(web_.KeyFetches(), 2);
  // The old key no longer verifies once the cache holds the new set.
  ExpectRefused(TokenIssuer::Sign(rsa_, Claims()), "unknown_key");
  // Invented kids within kMinRefetch: refused from the cache, no fetch each.
  for (int i = 0; i < 20; ++i) {
    TokenIssuer::Key invented = TokenIssuer::MakeEcKey("invented-" + std::to_string(i));
    ExpectRefused(TokenIssuer::Sign(invented, Claims()), "unknown_key");
  }
  EXPECT_LE(web_.KeyFetches(), 3);
}

TEST_F(WorkloadEnrollTest, IssuerDownServesCachedKeysThenFailsClosed) {
  ASSERT_TRUE(Enroll(TokenIssuer::Sign(rsa_, Claims())).ok());
  web_.documents.clear();
  clock_.Advance(JwksCache::kRefresh + std::chrono::seconds(1));
  auto stale_ok = Enroll(TokenIssuer::Sign(rsa_, Claims()));
  EXPECT_TRUE(stale_ok.ok()) << stale_ok.status();
  clock_.Advance(JwksCache::kMaxStale);
  json c = Claims();
  c["exp"] = std::chrono::system_clock::to_time_t(clock_.Now()) + 600;
  ExpectRefused(TokenIssuer::Sign(rsa_, c), "issuer_unavailable", absl::StatusCode::kUnavailable);
}

TEST_F(WorkloadEnrollTest, DiscoveryMustNameTheIssuerItself) {
  web_.documents[std::string(kIssuer) + "/.well-known/openid-configuration"] =
      json({{"issuer", "https://elsewhere.example"}, {"jwks_uri", std::string(kIssuer) + "/keys"}})
          .dump();
  ExpectRefused(TokenIssuer::Sign(rsa_, Claims()), "issuer_unavailable",
                absl::StatusCode::kUnavailable);
}

TEST_F(WorkloadEnrollTest, IdentityStateAndTrustRemovalApply) {
  // An inline JWKS (offline clusters) works without any fetch.
  pki::WorkloadTrust offline{kIssuer, "system:serviceaccount:ci:offline", "drawbridge",
                             "",      TokenIssuer::Jwks({&ec_}),          ""};
  ASSERT_TRUE(directory_->AddKey(TrustRecord(offline)).ok());
  json c = Claims();
  c["sub"] = "system:serviceaccount:ci:offline";
  web_.documents.clear();
  auto result = Enroll(TokenIssuer::Sign(ec_, c));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(web_.KeyFetches(), 0);

  ASSERT_TRUE(directory_->RemoveKey("agent/ci", pki::WorkloadTrustKeyId(offline), kNow).ok());
  ExpectRefused(TokenIssuer::Sign(ec_, c), "no_workload_trust");
  ASSERT_TRUE(directory_->SetEnabled("agent/ci", false, kNow).ok());
  web_.Publish({&rsa_});
  ExpectRefused(TokenIssuer::Sign(rsa_, Claims()), "identity_disabled");
}

TEST_F(WorkloadEnrollTest, TrustsAreNotSigningKeysAndKeysAreNotTrusts) {
  // A credential token naming the trust's key id is refused as an unknown key.
  auto refused = enroller_->Enroll(
      TokenIssuer::Sign(ec_, Claims(),
                        {{"alg", "ES256"}, {"kid", pki::WorkloadTrustKeyId(trust_)}}),
      "", common::ParseIp("10.0.0.7"), &refusal_);
  EXPECT_FALSE(refused.ok());
  // An identity with only a signing key has no workload trust.
  auto key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  ASSERT_TRUE(directory_
                  ->CreateIdentity({"agent/keyed", true, {}, kNow, kNow},
                                   {*pki::KeyIdOf(key.get()), "agent/keyed", "ES256",
                                    *pki::PublicKeyToPem(key.get()), kNow, 0})
                  .ok());
  auto r = Enroll(TokenIssuer::Sign(rsa_, Claims()), "agent/keyed");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(refusal_.reason_code, "no_workload_trust");
}

}  // namespace
}  // namespace drawbridge::server

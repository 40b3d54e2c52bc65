#include "pki/workload_token.h"

#include <gtest/gtest.h>

#include "common/encoding.h"
#include "pki/workload_trust.h"
#include "testing/token_issuer.h"

namespace drawbridge::pki {
namespace {

using nlohmann::json;
using testing::TokenIssuer;

json Claims() {
  return {{"iss", "https://issuer.example"},
          {"sub", "system:serviceaccount:ns:sa"},
          {"aud", json::array({"drawbridge", "other"})},
          {"exp", 1800003600},
          {"iat", 1800000000},
          {"nbf", 1800000000}};
}

class WorkloadTokenTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new TokenIssuer::Key(TokenIssuer::MakeRsaKey("r1"));
    ec_ = new TokenIssuer::Key(TokenIssuer::MakeEcKey("e1"));
  }
  static Jwk KeyFor(const TokenIssuer::Key& k) {
    auto keys = ParseJwks(TokenIssuer::Jwks({&k}));
    EXPECT_TRUE(keys.ok()) << keys.status();
    return keys->at(k.kid);
  }
  static TokenIssuer::Key* rsa_;
  static TokenIssuer::Key* ec_;
};
TokenIssuer::Key* WorkloadTokenTest::rsa_ = nullptr;
TokenIssuer::Key* WorkloadTokenTest::ec_ = nullptr;

TEST_F(WorkloadTokenTest, Rs256AndEs256VerifyWithTheirOwnKeys) {
  for (const TokenIssuer::Key* k : {rsa_, ec_}) {
    auto token = ParseWorkloadToken(TokenIssuer::Sign(*k, Claims()));
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(token->key_id, k->kid);
    EXPECT_EQ(token->claims.issuer, "https://issuer.example");
    EXPECT_EQ(token->claims.subject, "system:serviceaccount:ns:sa");
    EXPECT_EQ(token->claims.audiences, (std::vector<std::string>{"drawbridge", "other"}));
    EXPECT_EQ(token->claims.expires_at, 1800003600);
    EXPECT_TRUE(VerifyWorkloadSignature(*token, KeyFor(*k)).ok());
  }
}

TEST_F(WorkloadTokenTest, TamperedPayloadFailsVerification) {
  std::string good = TokenIssuer::Sign(*rsa_, Claims());
  json changed = Claims();
  changed["sub"] = "system:serviceaccount:ns:admin";
  std::string forged = TokenIssuer::Sign(*rsa_, changed);
  // Payload of one, signature of the other.
  std::string spliced = forged.substr(0, forged.rfind('.')) + good.substr(good.rfind('.'));
  auto token = ParseWorkloadToken(spliced);
  ASSERT_TRUE(token.ok());
  auto s = VerifyWorkloadSignature(*token, KeyFor(*rsa_));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
}

TEST_F(WorkloadTokenTest, AlgNoneAndHmacAreRefusedBeforeAnyKey) {
  auto none = ParseWorkloadToken(TokenIssuer::Unsigned(Claims()));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.status().message().find("\"none\" is not allowed"), std::string::npos)
      << none.status();
  auto hmac = ParseWorkloadToken(TokenIssuer::SignHs256WithPublicKey(*rsa_, Claims()));
  EXPECT_EQ(hmac.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(hmac.status().message().find("\"HS256\" is not allowed"), std::string::npos)
      << hmac.status();
}

TEST_F(WorkloadTokenTest, AlgorithmMustMatchTheKeyType) {
  // An ES256 header on a token whose kid names the RSA key, and the reverse.
  auto es_on_rsa =
      ParseWorkloadToken(TokenIssuer::Sign(*ec_, Claims(), {{"alg", "ES256"}, {"kid", rsa_->kid}}));
  ASSERT_TRUE(es_on_rsa.ok());
  EXPECT_EQ(VerifyWorkloadSignature(*es_on_rsa, KeyFor(*rsa_)).code(),
            absl::StatusCode::kPermissionDenied);
  auto rs_on_ec =
      ParseWorkloadToken(TokenIssuer::Sign(*rsa_, Claims(), {{"alg", "RS256"}, {"kid", ec_->kid}}));
  ASSERT_TRUE(rs_on_ec.ok());
  EXPECT_EQ(VerifyWorkloadSignature(*rs_on_ec, KeyFor(*ec_)).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(WorkloadTokenTest, MalformedTokensAreInvalidArgument) {
  json no_exp = Claims();
  no_exp.erase("exp");
  json aud_number = Claims();
  aud_number["aud"] = 5;
  json empty_aud = Claims();
  empty_aud["aud"] = json::array();
  const std::string cases[] = {
      "",
      "a.b",
      "a.b.c.d",
      "!!.??.**",
      TokenIssuer::Sign(*rsa_, Claims(), {{"alg", "RS256"}}),  // no kid
      TokenIssuer::Sign(*rsa_, Claims(), {{"alg", "RS256"}, {"kid", "r1"}, {"jku", "https://x"}}),
      TokenIssuer::Sign(*rsa_, Claims(),
                        {{"alg", "RS256"}, {"kid", "r1"}, {"jwk", json::object()}}),
      TokenIssuer::Sign(*rsa_, Claims(), {{"alg", "PS256"}, {"kid", "r1"}}),
      TokenIssuer::Sign(*rsa_, no_exp),
      TokenIssuer::Sign(*rsa_, aud_number),
      TokenIssuer::Sign(*rsa_, empty_aud),
      std::string(kMaxWorkloadTokenBytes + 1, 'a'),
  };
  for (const auto& c : cases) {
    auto t = ParseWorkloadToken(c);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.substr(0, 80);
  }
}

TEST_F(WorkloadTokenTest, JwksSkipsKeysItCannotUseAndRefusesBrokenOnes) {
  json doc = json::parse(TokenIssuer::Jwks({rsa_, ec_}));
  doc["keys"].push_back({{"kty", "oct"}, {"kid", "h1"}, {"k", "c2VjcmV0"}});
  json enc = TokenIssuer::Jwk(*rsa_);
  enc["kid"] = "enc";
  enc["use"] = "enc";
  doc["keys"].push_back(enc);
  auto keys = ParseJwks(doc.dump());
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), 2u);
  EXPECT_EQ(keys->at("r1").algorithm, WorkloadAlgorithm::kRs256);
  EXPECT_EQ(keys->at("e1").algorithm, WorkloadAlgorithm::kEs256);

  TokenIssuer::Key small = TokenIssuer::MakeRsaKey("small", 1024);
  json off_curve = TokenIssuer::Jwk(*ec_);
  off_curve["y"] = common::Base64UrlEncode(std::string(32, '\x01'));
  json no_kid = TokenIssuer::Jwk(*ec_);
  no_kid.erase("kid");
  json many = {{"keys", json::array()}};
  for (int i = 0; i < 33; ++i) {
    many["keys"].push_back({{"kty", "oct"}});
  }
  const std::string bad[] = {
      "[]",
      R"({"keys":{}})",
      TokenIssuer::Jwks({&small}),
      json({{"keys", {off_curve}}}).dump(),
      json({{"keys", {no_kid}}}).dump(),
      TokenIssuer::Jwks({rsa_, rsa_}),
      many.dump(),
      std::string(kMaxJwksBytes + 1, ' '),
  };
  for (const auto& b : bad) {
    EXPECT_EQ(ParseJwks(b).status().code(), absl::StatusCode::kInvalidArgument) << b.substr(0, 80);
  }
}

TEST(WorkloadTrustTest, ValidatesAndRoundTrips) {
  WorkloadTrust t{
      "https://issuer.example", "system:serviceaccount:ns:sa", "drawbridge", "", "", ""};
  ASSERT_TRUE(ValidateWorkloadTrust(t).ok());
  auto back = ParseWorkloadTrust(WorkloadTrustToJson(t));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->issuer, t.issuer);
  EXPECT_EQ(WorkloadTrustKeyId(*back), WorkloadTrustKeyId(t));
  EXPECT_EQ(WorkloadTrustKeyId(t).rfind("oidc-", 0), 0u);
  WorkloadTrust other = t;
  other.subject = "system:serviceaccount:ns:other";
  EXPECT_NE(WorkloadTrustKeyId(other), WorkloadTrustKeyId(t));

  auto broken = [&t](auto change) {
    WorkloadTrust b = t;
    change(b);
    return ValidateWorkloadTrust(b).code();
  };
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.issuer = "http://issuer.example"; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.issuer = "https://user@issuer.example"; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.subject = ""; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.audience = ""; }), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.jwks_uri = "http://issuer.example/keys"; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) {
              b.jwks_uri = "https://issuer.example/keys";
              b.jwks_json = R"({"keys":[]})";
            }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.jwks_json = R"({"keys":[]})"; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(broken([](WorkloadTrust& b) { b.ca_bundle_pem = "not a certificate"; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseWorkloadTrust("{").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseWorkloadTrust(R"({"issuer":5})").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace drawbridge::pki

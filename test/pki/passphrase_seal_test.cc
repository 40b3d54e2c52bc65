#include "pki/passphrase_seal.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "common/clock.h"
#include "pki/certs.h"
#include "pki/credential.h"
#include "pki/keys.h"

namespace drawbridge::pki {
namespace {

constexpr char kPassphrase[] = "correct horse battery staple";

TEST(PassphraseSealTest, SealsAndUnsealsEveryAlgorithm) {
  for (KeyAlgorithm alg : {KeyAlgorithm::kEs256, KeyAlgorithm::kEdDsa}) {
    auto key = std::move(*GenerateKey(alg));
    auto sealed = SealPrivateKeyPem(key.get(), kPassphrase);
    ASSERT_TRUE(sealed.ok()) << sealed.status();
    EXPECT_TRUE(IsSealedPem(*sealed));
    EXPECT_EQ(sealed->find("BEGIN PRIVATE KEY"), std::string::npos);
    auto opened = UnsealPrivateKeyPem(*sealed, kPassphrase);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*KeyIdOf(opened->get()), *KeyIdOf(key.get()));
    // Unsealing without the passphrase: no prompt, no key.
    EXPECT_FALSE(PrivateKeyFromPem(*sealed).ok());
    auto wrong = UnsealPrivateKeyPem(*sealed, "incorrect horse battery");
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied);
  }
}

TEST(PassphraseSealTest, RefusesShortPassphrasesAndUnsealedInput) {
  auto key = std::move(*GenerateKey(KeyAlgorithm::kEs256));
  EXPECT_EQ(SealPrivateKeyPem(key.get(), "short").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnsealPrivateKeyPem(*PrivateKeyToPem(key.get()), kPassphrase).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(
      UnsealPrivateKeyPem(
          "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
          kPassphrase)
          .ok());
}

TEST(PassphraseSealTest, SealedCredentialParsesAndUnsealsOnlyToItsOwnKey) {
  auto key = std::move(*GenerateKey(KeyAlgorithm::kEs256));
  auto ca_key = std::move(*GenerateKey(KeyAlgorithm::kEs256));
  auto ca = *CertificateAuthority::CreateNew("example.com", *common::Clock::Real());
  Credential c;
  c.identity = *ParseIdentity("agent/a");
  c.trust_domain = "example.com";
  c.key_id = *KeyIdOf(key.get());
  c.algorithm = KeyAlgorithm::kEs256;
  c.private_key_pem = *SealPrivateKeyPem(key.get(), kPassphrase);
  c.server_address = "127.0.0.1:8443";
  c.ca_bundle_pem = ca->TrustBundlePem();
  auto parsed = ParseCredential(SerializeCredential(c));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->key_sealed);
  Credential wrong_pass = *parsed;
  EXPECT_FALSE(UnsealCredential(wrong_pass, "not the passphrase at all").ok());
  Credential other = *parsed;
  other.private_key_pem = *SealPrivateKeyPem(ca_key.get(), kPassphrase);
  auto mismatch = UnsealCredential(other, kPassphrase);
  EXPECT_NE(std::string(mismatch.message()).find("key_id"), std::string::npos) << mismatch;
  ASSERT_TRUE(UnsealCredential(*parsed, kPassphrase).ok());
  EXPECT_FALSE(parsed->key_sealed);
  EXPECT_EQ(*KeyIdOf(PrivateKeyFromPem(parsed->private_key_pem)->get()), c.key_id);
}

TEST(PassphraseSealTest, PassphraseFromAFileDescriptorIsReadOnceAndLeavesTheEnvironment) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string line = std::string(kPassphrase) + "\n";
  ASSERT_EQ(write(fds[1], line.data(), line.size()), static_cast<ssize_t>(line.size()));
  close(fds[1]);
  setenv("DRAWBRIDGE_KEY_PASSPHRASE_FD", std::to_string(fds[0]).c_str(), 1);
  setenv("DRAWBRIDGE_KEY_PASSPHRASE", "ignored when the fd is given", 1);
  auto first = PassphraseFromEnvironment();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ(**first, kPassphrase);
  EXPECT_EQ(std::getenv("DRAWBRIDGE_KEY_PASSPHRASE_FD"), nullptr);
  // The same passphrase again for a second use in this process.
  EXPECT_EQ(**PassphraseFromEnvironment(), kPassphrase);
  unsetenv("DRAWBRIDGE_KEY_PASSPHRASE");
}

}  // namespace
}  // namespace drawbridge::pki

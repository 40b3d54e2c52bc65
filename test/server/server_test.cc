#include "server/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/random.h"
#include "common/strings.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "drawbridge/v1/diagnostics.grpc.pb.h"
#include "drawbridge/v1/enrollment.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "pki/credential.h"
#include "pki/keys.h"
#include "testing/temp_dir.h"
#include "testing/test_store.h"

namespace drawbridge::server {
namespace {

using enroll::CertManager;

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(int64_t lifetime_override = 0) {
    InitOptions init;
    init.data_dir = dir_.File("data");
    init.trust_domain = "example.com";
    init.listen = "127.0.0.1:1";  // the real port is chosen at start
    init.store = drawbridge::testing::TestStoreLocation();
    ASSERT_TRUE(InitDataDir(init).ok());
    ServerOptions opts;
    opts.data_dir = init.data_dir;
    opts.listen_override = "127.0.0.1:0";
    opts.certificate_lifetime_override_seconds = lifetime_override;
    auto server = Server::Start(opts);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto admin = pki::LoadCredentialFile(DataDir(init.data_dir).admin_credential);
    ASSERT_TRUE(admin.ok()) << admin.status();
    admin_ = *admin;
    admin_.server_address = common::StrCat("127.0.0.1:", server_->port());
  }

  void SetUp() override { StartServer(); }

  // Registers an identity directly and returns its credential.
  pki::Credential AddIdentity(const std::string& identity) {
    auto key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
    pki::Credential c = admin_;
    c.identity = *pki::ParseIdentity(identity);
    c.key_id = *pki::KeyIdOf(key.get());
    c.private_key_pem = *pki::PrivateKeyToPem(key.get());
    EXPECT_TRUE(
        server_->directory()
            ->CreateIdentity({identity, true, {}, 1, 1},
                             {c.key_id, identity, "ES256", *pki::PublicKeyToPem(key.get()), 1, 0})
            .ok());
    return c;
  }

  std::unique_ptr<CertManager> Enroll(const pki::Credential& c) {
    auto m = CertManager::Create({.credential = c});
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : nullptr;
  }

  static grpc::Status PingOnce(std::shared_ptr<grpc::Channel> channel,
                               v1::PingResponse* out = nullptr) {
    auto stub = v1::Diagnostics::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->Ping(&ctx);
    v1::PingRequest req;
    req.set_sequence(7);
    v1::PingResponse resp;
    if (stream->Write(req) && stream->Read(&resp) && out != nullptr) {
      *out = resp;
    }
    stream->WritesDone();
    return stream->Finish();
  }

  static grpc::Status ListIdentities(std::shared_ptr<grpc::Channel> channel) {
    auto stub = v1::Admin::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListIdentitiesResponse resp;
    return stub->ListIdentities(&ctx, v1::ListIdentitiesRequest(), &resp);
  }

  testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  pki::Credential admin_;
};

TEST_F(ServerTest, EnrolledIdentityIsRecognisedOnItsStream) {
  auto agent = Enroll(AddIdentity("agent/a"));
  ASSERT_NE(agent, nullptr);
  v1::PingResponse resp;
  ASSERT_TRUE(PingOnce(agent->Channel(), &resp).ok());
  EXPECT_EQ(resp.caller_spiffe_id(), "spiffe://example.com/agent/a");
  EXPECT_EQ(resp.certificate_serial(), agent->Current().serial);
  // Lifetime 3600 s from issue, not_before backdated by the 60 s skew allowance.
  EXPECT_EQ(agent->Current().not_after - agent->Current().not_before, 3660);
}

TEST_F(ServerTest, WithoutCertificateOnlyEnrollIsReachable) {
  auto channel = enroll::MakeServerAuthChannel(admin_);
  EXPECT_EQ(ListIdentities(channel).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(PingOnce(channel).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto stub = v1::Enrollment::NewStub(channel);
  grpc::ClientContext ctx;
  v1::EnrollRequest req;
  req.set_token("not-a-token");
  v1::EnrollResponse resp;
  grpc::Status st = stub->Enroll(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("malformed enrollment token"), std::string::npos);
}

TEST_F(ServerTest, CertificateFromAnotherCaIsRefusedAtHandshake) {
  common::FakeClock clock(std::chrono::system_clock::now());
  auto rogue_ca = std::move(*pki::CertificateAuthority::CreateNew("example.com", clock));
  auto key = std::move(*pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  pki::LeafSpec spec;
  spec.public_key = key.get();
  spec.common_name = "admin/admin";
  spec.spiffe_id = "spiffe://example.com/admin/admin";
  spec.not_before = clock.NowUnix() - 10;
  spec.not_after = clock.NowUnix() + 3600;
  spec.client_auth = true;
  auto leaf = rogue_ca->Issue(spec);
  ASSERT_TRUE(leaf.ok());
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = admin_.ca_bundle_pem;
  tls.pem_private_key = *pki::PrivateKeyToPem(key.get());
  tls.pem_cert_chain = rogue_ca->ChainPem(leaf->get());
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(admin_.server_name);
  auto channel = grpc::CreateCustomChannel(admin_.server_address, grpc::SslCredentials(tls), args);
  grpc::Status st = ListIdentities(channel);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(ServerTest, AdminApiNeedsAnAdminIdentity) {
  auto admin = Enroll(admin_);
  ASSERT_NE(admin, nullptr);
  EXPECT_TRUE(ListIdentities(admin->Channel()).ok());
  auto client = Enroll(AddIdentity("client/c"));
  grpc::Status st = ListIdentities(client->Channel());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("admin"), std::string::npos);
}

TEST_F(ServerTest, DisablingAnIdentityRefusesItsNextStreamDespiteAValidCertificate) {
  auto agent = Enroll(AddIdentity("agent/a"));
  ASSERT_TRUE(PingOnce(agent->Channel()).ok());
  ASSERT_TRUE(server_->directory()->SetEnabled("agent/a", false, 2).ok());
  grpc::Status st = PingOnce(agent->Channel());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("disabled"), std::string::npos);
  EXPECT_FALSE(agent->RenewNow().ok());
}

TEST_F(ServerTest, RemovingAKeyRefusesStreamsOfCertificatesItEnrolled) {
  pki::Credential cred = AddIdentity("agent/a");
  auto agent = Enroll(cred);
  ASSERT_TRUE(server_->directory()->RemoveKey("agent/a", cred.key_id, 2).ok());
  EXPECT_EQ(PingOnce(agent->Channel()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  absl::Status renew = agent->RenewNow();
  EXPECT_NE(std::string(renew.message()).find("removed"), std::string::npos) << renew;
}

TEST_F(ServerTest, MalformedEnrollmentsDoNotStopTheServer) {
  auto stub = v1::Enrollment::NewStub(enroll::MakeServerAuthChannel(admin_));
  for (int i = 0; i < 50; ++i) {
    v1::EnrollRequest req;
    req.set_token(i % 2 == 0 ? common::RandomBytes(static_cast<size_t>(i * 37))
                             : std::string(200000, '.'));
    req.set_csr_der(common::RandomBytes(static_cast<size_t>(i * 13)));
    v1::EnrollResponse resp;
    grpc::ClientContext ctx;
    grpc::Status st = stub->Enroll(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i << st.error_message();
  }
  EXPECT_NE(Enroll(AddIdentity("agent/after")), nullptr);
}

// TLS 1.3 only (DESIGN §7.4): a client that offers nothing newer than TLS 1.2 fails
// the handshake; the same client with TLS 1.3 succeeds.
int HandshakeWith(int port, int version) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  // Undo this process's own TLS 1.3-only policy so that the client can offer 1.2.
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TLSv1_2 | SSL_OP_NO_TLSv1_3);
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  SSL* ssl = SSL_new(ctx);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl, kAlpn, sizeof(kAlpn));
  SSL_set_fd(ssl, fd);
  int rc = SSL_connect(ssl);
  int negotiated = rc == 1 ? SSL_version(ssl) : 0;
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return negotiated;
}

TEST_F(ServerTest, OnlyTls13IsAccepted) {
  EXPECT_EQ(HandshakeWith(server_->port(), TLS1_2_VERSION), 0);
  EXPECT_EQ(HandshakeWith(server_->port(), TLS1_3_VERSION), TLS1_3_VERSION);
}

// No TLS private key of an enrolled identity ever reaches the disk (DESIGN §7.5).
TEST_F(ServerTest, TlsKeysStayInMemory) {
  auto agent = Enroll(AddIdentity("agent/a"));
  std::string pem = agent->CurrentPrivateKeyPemForTesting();
  ASSERT_FALSE(pem.empty());
  // Part of the base64 body past the fixed PKCS#8 header: what any file holding
  // this key (as PEM or inside JSON) would contain.
  std::string body = pem.substr(pem.find('\n') + 1 + 40, 20);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!entry.is_regular_file()) {
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    EXPECT_EQ(content.str().find(body), std::string::npos) << entry.path();
  }
}

// A loopback address nothing listens on: a port we bound and released.
std::string ClosedAddress() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return common::StrCat("127.0.0.1:", ntohs(addr.sin_port));
}

// Unreachable addresses are passed over in the credential's order until one
// answers; the channel then leads there.
TEST_F(ServerTest, EnrollmentTriesTheCredentialsAddressesInOrder) {
  pki::Credential c = AddIdentity("agent/failover");
  const std::string live = c.server_address;
  c.server_address = ClosedAddress();
  c.fallback_addresses = {ClosedAddress(), live};
  auto m = Enroll(c);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->CurrentAddress(), live);
  EXPECT_TRUE(PingOnce(m->Channel()).ok());
}

// The SRV name's targets come first, in the lookup's order; when the lookup
// fails, the static addresses still serve.
TEST_F(ServerTest, SrvTargetsComeFirstAndAFailedLookupFallsBackToStaticAddresses) {
  pki::Credential c = AddIdentity("agent/srv");
  const std::string live = c.server_address;
  const uint16_t live_port = static_cast<uint16_t>(server_->port());
  c.dns_srv = "_drawbridge._tcp.example.com";
  c.server_address = ClosedAddress();
  std::vector<std::string> asked;
  auto answer = [&](const std::string& name) -> absl::StatusOr<std::vector<common::SrvTarget>> {
    asked.push_back(name);
    return std::vector<common::SrvTarget>{{"127.0.0.1", 1, 10, 0}, {"127.0.0.1", live_port, 20, 0}};
  };
  auto m = CertManager::Create({.credential = c, .srv_lookup = answer});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->CurrentAddress(), live);
  EXPECT_EQ(asked, std::vector<std::string>{"_drawbridge._tcp.example.com"});

  c.server_address = live;
  auto no_dns = [](const std::string&) -> absl::StatusOr<std::vector<common::SrvTarget>> {
    return absl::UnavailableError("no DNS");
  };
  auto m2 = CertManager::Create({.credential = c, .srv_lookup = no_dns});
  ASSERT_TRUE(m2.ok()) << m2.status();
  EXPECT_EQ((*m2)->CurrentAddress(), live);

  // Nothing reachable: the error names the last address tried.
  c.server_address = ClosedAddress();
  auto m3 = CertManager::Create({.credential = c, .srv_lookup = no_dns});
  EXPECT_TRUE(absl::IsUnavailable(m3.status())) << m3.status();
  EXPECT_NE(m3.status().message().find(c.server_address), absl::string_view::npos);
}

// A refusal is the service's answer: enrollment does not go on to the next
// address (which might be a replica that would say the same, or an impostor).
TEST_F(ServerTest, ARefusalIsNotFailedOver) {
  pki::Credential c = AddIdentity("agent/refused");
  c.fallback_addresses = {ClosedAddress()};
  c.key_id = "000000000000000000000000";  // unknown key: refused
  auto m = CertManager::Create({.credential = c});
  ASSERT_FALSE(m.ok());
  EXPECT_FALSE(absl::IsUnavailable(m.status())) << m.status();
  EXPECT_NE(m.status().message().find(c.server_address), absl::string_view::npos);
}

// When the server in use goes away, the next attempt goes to the next address,
// and after the last one back to the first.
TEST_F(ServerTest, ANewAttemptAfterAFailureGoesToTheNextAddress) {
  pki::Credential c = AddIdentity("agent/rotate");
  const std::string live = c.server_address;
  const std::string spare = ClosedAddress();
  c.fallback_addresses = {spare};
  auto m = Enroll(c);
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(PingOnce(m->ChannelForNewAttempt()).ok());
  EXPECT_EQ(m->CurrentAddress(), live);  // up: no move
  server_->Shutdown(std::chrono::milliseconds(100));
  EXPECT_FALSE(PingOnce(m->Channel()).ok());
  auto channel = m->ChannelForNewAttempt();
  EXPECT_EQ(m->CurrentAddress(), spare);
  EXPECT_FALSE(PingOnce(channel).ok());
  m->ChannelForNewAttempt();
  EXPECT_EQ(m->CurrentAddress(), live);
}

class RenewalTest : public ServerTest {
 protected:
  void SetUp() override { StartServer(/*lifetime_override=*/3); }
};

// Renewal at half-life replaces the certificate for new calls while a stream
// opened under the old one keeps working, even after the old one has expired.
TEST_F(RenewalTest, RenewalKeepsAnOpenStreamAlive) {
  auto agent = Enroll(AddIdentity("agent/a"));
  ASSERT_NE(agent, nullptr);
  CertManager::Snapshot first = agent->Current();
  auto stub = v1::Diagnostics::NewStub(agent->Channel());
  grpc::ClientContext ctx;
  auto stream = stub->Ping(&ctx);
  v1::PingRequest req;
  v1::PingResponse resp;
  ASSERT_TRUE(stream->Write(req) && stream->Read(&resp));
  EXPECT_EQ(resp.certificate_serial(), first.serial);

  agent->StartAutoRenew();
  ASSERT_TRUE(agent->WaitForGenerationAbove(1, std::chrono::seconds(10)));
  CertManager::Snapshot second = agent->Current();
  EXPECT_NE(second.serial, first.serial);
  // Wait for the first certificate to expire: real time must pass here.
  while (std::chrono::system_clock::now() <
         std::chrono::system_clock::from_time_t(first.not_after + 1)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (uint64_t i = 1; i <= 3; ++i) {
    req.set_sequence(i);
    ASSERT_TRUE(stream->Write(req) && stream->Read(&resp)) << "old stream broke at " << i;
    EXPECT_EQ(resp.sequence(), i);
    EXPECT_EQ(resp.certificate_serial(), first.serial);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  v1::PingResponse fresh;
  ASSERT_TRUE(PingOnce(agent->Channel(), &fresh).ok());
  EXPECT_NE(fresh.certificate_serial(), first.serial);
}

}  // namespace
}  // namespace drawbridge::server

#include "enroll/cert_manager.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <thread>

#include "common/backoff.h"
#include "common/files.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/tls_policy.h"
#include "drawbridge/v1/enrollment.grpc.pb.h"
#include "enroll/server_addresses.h"
#include "pki/certs.h"
#include "pki/jwt.h"
#include "pki/keys.h"
#include "pki/workload_token.h"

namespace drawbridge::enroll {
namespace {

grpc::ChannelArguments ArgsFor(const pki::Credential& credential,
                               const std::optional<common::HttpProxy>& proxy) {
  grpc::ChannelArguments args;
  // The proxy is decided here (flag, HTTPS_PROXY, NO_PROXY), never by gRPC's
  // own reading of the environment, so that channels and lanes agree.
  if (proxy) {
    args.SetString("grpc.http_proxy", proxy->display);
    if (!proxy->authorization.empty()) {
      args.SetString("grpc.http_connect_headers",
                     common::StrCat("Proxy-Authorization:", proxy->authorization));
    }
  } else {
    args.SetInt("grpc.enable_http_proxy", 0);
  }
  // Verify the name the operator configured, whatever address we dial.
  args.SetSslTargetNameOverride(credential.server_name);
  // Separate channels must not share a subchannel (and so a TLS connection):
  // each certificate generation needs its own connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // After a server restart, reconnect within seconds rather than gRPC's default
  // of up to two minutes; keepalive notices a silently dead connection.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  return args;
}

std::shared_ptr<grpc::Channel> MakeChannel(const pki::Credential& credential,
                                           const std::string& key_pem, const std::string& chain_pem,
                                           const std::string& address,
                                           const std::optional<common::HttpProxy>& proxy) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = credential.ca_bundle_pem;
  tls.pem_private_key = key_pem;
  tls.pem_cert_chain = chain_pem;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(tls), ArgsFor(credential, proxy));
}

// HOST and PORT of an address; port 0 if there is none.
std::pair<std::string, uint16_t> SplitAddress(const std::string& address) {
  std::string host = pki::HostOf(address);
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon != std::string::npos && colon + 1 < address.size() && address.back() != ']') {
    port = std::atoi(address.c_str() + colon + 1);
  }
  return {host, static_cast<uint16_t>(port > 0 && port < 65536 ? port : 0)};
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// The token in a workload token file, without surrounding whitespace.
absl::StatusOr<std::string> ReadWorkloadToken(const std::string& path) {
  auto text = common::ReadFile(path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        common::StrCat("cannot read the workload token file: ", text.status().message()));
  }
  std::string_view token = *text;
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
    token.remove_suffix(1);
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front()))) {
    token.remove_prefix(1);
  }
  if (token.empty() || token.size() > pki::kMaxWorkloadTokenBytes) {
    return absl::FailedPreconditionError(
        common::StrCat("the workload token file ", path, " is empty or larger than 16 KiB"));
  }
  return std::string(token);
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeServerAuthChannel(
    const pki::Credential& credential, const std::optional<common::HttpProxy>& proxy) {
  return MakeChannel(credential, "", "", credential.server_address, proxy);
}

absl::StatusOr<std::unique_ptr<CertManager>> CertManager::Create(Options options) {
  RETURN_IF_ERROR(common::EnforceTls13Only());
  // A proxy setting that does not parse is the operator's mistake: say so now.
  auto proxy = common::ProxyFor(options.credential.server_address, options.proxy, options.env);
  if (!proxy.ok()) {
    return proxy.status();
  }
  if (*proxy) {
    common::LogInfo("server.via_proxy",
                    {{"server", options.credential.server_address},
                     {"proxy", (*proxy)->display},
                     {"authenticated", (*proxy)->authorization.empty() ? "no" : "yes"}});
  }
  std::unique_ptr<CertManager> m(new CertManager(std::move(options)));
  RETURN_IF_ERROR(m->RenewNow());
  return m;
}

CertManager::~CertManager() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (renew_thread_) {
    renew_thread_->join();
  }
  absl::MutexLock lock(&mu_);
  OPENSSL_cleanse(key_pem_.data(), key_pem_.size());
}

std::shared_ptr<grpc::Channel> CertManager::Channel() const {
  absl::MutexLock lock(&mu_);
  return channel_;
}

std::optional<common::HttpProxy> CertManager::ProxyFor(std::string_view host, uint16_t port) const {
  bool v6 = host.find(':') != std::string_view::npos;
  auto proxy = common::ProxyFor(common::StrCat(v6 ? "[" : "", host, v6 ? "]" : "", ":", port),
                                options_.proxy, options_.env);
  // Create checked the setting; an address that does not parse goes direct.
  return proxy.ok() ? *proxy : std::nullopt;
}

std::optional<common::HttpProxy> CertManager::ProxyForAddress(const std::string& address) const {
  auto [host, port] = SplitAddress(address);
  return ProxyFor(host, port);
}

std::string CertManager::CurrentAddress() const {
  absl::MutexLock lock(&mu_);
  return address_;
}

size_t CertManager::AddressCount() const {
  absl::MutexLock lock(&mu_);
  return std::max<size_t>(1, addresses_.size());
}

std::shared_ptr<grpc::Channel> CertManager::ChannelForNewAttempt() {
  absl::MutexLock lock(&mu_);
  if (channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    return channel_;
  }
  if (addresses_.size() < 2) {
    grpc::experimental::ChannelResetConnectionBackoff(channel_.get());
    return channel_;
  }
  // The server at this address could not be reached: the caller's attempt
  // (after its own jittered backoff) goes to the next address instead.
  const std::string next = NextServerAddress(addresses_, address_);
  common::LogWarn("server.failover", {{"from", address_}, {"to", next}});
  address_ = next;
  channel_ = MakeChannel(options_.credential, key_pem_, current_.chain_pem, address_,
                         ProxyForAddress(address_));
  return channel_;
}

std::shared_ptr<grpc::Channel> CertManager::ChannelTo(const std::string& address) const {
  absl::MutexLock lock(&mu_);
  auto [it, added] = channels_to_.try_emplace(address);
  if (added) {
    it->second = MakeChannel(options_.credential, key_pem_, current_.chain_pem, address,
                             ProxyForAddress(address));
  } else if (it->second->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
    grpc::experimental::ChannelResetConnectionBackoff(it->second.get());
  }
  return it->second;
}

void CertManager::Reconnect() {
  absl::MutexLock lock(&mu_);
  channel_ = MakeChannel(options_.credential, key_pem_, current_.chain_pem, address_,
                         ProxyForAddress(address_));
  channels_to_.clear();
}

CertManager::Snapshot CertManager::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

CertManager::KeyPair CertManager::CurrentKeyPair() const {
  absl::MutexLock lock(&mu_);
  return {current_.chain_pem, key_pem_, current_.generation};
}

std::string CertManager::CurrentPrivateKeyPemForTesting() const {
  absl::MutexLock lock(&mu_);
  return key_pem_;
}

absl::StatusOr<v1::EnrollResponse> CertManager::EnrollAt(const std::string& address,
                                                         EVP_PKEY* signing_key, EVP_PKEY* tls_key,
                                                         const std::string& csr) const {
  const pki::Credential& cred = options_.credential;
  const std::string subject = cred.identity.ToString();
  v1::EnrollRequest request;
  request.set_csr_der(csr);
  if (cred.uses_workload_token()) {
    // Read again every time: the issuer (kubelet, a cloud agent) rotates it.
    ASSIGN_OR_RETURN(std::string token, ReadWorkloadToken(cred.token_file));
    request.set_workload_token(std::move(token));
    request.set_identity(subject);
  } else {
    // A token per attempt: one a server may have seen is never offered again.
    pki::EnrollmentClaims claims;
    claims.subject = subject;
    claims.audience = cred.trust_domain;
    claims.issued_at = options_.clock->NowUnix();
    claims.expires_at = claims.issued_at + 120;
    claims.token_id = common::RandomHex(16);
    ASSIGN_OR_RETURN(claims.tls_key_thumbprint, pki::JwkThumbprint(tls_key));
    ASSIGN_OR_RETURN(std::string token, pki::SignEnrollmentToken(signing_key, cred.key_id, claims));
    request.set_token(std::move(token));
  }
  v1::EnrollResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_timeout);
  auto stub = v1::Enrollment::NewStub(MakeChannel(cred, "", "", address, ProxyForAddress(address)));
  grpc::Status status = stub->Enroll(&ctx, request, &response);
  if (!status.ok()) {
    return absl::Status(FromGrpc(status).code(),
                        common::StrCat("enrollment of ", subject, " at ", address,
                                       " failed: ", status.error_message()));
  }
  return response;
}

absl::Status CertManager::RenewNow() {
  const pki::Credential& cred = options_.credential;
  ASSIGN_OR_RETURN(common::PKeyPtr tls_key, pki::GenerateKey(options_.tls_key_algorithm));
  ASSIGN_OR_RETURN(std::string csr, pki::CreateCsrDer(tls_key.get()));
  // Opened once per renewal, whichever addresses it takes (a token's key is
  // opened in the token each time).
  common::PKeyPtr signing_key;
  if (!cred.uses_workload_token()) {
    ASSIGN_OR_RETURN(signing_key, pki::SigningKeyOf(cred));
  }
  // Every address in order, beginning with the one in use: a renewal does not
  // move a process that reaches its server. Only an unreachable server sends
  // us on to the next; an answer (a refusal too) is the service's answer.
  const std::vector<std::string> addresses = ServerAddresses(cred, options_.srv_lookup);
  std::string address = CurrentAddress();
  if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
    address = addresses.front();
  }
  absl::StatusOr<v1::EnrollResponse> enrolled;
  for (size_t tried = 0; tried < addresses.size(); ++tried) {
    enrolled = EnrollAt(address, signing_key.get(), tls_key.get(), csr);
    const absl::StatusCode code = enrolled.status().code();
    if (enrolled.ok() || addresses.size() == 1 ||
        (code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kDeadlineExceeded)) {
      break;
    }
    const std::string next = NextServerAddress(addresses, address);
    common::LogWarn("server.unreachable", {{"address", address},
                                           {"error", std::string(enrolled.status().message())},
                                           {"next", tried + 1 < addresses.size() ? next : ""}});
    address = next;
  }
  if (!enrolled.ok()) {
    return enrolled.status();
  }
  const v1::EnrollResponse& response = *enrolled;
  // Trust only what chains to the CA we pinned, and only a certificate for our key.
  ASSIGN_OR_RETURN(auto chain, pki::CertsFromPem(response.certificate_chain_pem()));
  std::vector<X509*> intermediates;
  for (size_t i = 1; i < chain.size(); ++i) {
    intermediates.push_back(chain[i].get());
  }
  RETURN_IF_ERROR(pki::VerifyChain(chain[0].get(), intermediates, cred.ca_bundle_pem,
                                   options_.clock->NowUnix()));
  if (X509_check_private_key(chain[0].get(), tls_key.get()) != 1) {
    common::DrainOpenSslErrors();
    return absl::InternalError("server returned a certificate for a different key");
  }
  ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(chain[0].get()));
  ASSIGN_OR_RETURN(std::string key_pem, pki::PrivateKeyToPem(tls_key.get()));
  auto channel = MakeChannel(cred, key_pem, response.certificate_chain_pem(), address,
                             ProxyForAddress(address));

  absl::MutexLock lock(&mu_);
  if (address_ != address && !address_.empty()) {
    common::LogWarn("server.failover", {{"from", address_}, {"to", address}});
  }
  address_ = address;
  addresses_ = addresses;
  OPENSSL_cleanse(key_pem_.data(), key_pem_.size());
  key_pem_ = std::move(key_pem);
  channel_ = std::move(channel);
  channels_to_.clear();  // made again, with the new certificate, on next use
  current_.chain_pem = response.certificate_chain_pem();
  current_.spiffe_id = response.spiffe_id();
  current_.serial = info.serial;
  current_.not_before = info.not_before;
  current_.received_at = options_.clock->NowUnix();
  current_.not_after = info.not_after;
  current_.generation += 1;
  return absl::OkStatus();
}

bool CertManager::WaitForGenerationAbove(uint64_t generation,
                                         std::chrono::milliseconds timeout) const {
  absl::MutexLock lock(&mu_);
  auto cond = [this, generation]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return current_.generation > generation; };
  return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Milliseconds(timeout.count()));
}

void CertManager::StartAutoRenew() {
  absl::MutexLock lock(&mu_);
  if (!renew_thread_) {
    renew_thread_ = std::make_unique<std::thread>([this] { RenewLoop(); });
  }
}

void CertManager::RenewLoop() {
  auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
  while (true) {
    Snapshot cur = Current();
    const int64_t start = std::max(cur.not_before, cur.received_at);
    const int64_t lifetime_ms = std::max<int64_t>(0, cur.not_after - start) * 1000;
    // Half-life ± 5 % so that a fleet enrolled together does not renew together.
    const int64_t jitter =
        static_cast<int64_t>(common::RandomUniform(static_cast<uint64_t>(lifetime_ms / 10 + 1)));
    const int64_t at_ms = start * 1000 + lifetime_ms / 2 - lifetime_ms / 20 + jitter;
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               options_.clock->Now().time_since_epoch())
                               .count();
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping),
                               absl::Milliseconds(std::max<int64_t>(0, at_ms - now_ms)))) {
        return;
      }
    }
    common::JitteredBackoff backoff(options_.min_retry, options_.max_retry);
    while (true) {
      absl::Status s = RenewNow();
      if (s.ok()) {
        Snapshot next = Current();
        common::LogInfo("cert.renewed", {{"identity", options_.credential.identity.ToString()},
                                         {"serial", next.serial},
                                         {"not_after", common::StrCat(next.not_after)}});
        if (options_.on_renewed) {
          options_.on_renewed();
        }
        break;
      }
      const std::chrono::milliseconds sleep = backoff.Next();
      common::LogWarn("cert.renew_failed",
                      {{"identity", options_.credential.identity.ToString()},
                       {"error", std::string(s.message())},
                       {"retry_in_ms", common::StrCat(static_cast<int64_t>(sleep.count()))}});
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(sleep.count()))) {
        return;
      }
    }
  }
}

}  // namespace drawbridge::enroll

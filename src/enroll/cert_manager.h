#pragma once

#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/http_proxy.h"
#include "drawbridge/v1/enrollment.pb.h"
#include "enroll/server_addresses.h"
#include "pki/credential.h"

namespace drawbridge::enroll {

// A channel to the server that authenticates the server only (pinned CA, host
// name check). Used for Enroll.
std::shared_ptr<grpc::Channel> MakeServerAuthChannel(
    const pki::Credential& credential,
    const std::optional<common::HttpProxy>& proxy = std::nullopt);

// Enrolls with a credential and keeps a valid client certificate. The TLS key is
// generated in memory for every enrollment and never written anywhere; the
// process should be made non-dumpable (common::MakeNonDumpable) by its owner.
//
// Renewal starts at half-life (uniformly jittered by ±5 % of the lifetime) and is
// retried with capped exponential backoff and full jitter until it succeeds. Each
// certificate gets its own gRPC channel: new calls use the newest, while streams
// already open keep their channel (and TLS connection) alive, so renewal never
// interrupts them. Thread-safe.
class CertManager {
 public:
  struct Options {
    pki::Credential credential;
    const common::Clock* clock = common::Clock::Real();
    pki::KeyAlgorithm tls_key_algorithm = pki::KeyAlgorithm::kEs256;
    std::chrono::milliseconds min_retry{500};
    // A process whose certificate has expired can do nothing until renewal
    // succeeds, so after a server restart it must retry within seconds (as the
    // Control and Watch reconnects do, docs/tunnel.md); full jitter spreads a fleet.
    std::chrono::milliseconds max_retry{3000};
    std::chrono::milliseconds rpc_timeout{10000};
    // Called on the renewal thread after each successful background renewal, with
    // no lock of the manager held (a retry loop waiting on the old certificate
    // can go at once). Must not block and must outlive the manager.
    std::function<void()> on_renewed;
    // How to reach the server: "" follows HTTPS_PROXY/NO_PROXY (read through
    // `env`), "direct" never uses a proxy, and an http://[USER:PASS@]HOST:PORT
    // URL always does (docs/enrollment.md, "Behind an HTTP proxy"). gRPC
    // channels and lanes both go through it.
    std::string proxy;
    common::EnvLookup env = common::ProcessEnvironment();
    // Resolves the credential's dns_srv (tests give their own).
    SrvLookup srv_lookup = common::LookupSrv;
  };

  struct Snapshot {
    std::string chain_pem;
    std::string spiffe_id;
    std::string serial;
    int64_t not_before = 0;
    int64_t not_after = 0;
    // When we received it, by our clock: the server backdates not_before by its
    // tolerated clock skew, so renewal is timed from here, not from not_before.
    int64_t received_at = 0;
    uint64_t generation = 0;  // 1 for the first certificate, +1 per renewal
  };

  // Enrolls once, synchronously; the error carries the server's reason.
  static absl::StatusOr<std::unique_ptr<CertManager>> Create(Options options);
  ~CertManager();

  // Channel authenticated with the current certificate.
  std::shared_ptr<grpc::Channel> Channel() const;
  // The channel for a caller with a reason to connect now (its own jittered
  // wait has passed, or an application's connection is waiting). If the current
  // address could not be reached (the channel is in TRANSIENT_FAILURE), the
  // credential's next address gets a new channel (failover: "Several server
  // addresses" in docs/enrollment.md); with a single address, the channel's
  // reconnect backoff is reset instead, as gRPC's own (up to 5 s, calls failing
  // at once although the server is back) would add a second wait to ours.
  std::shared_ptr<grpc::Channel> ChannelForNewAttempt();
  // The address (HOST:PORT) Channel() leads to.
  std::string CurrentAddress() const;
  // How many addresses the server has (as last resolved): at least 1.
  size_t AddressCount() const;
  // A channel like Channel()'s to another address of the same service (a
  // replica's own address: the server name checked stays the credential's),
  // made on first use and again after each renewal; its reconnect backoff is
  // reset as ChannelForNewAttempt does.
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address) const;
  Snapshot Current() const;
  // Replaces the channel with a new one for the same certificate: new calls
  // open a new connection (through a load balancer, to a server that is
  // ready), while streams already open keep theirs. For a server's goaway.
  void Reconnect();

  // The current certificate chain and its in-memory private key, for TLS
  // connections made outside gRPC (lanes). The key must stay in memory.
  struct KeyPair {
    std::string chain_pem;
    std::string key_pem;
    uint64_t generation = 0;
  };
  KeyPair CurrentKeyPair() const;
  const pki::Credential& credential() const { return options_.credential; }
  // The proxy to reach HOST:PORT through (nullopt: directly), as Options.proxy says.
  std::optional<common::HttpProxy> ProxyFor(std::string_view host, uint16_t port) const;

  // Starts the background renewal thread.
  void StartAutoRenew();
  // Enrolls again now; on success new calls use the new certificate.
  absl::Status RenewNow();
  // Blocks until the generation exceeds `generation` or `timeout` passes.
  bool WaitForGenerationAbove(uint64_t generation, std::chrono::milliseconds timeout) const;

  // The in-memory TLS private key of the current certificate (tests check that it
  // never reaches the disk).
  std::string CurrentPrivateKeyPemForTesting() const;

 private:
  explicit CertManager(Options options) : options_(std::move(options)) {}
  std::optional<common::HttpProxy> ProxyForAddress(const std::string& address) const;
  // `signing_key`: the credential's (null for a workload token credential).
  absl::StatusOr<v1::EnrollResponse> EnrollAt(const std::string& address, EVP_PKEY* signing_key,
                                              EVP_PKEY* tls_key, const std::string& csr) const;
  void RenewLoop();

  Options options_;
  mutable absl::Mutex mu_;
  Snapshot current_ ABSL_GUARDED_BY(mu_);
  std::string key_pem_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::string address_ ABSL_GUARDED_BY(mu_);                 // where channel_ leads
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);  // in order, as last resolved
  mutable std::map<std::string, std::shared_ptr<grpc::Channel>> channels_to_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<std::thread> renew_thread_;
};

}  // namespace drawbridge::enroll

#include "server/server.h"

#include <grpcpp/security/server_credentials.h>

#include "common/files.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "common/tls_policy.h"

namespace drawbridge::server {

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  RETURN_IF_ERROR(common::EnforceTls13Only());
  std::unique_ptr<Server> s(new Server());
  DataDir dir(options.data_dir);
  if (!common::PathExists(dir.config)) {
    return absl::NotFoundError(
        common::StrCat("no server configuration in ", options.data_dir,
                       "; create one with: drawbridge server init --data-dir ", options.data_dir,
                       " --trust-domain example.com"));
  }
  ASSIGN_OR_RETURN(s->config_, LoadConfig(dir.config));
  if (!options.listen_override.empty()) {
    RETURN_IF_ERROR(ValidateHostPort(options.listen_override, /*allow_zero_port=*/true));
    s->config_.listen = options.listen_override;
  }
  if (options.certificate_lifetime_override_seconds > 0) {
    s->config_.certificate_lifetime_seconds = options.certificate_lifetime_override_seconds;
  }
  ASSIGN_OR_RETURN(s->pki_, LoadServingPki(dir, s->config_, *options.clock));
  ASSIGN_OR_RETURN(s->store_, store::OpenSqliteStore(dir.database));
  ASSIGN_OR_RETURN(s->directory_, IdentityDirectory::Load(s->store_.get()));
  s->enroller_ = std::make_unique<Enroller>(s->config_, s->pki_.ca.get(), s->directory_.get(),
                                            s->store_.get(), options.clock);
  s->pool_ = std::make_unique<common::WorkerPool>(options.worker_threads);
  ServiceContext ctx{s->config_.trust_domain, s->directory_.get(), s->enroller_.get(),
                     s->pool_.get(), options.clock};
  s->enrollment_ = std::make_unique<EnrollmentService>(ctx);
  s->admin_ = std::make_unique<AdminService>(ctx);
  s->diagnostics_ = std::make_unique<DiagnosticsService>(ctx);
  s->policy_file_ = options.policy_file;
  s->policy_ = std::make_unique<PolicyHolder>(policy::Policy::DenyAll());
  if (!s->policy_file_.empty()) {
    RETURN_IF_ERROR(s->ReloadPolicy());
  } else {
    common::LogWarn("policy.empty", {{"effect", "no --policy given: every dial is denied"}});
  }
  s->tunnel_ = std::make_unique<TunnelService>(
      ctx, s->policy_.get(), s->registry_,
      TunnelOptions{
          .dial_timeout = options.dial_timeout,
          .idle_timeout = options.idle_timeout_override.count() > 0
                              ? options.idle_timeout_override
                              : std::chrono::milliseconds(s->config_.idle_timeout_seconds * 1000)});

  grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = s->pki_.ca->TrustBundlePem();
  tls.pem_key_cert_pairs.push_back({s->pki_.server_key_pem, s->pki_.server_chain_pem});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(s->config_.listen, grpc::SslServerCredentials(tls), &s->port_);
  builder.RegisterService(s->enrollment_.get());
  builder.RegisterService(s->admin_.get());
  builder.RegisterService(s->diagnostics_.get());
  builder.RegisterService(s->tunnel_.get());
  TunnelService* tunnel = s->tunnel_.get();
  s->directory_->SetRevocationListener(
      [tunnel](const std::string& identity, const std::string& key_id) {
        tunnel->Revoke(identity, key_id);
      });
  // Agents keep their control stream alive with pings; allow them every 10 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.SetMaxReceiveMessageSize(1 << 20);
  s->grpc_ = builder.BuildAndStart();
  if (!s->grpc_ || s->port_ == 0) {
    return absl::UnavailableError(
        common::StrCat("cannot listen on ", s->config_.listen, " (address in use or not local?)"));
  }
  common::LogInfo("server.listening", {{"address", s->config_.listen},
                                       {"port", common::StrCat(s->port_)},
                                       {"trust_domain", s->config_.trust_domain},
                                       {"certificate_lifetime_seconds",
                                        common::StrCat(s->config_.certificate_lifetime_seconds)}});
  return s;
}

absl::Status Server::ReloadPolicy() {
  if (policy_file_.empty()) {
    return absl::FailedPreconditionError("no --policy file to reload");
  }
  auto text = common::ReadFile(policy_file_);
  absl::StatusOr<std::shared_ptr<const policy::Policy>> parsed =
      text.ok() ? policy::Policy::Parse(*text) : text.status();
  if (!parsed.ok()) {
    common::LogError("policy.rejected", {{"file", policy_file_},
                                         {"error", std::string(parsed.status().message())},
                                         {"effect", "the previous policy stays in force"}});
    return absl::InvalidArgumentError(
        common::StrCat(policy_file_, ": ", parsed.status().message()));
  }
  policy_->Set(*parsed);
  common::LogInfo("policy.loaded",
                  {{"file", policy_file_}, {"rules", common::StrCat((*parsed)->rules().size())}});
  return absl::OkStatus();
}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

void Server::Shutdown(std::chrono::milliseconds grace) {
  if (directory_) {
    directory_->SetRevocationListener(nullptr);
  }
  if (grpc_) {
    if (tunnel_) {
      tunnel_->SendGoaway();
    }
    grpc_->Shutdown(std::chrono::system_clock::now() + grace);
    grpc_->Wait();
    grpc_.reset();
  }
  pool_.reset();  // finishes queued work before the services go away
}

void Server::Wait() {
  if (grpc_) {
    grpc_->Wait();
  }
}

}  // namespace drawbridge::server

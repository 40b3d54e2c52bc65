#include "server/data_dir.h"

#include <filesystem>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/encoding.h"
#include "common/files.h"
#include "common/ip.h"
#include "common/log.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/credential.h"
#include "pki/keys.h"
#include "store/store.h"

namespace drawbridge::server {
namespace {

constexpr int64_t kServerCertLifetime = 365 * 86400;
constexpr int64_t kServerCertRenewBefore = 30 * 86400;

constexpr char kRootKeyLabel[] = "root-ca-key";
constexpr char kIntermediateKeyLabel[] = "intermediate-ca-key";
constexpr char kServerKeyLabel[] = "server-tls-key";
constexpr char kAuditKeyLabel[] = "audit-signing-key";

bool IsWildcardHost(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "*";
}

// DNS or IP names the listener certificate must cover.
void AddressNames(const ServerConfig& config, std::vector<std::string>* dns,
                  std::vector<std::string>* ips) {
  for (const std::string& addr : {config.advertise, config.listen}) {
    std::string host = pki::HostOf(addr);
    if (IsWildcardHost(host)) {
      continue;
    }
    auto ip = common::ParseIp(host);
    auto& list = ip ? *ips : *dns;
    std::string name = ip ? ip->ToString() : common::ToLower(host);
    if (std::find(list.begin(), list.end(), name) == list.end()) {
      list.push_back(name);
    }
  }
}

absl::Status WriteSealedKey(const pki::KeyEncryptionKey& kek, EVP_PKEY* key,
                            const std::string& path, const char* label) {
  ASSIGN_OR_RETURN(std::string pem, pki::PrivateKeyToPem(key));
  auto sealed = kek.Seal(pem, label);
  OPENSSL_cleanse(pem.data(), pem.size());
  RETURN_IF_ERROR(sealed.status());
  return common::WriteFileAtomic(path, *sealed, 0600);
}

absl::StatusOr<common::PKeyPtr> ReadSealedKey(const pki::KeyEncryptionKey& kek,
                                              const std::string& path, const char* label) {
  ASSIGN_OR_RETURN(std::string sealed, common::ReadFile(path));
  auto pem = kek.Open(sealed, label);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(), common::StrCat(path, ": ", pem.status().message()));
  }
  auto key = pki::PrivateKeyFromPem(*pem);
  OPENSSL_cleanse(pem->data(), pem->size());
  return key;
}

absl::Status IssueServerCert(const pki::CertificateAuthority& ca, const pki::KeyEncryptionKey& kek,
                             const DataDir& dir, const ServerConfig& config,
                             const common::Clock& clock) {
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  pki::LeafSpec spec;
  spec.public_key = key.get();
  spec.common_name = common::StrCat("drawbridge server ", config.trust_domain);
  AddressNames(config, &spec.dns_names, &spec.ip_addresses);
  if (spec.dns_names.empty() && spec.ip_addresses.empty()) {
    spec.dns_names.push_back("localhost");
  }
  spec.not_before = clock.NowUnix() - 60;
  spec.not_after = spec.not_before + kServerCertLifetime;
  spec.server_auth = true;
  ASSIGN_OR_RETURN(common::X509Ptr cert, ca.Issue(spec));
  RETURN_IF_ERROR(WriteSealedKey(kek, key.get(), dir.server_key, kServerKeyLabel));
  return common::WriteFileAtomic(dir.server_cert, ca.ChainPem(cert.get()), 0644);
}

// The audit signing key: created on first use, so data dirs made before the audit
// trail existed gain one too. Its public half is published for `audit verify`.
absl::StatusOr<common::PKeyPtr> LoadOrCreateAuditKey(const pki::KeyEncryptionKey& kek,
                                                     const DataDir& dir) {
  if (common::PathExists(dir.audit_key)) {
    return ReadSealedKey(kek, dir.audit_key, kAuditKeyLabel);
  }
  RETURN_IF_ERROR(common::EnsurePrivateDir(common::JoinPath(dir.dir, "audit")));
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  ASSIGN_OR_RETURN(std::string public_pem, pki::PublicKeyToPem(key.get()));
  RETURN_IF_ERROR(common::WriteFileAtomic(dir.audit_public_key, public_pem, 0644));
  RETURN_IF_ERROR(WriteSealedKey(kek, key.get(), dir.audit_key, kAuditKeyLabel));
  common::LogInfo("audit.key_created", {{"public_key", dir.audit_public_key}});
  return key;
}

// The CA as a shared store keeps it, by name: certificates, and the keys
// exactly as sealed on disk (sealed under the KEK, which is never stored).
constexpr char kSharedTrustDomain[] = "trust_domain";
std::vector<std::pair<std::string, std::string>> SharedCaFiles(const DataDir& dir) {
  return {{"root.crt", dir.root_cert},
          {"intermediate.crt", dir.intermediate_cert},
          {"root.key.sealed", dir.root_key},
          {"intermediate.key.sealed", dir.intermediate_key}};
}

// This data directory's CA as a shared store keeps it (files base64url:
// sealed keys are binary).
absl::StatusOr<std::map<std::string, std::string>> SharedCaOf(const DataDir& dir,
                                                              const std::string& trust_domain) {
  std::map<std::string, std::string> material;
  material[kSharedTrustDomain] = trust_domain;
  for (const auto& [name, path] : SharedCaFiles(dir)) {
    ASSIGN_OR_RETURN(std::string bytes, common::ReadFile(path));
    material[name] = common::Base64UrlEncode(bytes);
  }
  return material;
}

// `server init` of a replica whose store already holds a CA: takes that CA
// (checking that this replica's KEK opens it) and makes this replica's own
// listener certificate and audit key. Identities, the first admin and the
// policy are in the store already.
absl::Status JoinSharedStore(const InitOptions& options, const ServerConfig& config,
                             const std::map<std::string, std::string>& material) {
  auto item = [&](const std::string& name) -> absl::StatusOr<std::string> {
    auto it = material.find(name);
    std::optional<std::string> bytes;
    if (it != material.end()) {
      bytes = common::Base64UrlDecode(it->second);
    }
    if (!bytes) {
      return absl::DataLossError(common::StrCat("the shared store's CA lacks a readable ", name));
    }
    return *bytes;
  };
  auto domain = material.find(kSharedTrustDomain);
  if (domain == material.end()) {
    return absl::DataLossError("the shared store's CA names no trust domain");
  }
  const std::string& trust_domain = domain->second;
  if (trust_domain != config.trust_domain) {
    return absl::InvalidArgumentError(common::StrCat("the shared store belongs to trust domain ",
                                                     trust_domain, ", not ", config.trust_domain,
                                                     "; give --trust-domain ", trust_domain));
  }
  const std::string kek_path = pki::KekPath(options.data_dir);
  if (!common::PathExists(kek_path)) {
    return absl::FailedPreconditionError(common::StrCat(
        "the shared store already holds this deployment's CA, sealed under the first replica's "
        "key-encryption key: give this replica that KEK (DRAWBRIDGE_KEK_FILE=PATH, or copy it to ",
        kek_path, " with mode 0600); it is never kept in the database"));
  }
  ASSIGN_OR_RETURN(pki::KeyEncryptionKey kek, pki::KeyEncryptionKey::LoadFile(kek_path));
  ASSIGN_OR_RETURN(std::string sealed_intermediate, item("intermediate.key.sealed"));
  auto intermediate_pem = kek.Open(sealed_intermediate, kIntermediateKeyLabel);
  if (!intermediate_pem.ok()) {
    return absl::PermissionDeniedError(common::StrCat(
        "this KEK (", kek_path, ") does not open the shared CA key: give the first replica's KEK"));
  }
  pki::CertificateAuthority::Material m;
  ASSIGN_OR_RETURN(m.intermediate_key, pki::PrivateKeyFromPem(*intermediate_pem));
  OPENSSL_cleanse(intermediate_pem->data(), intermediate_pem->size());
  ASSIGN_OR_RETURN(std::string root_pem, item("root.crt"));
  ASSIGN_OR_RETURN(m.root_cert, pki::CertFromPem(root_pem));
  ASSIGN_OR_RETURN(std::string inter_pem, item("intermediate.crt"));
  ASSIGN_OR_RETURN(m.intermediate_cert, pki::CertFromPem(inter_pem));
  ASSIGN_OR_RETURN(auto ca, pki::CertificateAuthority::FromMaterial(std::move(m)));

  RETURN_IF_ERROR(common::EnsurePrivateDir(options.data_dir));
  DataDir dir(options.data_dir);
  RETURN_IF_ERROR(common::EnsurePrivateDir(common::JoinPath(dir.dir, "ca")));
  RETURN_IF_ERROR(common::EnsurePrivateDir(common::JoinPath(dir.dir, "tls")));
  for (const auto& [name, path] : SharedCaFiles(dir)) {
    ASSIGN_OR_RETURN(std::string value, item(name));
    RETURN_IF_ERROR(
        common::WriteFileAtomic(path, value, absl::EndsWith(name, ".sealed") ? 0600 : 0644));
  }
  RETURN_IF_ERROR(IssueServerCert(*ca, kek, dir, config, *options.clock));
  RETURN_IF_ERROR(LoadOrCreateAuditKey(kek, dir).status());
  RETURN_IF_ERROR(SaveConfig(dir.config, config));
  common::LogInfo("server.joined_shared_store",
                  {{"data_dir", dir.dir}, {"trust_domain", trust_domain}});
  return absl::OkStatus();
}

}  // namespace

DataDir::DataDir(std::string d)
    : dir(std::move(d)),
      config(common::JoinPath(dir, "server.yaml")),
      database(common::JoinPath(dir, "state.db")),
      kek(pki::KekPath(dir)),
      root_cert(common::JoinPath(dir, "ca/root.crt")),
      root_key(common::JoinPath(dir, "ca/root.key.sealed")),
      intermediate_cert(common::JoinPath(dir, "ca/intermediate.crt")),
      intermediate_key(common::JoinPath(dir, "ca/intermediate.key.sealed")),
      server_cert(common::JoinPath(dir, "tls/server.crt")),
      server_key(common::JoinPath(dir, "tls/server.key.sealed")),
      admin_credential(common::JoinPath(dir, "admin.json")),
      audit_key(common::JoinPath(dir, "audit/audit.key.sealed")),
      audit_public_key(common::JoinPath(dir, "audit/audit.pub")),
      policy(common::JoinPath(dir, "policy.yaml")),
      replica_id(common::JoinPath(dir, "replica-id")) {}

absl::StatusOr<std::string> LoadOrCreateReplicaId(const DataDir& dir) {
  if (common::PathExists(dir.replica_id)) {
    ASSIGN_OR_RETURN(std::string text, common::ReadFile(dir.replica_id));
    std::string id(common::StripWhitespace(text));
    if (id.empty() || id.size() > 64 ||
        id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
      return absl::InvalidArgumentError(
          common::StrCat(dir.replica_id, " must hold the replica id: 1-64 of a-z, 0-9 and '-'"));
    }
    return id;
  }
  std::string id = common::RandomHex(4);  // 8 hex digits
  RETURN_IF_ERROR(common::WriteFileAtomic(dir.replica_id, id + "\n", 0644));
  common::LogInfo("replica.id_created", {{"replica", id}, {"path", dir.replica_id}});
  return id;
}

absl::Status InitDataDir(const InitOptions& options) {
  ServerConfig config;
  config.trust_domain = options.trust_domain;
  config.listen = options.listen;
  config.advertise = options.advertise;
  config.store = options.store;
  if (config.advertise.empty()) {
    std::string host = pki::HostOf(config.listen);
    config.advertise =
        IsWildcardHost(host)
            ? common::StrCat("localhost", config.listen.substr(config.listen.rfind(':')))
            : config.listen;
  }
  RETURN_IF_ERROR(ValidateConfig(config));
  if (pki::HostOf(config.advertise).empty() || config.advertise.ends_with(":0")) {
    return absl::InvalidArgumentError("--advertise needs a host and a fixed port");
  }

  std::error_code ec;
  if (std::filesystem::exists(options.data_dir, ec) &&
      !std::filesystem::is_empty(options.data_dir, ec)) {
    return absl::AlreadyExistsError(
        common::StrCat("data directory ", options.data_dir,
                       " is not empty; refusing to touch it (choose a new directory)"));
  }
  // A shared store may hold the deployment's CA already: then this replica joins it.
  std::unique_ptr<store::Store> db;
  if (!config.store.empty()) {
    ASSIGN_OR_RETURN(db, store::OpenStore(config.store));
  }
  if (db && db->shared()) {
    auto shared_ca = db->GetPkiMaterial();
    if (shared_ca.ok()) {
      return JoinSharedStore(options, config, *shared_ca);
    }
    if (!absl::IsNotFound(shared_ca.status())) {
      return shared_ca.status();
    }
  }
  RETURN_IF_ERROR(common::EnsurePrivateDir(options.data_dir));
  DataDir dir(options.data_dir);
  RETURN_IF_ERROR(common::EnsurePrivateDir(common::JoinPath(dir.dir, "ca")));
  RETURN_IF_ERROR(common::EnsurePrivateDir(common::JoinPath(dir.dir, "tls")));

  ASSIGN_OR_RETURN(pki::KeyEncryptionKey kek, pki::KeyEncryptionKey::CreateFile(dir.kek));
  ASSIGN_OR_RETURN(auto ca,
                   pki::CertificateAuthority::CreateNew(config.trust_domain, *options.clock));
  const auto& m = ca->material();
  RETURN_IF_ERROR(WriteSealedKey(kek, m.root_key.get(), dir.root_key, kRootKeyLabel));
  RETURN_IF_ERROR(
      WriteSealedKey(kek, m.intermediate_key.get(), dir.intermediate_key, kIntermediateKeyLabel));
  RETURN_IF_ERROR(common::WriteFileAtomic(dir.root_cert, pki::CertToPem(m.root_cert.get()), 0644));
  RETURN_IF_ERROR(common::WriteFileAtomic(dir.intermediate_cert,
                                          pki::CertToPem(m.intermediate_cert.get()), 0644));
  RETURN_IF_ERROR(IssueServerCert(*ca, kek, dir, config, *options.clock));
  RETURN_IF_ERROR(LoadOrCreateAuditKey(kek, dir).status());
  RETURN_IF_ERROR(SaveConfig(dir.config, config));
  if (!db) {
    ASSIGN_OR_RETURN(db, store::OpenStore(dir.database));
  }
  if (db->shared()) {
    // Replicas initialised later join this CA (JoinSharedStore). Only sealed
    // keys go in; the KEK stays with each replica.
    ASSIGN_OR_RETURN(auto material, SharedCaOf(dir, config.trust_domain));
    if (absl::Status s = db->PutPkiMaterial(material); !s.ok()) {
      return absl::IsAlreadyExists(s)
                 ? absl::AbortedError(
                       "another server initialised the shared store at the same moment; remove "
                       "this data directory and run `server init` again to join it")
                 : s;
    }
  }

  // The bootstrap admin: its signing key is generated here and only its public
  // half goes into the database.
  ASSIGN_OR_RETURN(common::PKeyPtr admin_key, pki::GenerateKey(pki::KeyAlgorithm::kEs256));
  ASSIGN_OR_RETURN(std::string key_id, pki::KeyIdOf(admin_key.get()));
  ASSIGN_OR_RETURN(std::string public_pem, pki::PublicKeyToPem(admin_key.get()));
  int64_t now = options.clock->NowUnix();
  RETURN_IF_ERROR(
      db->CreateIdentity(store::IdentityRecord{kBootstrapAdmin, true, {}, now, now},
                         store::KeyRecord{key_id, kBootstrapAdmin, "ES256", public_pem, now, 0}));
  pki::Credential cred;
  ASSIGN_OR_RETURN(cred.identity, pki::ParseIdentity(kBootstrapAdmin));
  cred.trust_domain = config.trust_domain;
  cred.key_id = key_id;
  cred.algorithm = pki::KeyAlgorithm::kEs256;
  ASSIGN_OR_RETURN(cred.private_key_pem, pki::PrivateKeyToPem(admin_key.get()));
  cred.server_address = config.advertise;
  cred.server_name = pki::HostOf(config.advertise);
  cred.ca_bundle_pem = ca->TrustBundlePem();
  return pki::SaveCredentialFile(dir.admin_credential, cred);
}

absl::Status CheckSharedCa(const DataDir& dir, const ServerConfig& config, store::Store* store) {
  if (!store->shared()) {
    return absl::OkStatus();
  }
  auto shared = store->GetPkiMaterial();
  if (absl::IsNotFound(shared.status())) {
    ASSIGN_OR_RETURN(auto material, SharedCaOf(dir, config.trust_domain));
    absl::Status put = store->PutPkiMaterial(material);
    if (put.ok()) {
      common::LogInfo("server.ca_published", {{"effect", "replicas can join with server init"}});
      return absl::OkStatus();
    }
    if (!absl::IsAlreadyExists(put)) {
      return put;
    }
    shared = store->GetPkiMaterial();  // another replica published first
  }
  RETURN_IF_ERROR(shared.status());
  ASSIGN_OR_RETURN(std::string local_root, common::ReadFile(dir.root_cert));
  auto it = shared->find("root.crt");
  if (it == shared->end() || common::Base64UrlDecode(it->second) != local_root) {
    return absl::FailedPreconditionError(common::StrCat(
        "the CA in ", dir.dir,
        " is not the one in the shared store: this data directory was not made by `server "
        "init` against this store; make a new one with `server init --store ...` (it joins the "
        "store's CA)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServingPki> LoadServingPki(const DataDir& dir, const ServerConfig& config,
                                          const common::Clock& clock) {
  ASSIGN_OR_RETURN(pki::KeyEncryptionKey kek, pki::KeyEncryptionKey::LoadFile(dir.kek));
  pki::CertificateAuthority::Material m;
  ASSIGN_OR_RETURN(std::string root_pem, common::ReadFile(dir.root_cert));
  ASSIGN_OR_RETURN(m.root_cert, pki::CertFromPem(root_pem));
  ASSIGN_OR_RETURN(std::string inter_pem, common::ReadFile(dir.intermediate_cert));
  ASSIGN_OR_RETURN(m.intermediate_cert, pki::CertFromPem(inter_pem));
  ASSIGN_OR_RETURN(m.intermediate_key,
                   ReadSealedKey(kek, dir.intermediate_key, kIntermediateKeyLabel));
  ServingPki out;
  ASSIGN_OR_RETURN(out.ca, pki::CertificateAuthority::FromMaterial(std::move(m)));

  // Re-issue the listener certificate if it is near expiry or the addresses changed.
  bool reissue = true;
  if (auto chain = common::ReadFile(dir.server_cert); chain.ok()) {
    if (auto cert = pki::CertFromPem(*chain); cert.ok()) {
      auto info = pki::InspectCertificate(cert->get());
      std::vector<std::string> dns, ips;
      AddressNames(config, &dns, &ips);
      bool covers = info.ok();
      for (const auto& d : dns) {
        covers = covers &&
                 std::find(info->dns_sans.begin(), info->dns_sans.end(), d) != info->dns_sans.end();
      }
      for (const auto& ip : ips) {
        covers = covers &&
                 std::find(info->ip_sans.begin(), info->ip_sans.end(), ip) != info->ip_sans.end();
      }
      reissue = !covers || info->not_after - clock.NowUnix() < kServerCertRenewBefore;
    }
  }
  if (reissue) {
    common::LogInfo("server.tls_certificate_reissued", {{"path", dir.server_cert}});
    RETURN_IF_ERROR(IssueServerCert(*out.ca, kek, dir, config, clock));
  }
  ASSIGN_OR_RETURN(out.server_chain_pem, common::ReadFile(dir.server_cert));
  ASSIGN_OR_RETURN(common::PKeyPtr server_key, ReadSealedKey(kek, dir.server_key, kServerKeyLabel));
  ASSIGN_OR_RETURN(out.server_key_pem, pki::PrivateKeyToPem(server_key.get()));
  ASSIGN_OR_RETURN(out.audit_key, LoadOrCreateAuditKey(kek, dir));
  return out;
}

}  // namespace drawbridge::server

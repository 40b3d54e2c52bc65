#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/admin_session.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "drawbridge/v1/admin.grpc.pb.h"
#include "enroll/cert_manager.h"
#include "pki/credential.h"
#include "pki/keys.h"
#include "pki/passphrase_seal.h"
#include "pki/workload_trust.h"

namespace drawbridge::cli {
namespace {

int ActiveKeys(const v1::IdentityInfo& id) {
  int n = 0;
  for (const auto& k : id.keys()) {
    n += k.removed_unix() == 0 ? 1 : 0;
  }
  return n;
}

void PrintIdentityTable(const std::vector<const v1::IdentityInfo*>& ids) {
  std::printf("%-40s %-9s %-5s %-22s %s\n", "IDENTITY", "STATUS", "KEYS", "CREATED", "CIDRS");
  for (const auto* id : ids) {
    std::vector<std::string> cidrs(id->cidrs().begin(), id->cidrs().end());
    std::printf("%-40s %-9s %-5d %-22s %s\n", id->identity().c_str(),
                id->enabled() ? "enabled" : "disabled", ActiveKeys(*id),
                FormatTime(id->created_unix()).c_str(),
                cidrs.empty() ? "any" : common::Join(cidrs, ",").c_str());
  }
}

void PrintKeyTable(const google::protobuf::RepeatedPtrField<v1::KeyInfo>& keys) {
  std::printf("%-24s %-7s %-9s %-22s %s\n", "KEY ID", "ALG", "STATUS", "CREATED", "REMOVED");
  for (const auto& k : keys) {
    std::printf("%-24s %-7s %-9s %-22s %s\n", k.key_id().c_str(), k.algorithm().c_str(),
                k.removed_unix() == 0 ? "active" : "removed", FormatTime(k.created_unix()).c_str(),
                FormatTime(k.removed_unix()).c_str());
  }
}

void PrintIdentity(const v1::IdentityInfo& id) {
  std::vector<std::string> cidrs(id.cidrs().begin(), id.cidrs().end());
  std::printf(
      "identity:  %s\nspiffe id: %s\nstatus:    %s\ncidrs:     %s\ncreated:   %s\n"
      "updated:   %s\n\n",
      id.identity().c_str(), id.spiffe_id().c_str(), id.enabled() ? "enabled" : "disabled",
      cidrs.empty() ? "any" : common::Join(cidrs, ", ").c_str(),
      FormatTime(id.created_unix()).c_str(), FormatTime(id.updated_unix()).c_str());
  PrintKeyTable(id.keys());
}

// Writes the credential before the server learns the key, and deletes it again if
// the server refuses: a registered key whose private half was lost is worse than
// a file to clean up.
template <typename RpcFn>
absl::Status WriteThenRegister(const std::string& out, const pki::Credential& cred, RpcFn rpc) {
  RETURN_IF_ERROR(pki::SaveCredentialFile(out, cred));
  absl::Status s = rpc();
  if (!s.ok()) {
    std::error_code ec;
    std::filesystem::remove(out, ec);
  }
  return s;
}

// `--seal`: the new credential's key sealed with the passphrase the
// environment gives (DRAWBRIDGE_KEY_PASSPHRASE_FD or DRAWBRIDGE_KEY_PASSPHRASE).
absl::Status SealIfAsked(const AdminFlags& f, pki::Credential* credential) {
  if (!f.seal) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::optional<std::string> passphrase, pki::PassphraseFromEnvironment());
  if (!passphrase) {
    return absl::InvalidArgumentError(
        "--seal needs a passphrase in DRAWBRIDGE_KEY_PASSPHRASE_FD (a file descriptor to read it "
        "from) or DRAWBRIDGE_KEY_PASSPHRASE");
  }
  ASSIGN_OR_RETURN(common::PKeyPtr key, pki::PrivateKeyFromPem(credential->private_key_pem));
  ASSIGN_OR_RETURN(credential->private_key_pem, pki::SealPrivateKeyPem(key.get(), *passphrase));
  return absl::OkStatus();
}

// `--server` (repeatable) and `--server-srv`: where the new credential reaches
// the server, instead of where the admin's does. The server name checked and
// the pinned CA stay the admin's: every address must lead to the same service.
absl::Status ApplyServerFlags(const AdminFlags& f, pki::Credential* credential) {
  if (!f.servers.empty()) {
    credential->server_address = f.servers.front();
    credential->fallback_addresses.assign(f.servers.begin() + 1, f.servers.end());
    RETURN_IF_ERROR(pki::ValidateServerAddress(credential->server_address));
  }
  if (!f.server_srv.empty()) {
    credential->dns_srv = f.server_srv;
  }
  return pki::ValidateServerEndpoints(*credential);
}

// The trust the --oidc-* flags describe, files read.
absl::StatusOr<v1::WorkloadTrust> TrustFromFlags(const AdminFlags& f) {
  if (f.oidc_subject.empty()) {
    return absl::InvalidArgumentError(
        "--oidc-subject is required with --oidc-issuer (the token's exact \"sub\", e.g. "
        "system:serviceaccount:NAMESPACE:SERVICEACCOUNT)");
  }
  v1::WorkloadTrust t;
  t.set_issuer(f.oidc_issuer);
  t.set_subject(f.oidc_subject);
  t.set_audience(f.oidc_audience);
  t.set_jwks_uri(f.oidc_jwks_uri);
  if (!f.oidc_jwks_file.empty()) {
    ASSIGN_OR_RETURN(std::string jwks, common::ReadFile(f.oidc_jwks_file));
    t.set_jwks_json(jwks);
  }
  if (!f.oidc_ca_file.empty()) {
    ASSIGN_OR_RETURN(std::string ca, common::ReadFile(f.oidc_ca_file));
    t.set_ca_bundle_pem(ca);
  }
  // Checked here too, so a mistake is named before anything is written.
  RETURN_IF_ERROR(pki::ValidateWorkloadTrust(
      {t.issuer(), t.subject(), t.audience(), t.jwks_uri(), t.jwks_json(), t.ca_bundle_pem()}));
  return t;
}

// `identity create --oidc-issuer ...`: the identity trusts an external token
// issuer; the file written holds no secret, only where and how to enroll.
int WorkloadIdentityCreate(const AdminFlags& f, const Session& session) {
  auto trust = TrustFromFlags(f);
  if (!trust.ok()) {
    return Fail(trust.status());
  }
  pki::Credential bootstrap;
  auto identity = pki::ParseIdentity(f.identity);
  if (!identity.ok()) {
    return Fail(identity.status());
  }
  bootstrap.identity = *identity;
  bootstrap.trust_domain = session.credential.trust_domain;
  pki::CopyServerEndpoints(session.credential, &bootstrap);
  bootstrap.token_file = f.token_file;
  if (absl::Status s = ApplyServerFlags(f, &bootstrap); !s.ok()) {
    return Fail(s);
  }
  v1::CreateIdentityRequest req;
  req.set_identity(f.identity);
  *req.mutable_workload_trust() = *trust;
  for (const auto& c : f.cidrs) {
    req.add_cidrs(c);
  }
  v1::CreateIdentityResponse resp;
  absl::Status s = WriteThenRegister(f.out, bootstrap, [&] {
    auto ctx = Ctx();
    return Call(session.stub->CreateIdentity(ctx.get(), req, &resp));
  });
  if (!s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "Created %s (workload trust %s: issuer %s, subject %s, audience %s).\n"
        "%s holds no secret: the %s enrolls with the token in %s.\n",
        resp.identity().identity().c_str(), resp.key().key_id().c_str(), f.oidc_issuer.c_str(),
        f.oidc_subject.c_str(), f.oidc_audience.c_str(), f.out.c_str(),
        std::string(pki::KindName(identity->kind)).c_str(), f.token_file.c_str());
  }
  return kExitOk;
}

int IdentityCreate(const AdminFlags& f) {
  if (f.out.empty()) {
    return Fail("--out FILE is required: where to write the new credential");
  }
  auto session = Connect(f);
  if (!session.ok()) {
    return Fail(session.status());
  }
  if (!f.oidc_issuer.empty()) {
    return WorkloadIdentityCreate(f, *session);
  }
  auto cred = f.pkcs11_key.empty() ? MakeCredential(session->credential, f.identity, f.algorithm)
                                   : MakePkcs11Credential(session->credential, f.identity,
                                                          f.pkcs11_key, f.pkcs11_module);
  if (!cred.ok()) {
    return Fail(cred.status());
  }
  if (absl::Status s = ApplyServerFlags(f, &cred->credential); !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = SealIfAsked(f, &cred->credential); !s.ok()) {
    return Fail(s);
  }
  v1::CreateIdentityRequest req;
  req.set_identity(f.identity);
  req.set_public_key_pem(cred->public_key_pem);
  for (const auto& c : f.cidrs) {
    req.add_cidrs(c);
  }
  v1::CreateIdentityResponse resp;
  absl::Status s = WriteThenRegister(f.out, cred->credential, [&] {
    auto ctx = Ctx();
    return Call(session->stub->CreateIdentity(ctx.get(), req, &resp));
  });
  if (!s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "Created %s (key %s); credential written to %s (mode 0600).\n"
        "Hand that file to the %s; it enrolls with it%s.\n",
        resp.identity().identity().c_str(), resp.key().key_id().c_str(), f.out.c_str(),
        std::string(pki::KindName(cred->credential.identity.kind)).c_str(),
        f.seal                  ? " and the passphrase (DRAWBRIDGE_KEY_PASSPHRASE_FD)"
        : !f.pkcs11_key.empty() ? " and the key in the PKCS#11 token (its PIN in "
                                  "DRAWBRIDGE_KEY_PASSPHRASE_FD)"
                                : " and never needs another secret");
  }
  return kExitOk;
}

int IdentityList(const AdminFlags& f) {
  v1::ListIdentitiesRequest req;
  req.set_kind(f.kind);
  v1::ListIdentitiesResponse resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::ListIdentities, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
    return kExitOk;
  }
  std::vector<const v1::IdentityInfo*> ids;
  for (const auto& id : resp.identities()) {
    ids.push_back(&id);
  }
  PrintIdentityTable(ids);
  return kExitOk;
}

int IdentityShow(const AdminFlags& f) {
  v1::GetIdentityRequest req;
  req.set_identity(f.identity);
  v1::IdentityInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::GetIdentity, req, &resp); !s.ok()) {
    return Fail(s);
  }
  f.json ? PrintJson(resp) : PrintIdentity(resp);
  return kExitOk;
}

int IdentitySetEnabled(const AdminFlags& f, bool enabled) {
  v1::SetIdentityEnabledRequest req;
  req.set_identity(f.identity);
  req.set_enabled(enabled);
  v1::IdentityInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::SetIdentityEnabled, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf("%s is now %s.\n", resp.identity().c_str(), enabled ? "enabled" : "disabled");
  }
  return kExitOk;
}

// `key add --oidc-issuer ...`: another trusted issuer (or a new subject).
int TrustAdd(const AdminFlags& f) {
  auto trust = TrustFromFlags(f);
  if (!trust.ok()) {
    return Fail(trust.status());
  }
  v1::AddKeyRequest req;
  req.set_identity(f.identity);
  *req.mutable_workload_trust() = *trust;
  v1::KeyInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::AddKey, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf("Added workload trust %s to %s (issuer %s, subject %s).\n", resp.key_id().c_str(),
                resp.identity().c_str(), f.oidc_issuer.c_str(), f.oidc_subject.c_str());
  }
  return kExitOk;
}

int KeyAdd(const AdminFlags& f) {
  if (!f.oidc_issuer.empty()) {
    return TrustAdd(f);
  }
  if (f.out.empty()) {
    return Fail("--out FILE is required: where to write the credential with the new key");
  }
  auto session = Connect(f);
  if (!session.ok()) {
    return Fail(session.status());
  }
  auto cred = f.pkcs11_key.empty() ? MakeCredential(session->credential, f.identity, f.algorithm)
                                   : MakePkcs11Credential(session->credential, f.identity,
                                                          f.pkcs11_key, f.pkcs11_module);
  if (!cred.ok()) {
    return Fail(cred.status());
  }
  if (absl::Status s = ApplyServerFlags(f, &cred->credential); !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = SealIfAsked(f, &cred->credential); !s.ok()) {
    return Fail(s);
  }
  v1::AddKeyRequest req;
  req.set_identity(f.identity);
  req.set_public_key_pem(cred->public_key_pem);
  v1::KeyInfo resp;
  absl::Status s = WriteThenRegister(f.out, cred->credential, [&] {
    auto ctx = Ctx();
    return Call(session->stub->AddKey(ctx.get(), req, &resp));
  });
  if (!s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf(
        "Added key %s to %s; credential written to %s.\n"
        "Roll it out, then remove the old key with `admin key remove %s OLD_KEY_ID`.\n",
        resp.key_id().c_str(), resp.identity().c_str(), f.out.c_str(), resp.identity().c_str());
  }
  return kExitOk;
}

int KeyList(const AdminFlags& f) {
  v1::ListKeysRequest req;
  req.set_identity(f.identity);
  v1::ListKeysResponse resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::ListKeys, req, &resp); !s.ok()) {
    return Fail(s);
  }
  f.json ? PrintJson(resp) : PrintKeyTable(resp.keys());
  return kExitOk;
}

int KeyRemove(const AdminFlags& f) {
  v1::RemoveKeyRequest req;
  req.set_identity(f.identity);
  req.set_key_id(f.key_id);
  v1::KeyInfo resp;
  if (absl::Status s = CallAdmin(f, &v1::Admin::Stub::RemoveKey, req, &resp); !s.ok()) {
    return Fail(s);
  }
  if (f.json) {
    PrintJson(resp);
  } else {
    std::printf("Removed key %s of %s; it can no longer enroll.\n", resp.key_id().c_str(),
                resp.identity().c_str());
  }
  return kExitOk;
}

// --seal, or the key in a PKCS#11 token (--pkcs11-key, --pkcs11-module).
void AddKeyStorageFlags(CLI::App* cmd, AdminFlags* f) {
  auto* seal = cmd->add_flag(
      "--seal", f->seal,
      "Seal the credential's key with a passphrase from DRAWBRIDGE_KEY_PASSPHRASE_FD or "
      "DRAWBRIDGE_KEY_PASSPHRASE (scrypt, AES-256)");
  auto* key = cmd->add_option("--pkcs11-key", f->pkcs11_key,
                              "Use this key in a PKCS#11 token (pkcs11:token=...;object=...) "
                              "instead of a new one; its PIN from DRAWBRIDGE_KEY_PASSPHRASE_FD")
                  ->excludes(seal);
  cmd->add_option("--pkcs11-module", f->pkcs11_module,
                  "The token's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so)")
      ->needs(key)
      ->check(CLI::ExistingFile);
  key->needs("--pkcs11-module");
}

void AddServerFlags(CLI::App* cmd, AdminFlags* f) {
  const char* group = "Where the new credential reaches the server (default: as the admin's does)";
  cmd->add_option("--server", f->servers,
                  "HOST:PORT; repeat for fallback addresses, tried in the order given")
      ->group(group);
  cmd->add_option("--server-srv", f->server_srv,
                  "DNS SRV name whose targets are tried first (_drawbridge._tcp.DOMAIN)")
      ->group(group);
}

void AddWorkloadTrustFlags(CLI::App* cmd, AdminFlags* f, bool with_token_file) {
  const char* group = "Workload identity (instead of a key; docs/enrollment.md)";
  cmd->add_option("--oidc-issuer", f->oidc_issuer,
                  "Trust tokens from this issuer (its exact \"iss\", https://...)")
      ->group(group);
  cmd->add_option("--oidc-subject", f->oidc_subject,
                  "... for this exact \"sub\" (system:serviceaccount:NS:SA)")
      ->group(group);
  cmd->add_option("--oidc-audience", f->oidc_audience, "... with this audience in \"aud\"")
      ->group(group)
      ->capture_default_str();
  auto* uri = cmd->add_option("--oidc-jwks-uri", f->oidc_jwks_uri,
                              "The issuer's JWKS URL (default: from its OIDC discovery document)")
                  ->group(group);
  cmd->add_option("--oidc-jwks-file", f->oidc_jwks_file,
                  "The issuer's JWKS itself, for clusters the server cannot reach")
      ->group(group)
      ->excludes(uri)
      ->check(CLI::ExistingFile);
  cmd->add_option("--oidc-ca-file", f->oidc_ca_file,
                  "CA bundle for the issuer's HTTPS (default: the system roots)")
      ->group(group)
      ->check(CLI::ExistingFile);
  if (with_token_file) {
    cmd->add_option("--token-file", f->token_file,
                    "Where the workload finds its token (written into the credential)")
        ->group(group)
        ->capture_default_str();
  }
}

}  // namespace

void RegisterAdminCommands(CLI::App& app, Action* run) {
  auto f = std::make_shared<AdminFlags>();
  auto* admin =
      app.add_subcommand("admin", "Manage identities and keys (needs an admin credential)");
  admin->require_subcommand(1);
  // Let --credentials and --json appear after the subcommand too (`identity list --json`).
  admin->fallthrough();
  admin->add_option("--credentials", f->credentials, "Admin credential file (admin.json)")
      ->envname("DRAWBRIDGE_CREDENTIALS");
  admin->add_flag("--json", f->json, "Print JSON instead of tables");

  auto bind = [run, f](CLI::App* cmd, std::function<int(const AdminFlags&)> fn) {
    cmd->callback([run, f, fn] { *run = [f, fn] { return fn(*f); }; });
  };

  auto* identity = admin->add_subcommand("identity", "Create, list, show, disable, enable");
  identity->require_subcommand(1);
  identity->fallthrough();
  auto* create = identity->add_subcommand("create", "Create an identity and its first credential");
  create->add_option("identity", f->identity, "KIND/NAME, KIND one of agent, client, admin")
      ->required();
  create->add_option("--out", f->out, "Where to write the credential file (0600)")->required();
  create->add_option("--cidr", f->cidrs, "Allow enrollment only from this CIDR (repeatable)");
  create->add_option("--algorithm", f->algorithm, "Credential key algorithm")
      ->check(CLI::IsMember({"ES256", "EdDSA"}))
      ->capture_default_str();
  AddKeyStorageFlags(create, f.get());
  AddServerFlags(create, f.get());
  AddWorkloadTrustFlags(create, f.get(), /*with_token_file=*/true);
  bind(create, IdentityCreate);
  auto* list = identity->add_subcommand("list", "List identities");
  list->add_option("--kind", f->kind, "Only this kind")
      ->check(CLI::IsMember({"agent", "client", "admin"}));
  bind(list, IdentityList);
  auto* show = identity->add_subcommand("show", "Show one identity and its keys");
  show->add_option("identity", f->identity, "KIND/NAME")->required();
  bind(show, IdentityShow);
  auto* disable = identity->add_subcommand("disable",
                                           "Disable an identity (refuses its next "
                                           "enrollment and RPCs)");
  disable->add_option("identity", f->identity, "KIND/NAME")->required();
  bind(disable, [](const AdminFlags& fl) { return IdentitySetEnabled(fl, false); });
  auto* enable = identity->add_subcommand("enable", "Enable a disabled identity");
  enable->add_option("identity", f->identity, "KIND/NAME")->required();
  bind(enable, [](const AdminFlags& fl) { return IdentitySetEnabled(fl, true); });

  auto* key = admin->add_subcommand("key", "Rotate credential keys: add, list, remove");
  key->require_subcommand(1);
  key->fallthrough();
  auto* add = key->add_subcommand("add", "Add a key and write a credential that uses it");
  add->add_option("identity", f->identity, "KIND/NAME")->required();
  add->add_option("--out", f->out,
                  "Where to write the credential file (0600); required unless --oidc-issuer");
  add->add_option("--algorithm", f->algorithm, "Credential key algorithm")
      ->check(CLI::IsMember({"ES256", "EdDSA"}))
      ->capture_default_str();
  AddKeyStorageFlags(add, f.get());
  AddServerFlags(add, f.get());
  AddWorkloadTrustFlags(add, f.get(), /*with_token_file=*/false);
  bind(add, KeyAdd);
  auto* klist = key->add_subcommand("list", "List the keys of an identity");
  klist->add_option("identity", f->identity, "KIND/NAME")->required();
  bind(klist, KeyList);
  auto* remove = key->add_subcommand("remove", "Remove a key (it can no longer enroll)");
  remove->add_option("identity", f->identity, "KIND/NAME")->required();
  remove->add_option("key_id", f->key_id, "KEY ID as `key list` shows it")->required();
  bind(remove, KeyRemove);

  RegisterAdminOperations(admin, f, run);
}

}  // namespace drawbridge::cli

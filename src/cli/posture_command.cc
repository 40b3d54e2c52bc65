// `drawbridge posture`: checks a live deployment's security controls and prints
// each with the evidence observed (docs/compliance.md). Every check observes
// something now: the server's answers to probes, its state through the Admin
// API, a revocation drill, the audit trail, the data directory's files and the
// server process. Judgements without I/O live in src/posture.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "audit/query.h"
#include "audit/shared_audit.h"
#include "audit/verify.h"
#include "cli/admin_session.h"
#include "cli/commands.h"
#include "cli/util.h"
#include "common/files.h"
#include "common/strings.h"
#include "drawbridge/v1/tunnel.grpc.pb.h"
#include "lane/tls_context.h"
#include "nlohmann/json.hpp"
#include "posture/posture.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "store/store.h"
#include "tunnel/dial_code.h"

namespace drawbridge::cli {
namespace {

using posture::Status;
using Clock = std::chrono::steady_clock;

struct PostureArgs {
  std::string credentials;
  std::string data_dir;
  bool json = false;
  std::string probe_identity = "client/posture-probe";
  int64_t max_certificate_hours = 8;
  int64_t max_key_age_days = 90;
  int64_t max_kek_age_days = 365;
  int64_t max_revocation_ms = 1000;
};

int64_t Ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string Duration(int64_t seconds) {
  if (seconds % 3600 == 0 && seconds >= 3600) {
    return common::StrCat(seconds / 3600, " h");
  }
  return common::StrCat(seconds, " s");
}

// --- TLS probes ---------------------------------------------------------------

struct TlsProbe {
  bool connected = false;
  bool handshake = false;  // the server completed a handshake
  bool answered = false;   // application data came back after the handshake
  std::string version;
  std::string error;
  int64_t cert_not_before = 0;
  int64_t cert_not_after = 0;
};

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) {
    return "connection closed";
  }
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

int64_t AsnTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return 0;
  }
  return static_cast<int64_t>(timegm(&tm));
}

// Connects to `address` (HOST:PORT) and makes a TLS handshake offering only
// versions [min, max], without a client certificate and without verifying the
// server (the probe asks what the server accepts, it trusts nothing it hears).
// With `speak`, sends an HTTP/2 preface afterwards and waits up to 3 s for an
// answer: a server requiring client certificates refuses here under TLS 1.3.
TlsProbe ProbeTls(const std::string& address, int min_version, int max_version, bool speak,
                  std::string_view alpn_protocol = "h2") {
  TlsProbe p;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    p.error = OpenSslError();
    return p;
  }
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  std::string alpn(1, static_cast<char>(alpn_protocol.size()));
  alpn += alpn_protocol;
  SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(alpn.data()),
                          static_cast<unsigned>(alpn.size()));
  BIO* bio = BIO_new_ssl_connect(ctx);
  SSL* ssl = nullptr;
  BIO_get_ssl(bio, &ssl);
  BIO_set_conn_hostname(bio, address.c_str());
  // On an SSL BIO, BIO_do_connect makes the TCP connection and the handshake.
  if (BIO_do_connect(bio) <= 0) {
    // Either the TCP connect or the handshake failed: tell them apart.
    int fd = -1;
    BIO_get_fd(bio, &fd);
    p.connected = fd >= 0 && SSL_get_fd(ssl) >= 0 && SSL_get_state(ssl) != TLS_ST_BEFORE;
    p.error = OpenSslError();
  } else {
    p.connected = true;
    p.handshake = true;
    p.version = SSL_get_version(ssl);
    if (X509* cert = SSL_get1_peer_certificate(ssl)) {
      p.cert_not_before = AsnTime(X509_get0_notBefore(cert));
      p.cert_not_after = AsnTime(X509_get0_notAfter(cert));
      X509_free(cert);
    }
    if (speak) {
      int fd = SSL_get_fd(ssl);
      timeval tv{3, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      // The client preface and an empty SETTINGS frame.
      static const char kPreface[] =
          "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
      char buf[256];
      if (SSL_write(ssl, kPreface, sizeof(kPreface) - 1) > 0 &&
          SSL_read(ssl, buf, sizeof(buf)) > 0) {
        p.answered = true;
      } else {
        p.error = OpenSslError();
      }
    }
  }
  BIO_free_all(bio);
  SSL_CTX_free(ctx);
  return p;
}

std::string WithPort(const std::string& address, int port) {
  return common::StrCat(address.substr(0, address.rfind(':')), ":", port);
}

// --- the revocation drill -------------------------------------------------------

// What the drill observed; the audit checks then look for its records.
struct Drill {
  bool ran = false;
  std::string error;  // why it could not run to the end
  std::string identity;
  int lane_port = 0;
  int64_t started_unix_ms = 0;
  v1::DialCode denied_code = v1::DIAL_OK;
  std::string denied_destination = "posture-probe.invalid:9";
  int64_t cut_ms = -1;        // disable request sent -> the live stream ended
  int64_t call_ms = -1;       // the disable call itself
  std::string stream_status;  // how the server ended the stream
  bool key_removed = false;
};

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Gives the probe identity a fresh key (creating the identity the first time),
// enrolls with it, holds a live Watch stream, makes one dial the policy denies,
// then disables the identity through the Admin API and times the stream's end.
// The identity is left disabled and its key removed.
Drill RunDrill(Session& admin, const PostureArgs& args) {
  Drill d;
  d.identity = args.probe_identity;
  d.started_unix_ms = NowUnixMs();
  auto cred = MakeCredential(admin.credential, args.probe_identity, "ES256");
  if (!cred.ok()) {
    d.error = std::string(cred.status().message());
    return d;
  }
  v1::CreateIdentityRequest create;
  create.set_identity(args.probe_identity);
  create.set_public_key_pem(cred->public_key_pem);
  v1::CreateIdentityResponse created;
  absl::Status s = Call(admin.stub->CreateIdentity(Ctx().get(), create, &created));
  if (s.code() == absl::StatusCode::kAlreadyExists) {
    v1::AddKeyRequest add;
    add.set_identity(args.probe_identity);
    add.set_public_key_pem(cred->public_key_pem);
    v1::KeyInfo key;
    s = Call(admin.stub->AddKey(Ctx().get(), add, &key));
    if (s.ok()) {
      v1::SetIdentityEnabledRequest enable;
      enable.set_identity(args.probe_identity);
      enable.set_enabled(true);
      v1::IdentityInfo info;
      s = Call(admin.stub->SetIdentityEnabled(Ctx().get(), enable, &info));
    }
  }
  if (!s.ok()) {
    d.error = common::StrCat("cannot prepare ", args.probe_identity, ": ", s.message());
    return d;
  }
  auto remove_key = [&] {
    v1::RemoveKeyRequest remove;
    remove.set_identity(args.probe_identity);
    remove.set_key_id(cred->credential.key_id);
    v1::KeyInfo removed;
    d.key_removed = Call(admin.stub->RemoveKey(Ctx().get(), remove, &removed)).ok();
  };
  auto disable = [&] {
    v1::SetIdentityEnabledRequest off;
    off.set_identity(args.probe_identity);
    off.set_enabled(false);
    v1::IdentityInfo info;
    return Call(admin.stub->SetIdentityEnabled(Ctx().get(), off, &info));
  };
  auto certs = enroll::CertManager::Create({.credential = cred->credential});
  if (!certs.ok()) {
    d.error = common::StrCat("the probe cannot enroll: ", certs.status().message());
    (void)disable();
    remove_key();
    return d;
  }
  auto stub = v1::Tunnel::NewStub((*certs)->Channel());
  // A dial the policy must deny (a name that cannot exist, RFC 6761).
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    ctx.AddMetadata(tunnel::kInstanceHeader, "posture-probe");
    auto dial = stub->Dial(&ctx);
    v1::Frame open;
    open.mutable_open()->set_destination(d.denied_destination);
    v1::Frame answer;
    if (dial->Write(open) && dial->Read(&answer) && answer.has_result()) {
      d.denied_code = answer.result().code();
    } else {
      d.denied_code = v1::DIAL_INTERNAL;
    }
    dial->WritesDone();
    ctx.TryCancel();
    (void)dial->Finish();
  }
  // The live connection: a Watch stream, which the server ends on revocation.
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  watch_ctx.AddMetadata(tunnel::kInstanceHeader, "posture-probe");
  auto watch = stub->Watch(&watch_ctx, v1::WatchRequest());
  v1::WatchEvent event;
  if (!watch->Read(&event) || !event.has_ready()) {
    d.error = "the probe's Watch stream did not open";
    watch_ctx.TryCancel();
    (void)watch->Finish();
    (void)disable();
    remove_key();
    return d;
  }
  d.lane_port = event.ready().lane_port();
  auto ended = std::async(std::launch::async, [&] {
    v1::WatchEvent e;
    while (watch->Read(&e)) {
    }
    return Clock::now();
  });
  const auto t0 = Clock::now();
  s = disable();
  d.call_ms = Ms(Clock::now() - t0);
  if (!s.ok()) {
    d.error = common::StrCat("cannot disable ", args.probe_identity, ": ", s.message());
    watch_ctx.TryCancel();
  } else if (ended.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    d.error = "the probe's live stream was still open 5 s after the disable";
    watch_ctx.TryCancel();
  }
  const auto t_end = ended.get();
  grpc::Status st = watch->Finish();
  d.stream_status =
      common::StrCat(static_cast<int>(st.error_code()), " ", st.error_message().substr(0, 120));
  if (d.error.empty()) {
    d.cut_ms = Ms(t_end - t0);
    d.ran = true;
  }
  remove_key();
  return d;
}

// --- local observations -------------------------------------------------------

struct ServerProcess {
  int pid = 0;
  uid_t uid = 0;
  std::string user;
};

// Drawbridge server processes on this host serving `data_dir`, found in /proc.
std::vector<ServerProcess> FindServerProcesses(const std::string& data_dir) {
  std::vector<ServerProcess> out;
  std::error_code ec;
  const std::string want = std::filesystem::weakly_canonical(data_dir, ec).string();
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream cmdline(entry.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(cmdline, arg, '\0');) {
      argv.push_back(arg);
    }
    if (argv.size() < 2 || argv[0].find("drawbridge") == std::string::npos ||
        std::find(argv.begin(), argv.end(), "server") == argv.end()) {
      continue;
    }
    bool serves = false;
    for (size_t i = 0; i < argv.size(); ++i) {
      std::string dir;
      if (argv[i] == "--data-dir" && i + 1 < argv.size()) {
        dir = argv[i + 1];
      } else if (argv[i].rfind("--data-dir=", 0) == 0) {
        dir = argv[i].substr(11);
      }
      if (!dir.empty()) {
        std::error_code ec2;
        // Relative to the process's own working directory.
        auto cwd = std::filesystem::read_symlink(entry.path() / "cwd", ec2);
        std::filesystem::path p =
            std::filesystem::path(dir).is_absolute() ? std::filesystem::path(dir) : cwd / dir;
        serves = serves || std::filesystem::weakly_canonical(p, ec2).string() == want;
      }
    }
    if (!serves) {
      continue;
    }
    std::ifstream status(entry.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Uid:", 0) == 0) {
        std::istringstream fields(line.substr(4));
        unsigned real = 0, effective = 0;
        fields >> real >> effective;
        out.push_back({std::stoi(pid), static_cast<uid_t>(effective), ""});
      }
    }
  }
  return out;
}

std::optional<int64_t> AgeDays(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::nullopt;
  }
  return (static_cast<int64_t>(std::time(nullptr)) - st.st_mtime) / 86400;
}

// --- the checks -----------------------------------------------------------------

void CheckCertificateLifetime(const PostureArgs& args, const server::ServerConfig& config,
                              const enroll::CertManager::Snapshot& admin_cert, posture::Report* r) {
  const int64_t max = args.max_certificate_hours * 3600;
  const int64_t issued_for = admin_cert.not_after - admin_cert.received_at;
  std::vector<std::string> ev = {
      common::StrCat(
          "server.yaml certificate_lifetime_seconds: ", config.certificate_lifetime_seconds, " (",
          Duration(config.certificate_lifetime_seconds), "); the limit is ", Duration(max)),
      common::StrCat("the certificate the server issued to this check just now is valid for ",
                     issued_for, " s more (serial ", admin_cert.serial, ")")};
  const bool ok = config.certificate_lifetime_seconds <= max && issued_for <= max;
  r->Set("IAM-01", ok ? Status::kPass : Status::kFail, std::move(ev));
}

void CheckIdentities(const PostureArgs& args, const v1::ListIdentitiesResponse& ids,
                     posture::Report* r) {
  std::vector<std::string> unbound, stale;
  int services = 0, keys = 0;
  const int64_t now = std::time(nullptr);
  int64_t oldest = 0;
  for (const v1::IdentityInfo& id : ids.identities()) {
    if (!id.enabled()) {
      continue;  // cannot enroll
    }
    const bool service =
        id.identity().rfind("agent/", 0) == 0 || id.identity().rfind("client/", 0) == 0;
    if (service) {
      ++services;
      if (id.cidrs().empty()) {
        unbound.push_back(id.identity());
      }
    }
    for (const v1::KeyInfo& k : id.keys()) {
      // A workload trust is no static credential: its tokens rotate at the issuer.
      if (k.removed_unix() != 0 || k.has_workload_trust()) {
        continue;
      }
      ++keys;
      const int64_t age = (now - k.created_unix()) / 86400;
      oldest = std::max(oldest, age);
      if (age > args.max_key_age_days) {
        stale.push_back(common::StrCat(id.identity(), " key ", k.key_id(), ": ", age, " days old"));
      }
    }
  }
  std::vector<std::string> ev = {
      common::StrCat(services, " enabled agent and client identities listed")};
  for (const auto& u : unbound) {
    ev.push_back(common::StrCat(u, ": no CIDR binding (its credential works from anywhere)"));
  }
  if (unbound.empty()) {
    ev.push_back("every one is bound to source CIDRs");
  }
  r->Set("IAM-02", unbound.empty() ? Status::kPass : Status::kFail, std::move(ev));
  std::vector<std::string> kev = {common::StrCat(keys, " active enrollment keys; the oldest is ",
                                                 oldest, " days old; the limit is ",
                                                 args.max_key_age_days, " days")};
  kev.insert(kev.end(), stale.begin(), stale.end());
  r->Set("IAM-03", stale.empty() ? Status::kPass : Status::kFail, std::move(kev));
}

void CheckAccess(const v1::PolicyInfo& policy_info, const v1::ListAgentsResponse& agents,
                 posture::Report* r) {
  std::vector<std::string> ev;
  bool ok = true;
  auto policy = policy::Policy::Parse(policy_info.yaml());
  if (!policy.ok()) {
    r->Set("ACC-01", Status::kFail,
           {common::StrCat("the policy in force does not parse: ", policy.status().message())});
    return;
  }
  ev.push_back(common::StrCat("policy in force: ", (*policy)->rules().size(), " rules (sha256 ",
                              policy_info.sha256().substr(0, 16),
                              "...); whatever no rule allows is denied"));
  for (std::string& broad : posture::BroadRules(**policy)) {
    ev.push_back(std::move(broad));
    ok = false;
  }
  if (agents.agents().empty()) {
    ev.push_back("no agent connected: no allowlist observed");
  }
  for (const v1::AgentInfo& a : agents.agents()) {
    if (a.allowlist().empty()) {
      ev.push_back(common::StrCat(a.identity(), " (", a.instance_id(),
                                  "): empty allowlist, allows nothing"));
      continue;
    }
    std::vector<std::string> broad;
    for (const std::string& entry : a.allowlist()) {
      if (std::string why = posture::BroadAllowlistEntry(entry); !why.empty()) {
        broad.push_back(why);
      }
    }
    if (broad.empty()) {
      ev.push_back(common::StrCat(a.identity(), " (", a.instance_id(), "): allowlist of ",
                                  a.allowlist_size(), " entries"));
    } else {
      ok = false;
      ev.push_back(common::StrCat(a.identity(), " (", a.instance_id(),
                                  "): allowlist too broad: ", common::Join(broad, "; ")));
    }
  }
  r->Set("ACC-01", ok ? Status::kPass : Status::kFail, std::move(ev));
}

// An RPC that needs an identity (Admin.ListAgents), over TLS that verifies the
// server but presents no client certificate: the gRPC port completes such a
// handshake (enrollment happens before a workload has a certificate), so the
// refusal must come from every other method.
grpc::Status CallWithoutCertificate(const pki::Credential& credential, const std::string& address) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = credential.ca_bundle_pem;
  grpc::ChannelArguments channel_args;
  channel_args.SetSslTargetNameOverride(credential.server_name);
  auto stub = v1::Admin::NewStub(
      grpc::CreateCustomChannel(address, grpc::SslCredentials(tls), channel_args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListAgentsResponse response;
  return stub->ListAgents(&ctx, v1::ListAgentsRequest(), &response);
}

// `address`: the one the admin session reached (the credential may list several).
void CheckTls(const pki::Credential& credential, const std::string& address, int lane_port,
              posture::Report* r) {
  std::vector<std::string> endpoints = {address};
  if (lane_port > 0) {
    endpoints.push_back(WithPort(address, lane_port));
  }
  std::vector<std::string> v_ev, m_ev;
  bool v_ok = true, m_ok = true;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const std::string& ep = endpoints[i];
    const char* what = i == 0 ? "gRPC port" : "lane port";
    const std::string_view alpn = i == 0 ? std::string_view("h2") : std::string_view(lane::kAlpn);
    TlsProbe v12 = ProbeTls(ep, TLS1_2_VERSION, TLS1_2_VERSION, false, alpn);
    if (v12.handshake) {
      v_ok = false;
      v_ev.push_back(common::StrCat(what, " ", ep, ": a TLS 1.2-only ClientHello was ACCEPTED (",
                                    v12.version, ")"));
    } else {
      v_ev.push_back(common::StrCat(what, " ", ep, ": a TLS 1.2-only ClientHello was refused (",
                                    v12.error, ")"));
    }
    TlsProbe v13 = ProbeTls(ep, TLS1_3_VERSION, TLS1_3_VERSION, i > 0, alpn);
    if (i == 0) {
      grpc::Status st = CallWithoutCertificate(credential, address);
      const bool refused = st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                           st.error_code() == grpc::StatusCode::PERMISSION_DENIED;
      m_ok = m_ok && refused && v13.handshake;
      m_ev.push_back(!v13.handshake
                         ? common::StrCat(what, " ", ep, ": no TLS 1.3 handshake: ", v13.error)
                         : common::StrCat(what, " ", ep,
                                          ": an Admin call over TLS 1.3 without a client ",
                                          "certificate was ", refused ? "refused" : "NOT refused",
                                          " (", static_cast<int>(st.error_code()), " ",
                                          st.error_message().substr(0, 100),
                                          "); only enrollment works without one"));
    } else {
      // The lane port requires a certificate in the handshake: TLS 1.3 tells
      // the client so with an alert on its first read.
      const bool refused = !v13.answered && v13.error.find("alert") != std::string::npos;
      m_ok = m_ok && refused;
      m_ev.push_back(common::StrCat(what, " ", ep, ": a TLS 1.3 client without a certificate was ",
                                    refused ? "refused" : "NOT refused", " (",
                                    v13.answered ? "it answered" : v13.error, ")"));
    }
    if (i == 0 && v13.handshake) {
      const int64_t now = std::time(nullptr);
      const int64_t left = (v13.cert_not_after - now) / 86400;
      const int64_t lifetime = (v13.cert_not_after - v13.cert_not_before) / 86400;
      const bool ok = v13.cert_not_after > now + 7 * 86400 && lifetime <= 366;
      r->Set("CRY-05", ok ? Status::kPass : Status::kFail,
             {common::StrCat("the server's certificate (", ep, ") is valid for ", left,
                             " more days of ", lifetime,
                             "; the server renews it at start when fewer than 30 remain, and the "
                             "check fails under 7"),
              "workload certificates are renewed at half-life by every agent, client and "
              "admin session (IAM-01 bounds their lifetime)"});
    } else if (i == 0) {
      r->Set("CRY-05", Status::kFail,
             {common::StrCat("no TLS 1.3 handshake with ", ep, ": ", v13.error)});
    }
  }
  if (lane_port == 0) {
    v_ev.push_back("no lane port advertised (lanes off): only the gRPC port listens");
  }
  m_ev.push_back(
      "agents and clients reach the server only on these ports, with certificates it issued");
  r->Set("CRY-03", v_ok ? Status::kPass : Status::kFail, std::move(v_ev));
  r->Set("CRY-04", m_ok ? Status::kPass : Status::kFail, std::move(m_ev));
}

void CheckKeysAtRest(const server::DataDir& dir, const PostureArgs& args, posture::Report* r) {
  std::vector<std::string> ev;
  bool ok = true;
  const std::string kek_path = pki::KekPath(dir.dir);
  auto kek = common::ReadFile(kek_path);
  std::string kek_hex;
  if (!kek.ok()) {
    ok = false;
    ev.push_back(common::StrCat("the key-encryption key ", kek_path,
                                " cannot be read: ", kek.status().message()));
  } else {
    kek_hex = std::string(common::StripWhitespace(*kek));
    const bool aes256 = kek_hex.size() == 64 &&
                        kek_hex.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    ok = ok && aes256;
    ev.push_back(common::StrCat("key-encryption key ", kek_path, ": ",
                                aes256 ? "256 bits (AES-256-GCM)" : "NOT a 256-bit key"));
  }
  int sealed = 0;
  for (const std::string& path :
       {dir.root_key, dir.intermediate_key, dir.server_key, dir.audit_key}) {
    auto bytes = common::ReadFile(path);
    if (!bytes.ok()) {
      ev.push_back(common::StrCat(path, ": not present"));
      continue;
    }
    if (posture::LooksSealed(*bytes)) {
      ++sealed;
    } else {
      ok = false;
      ev.push_back(common::StrCat(path, ": NOT sealed"));
    }
  }
  ev.push_back(common::StrCat(sealed, " private keys in the data directory are sealed (DBSEAL1: ",
                              "AES-256-GCM, a 96-bit nonce, a 128-bit tag, bound to their role)"));
  // Any plaintext private key elsewhere in the data directory, but the admin
  // credential written by `server init` (OPS-02 checks its mode).
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.dir, ec)) {
    if (!e.is_regular_file(ec) || e.path() == dir.admin_credential || e.file_size(ec) > (1 << 20)) {
      continue;
    }
    auto bytes = common::ReadFile(e.path().string());
    if (bytes.ok() && bytes->find("PRIVATE KEY-----") != std::string::npos) {
      ok = false;
      ev.push_back(common::StrCat(e.path().string(), ": a PLAINTEXT private key"));
    }
  }
  r->Set("CRY-01", ok ? Status::kPass : Status::kFail, std::move(ev));
  if (auto age = AgeDays(kek_path)) {
    const bool young = *age <= args.max_kek_age_days;
    r->Set("CRY-02", young ? Status::kPass : Status::kFail,
           {common::StrCat("the key-encryption key was written ", *age,
                           " days ago; the rotation period is ", args.max_kek_age_days, " days"),
            "rotating it means re-sealing the data directory's keys (docs/compliance.md)"});
  } else {
    r->Set("CRY-02", Status::kFail, {common::StrCat("no key-encryption key at ", kek_path)});
  }
}

// Reads the audit records since `from_ms` (all chains on a shared store).
absl::StatusOr<std::vector<audit::Record>> Records(const server::DataDir& dir,
                                                   const server::ServerConfig& config,
                                                   int64_t from_ms) {
  audit::QueryFilter filter;
  filter.from_ms = from_ms;
  return store::IsPostgresLocation(config.store) ? audit::QuerySharedAuditLog(config.store, filter)
                                                 : audit::QueryAuditLog(dir.database, filter);
}

void CheckAuditChain(const server::DataDir& dir, const server::ServerConfig& config,
                     posture::Report* r) {
  if (store::IsPostgresLocation(config.store)) {
    auto roots = common::ReadFile(dir.root_cert);
    auto chains = roots.ok()
                      ? audit::VerifySharedAuditLog(config.store, *roots, false)
                      : absl::StatusOr<std::vector<audit::ChainVerifyResult>>(roots.status());
    if (!chains.ok()) {
      r->Set("LOG-01", Status::kFail,
             {common::StrCat("cannot verify: ", chains.status().message())});
      return;
    }
    std::vector<std::string> ev;
    bool ok = !chains->empty();
    for (const auto& c : *chains) {
      ok = ok && c.ok();
      ev.push_back(
          common::StrCat("replica ", c.replica_id, ": ", c.result.records, " records, ",
                         c.result.ok ? "chain intact" : "TAMPERED: " + c.result.problem,
                         c.key_endorsed ? ", key endorsed by the CA" : ", key NOT endorsed", ", ",
                         c.result.checkpoints, " signed checkpoints verified"));
    }
    r->Set("LOG-01", ok ? Status::kPass : Status::kFail, std::move(ev));
    return;
  }
  auto pem = common::ReadFile(dir.audit_public_key);
  auto v = pem.ok() ? audit::VerifyAuditLog(dir.database, *pem)
                    : absl::StatusOr<audit::VerifyResult>(pem.status());
  if (!v.ok()) {
    r->Set("LOG-01", Status::kFail, {common::StrCat("cannot verify: ", v.status().message())});
    return;
  }
  r->Set("LOG-01", v->ok ? Status::kPass : Status::kFail,
         {v->ok ? common::StrCat("audit verify: ", v->records, " records (seq ", v->first_seq, "..",
                                 v->last_seq, ") chain intact; ", v->checkpoints,
                                 " signed checkpoints",
                                 v->head_verified ? " and the signed head" : "", " verified")
                : common::StrCat("TAMPERED: first bad record seq ", v->first_bad_seq, ": ",
                                 v->problem)});
}

void CheckAuditContent(const server::DataDir& dir, const server::ServerConfig& config,
                       const Drill& drill, const std::string& admin_identity, posture::Report* r) {
  const int64_t week_ago = NowUnixMs() - 7 * 86400 * 1000LL;
  auto records = Records(dir, config, std::min(week_ago, drill.started_unix_ms));
  if (!records.ok()) {
    for (const char* id : {"LOG-02", "LOG-03", "LOG-04"}) {
      r->Set(id, Status::kFail,
             {common::StrCat("cannot read the audit trail: ", records.status().message())});
    }
    return;
  }
  // LOG-02: the drill's own disable, with the identity before and after.
  bool change_logged = false, denial_logged = false;
  uint64_t changes = 0;
  for (const audit::Record& rec : *records) {
    if (rec.activity == "admin_change") {
      ++changes;
    }
    if (rec.time_unix_ms < drill.started_unix_ms) {
      continue;
    }
    // Read without throwing: a record's details are whatever the log holds.
    static const nlohmann::json kNone;
    auto at = [](const nlohmann::json& j, const char* key) -> const nlohmann::json& {
      auto it = j.is_object() ? j.find(key) : j.end();
      return j.is_object() && it != j.end() ? *it : kNone;
    };
    const auto& d = rec.details;
    if (rec.activity == "admin_change" && rec.actor == admin_identity &&
        at(d, "method") == "DisableIdentity" && at(d, "target") == drill.identity &&
        at(at(d, "before"), "enabled") == true && at(at(d, "after"), "enabled") == false) {
      change_logged = true;
    }
    if (rec.activity == "deny" && rec.actor == drill.identity) {
      denial_logged = true;
    }
  }
  if (!drill.ran) {
    r->Set("LOG-02", Status::kFail, {common::StrCat("the drill did not run: ", drill.error)});
  } else {
    r->Set("LOG-02", change_logged ? Status::kPass : Status::kFail,
           {change_logged ? common::StrCat("the drill's disable of ", drill.identity,
                                           " is on record with its before (enabled) and after "
                                           "(disabled) state, by ",
                                           admin_identity)
                          : common::StrCat("the drill's disable of ", drill.identity,
                                           " is NOT in the audit trail with before and after"),
            common::StrCat(changes, " admin changes on record in the last 7 days")});
  }
  // LOG-03: the drill's denied dial, and an alert rule that counts denials.
  std::vector<std::string> ev;
  bool ok =
      drill.denied_code == v1::DIAL_DENIED_POLICY || drill.denied_code == v1::DIAL_DENIED_AGENT;
  ev.push_back(common::StrCat("the drill's dial to ", drill.denied_destination, " was ",
                              ok ? "denied"
                                 : common::StrCat("NOT denied by policy (code ",
                                                  v1::DialCode_Name(drill.denied_code), ")")));
  ok = ok && denial_logged;
  ev.push_back(denial_logged ? "  ... and is on record (activity deny)"
                             : "  ... and is NOT on record");
  std::vector<std::string> rules;
  for (const audit::AlertRule& rule : config.audit.alert_rules) {
    if (posture::CoversDenials(rule)) {
      rules.push_back(
          common::StrCat(rule.name, " (", rule.threshold, " in ", rule.window.count(), " s)"));
    }
  }
  ev.push_back(rules.empty()
                   ? "no alert rule counts denied connections"
                   : common::StrCat("alert rules counting denials: ", common::Join(rules, ", ")));
  ok = ok && !rules.empty();
  r->Set("LOG-03", ok ? Status::kPass : Status::kFail, std::move(ev));
  // LOG-04: what the audit trail holds of the last 7 days, scanned.
  std::string kek_hex;
  if (auto kek = common::ReadFile(pki::KekPath(dir.dir)); kek.ok()) {
    kek_hex = std::string(common::StripWhitespace(*kek));
  }
  std::vector<std::string> found;
  for (const audit::Record& rec : *records) {
    for (const std::string& path : posture::SecretsIn(rec, kek_hex)) {
      if (found.size() < 10) {
        found.push_back(common::StrCat("record seq ", rec.seq, ": ", path));
      }
    }
  }
  std::vector<std::string> sev = {
      common::StrCat(records->size(),
                     " records scanned for private keys, JWTs, bearer tokens, password/secret/"
                     "token fields and the key-encryption key")};
  sev.insert(sev.end(), found.begin(), found.end());
  r->Set("LOG-04", found.empty() ? Status::kPass : Status::kFail, std::move(sev));
}

// "https://host:port/path" -> "host:port" (the scheme's port when none).
std::string UrlHostPort(const std::string& url) {
  const size_t scheme = url.find("://");
  std::string rest = scheme == std::string::npos ? url : url.substr(scheme + 3);
  rest = rest.substr(0, rest.find('/'));
  const bool has_port = rest.rfind(':') != std::string::npos && rest.back() != ']';
  if (has_port) {
    return rest;
  }
  return common::StrCat(rest, url.rfind("https", 0) == 0 ? ":443" : ":80");
}

bool TcpReachable(const std::string& host_port, std::string* error) {
  BIO* bio = BIO_new_connect(host_port.c_str());
  const bool ok = bio != nullptr && BIO_do_connect(bio) > 0;
  if (!ok) {
    *error = OpenSslError();
  }
  BIO_free_all(bio);
  return ok;
}

void CheckAlerting(const server::ServerConfig& config, posture::Report* r) {
  std::vector<std::string> ev = {
      common::StrCat(config.audit.alert_rules.size(), " alert rules in force")};
  bool ok = !config.audit.alert_rules.empty();
  if (config.audit.webhook_url.empty()) {
    ok = false;
    ev.push_back("no alert webhook: alerts reach only the audit trail and the server's log");
  } else {
    const std::string target = UrlHostPort(config.audit.webhook_url);
    std::string error;
    if (TcpReachable(target, &error)) {
      ev.push_back(common::StrCat("the webhook's host ", target, " accepts connections"));
    } else {
      ok = false;
      ev.push_back(common::StrCat("the webhook's host ", target, " is NOT reachable: ", error));
    }
  }
  r->Set("MON-01", ok ? Status::kPass : Status::kFail, std::move(ev));
}

void CheckProcess(const server::DataDir& dir, posture::Report* r) {
  auto procs = FindServerProcesses(dir.dir);
  if (procs.empty()) {
    r->Set("OPS-01", Status::kNotApplicable,
           {common::StrCat("no server process for ", dir.dir,
                           " on this host: run posture where the server runs to check it")});
    return;
  }
  std::vector<std::string> ev;
  bool ok = true;
  for (const auto& p : procs) {
    ok = ok && p.uid != 0;
    ev.push_back(common::StrCat("server process ", p.pid, " runs as uid ", p.uid,
                                p.uid == 0 ? " (ROOT)" : ""));
  }
  r->Set("OPS-01", ok ? Status::kPass : Status::kFail, std::move(ev));
}

void CheckFileModes(const server::DataDir& dir, const std::string& admin_credentials,
                    posture::Report* r) {
  std::vector<std::string> ev;
  bool ok = true;
  int checked = 0;
  auto check = [&](const std::string& path, bool is_dir, bool required) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (required) {
        ok = false;
        ev.push_back(common::StrCat(path, ": missing"));
      }
      return;
    }
    ++checked;
    std::string problem =
        is_dir ? posture::KeyDirModeProblem(st.st_mode) : posture::KeyFileModeProblem(st.st_mode);
    if (!problem.empty()) {
      ok = false;
      ev.push_back(common::StrCat(path, ": ", problem));
    }
  };
  check(dir.dir, true, true);
  check(pki::KekPath(dir.dir), false, true);
  for (const std::string& p : {dir.root_key, dir.intermediate_key, dir.server_key, dir.audit_key,
                               dir.database, dir.admin_credential}) {
    check(p, false, false);
  }
  check(admin_credentials, false, true);
  ev.insert(ev.begin(), common::StrCat(checked,
                                       " files and directories checked (the data directory, "
                                       "the KEK, sealed keys, state.db, admin credentials)"));
  if (ok) {
    ev.push_back("each is readable by its owner only");
  }
  r->Set("OPS-02", ok ? Status::kPass : Status::kFail, std::move(ev));
}

int RunPosture(const PostureArgs& args) {
  server::DataDir dir(args.data_dir);
  auto config = server::LoadConfig(dir.config);
  if (!config.ok()) {
    return Fail(common::StrCat("--data-dir: ", config.status().message()));
  }
  AdminFlags flags;
  flags.credentials = args.credentials;
  auto session = Connect(flags);
  if (!session.ok()) {
    return Fail(
        common::StrCat("cannot reach the server as an admin: ", session.status().message()));
  }
  posture::Report report;
  report.server = session->certs->CurrentAddress();
  report.data_dir = args.data_dir;
  report.generated_unix = std::time(nullptr);
  const std::string admin_identity = session->credential.identity.ToString();

  // The drill first: it leaves its identity disabled, so the identity checks
  // below see it as it will stay.
  Drill drill = RunDrill(*session, args);
  if (drill.ran) {
    const bool fast = drill.cut_ms <= args.max_revocation_ms;
    report.Set(
        "IAM-04", fast ? Status::kPass : Status::kFail,
        {common::StrCat("disabled ", drill.identity, " while it held a live stream: the server ",
                        "ended the stream ", drill.cut_ms, " ms after the disable was sent (the ",
                        "admin call took ", drill.call_ms, " ms); the limit is ",
                        args.max_revocation_ms, " ms"),
         common::StrCat("the stream ended with status ", drill.stream_status),
         common::StrCat(drill.identity, " is left disabled",
                        drill.key_removed ? ", its key removed" : ", its key NOT removed")});
  } else {
    report.Set("IAM-04", Status::kFail,
               {common::StrCat("the revocation drill failed: ", drill.error)});
  }
  CheckCertificateLifetime(args, *config, session->certs->Current(), &report);

  v1::ListIdentitiesResponse ids;
  v1::PolicyInfo policy;
  v1::ListAgentsResponse agents;
  if (absl::Status s = Call(session->stub->ListIdentities(Ctx().get(), {}, &ids)); !s.ok()) {
    return Fail(common::StrCat("cannot list identities: ", s.message()));
  }
  if (absl::Status s = Call(session->stub->GetPolicy(Ctx().get(), {}, &policy)); !s.ok()) {
    return Fail(common::StrCat("cannot read the policy: ", s.message()));
  }
  if (absl::Status s = Call(session->stub->ListAgents(Ctx().get(), {}, &agents)); !s.ok()) {
    return Fail(common::StrCat("cannot list agents: ", s.message()));
  }
  CheckIdentities(args, ids, &report);
  CheckAccess(policy, agents, &report);
  CheckTls(session->credential, session->certs->CurrentAddress(), drill.lane_port, &report);
  CheckKeysAtRest(dir, args, &report);
  CheckAuditChain(dir, *config, &report);
  CheckAuditContent(dir, *config, drill, admin_identity, &report);
  CheckAlerting(*config, &report);
  CheckProcess(dir, &report);
  CheckFileModes(dir, args.credentials, &report);

  const std::string out = args.json ? posture::ToJson(report) : posture::ToMarkdown(report);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return report.AnyFailed() ? kExitFailed : kExitOk;
}

}  // namespace

void RegisterPostureCommand(CLI::App& app, Action* run) {
  auto args = std::make_shared<PostureArgs>();
  auto* cmd = app.add_subcommand(
      "posture",
      "Check a live deployment's security controls and print the evidence (exit 1 on any fail)");
  cmd->add_option("--credentials", args->credentials, "Admin credential file")
      ->required()
      ->envname("DRAWBRIDGE_CREDENTIALS");
  cmd->add_option("--data-dir", args->data_dir, "The server's data directory")->required();
  cmd->add_flag("--json", args->json, "One JSON object instead of Markdown");
  cmd->add_option("--probe-identity", args->probe_identity,
                  "Client identity the revocation drill creates, enrolls and disables")
      ->capture_default_str();
  cmd->add_option("--max-certificate-hours", args->max_certificate_hours,
                  "IAM-01: the longest certificate lifetime that passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 24 * 365));
  cmd->add_option("--max-key-age-days", args->max_key_age_days,
                  "IAM-03: the oldest active enrollment key that passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));
  cmd->add_option("--max-kek-age-days", args->max_kek_age_days,
                  "CRY-02: the oldest key-encryption key that passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 3650));
  cmd->add_option("--max-revocation-ms", args->max_revocation_ms,
                  "IAM-04: the slowest revocation that passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  cmd->callback([=] { *run = [=] { return RunPosture(*args); }; });
}

}  // namespace drawbridge::cli

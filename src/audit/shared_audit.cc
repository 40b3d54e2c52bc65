#include "audit/shared_audit.h"

#include <openssl/x509.h>

#include "audit/internal/postgres_chain.h"
#include "audit/internal/query_chains.h"
#include "audit/internal/verify_chain.h"
#include "common/encoding.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/certs.h"
#include "pki/keys.h"

namespace drawbridge::audit {
namespace {

// Whether `info`'s key is endorsed by an intermediate signed by one of `roots`.
// Empty when it is; the problem otherwise.
std::string EndorsementProblem(const internal::ChainInfo& info,
                               const std::vector<common::X509Ptr>& roots) {
  auto endorser = pki::CertFromPem(info.endorser_cert_pem);
  if (!endorser.ok()) {
    return "its endorsing certificate is unreadable";
  }
  bool chained = false;
  for (const auto& root : roots) {
    EVP_PKEY* root_key = X509_get0_pubkey(root.get());
    if (root_key != nullptr && X509_verify(endorser->get(), root_key) == 1) {
      chained = true;
      break;
    }
  }
  if (!chained) {
    return "its endorsing certificate is not signed by the given root CA (another deployment's, "
           "or forged)";
  }
  EVP_PKEY* endorser_key = X509_get0_pubkey(endorser->get());
  auto alg = endorser_key ? pki::AlgorithmOf(endorser_key) : absl::InternalError("no key");
  auto sig = common::Base64UrlDecode(info.endorsement);
  if (!alg.ok() || !sig ||
      !pki::VerifyJose(endorser_key, *alg,
                       internal::EndorsementMessage(info.replica_id, info.public_key_pem), *sig)
           .ok()) {
    return "its audit key's endorsement does not verify (the key was replaced in the store?)";
  }
  return "";
}

}  // namespace

absl::Status RegisterSharedAuditChain(const std::string& conninfo, const std::string& replica_id,
                                      EVP_PKEY* audit_key, EVP_PKEY* endorser_key,
                                      const std::string& endorser_cert_pem, int64_t now_unix) {
  if (audit_key == nullptr || endorser_key == nullptr) {
    return absl::InvalidArgumentError("a shared audit chain needs the audit key and the CA key");
  }
  internal::ChainInfo info;
  info.replica_id = replica_id;
  ASSIGN_OR_RETURN(info.public_key_pem, pki::PublicKeyToPem(audit_key));
  info.endorser_cert_pem = endorser_cert_pem;
  ASSIGN_OR_RETURN(
      std::string sig,
      pki::SignJose(endorser_key, internal::EndorsementMessage(replica_id, info.public_key_pem)));
  info.endorsement = common::Base64UrlEncode(sig);
  info.created_at = now_unix;
  store::PgSession pg(conninfo);
  return internal::RegisterChain(&pg, info);
}

absl::StatusOr<std::unique_ptr<AuditLog>> OpenSharedAuditLog(const std::string& conninfo,
                                                             const std::string& replica_id,
                                                             AuditLog::Options options) {
  options.replica_id = replica_id;
  return AuditLog::Open(internal::PostgresChainWriter(conninfo, replica_id), std::move(options));
}

std::function<absl::StatusOr<std::unique_ptr<internal::ChainReader>>()> SharedChainSource(
    std::string conninfo, std::string replica_id) {
  return [conninfo = std::move(conninfo),
          replica_id =
              std::move(replica_id)]() -> absl::StatusOr<std::unique_ptr<internal::ChainReader>> {
    return internal::PostgresChainReader(conninfo, replica_id);
  };
}

absl::StatusOr<std::vector<ChainVerifyResult>> VerifySharedAuditLog(const std::string& conninfo,
                                                                    const std::string& roots_pem,
                                                                    bool chain_only) {
  std::vector<common::X509Ptr> roots;
  if (!chain_only) {
    auto parsed = pki::CertsFromPem(roots_pem);
    if (!parsed.ok() || parsed->empty()) {
      return absl::InvalidArgumentError(
          "the root CA certificate (ca.crt of a replica's data directory) is needed to check "
          "the replicas' audit keys; give it, or check only the chains (--chain-only)");
    }
    roots = *std::move(parsed);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<internal::PostgresChains> chains,
                   internal::PostgresChains::Open(conninfo));
  ASSIGN_OR_RETURN(std::vector<internal::ChainInfo> infos, chains->List());
  if (infos.empty()) {
    return absl::NotFoundError("the store holds no audit chains yet");
  }
  std::vector<ChainVerifyResult> out;
  for (const internal::ChainInfo& info : infos) {
    ChainVerifyResult r;
    r.replica_id = info.replica_id;
    common::PKeyPtr key;
    if (!chain_only) {
      r.key_problem = EndorsementProblem(info, roots);
      r.key_endorsed = r.key_problem.empty();
      auto parsed = ParseAuditPublicKey(info.public_key_pem);
      if (parsed.ok()) {
        key = *std::move(parsed);
      } else if (r.key_endorsed) {
        r.key_endorsed = false;
        r.key_problem = std::string(parsed.status().message());
      }
    }
    std::unique_ptr<internal::ChainReader> reader = chains->Reader(info.replica_id);
    ASSIGN_OR_RETURN(r.result, VerifyChain(reader.get(), key.get(), info.replica_id));
    if (!chain_only && key == nullptr) {
      // No usable key: the signatures could not be checked, which is a failure
      // when they were asked for.
      r.result.signatures_checked = true;
    }
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<Record>> QuerySharedAuditLog(const std::string& conninfo,
                                                        const QueryFilter& filter,
                                                        const std::string& only_replica) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::PostgresChains> chains,
                   internal::PostgresChains::Open(conninfo));
  ASSIGN_OR_RETURN(std::vector<internal::ChainInfo> infos, chains->List());
  std::vector<std::unique_ptr<internal::ChainReader>> readers;
  std::vector<internal::ChainReader*> raw;
  for (const internal::ChainInfo& info : infos) {
    if (!only_replica.empty() && info.replica_id != only_replica) {
      continue;
    }
    readers.push_back(chains->Reader(info.replica_id));
    raw.push_back(readers.back().get());
  }
  return QueryChains(raw, filter);
}

absl::StatusOr<uint64_t> LastSharedAuditSeq(const std::string& conninfo,
                                            const std::string& replica_id) {
  return internal::PostgresChainReader(conninfo, replica_id)->LastSeq();
}

}  // namespace drawbridge::audit

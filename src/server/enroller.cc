#include "server/enroller.h"

#include <algorithm>

#include "common/status_macros.h"
#include "common/strings.h"
#include "pki/identity.h"
#include "pki/jwt.h"
#include "pki/keys.h"
#include "pki/workload_token.h"
#include "pki/workload_trust.h"

namespace drawbridge::server {
namespace {

// Before the signature is verified the caller has proven nothing, so it learns
// nothing either: unknown key, wrong identity and bad signature look alike.
constexpr char kNotAccepted[] = "enrollment refused: credential not accepted";

// A refusal as the caller hears it and the operator reads it, filled into
// `refusal` (if given) with the identity claimed so far.
Enroller::Refuse RefuseInto(EnrollmentRefusal* refusal, const std::string* claimed) {
  return [refusal, claimed](absl::StatusCode code, std::string_view reason_code, std::string detail,
                            std::string public_message) -> absl::Status {
    if (refusal != nullptr) {
      *refusal = EnrollmentRefusal{code, detail, std::move(public_message), *claimed,
                                   std::string(reason_code)};
    }
    return absl::Status(code, detail);
  };
}

// OK if the peer's address is within the identity's CIDRs (any, if it has
// none); otherwise the source_not_allowed refusal.
absl::Status RefuseOutsideCidrs(const store::IdentityRecord& record,
                                std::optional<common::IpAddress> peer,
                                const Enroller::Refuse& refuse) {
  if (record.cidrs.empty()) {
    return absl::OkStatus();
  }
  for (const auto& text : record.cidrs) {
    auto cidr = common::ParseCidr(text);
    if (cidr.ok() && peer && cidr->Contains(*peer)) {
      return absl::OkStatus();
    }
  }
  return refuse(absl::StatusCode::kPermissionDenied, "source_not_allowed",
                common::StrCat("source address ", peer ? peer->ToString() : "unknown",
                               " is outside the CIDRs of ", record.identity),
                "enrollment refused: source address not allowed for this identity");
}

// The public key of the CSR (whose signature proves possession of the TLS
// key), or the bad_csr refusal.
absl::StatusOr<common::PKeyPtr> CsrKeyOrRefuse(std::string_view csr_der,
                                               const Enroller::Refuse& refuse) {
  auto key = pki::PublicKeyFromCsrDer(csr_der);
  if (!key.ok()) {
    return refuse(absl::StatusCode::kInvalidArgument, "bad_csr",
                  std::string(key.status().message()), std::string(key.status().message()));
  }
  return std::move(*key);
}

}  // namespace

absl::StatusOr<EnrollmentResult> Enroller::Enroll(std::string_view token, std::string_view csr_der,
                                                  std::optional<common::IpAddress> peer,
                                                  EnrollmentRefusal* refusal) {
  std::string claimed;
  Refuse refuse = RefuseInto(refusal, &claimed);

  auto parsed = pki::ParseEnrollmentToken(token);
  if (!parsed.ok()) {
    // Parse errors describe only the caller's own input.
    return refuse(absl::StatusCode::kInvalidArgument, "malformed_token",
                  std::string(parsed.status().message()), std::string(parsed.status().message()));
  }
  const pki::EnrollmentClaims& claims = parsed->claims;
  claimed = claims.subject.substr(0, 128);
  auto identity = pki::ParseIdentity(claims.subject);
  if (!identity.ok()) {
    return refuse(absl::StatusCode::kInvalidArgument, "malformed_token",
                  common::StrCat("token subject: ", identity.status().message()),
                  "malformed enrollment token: \"sub\" is not KIND/NAME");
  }

  // 1. Signature, with the registered key named by `kid`, which must belong to `sub`.
  auto key = directory_->GetKey(parsed->key_id);
  // A workload trust is not a signing key: its tokens go through EnrollWorkload.
  if (!key.ok() || key->algorithm == pki::kWorkloadTrustAlgorithm) {
    return refuse(absl::StatusCode::kPermissionDenied, "unknown_key",
                  common::StrCat("unknown key id ", parsed->key_id.substr(0, 64)), kNotAccepted);
  }
  if (key->identity != claims.subject) {
    return refuse(absl::StatusCode::kPermissionDenied, "key_identity_mismatch",
                  common::StrCat("key ", key->key_id, " belongs to ", key->identity, ", not ",
                                 claims.subject),
                  kNotAccepted);
  }
  auto public_key = pki::PublicKeyFromPem(key->public_key_pem);
  if (!public_key.ok()) {
    return refuse(absl::StatusCode::kInternal, "internal",
                  common::StrCat("stored key ", key->key_id, " unreadable"),
                  "enrollment failed: server error");
  }
  if (absl::Status s = pki::VerifyTokenSignature(*parsed, public_key->get()); !s.ok()) {
    return refuse(absl::StatusCode::kPermissionDenied, "bad_signature",
                  common::StrCat("signature check failed for key ", key->key_id, ": ", s.message()),
                  kNotAccepted);
  }

  // From here on the caller holds the credential key: tell them what is wrong.
  // 2. Audience and time.
  if (claims.audience != config_.trust_domain) {
    return refuse(
        absl::StatusCode::kPermissionDenied, "wrong_audience",
        common::StrCat("audience \"", claims.audience.substr(0, 64), "\" is not this trust domain"),
        "enrollment refused: token audience is not this server's trust domain");
  }
  const int64_t now = clock_->NowUnix();
  const int64_t skew = config_.max_clock_skew_seconds;
  if (claims.expires_at <= now - skew) {
    return refuse(absl::StatusCode::kUnauthenticated, "expired",
                  common::StrCat("token expired at ", claims.expires_at, " (now ", now, ")"),
                  "enrollment refused: token expired (check this host's clock)");
  }
  if (claims.issued_at > now + skew || (claims.not_before != 0 && claims.not_before > now + skew)) {
    return refuse(absl::StatusCode::kUnauthenticated, "not_yet_valid",
                  common::StrCat("token not valid yet (iat ", claims.issued_at, ", nbf ",
                                 claims.not_before, ", now ", now, ")"),
                  "enrollment refused: token not valid yet (check this host's clock)");
  }
  if (claims.expires_at - claims.issued_at > config_.max_token_lifetime_seconds ||
      claims.expires_at <= claims.issued_at) {
    return refuse(absl::StatusCode::kUnauthenticated, "lifetime_too_long",
                  common::StrCat("token lifetime ", claims.expires_at - claims.issued_at,
                                 " s is outside (0, ", config_.max_token_lifetime_seconds, "]"),
                  "enrollment refused: token lifetime too long (at most 5 minutes)");
  }

  // 3. Identity, key and source address.
  auto record = directory_->GetIdentity(claims.subject);
  if (!record.ok()) {
    return refuse(absl::StatusCode::kPermissionDenied, "unknown_identity",
                  common::StrCat("identity ", claims.subject, " not found"), kNotAccepted);
  }
  if (!record->enabled) {
    return refuse(absl::StatusCode::kPermissionDenied, "identity_disabled",
                  common::StrCat("identity ", claims.subject, " is disabled"),
                  "enrollment refused: identity is disabled");
  }
  if (key->removed_at != 0) {
    return refuse(absl::StatusCode::kPermissionDenied, "key_removed",
                  common::StrCat("key ", key->key_id, " of ", claims.subject, " was removed at ",
                                 key->removed_at),
                  "enrollment refused: credential key has been removed");
  }
  RETURN_IF_ERROR(RefuseOutsideCidrs(*record, peer, refuse));

  // 4. The CSR proves possession of the TLS key; `cnf` binds that key to this token.
  ASSIGN_OR_RETURN(common::PKeyPtr tls_key, CsrKeyOrRefuse(csr_der, refuse));
  ASSIGN_OR_RETURN(std::string thumbprint, pki::JwkThumbprint(tls_key.get()));
  if (thumbprint != claims.tls_key_thumbprint) {
    return refuse(absl::StatusCode::kPermissionDenied, "cnf_mismatch",
                  "cnf.jkt does not match the key in the certificate request",
                  "enrollment refused: token is bound to a different TLS key");
  }

  // 5. Single use. Last, so that a refused request does not burn the token id.
  // Remembered until the token could no longer pass the time check anyway.
  absl::Status consumed = store_->ConsumeTokenId(
      common::StrCat(claims.subject, "|", claims.token_id), claims.expires_at + skew, now);
  if (absl::IsAlreadyExists(consumed)) {
    return refuse(absl::StatusCode::kPermissionDenied, "replayed",
                  common::StrCat("token id replayed for ", claims.subject),
                  "enrollment refused: token already used");
  }
  if (!consumed.ok()) {
    return refuse(absl::StatusCode::kUnavailable, "storage_unavailable",
                  common::StrCat("cannot record token id: ", consumed.message()),
                  "enrollment failed: server storage unavailable, retry");
  }

  // 6. Issue.
  return Issue(claims.subject, *key, tls_key.get(), now, refuse);
}

absl::StatusOr<EnrollmentResult> Enroller::Issue(const std::string& subject,
                                                 const store::KeyRecord& key, EVP_PKEY* tls_key,
                                                 int64_t now, const Refuse& refuse) {
  ASSIGN_OR_RETURN(pki::Identity identity, pki::ParseIdentity(subject));
  const int64_t skew = config_.max_clock_skew_seconds;
  pki::LeafSpec spec;
  spec.public_key = tls_key;
  spec.common_name = subject;
  spec.key_id = key.key_id;
  spec.spiffe_id = identity.SpiffeId(config_.trust_domain);
  // Backdated by the tolerated skew: a peer whose clock is behind ours (within
  // max_clock_skew_seconds) must not find its new certificate "not yet valid".
  // The end stays now + lifetime, so the certificate is usable no longer.
  spec.not_before = now - skew;
  spec.not_after = now + config_.certificate_lifetime_seconds;
  spec.client_auth = true;
  auto cert = ca_->Issue(spec);
  if (!cert.ok()) {
    return refuse(absl::StatusCode::kInternal, "internal",
                  common::StrCat("cannot issue certificate: ", cert.status().message()),
                  "enrollment failed: server error");
  }
  ASSIGN_OR_RETURN(pki::CertificateInfo info, pki::InspectCertificate(cert->get()));
  absl::Status recorded = store_->RecordCertificate(
      store::CertificateRecord{info.serial, subject, key.key_id, spec.not_before, spec.not_after});
  if (!recorded.ok()) {
    return refuse(absl::StatusCode::kUnavailable, "storage_unavailable",
                  common::StrCat("cannot record certificate: ", recorded.message()),
                  "enrollment failed: server storage unavailable, retry");
  }
  EnrollmentResult result;
  result.identity = subject;
  result.key_id = key.key_id;
  result.spiffe_id = spec.spiffe_id;
  result.serial = info.serial;
  result.chain_pem = ca_->ChainPem(cert->get());
  result.trust_bundle_pem = ca_->TrustBundlePem();
  result.not_after = spec.not_after;
  return result;
}

absl::StatusOr<EnrollmentResult> Enroller::EnrollWorkload(std::string_view identity_text,
                                                          std::string_view token,
                                                          std::string_view csr_der,
                                                          std::optional<common::IpAddress> peer,
                                                          EnrollmentRefusal* refusal) {
  std::string claimed(identity_text.substr(0, 128));
  Refuse refuse = RefuseInto(refusal, &claimed);
  auto parsed = pki::ParseWorkloadToken(token);
  if (!parsed.ok()) {
    return refuse(absl::StatusCode::kInvalidArgument, "malformed_token",
                  std::string(parsed.status().message()), std::string(parsed.status().message()));
  }
  const pki::WorkloadClaims& claims = parsed->claims;
  auto identity = pki::ParseIdentity(identity_text);
  if (!identity.ok()) {
    return refuse(absl::StatusCode::kInvalidArgument, "malformed_token",
                  common::StrCat("identity: ", identity.status().message()),
                  "enrollment refused: the identity is not KIND/NAME");
  }
  const std::string subject = identity->ToString();

  // 1. The identity's trust in this token's issuer. Until the signature is
  // checked the caller has proven nothing and learns nothing (kNotAccepted).
  auto record = directory_->GetIdentity(subject);
  if (!record.ok()) {
    return refuse(absl::StatusCode::kPermissionDenied, "unknown_identity",
                  common::StrCat("identity ", subject, " not found"), kNotAccepted);
  }
  std::optional<store::KeyRecord> trust_key;
  std::optional<pki::WorkloadTrust> trust;
  bool any_trust = false;
  for (const auto& k : directory_->ListKeys(subject)) {
    if (k.algorithm != pki::kWorkloadTrustAlgorithm || k.removed_at != 0) {
      continue;
    }
    any_trust = true;
    auto t = pki::ParseWorkloadTrust(k.public_key_pem);
    if (t.ok() && t->issuer == claims.issuer && t->subject == claims.subject &&
        std::find(claims.audiences.begin(), claims.audiences.end(), t->audience) !=
            claims.audiences.end()) {
      trust_key = k;
      trust = std::move(*t);
      break;
    }
  }
  if (!trust) {
    return refuse(
        absl::StatusCode::kPermissionDenied, "no_workload_trust",
        any_trust ? common::StrCat("no workload trust of ", subject, " matches issuer \"",
                                   claims.issuer.substr(0, 200), "\", subject \"",
                                   claims.subject.substr(0, 200), "\" and the token's audiences")
                  : common::StrCat(subject, " has no workload trust"),
        kNotAccepted);
  }

  // 2. The signature, with the issuer's key named by `kid`.
  auto jwk = jwks_->Key(*trust, parsed->key_id);
  if (absl::IsNotFound(jwk.status())) {
    return refuse(absl::StatusCode::kPermissionDenied, "unknown_key",
                  common::StrCat("issuer ", trust->issuer, " publishes no key \"",
                                 parsed->key_id.substr(0, 64), "\""),
                  kNotAccepted);
  }
  if (!jwk.ok()) {
    return refuse(absl::StatusCode::kUnavailable, "issuer_unavailable",
                  common::StrCat("issuer ", trust->issuer, ": ", jwk.status().message()),
                  "enrollment failed: the token issuer's keys are unavailable, retry");
  }
  if (absl::Status s = pki::VerifyWorkloadSignature(*parsed, *jwk); !s.ok()) {
    return refuse(absl::StatusCode::kPermissionDenied, "bad_signature",
                  common::StrCat("workload token signature check failed (issuer ", trust->issuer,
                                 ", key ", parsed->key_id.substr(0, 64), "): ", s.message()),
                  kNotAccepted);
  }

  // From here on the token is the issuer's: say what is wrong.
  // 3. Time.
  const int64_t now = clock_->NowUnix();
  const int64_t skew = config_.max_clock_skew_seconds;
  if (claims.expires_at <= now - skew) {
    return refuse(
        absl::StatusCode::kUnauthenticated, "expired",
        common::StrCat("workload token expired at ", claims.expires_at, " (now ", now, ")"),
        "enrollment refused: token expired (is the token file being refreshed?)");
  }
  if ((claims.not_before != 0 && claims.not_before > now + skew) ||
      (claims.issued_at != 0 && claims.issued_at > now + skew)) {
    return refuse(absl::StatusCode::kUnauthenticated, "not_yet_valid",
                  common::StrCat("workload token not valid yet (nbf ", claims.not_before, ", iat ",
                                 claims.issued_at, ", now ", now, ")"),
                  "enrollment refused: token not valid yet (check this host's clock)");
  }
  if (claims.expires_at - now > kMaxWorkloadTokenLifetime) {
    return refuse(absl::StatusCode::kUnauthenticated, "lifetime_too_long",
                  common::StrCat("workload token valid for ", claims.expires_at - now,
                                 " s more (at most ", kMaxWorkloadTokenLifetime, ")"),
                  "enrollment refused: token lifetime too long (at most 24 hours; request a "
                  "shorter-lived token)");
  }

  // 4. Identity state and source address.
  if (!record->enabled) {
    return refuse(absl::StatusCode::kPermissionDenied, "identity_disabled",
                  common::StrCat("identity ", subject, " is disabled"),
                  "enrollment refused: identity is disabled");
  }
  RETURN_IF_ERROR(RefuseOutsideCidrs(*record, peer, refuse));

  // 5. The CSR proves possession of the TLS key the certificate is issued for.
  ASSIGN_OR_RETURN(common::PKeyPtr tls_key, CsrKeyOrRefuse(csr_der, refuse));
  return Issue(subject, *trust_key, tls_key.get(), now, refuse);
}

}  // namespace drawbridge::server

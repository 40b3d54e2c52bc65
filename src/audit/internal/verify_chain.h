#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "audit/internal/chain.h"
#include "audit/verify.h"
#include "common/openssl_util.h"

// Verification of one chain, wherever it is stored (see VerifyAuditLog for what
// is checked). Shared by the single-node and the replicated audit trails.
namespace drawbridge::audit {

// `replica`: the chain is that replica's in a shared store, and every record
// must name it in details.replica (empty: a single node's chain). `key` null:
// the chain only.
absl::StatusOr<VerifyResult> VerifyChain(internal::ChainReader* chain, EVP_PKEY* key,
                                         const std::string& replica);

// An ES256 or Ed25519 public key in PEM; InvalidArgument otherwise.
absl::StatusOr<common::PKeyPtr> ParseAuditPublicKey(const std::string& pem);

}  // namespace drawbridge::audit

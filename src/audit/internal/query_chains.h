#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "audit/internal/chain.h"
#include "audit/query.h"

namespace drawbridge::audit {

// The records of `chains` that match `filter`, each chain in seq order; with
// several chains (a shared store's replicas) merged into one timeline by time,
// then replica, then seq. `filter.limit` applies to the merged result.
absl::StatusOr<std::vector<Record>> QueryChains(const std::vector<internal::ChainReader*>& chains,
                                                const QueryFilter& filter);

}  // namespace drawbridge::audit

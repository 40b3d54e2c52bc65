#pragma once

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace drawbridge::common {

// Reads a whole file. Fails with NotFound or an error naming the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to `path` atomically (temp file in the same directory, fsync,
// rename, fsync of the directory) with permission bits `mode`. The temp file is
// created with `mode` already, so secrets are never briefly world-readable.
absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode);

// Creates `path` (and parents) with mode 0700 if missing.
absl::Status EnsurePrivateDir(const std::string& path);

bool PathExists(const std::string& path);

// Returns the permission bits of `path`.
absl::StatusOr<mode_t> FileMode(const std::string& path);

std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace drawbridge::common

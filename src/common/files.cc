#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/random.h"
#include "common/strings.h"

namespace drawbridge::common {
namespace {

absl::Status ErrnoStatus(const std::string& what, const std::string& path) {
  int err = errno;
  std::string msg = StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) {
    return absl::NotFoundError(msg);
  }
  if (err == EACCES || err == EPERM) {
    return absl::PermissionDeniedError(msg);
  }
  return absl::InternalError(msg);
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoStatus("cannot write", path);
    }
    off += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus("cannot open", path);
  }
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      absl::Status s = ErrnoStatus("cannot read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  std::filesystem::path target(path);
  std::filesystem::path dir = target.parent_path();
  if (dir.empty()) {
    dir = ".";
  }
  std::string tmp =
      (dir / StrCat(".", target.filename().string(), ".", RandomHex(6), ".tmp")).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return ErrnoStatus("cannot create", tmp);
  }
  // open() applies the umask; make the bits exactly what was asked.
  if (::fchmod(fd, mode) != 0) {
    absl::Status s = ErrnoStatus("cannot chmod", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && ::fsync(fd) != 0) {
    s = ErrnoStatus("cannot fsync", tmp);
  }
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus("cannot rename into", path);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::Status EnsurePrivateDir(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::OkStatus();
  }
  std::filesystem::path p(path);
  if (p.has_parent_path() && !p.parent_path().empty()) {
    std::filesystem::create_directories(p.parent_path(), ec);
  }
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus("cannot create directory", path);
  }
  return absl::OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<mode_t> FileMode(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus("cannot stat", path);
  }
  return st.st_mode & 07777;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace drawbridge::common

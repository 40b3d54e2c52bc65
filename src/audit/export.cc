#include "audit/export.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "audit/internal/chain.h"
#include "audit/internal/conn.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace drawbridge::audit {
namespace {

using internal::Stmt;

constexpr char kCursorSchema[] =
    "CREATE TABLE IF NOT EXISTS audit_export_cursors(sink TEXT PRIMARY KEY, seq INTEGER NOT "
    "NULL, updated_ms INTEGER NOT NULL)";

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// RFC 5424 PRINTUSASCII without spaces, at most `max` characters; "-" if empty.
std::string SyslogToken(std::string_view text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) {
      break;
    }
    out.push_back(c > 32 && c < 127 ? c : '_');
  }
  return out.empty() ? "-" : out;
}

// SD-PARAM value escaping (RFC 5424 §6.3.3).
std::string SdEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\' || c == ']') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  return out;
}

// Where a target's records go. Open may fail (target down); Write delivers a
// batch; Settled says whether everything written so far is known to be held.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual absl::Status Open() = 0;
  virtual absl::Status Write(const std::vector<Record>& records) = 0;
  // kOk: all written records are held. kPending: not known yet, ask later.
  // Otherwise the connection is gone and unsettled records must be re-sent.
  enum class Settle { kOk, kPending, kLost };
  virtual Settle Settled(std::chrono::steady_clock::time_point last_write) = 0;
  virtual void Close() = 0;
};

class JsonlFileSink final : public Sink {
 public:
  explicit JsonlFileSink(const ExportTarget& t) : t_(t) {}
  ~JsonlFileSink() override { Close(); }

  absl::Status Open() override {
    if (fd_ >= 0) {
      return absl::OkStatus();
    }
    fd_ = ::open(t_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      return absl::UnavailableError(
          common::StrCat("cannot open ", t_.path, ": ", std::strerror(errno)));
    }
    size_ = static_cast<uint64_t>(::lseek(fd_, 0, SEEK_END));
    return absl::OkStatus();
  }

  absl::Status Write(const std::vector<Record>& records) override {
    std::string chunk;
    for (const Record& r : records) {
      std::string line = ToJsonLine(r);
      line.push_back('\n');
      if (size_ + chunk.size() + line.size() > t_.max_bytes && size_ + chunk.size() > 0) {
        RETURN_IF_ERROR(Flush(&chunk));
        RETURN_IF_ERROR(Rotate());
      }
      chunk += line;
    }
    return Flush(&chunk);
  }

  Settle Settled(std::chrono::steady_clock::time_point) override { return Settle::kOk; }

  void Close() override {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  absl::Status Flush(std::string* chunk) {
    std::string_view rest = *chunk;
    while (!rest.empty()) {
      ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return absl::UnavailableError(
            common::StrCat("cannot write ", t_.path, ": ", std::strerror(errno)));
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
    size_ += chunk->size();
    chunk->clear();
    if (::fdatasync(fd_) != 0) {
      return absl::UnavailableError(
          common::StrCat("cannot sync ", t_.path, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  // PATH -> PATH.1 -> ... -> PATH.N (dropped).
  absl::Status Rotate() {
    Close();
    std::error_code ec;
    for (int i = t_.max_files; i >= 1; --i) {
      std::string from = i == 1 ? t_.path : common::StrCat(t_.path, ".", i - 1);
      std::string to = common::StrCat(t_.path, ".", i);
      if (std::filesystem::exists(from, ec)) {
        std::filesystem::rename(from, to, ec);
        if (ec) {
          return absl::UnavailableError(
              common::StrCat("cannot rotate ", from, " to ", to, ": ", ec.message()));
        }
      }
    }
    size_ = 0;
    return Open();
  }

  const ExportTarget t_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

class StdoutSink final : public Sink {
 public:
  absl::Status Open() override { return absl::OkStatus(); }
  absl::Status Write(const std::vector<Record>& records) override {
    std::string chunk;
    for (const Record& r : records) {
      chunk += ToJsonLine(r);
      chunk.push_back('\n');
    }
    if (std::fwrite(chunk.data(), 1, chunk.size(), stdout) != chunk.size() ||
        std::fflush(stdout) != 0) {
      return absl::UnavailableError("cannot write to stdout");
    }
    return absl::OkStatus();
  }
  Settle Settled(std::chrono::steady_clock::time_point) override { return Settle::kOk; }
  void Close() override {}
};

class SyslogSink final : public Sink {
 public:
  SyslogSink(const ExportTarget& t, std::chrono::milliseconds settle) : t_(t), settle_(settle) {
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    hostname_ = host;
  }

  absl::Status Open() override {
    if (conn_) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(conn_, internal::Conn::Dial(internal::ConnOptions{
                                .address = t_.address,
                                .tls = t_.tls,
                                .ca_file = t_.ca_file,
                                .server_name = t_.server_name,
                            }));
    return absl::OkStatus();
  }

  absl::Status Write(const std::vector<Record>& records) override {
    // A receiver that went away since the last batch: do not write into the void.
    if (conn_->PeerClosed()) {
      Close();
      return absl::UnavailableError("the syslog receiver closed the connection");
    }
    std::string chunk;
    for (const Record& r : records) {
      chunk += FrameOctetCounted(FormatSyslog(r, hostname_, t_.app_name, ::getpid()));
    }
    absl::Status s = conn_->WriteAll(chunk);
    if (!s.ok()) {
      Close();
    }
    return s;
  }

  Settle Settled(std::chrono::steady_clock::time_point last_write) override {
    if (!conn_ || conn_->PeerClosed()) {
      Close();
      return Settle::kLost;
    }
    return std::chrono::steady_clock::now() - last_write >= settle_ ? Settle::kOk
                                                                    : Settle::kPending;
  }

  void Close() override { conn_.reset(); }

 private:
  const ExportTarget t_;
  const std::chrono::milliseconds settle_;
  std::string hostname_;
  std::unique_ptr<internal::Conn> conn_;
};

}  // namespace

std::string ExportTarget::Name() const {
  switch (type) {
    case Type::kJsonl:
      return common::StrCat("jsonl:", path);
    case Type::kStdout:
      return "stdout";
    case Type::kSyslog:
      return common::StrCat(tls ? "syslog+tls://" : "syslog+tcp://", address);
  }
  return "";
}

absl::Status ValidateExportTarget(const ExportTarget& t) {
  switch (t.type) {
    case ExportTarget::Type::kJsonl:
      if (t.path.empty()) {
        return absl::InvalidArgumentError("audit export jsonl: `path` is required");
      }
      if (t.max_bytes < 4096 || t.max_files < 1 || t.max_files > 1000) {
        return absl::InvalidArgumentError(
            "audit export jsonl: max_bytes must be >= 4096 and max_files between 1 and 1000");
      }
      return absl::OkStatus();
    case ExportTarget::Type::kStdout:
      return absl::OkStatus();
    case ExportTarget::Type::kSyslog: {
      std::string host, port;
      RETURN_IF_ERROR(internal::SplitHostPort(t.address, &host, &port));
      if (t.app_name.empty() || t.app_name.size() > 48) {
        return absl::InvalidArgumentError("audit export syslog: app_name must be 1-48 characters");
      }
      if (!t.tls && (!t.ca_file.empty() || !t.server_name.empty())) {
        return absl::InvalidArgumentError(
            "audit export syslog: ca_file and server_name need `tls: true`");
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown audit export type");
}

std::string FormatSyslog(const Record& r, const std::string& hostname, const std::string& app_name,
                         int pid) {
  constexpr int kFacilityLogAudit = 13;
  int severity = 6;  // informational
  if (r.class_uid == kClassDetectionFinding) {
    severity = 1;  // alert
  } else if (r.outcome == kOutcomeFailure) {
    severity = 4;  // warning
  }
  return common::StrCat("<", kFacilityLogAudit * 8 + severity, ">1 ", FormatTimeUtc(r.time_unix_ms),
                        " ", SyslogToken(hostname, 255), " ", SyslogToken(app_name, 48), " ", pid,
                        " ", SyslogToken(r.activity, 32), " [drawbridge@32473 seq=\"", r.seq,
                        "\" class_uid=\"", r.class_uid, "\" outcome=\"", SdEscape(r.outcome),
                        "\" hash=\"", SdEscape(r.hash), "\"] ", ToJsonLine(r));
}

std::string FrameOctetCounted(const std::string& message) {
  return common::StrCat(message.size(), " ", message);
}

// One target's thread: follows the log after its cursor.
class Exporter::Worker {
 public:
  Worker(std::string db_path, ExportTarget target, Options options)
      : db_path_(std::move(db_path)), target_(std::move(target)), options_(options) {
    if (target_.type == ExportTarget::Type::kJsonl) {
      sink_ = std::make_unique<JsonlFileSink>(target_);
    } else if (target_.type == ExportTarget::Type::kStdout) {
      sink_ = std::make_unique<StdoutSink>();
    } else {
      sink_ = std::make_unique<SyslogSink>(target_, options_.settle);
    }
  }

  absl::Status Init() {
    ASSIGN_OR_RETURN(db_, internal::OpenDb(db_path_, /*read_only=*/false));
    RETURN_IF_ERROR(internal::Exec(db_.get(), kCursorSchema));
    Stmt s(db_.get(), "SELECT seq FROM audit_export_cursors WHERE sink=?");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, target_.Name());
    uint64_t cursor = 0;
    if (s.Step() == SQLITE_ROW) {
      cursor = static_cast<uint64_t>(s.Int(0));
    }
    if (!options_.source) {
      chain_ = internal::SqliteChainReaderOn(db_.get());
    }
    absl::MutexLock lock(&mu_);
    acked_ = cursor;
    return absl::OkStatus();
  }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  ~Worker() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  void Notify() {
    absl::MutexLock lock(&mu_);
    notified_ = true;
  }

  TargetStatus Status() const {
    absl::MutexLock lock(&mu_);
    return TargetStatus{target_.Name(), acked_, connected_, last_error_};
  }

 private:
  bool Wake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return notified_ || stopping_; }

  // Waits up to `d` for new records or stop; returns false when stopping.
  bool WaitFor(std::chrono::milliseconds d) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &Worker::Wake), absl::Milliseconds(d.count()));
    notified_ = false;
    return !stopping_;
  }

  absl::StatusOr<std::vector<Record>> ReadAfter(uint64_t seq) {
    if (chain_ == nullptr) {
      ASSIGN_OR_RETURN(chain_, options_.source());
    }
    auto records = chain_->ReadAfter(seq, options_.batch);
    if (!records.ok()) {
      chain_.reset();  // opened again on the next attempt
    }
    return records;
  }

  absl::Status SaveCursor(uint64_t seq) {
    Stmt s(db_.get(),
           "INSERT INTO audit_export_cursors(sink, seq, updated_ms) VALUES(?,?,?) "
           "ON CONFLICT(sink) DO UPDATE SET seq=excluded.seq, updated_ms=excluded.updated_ms");
    RETURN_IF_ERROR(s.Prepared());
    s.Bind(1, target_.Name()).Bind(2, static_cast<int64_t>(seq)).Bind(3, WallMs());
    return s.Run("saving the export cursor");
  }

  void SetError(const absl::Status& s) {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    if (last_error_ != s.message()) {
      common::LogWarn("audit.export_failed", {{"target", target_.Name()},
                                              {"error", std::string(s.message())},
                                              {"effect", "records wait in the store; retrying"}});
    }
    last_error_ = std::string(s.message());
  }

  void Acked(uint64_t seq) {
    absl::Status s = SaveCursor(seq);
    absl::MutexLock lock(&mu_);
    acked_ = seq;
    if (!s.ok()) {
      last_error_ = std::string(s.message());
    }
  }

  void Loop() {
    internal::BlockSigpipeInThisThread();
    std::mt19937_64 rng(std::random_device{}());
    std::chrono::milliseconds backoff(250);
    uint64_t sent;  // last seq written to the sink, possibly not settled
    {
      absl::MutexLock lock(&mu_);
      sent = acked_;
    }
    auto last_write = std::chrono::steady_clock::now();
    auto retry_later = [&](const absl::Status& s) {
      SetError(s);
      sink_->Close();
      {
        absl::MutexLock lock(&mu_);
        sent = acked_;  // re-send what was not settled
      }
      std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
      auto wait = std::chrono::milliseconds(jitter(rng));
      backoff = std::min(backoff * 2, options_.max_backoff);
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(wait.count()));
    };
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          break;
        }
      }
      if (absl::Status s = sink_->Open(); !s.ok()) {
        retry_later(s);
        continue;
      }
      {
        absl::MutexLock lock(&mu_);
        if (!connected_ && !last_error_.empty()) {
          common::LogInfo("audit.export_resumed",
                          {{"target", target_.Name()}, {"after_seq", common::StrCat(acked_)}});
        }
        connected_ = true;
        last_error_.clear();
      }
      uint64_t acked;
      {
        absl::MutexLock lock(&mu_);
        acked = acked_;
      }
      if (sent > acked) {
        Sink::Settle settle = sink_->Settled(last_write);
        if (settle == Sink::Settle::kOk) {
          Acked(sent);
        } else if (settle == Sink::Settle::kLost) {
          retry_later(absl::UnavailableError("the receiver went away; re-sending"));
          continue;
        }
      }
      auto records = ReadAfter(sent);
      if (!records.ok()) {
        retry_later(records.status());
        continue;
      }
      if (records->empty()) {
        // Nothing new: wait, but come back soon while a write is settling.
        if (!WaitFor(sent > acked ? options_.settle / 4 : options_.poll)) {
          break;
        }
        continue;
      }
      if (absl::Status s = sink_->Write(*records); !s.ok()) {
        retry_later(s);
        continue;
      }
      backoff = std::chrono::milliseconds(250);
      sent = records->back().seq;
      last_write = std::chrono::steady_clock::now();
      if (sink_->Settled(last_write) == Sink::Settle::kOk) {
        Acked(sent);
      }
    }
    // Stopping: a last chance for a settling batch to count.
    uint64_t acked;
    {
      absl::MutexLock lock(&mu_);
      acked = acked_;
    }
    if (sent > acked && sink_->Settled(last_write) == Sink::Settle::kOk) {
      Acked(sent);
    }
    sink_->Close();
  }

  const std::string db_path_;
  const ExportTarget target_;
  const Options options_;
  std::unique_ptr<Sink> sink_;
  internal::DbPtr db_;  // the worker thread's own connection (cursors, and records by default)
  std::unique_ptr<internal::ChainReader> chain_;  // declared after db_: closed before it
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Exporter>> Exporter::Start(const std::string& db_path,
                                                          std::vector<ExportTarget> targets,
                                                          Options options) {
  std::unique_ptr<Exporter> e(new Exporter());
  for (auto& t : targets) {
    RETURN_IF_ERROR(ValidateExportTarget(t));
    auto w = std::make_unique<Worker>(db_path, std::move(t), options);
    RETURN_IF_ERROR(w->Init());
    e->workers_.push_back(std::move(w));
  }
  for (auto& w : e->workers_) {
    w->Start();
  }
  return e;
}

Exporter::~Exporter() { workers_.clear(); }

void Exporter::Notify() {
  for (auto& w : workers_) {
    w->Notify();
  }
}

std::vector<Exporter::TargetStatus> Exporter::Status() const {
  std::vector<TargetStatus> out;
  for (const auto& w : workers_) {
    out.push_back(w->Status());
  }
  return out;
}

}  // namespace drawbridge::audit

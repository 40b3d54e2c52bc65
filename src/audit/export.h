#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "audit/record.h"

// Shipping audit records to a SIEM: JSON lines to a file (with rotation) or to
// stdout, and RFC 5424 syslog over TCP or TLS (RFC 5425 octet-counted framing).
//
// Every target reads from the audit store, never from the producers: an export
// thread per target follows the log by seq and keeps its position (the cursor)
// in the store, table audit_export_cursors. A target that is down therefore
// never slows a tunnel or an enrollment, and loses nothing: when it comes back
// (or the server restarts) the thread resumes after the last record the target
// is known to hold.
//
// Delivery is at least once. A file target is written and fsynced before its
// cursor moves. Syslog has no acknowledgement, and TCP accepts writes for a
// while after the receiver has gone, so a syslog cursor moves only once the
// connection has stayed up for `settle` after the write; when the receiver
// goes away the records since the last settled point are sent again. Receivers
// may see a record twice (same seq and hash, so duplicates are recognisable),
// never miss one.
namespace drawbridge::audit {

namespace internal {
class ChainReader;
}  // namespace internal

struct ExportTarget {
  enum class Type { kJsonl, kStdout, kSyslog };
  Type type = Type::kJsonl;
  // kJsonl: the file, rotated to PATH.1 .. PATH.N when it would exceed max_bytes.
  std::string path;
  uint64_t max_bytes = 100ull * 1024 * 1024;
  int max_files = 5;
  // kSyslog.
  std::string address;  // HOST:PORT
  bool tls = false;
  std::string ca_file;      // PEM roots to verify the receiver; empty: system roots
  std::string server_name;  // verify/SNI name; empty: the address's host
  std::string app_name = "drawbridge";

  // Identifies the target's cursor: "jsonl:PATH", "stdout", "syslog+tcp://ADDR".
  std::string Name() const;
};

absl::Status ValidateExportTarget(const ExportTarget& target);

// One RFC 5424 message (without framing) for `r`: facility 13 (log audit),
// severity from the record (alerts 1, failures 4, the rest 6), MSGID the
// activity, structured data [drawbridge@32473 seq= class_uid= hash=], and the
// record's JSON line as MSG. 32473 is the documentation enterprise number
// (RFC 5612); receivers key on the SD-ID name.
std::string FormatSyslog(const Record& r, const std::string& hostname, const std::string& app_name,
                         int pid);

// RFC 5425/6587 octet counting: "LEN SP MSG".
std::string FrameOctetCounted(const std::string& message);

class Exporter {
 public:
  struct Options {
    size_t batch = 500;
    std::chrono::milliseconds settle{1000};        // syslog: see above
    std::chrono::milliseconds max_backoff{30000};  // retry delay cap for a target that is down
    std::chrono::milliseconds poll{1000};          // look for new records at least this often
    // Where the records are when not in the database at db_path (which then
    // keeps only the cursors): a replica's chain in the shared store. Called on
    // the worker's thread, again after a read failed.
    std::function<absl::StatusOr<std::unique_ptr<internal::ChainReader>>()> source;
  };

  struct TargetStatus {
    std::string name;
    uint64_t exported_seq = 0;  // every record <= this is known to be delivered
    bool connected = false;
    std::string last_error;
  };

  // Starts a thread per target over the audit log at `db_path` (which must
  // already hold the audit tables: open the AuditLog first).
  static absl::StatusOr<std::unique_ptr<Exporter>> Start(const std::string& db_path,
                                                         std::vector<ExportTarget> targets,
                                                         Options options);
  static absl::StatusOr<std::unique_ptr<Exporter>> Start(const std::string& db_path,
                                                         std::vector<ExportTarget> targets) {
    return Start(db_path, std::move(targets), Options());
  }
  ~Exporter();  // stops the threads; cursors stay where they are

  // New records were committed (AuditLog's on_committed); wakes the threads.
  void Notify();

  std::vector<TargetStatus> Status() const;

  class Worker;  // internal

 private:
  Exporter() = default;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace drawbridge::audit

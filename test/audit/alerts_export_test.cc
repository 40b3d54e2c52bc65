// Alert rules, the audit config section, SIEM export (JSON lines, syslog) and the
// webhook, against real sockets on loopback.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "audit/alerts.h"
#include "audit/audit_log.h"
#include "audit/config.h"
#include "audit/export.h"
#include "audit/query.h"
#include "audit/record.h"
#include "audit/webhook.h"
#include "common/strings.h"
#include "pki/keys.h"
#include "testing/temp_dir.h"

namespace drawbridge::audit {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Record At(Record r, uint64_t seq, int64_t time_ms) {
  r.seq = seq;
  r.time_unix_ms = time_ms;
  return r;
}

Record FailedEnroll(const std::string& who, const std::string& ip,
                    const std::string& code = "bad_signature") {
  return MakeRecord(EventClass::kAuthentication, "enroll", kOutcomeFailure, who, ip,
                    {{"reason_code", code}});
}

template <typename Pred>
bool WaitFor(Pred pred, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

// ---------------------------------------------------------------------------
// Alert rules

TEST(AlertTest, ABurstRaisesExactlyOneAlertPerWindow) {
  AlertEngine engine({AlertRule{.name = "burst",
                                .class_uid = kClassAuthentication,
                                .outcome = "failure",
                                .group_by = "actor",
                                .threshold = 3,
                                .window = seconds(60)}});
  std::vector<Alert> alerts;
  const int64_t t0 = 1'700'000'000'000;
  // 20 failures within 20 s: one alert, when the third arrives.
  for (int i = 0; i < 20; ++i) {
    for (auto& a :
         engine.Observe({At(FailedEnroll("agent/x", "10.0.0.1"), i + 1, t0 + i * 1000)})) {
      alerts.push_back(a);
    }
  }
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].rule, "burst");
  EXPECT_EQ(alerts[0].key, "agent/x");
  EXPECT_EQ(alerts[0].count, 3u);
  EXPECT_EQ(alerts[0].first_seq, 1u);
  EXPECT_EQ(alerts[0].last_seq, 3u);
  // The next window (60 s after the first record) fires again.
  for (int i = 0; i < 3; ++i) {
    for (auto& a :
         engine.Observe({At(FailedEnroll("agent/x", "10.0.0.1"), 100 + i, t0 + 61000 + i)})) {
      alerts.push_back(a);
    }
  }
  EXPECT_EQ(alerts.size(), 2u);
}

TEST(AlertTest, KeysAndFiltersAreSeparate) {
  AlertEngine engine({AlertRule{.name = "per_source",
                                .class_uid = kClassAuthentication,
                                .outcome = "failure",
                                .group_by = "source_address",
                                .threshold = 2,
                                .window = seconds(60)}});
  const int64_t t = 1'700'000'000'000;
  std::vector<Record> batch = {
      At(FailedEnroll("a", "10.0.0.1"), 1, t),
      At(FailedEnroll("b", "10.0.0.2"), 2, t),
      // Success and other classes never count.
      At(MakeRecord(EventClass::kAuthentication, "enroll", kOutcomeSuccess, "a", "10.0.0.1"), 3, t),
      At(MakeRecord(EventClass::kNetworkActivity, "deny", kOutcomeFailure, "a", "10.0.0.1"), 4, t),
      // No source address: not counted.
      At(FailedEnroll("c", ""), 5, t),
      At(FailedEnroll("c", ""), 6, t),
  };
  EXPECT_TRUE(engine.Observe(batch).empty());
  auto alerts = engine.Observe({At(FailedEnroll("z", "10.0.0.2"), 7, t + 1)});
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].key, "10.0.0.2");
  Record r = alerts[0].ToRecord();
  EXPECT_EQ(r.class_uid, kClassDetectionFinding);
  EXPECT_EQ(r.source_address, "10.0.0.2");
  EXPECT_EQ(r.details["rule"], "per_source");
  // Alerts never feed alert rules.
  AlertEngine any({AlertRule{.name = "anything", .group_by = "actor", .threshold = 1}});
  EXPECT_TRUE(any.Observe({At(r, 8, t)}).empty());
}

TEST(AlertTest, DefaultRulesCoverTheIssueAndAreValid) {
  std::set<std::string> names;
  for (const AlertRule& rule : DefaultAlertRules()) {
    EXPECT_TRUE(ValidateAlertRule(rule).ok()) << rule.name;
    names.insert(rule.name);
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"failed_auth_per_identity", "failed_auth_per_source",
                                   "denied_connections_per_client", "revoked_credential_used",
                                   "enrollment_from_unexpected_address"}));
  // One use of a disabled identity alerts at once; so does one enrollment from
  // outside an identity's CIDRs.
  AlertEngine engine(DefaultAlertRules());
  const int64_t t = 1'700'000'000'000;
  auto alerts =
      engine.Observe({At(FailedEnroll("agent/gone", "10.1.1.1", "identity_disabled"), 1, t),
                      At(FailedEnroll("agent/far", "10.1.1.2", "source_not_allowed"), 2, t)});
  std::set<std::string> fired;
  for (const auto& a : alerts) {
    fired.insert(a.rule + ":" + a.key);
  }
  EXPECT_EQ(fired, (std::set<std::string>{"revoked_credential_used:agent/gone",
                                          "enrollment_from_unexpected_address:agent/far"}));
}

TEST(AlertTest, OpenWindowsAreBounded) {
  AlertEngine engine({AlertRule{.name = "r", .group_by = "source_address", .threshold = 2}});
  const int64_t t = 1'700'000'000'000;
  for (size_t i = 0; i < AlertEngine::kMaxKeysPerRule + 500; ++i) {
    engine.Observe(
        {At(FailedEnroll("x", common::StrCat("10.", i / 65536, ".", (i / 256) % 256, ".", i % 256)),
            i + 1, t + static_cast<int64_t>(i))});
  }
  // Still counting correctly for a fresh key after evictions.
  EXPECT_TRUE(engine.Observe({At(FailedEnroll("x", "192.0.2.1"), 1, t + 100000)}).empty());
  EXPECT_EQ(engine.Observe({At(FailedEnroll("x", "192.0.2.1"), 2, t + 100001)}).size(), 1u);
}

TEST(AlertTest, InvalidRulesAreRefused) {
  AlertRule ok{.name = "fine", .group_by = "details.client", .threshold = 1};
  EXPECT_TRUE(ValidateAlertRule(ok).ok());
  for (AlertRule bad :
       {AlertRule{.name = "Bad Name"}, AlertRule{.name = "x", .class_uid = 42},
        AlertRule{.name = "x", .class_uid = kClassDetectionFinding},
        AlertRule{.name = "x", .outcome = "maybe"}, AlertRule{.name = "x", .group_by = "password"},
        AlertRule{.name = "x", .threshold = 0}, AlertRule{.name = "x", .window = seconds(0)},
        AlertRule{.name = "x", .severity = "urgent"}}) {
    EXPECT_FALSE(ValidateAlertRule(bad).ok()) << bad.name;
  }
}

// ---------------------------------------------------------------------------
// The audit: section

absl::StatusOr<AuditConfig> ParseText(const std::string& yaml) {
  return ParseAuditConfig(YAML::Load(yaml)["audit"]);
}

TEST(AuditConfigTest, DefaultsAndOverrides) {
  auto d = ParseAuditConfig(YAML::Node());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->retention, seconds(30 * 86400));
  EXPECT_EQ(d->alert_rules.size(), DefaultAlertRules().size());
  EXPECT_TRUE(d->export_targets.empty());

  auto c = ParseText(R"(
audit:
  retention_days: 7
  checkpoint_every_records: 10
  checkpoint_every_seconds: 5
  export:
    - {type: jsonl, path: /tmp/a.jsonl, max_bytes: 8192, max_files: 2}
    - {type: stdout}
    - {type: syslog, address: "127.0.0.1:6514", tls: true, ca_file: /tmp/ca.pem}
  alerts:
    webhook: "http://127.0.0.1:9000/hook"
    rules:
      - {name: failed_auth_per_identity, threshold: 3, window_seconds: 30}
      - {name: failed_auth_per_source, enabled: false}
      - {name: ssh_denied, class: network_activity, activity: deny, group_by: actor, threshold: 2}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->retention, seconds(7 * 86400));
  EXPECT_EQ(c->checkpoint_every_records, 10u);
  EXPECT_EQ(c->checkpoint_every, seconds(5));
  ASSERT_EQ(c->export_targets.size(), 3u);
  EXPECT_EQ(c->export_targets[0].Name(), "jsonl:/tmp/a.jsonl");
  EXPECT_EQ(c->export_targets[2].Name(), "syslog+tls://127.0.0.1:6514");
  EXPECT_EQ(c->webhook_url, "http://127.0.0.1:9000/hook");
  std::map<std::string, AlertRule> rules;
  for (const auto& r : c->alert_rules) {
    rules[r.name] = r;
  }
  EXPECT_EQ(rules.count("failed_auth_per_source"), 0u);
  EXPECT_EQ(rules["failed_auth_per_identity"].threshold, 3u);
  EXPECT_EQ(rules["failed_auth_per_identity"].class_uid, kClassAuthentication);  // kept
  EXPECT_EQ(rules["ssh_denied"].class_uid, kClassNetworkActivity);
  EXPECT_EQ(rules.size(), DefaultAlertRules().size());  // -1 disabled, +1 new
}

TEST(AuditConfigTest, BadInputIsRefusedWithTheSettingNamed) {
  struct Case {
    const char* yaml;
    const char* mentions;
  };
  for (const Case& c : {
           Case{"audit: [1]", "expected a mapping"},
           Case{"audit: {retention_days: -1}", "retention_days"},
           Case{"audit: {retention_days: many}", "retention_days"},
           Case{"audit: {bogus: 1}", "bogus"},
           Case{"audit: {export: {type: jsonl}}", "export"},
           Case{"audit: {export: [{type: jsonl}]}", "path"},
           Case{"audit: {export: [{type: ftp}]}", "type"},
           Case{"audit: {export: [{type: stdout, path: /x}]}", "path"},
           Case{"audit: {export: [{type: syslog, address: nowhere}]}", "HOST:PORT"},
           Case{"audit: {export: [{type: syslog, address: 'h:514', ca_file: /x}]}", "tls"},
           Case{"audit: {export: [{type: stdout}, {type: stdout}]}", "twice"},
           Case{"audit: {alerts: {rules: [{threshold: 2}]}}", "name"},
           Case{"audit: {alerts: {rules: [{name: x, class: nonsense}]}}", "class"},
           Case{"audit: {alerts: {rules: [{name: x, threshold: 0}]}}", "threshold"},
           Case{"audit: {alerts: {nope: 1}}", "nope"},
       }) {
    auto parsed = ParseText(c.yaml);
    ASSERT_FALSE(parsed.ok()) << c.yaml;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(std::string(parsed.status().message()).find(c.mentions), std::string::npos)
        << c.yaml << " -> " << parsed.status().message();
  }
}

TEST(AuditQueryTest, ParseTimeArg) {
  const int64_t now = 1'764'590'400'000;  // 2025-12-01T12:00:00Z
  EXPECT_EQ(*ParseTimeArg("2025-12-01", now), 1'764'547'200'000);
  EXPECT_EQ(*ParseTimeArg("2025-12-01T12:00:00Z", now), now);
  EXPECT_EQ(*ParseTimeArg("2025-12-01T12:00:00.250Z", now), now + 250);
  EXPECT_EQ(*ParseTimeArg("24h", now), now - 86'400'000);
  EXPECT_EQ(*ParseTimeArg("30m", now), now - 1'800'000);
  EXPECT_EQ(*ParseTimeArg("7d", now), now - 7 * 86'400'000LL);
  for (const char* bad :
       {"", "yesterday", "2025-13-01", "2025-02-31", "2025-12-01T12:00:00", "2025-12-01 12:00:00Z",
        "-5h", "5y", "99999999999d", "2025-12-01T25:00:00Z"}) {
    EXPECT_FALSE(ParseTimeArg(bad, now).ok()) << bad;
  }
}

// ---------------------------------------------------------------------------
// Syslog formatting

TEST(SyslogTest, Rfc5424MessageAndOctetCounting) {
  Record r = MakeRecord(EventClass::kNetworkActivity, "deny", kOutcomeFailure, "client/ci",
                        "10.0.0.1", {{"destination", "gitlab.corp:443"}});
  r.seq = 42;
  r.time_unix_ms = 1'764'590'400'123;
  r.prev_hash = std::string(kGenesisHash);
  r.hash = ComputeHash(r);
  std::string m = FormatSyslog(r, "broker 1", "drawbridge", 77);
  // facility 13 (log audit) * 8 + severity 4 (warning) = 108
  std::string head =
      "<108>1 2025-12-01T12:00:00.123Z broker_1 drawbridge 77 deny [drawbridge@32473 seq=\"42\" "
      "class_uid=\"4001\" outcome=\"failure\" hash=\"";
  EXPECT_EQ(m.substr(0, head.size()), head);
  EXPECT_NE(m.find(ToJsonLine(r)), std::string::npos);
  EXPECT_EQ(m.find('\n'), std::string::npos);
  std::string framed = FrameOctetCounted(m);
  EXPECT_EQ(framed, common::StrCat(m.size(), " ", m));
  r.class_uid = kClassDetectionFinding;
  EXPECT_EQ(FormatSyslog(r, "h", "drawbridge", 1).substr(0, 6), "<105>1");
  r.class_uid = kClassAuthentication;
  r.outcome = "success";
  EXPECT_EQ(FormatSyslog(r, "h", "drawbridge", 1).substr(0, 6), "<110>1");
}

// ---------------------------------------------------------------------------
// A TCP receiver on loopback that can be stopped and started again on its port.

class TcpReceiver {
 public:
  // `respond`: what to answer each connection once it has sent a blank line
  // (HTTP); empty: never answer (syslog).
  explicit TcpReceiver(std::string respond = "") : respond_(std::move(respond)) {}
  ~TcpReceiver() { Stop(); }

  void Start(int port = 0) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    ASSERT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(listen(listen_fd_, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    stop_ = false;
    thread_ = std::thread([this] { Loop(); });
  }

  // Closes the listener and every connection, abruptly, as a crashing SIEM would.
  void Stop() {
    if (!thread_.joinable()) {
      return;
    }
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }

  int port() const { return port_; }

  std::string Data() {
    absl::MutexLock lock(&mu_);
    return data_;
  }
  std::vector<std::string> Requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  void Loop() {
    std::vector<int> conns;
    std::map<int, std::string> partial;
    while (!stop_) {
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}};
      for (int c : conns) {
        fds.push_back({c, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 20) <= 0) {
        continue;
      }
      if (fds[0].revents & POLLIN) {
        int c = accept(listen_fd_, nullptr, nullptr);
        if (c >= 0) {
          conns.push_back(c);
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          continue;
        }
        char buf[65536];
        ssize_t n = recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n <= 0) {
          close(fds[i].fd);
          conns.erase(std::find(conns.begin(), conns.end(), fds[i].fd));
          continue;
        }
        absl::MutexLock lock(&mu_);
        data_.append(buf, static_cast<size_t>(n));
        if (!respond_.empty()) {
          std::string& p = partial[fds[i].fd];
          p.append(buf, static_cast<size_t>(n));
          auto end = p.find("\r\n\r\n");
          auto cl = p.find("Content-Length: ");
          if (end != std::string::npos && cl != std::string::npos) {
            size_t length = std::stoul(p.substr(cl + 16));
            if (p.size() >= end + 4 + length) {
              requests_.push_back(p);
              p.clear();
              send(fds[i].fd, respond_.data(), respond_.size(), MSG_NOSIGNAL);
            }
          }
        }
      }
    }
    for (int c : conns) {
      // Reset, not a graceful close: unread data is lost, as in a crash.
      linger l{1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      close(c);
    }
  }

  const std::string respond_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::string data_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> requests_ ABSL_GUARDED_BY(mu_);
};

// Every seq in octet-counted syslog frames.
std::multiset<uint64_t> SyslogSeqs(const std::string& data) {
  std::multiset<uint64_t> seqs;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t sp = data.find(' ', pos);
    if (sp == std::string::npos) {
      break;
    }
    size_t len = std::stoul(data.substr(pos, sp - pos));
    if (sp + 1 + len > data.size()) {
      break;  // partial frame
    }
    std::string msg = data.substr(sp + 1, len);
    size_t s = msg.find("seq=\"");
    seqs.insert(std::stoull(msg.substr(s + 5)));
    pos = sp + 1 + len;
  }
  return seqs;
}

Record Event(int i) {
  return MakeRecord(EventClass::kNetworkActivity, "open", kOutcomeSuccess, "client/ci", "10.0.0.1",
                    {{"destination", "gitlab.corp:443"}, {"i", i}});
}

// ---------------------------------------------------------------------------
// Export

TEST(ExportTest, SyslogReceiverDownAndBackLosesNothing) {
  testing::TempDir dir;
  TcpReceiver receiver;
  receiver.Start();
  const int port = receiver.port();
  auto key = *pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  AuditLog::Options lo;
  lo.signing_key = key.get();
  std::unique_ptr<Exporter> exporter;
  std::atomic<Exporter*> notify{nullptr};
  lo.on_committed = [&](const std::vector<Record>&) {
    if (Exporter* e = notify.load()) {
      e->Notify();
    }
  };
  auto log = *AuditLog::Open(dir.File("audit.db"), lo);
  ExportTarget t;
  t.type = ExportTarget::Type::kSyslog;
  t.address = common::StrCat("127.0.0.1:", port);
  Exporter::Options eo;
  eo.settle = milliseconds(300);
  eo.max_backoff = milliseconds(300);
  exporter = *Exporter::Start(dir.File("audit.db"), {t}, eo);
  notify = exporter.get();

  for (int i = 1; i <= 50; ++i) {
    ASSERT_TRUE(log->AppendSync(Event(i)).ok());
  }
  ASSERT_TRUE(WaitFor([&] { return SyslogSeqs(receiver.Data()).size() >= 50; }, seconds(10)));
  // The SIEM dies. The log keeps accepting records at full speed: export never
  // pushes back on it.
  receiver.Stop();
  auto started = std::chrono::steady_clock::now();
  for (int i = 51; i <= 100; ++i) {
    ASSERT_TRUE(log->AppendSync(Event(i)).ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(5));
  EXPECT_TRUE(WaitFor([&] { return !exporter->Status()[0].connected; }, seconds(5)))
      << "the exporter did not notice the receiver was gone";
  // It comes back on the same port and receives everything.
  TcpReceiver again;
  again.Start(port);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::multiset<uint64_t> seen = SyslogSeqs(receiver.Data());
        for (uint64_t s : SyslogSeqs(again.Data())) {
          seen.insert(s);
        }
        for (uint64_t s = 1; s <= 100; ++s) {
          if (seen.count(s) == 0) {
            return false;
          }
        }
        return true;
      },
      seconds(20)))
      << "records missing after the receiver came back";
  ASSERT_TRUE(WaitFor([&] { return exporter->Status()[0].exported_seq == 100; }, seconds(10)));
  notify = nullptr;
}

TEST(ExportTest, JsonlFileRotatesAndResumesAfterRestartWithoutDuplicates) {
  testing::TempDir dir;
  const std::string db = dir.File("audit.db");
  const std::string out = dir.File("audit.jsonl");
  ExportTarget t;
  t.type = ExportTarget::Type::kJsonl;
  t.path = out;
  t.max_bytes = 8192;
  t.max_files = 50;
  auto read_all = [&] {
    std::vector<uint64_t> seqs;
    for (int i = 50; i >= 0; --i) {
      std::string path = i == 0 ? out : common::StrCat(out, ".", i);
      std::ifstream in(path);
      std::string line;
      while (std::getline(in, line)) {
        auto r = FromJson(line);
        EXPECT_TRUE(r.ok()) << r.status() << ": " << line;
        if (r.ok()) {
          seqs.push_back(r->seq);
        }
      }
    }
    return seqs;
  };
  {
    auto log = *AuditLog::Open(db, {});
    for (int i = 1; i <= 60; ++i) {
      ASSERT_TRUE(log->AppendSync(Event(i)).ok());
    }
    auto exporter = *Exporter::Start(db, {t});
    exporter->Notify();
    ASSERT_TRUE(WaitFor([&] { return exporter->Status()[0].exported_seq == 60; }, seconds(10)));
  }
  EXPECT_TRUE(std::filesystem::exists(out + ".1")) << "no rotation at 8 KiB";
  {
    auto log = *AuditLog::Open(db, {});
    for (int i = 61; i <= 80; ++i) {
      ASSERT_TRUE(log->AppendSync(Event(i)).ok());
    }
    auto exporter = *Exporter::Start(db, {t});
    exporter->Notify();
    ASSERT_TRUE(WaitFor([&] { return exporter->Status()[0].exported_seq == 80; }, seconds(10)));
  }
  std::vector<uint64_t> seqs = read_all();
  ASSERT_EQ(seqs.size(), 80u);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i], i + 1);
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    if (entry.path().string().find("audit.jsonl") != std::string::npos) {
      EXPECT_LE(std::filesystem::file_size(entry.path()), 8192u) << entry.path();
    }
  }
}

TEST(ExportTest, UnreachableTargetsReportTheirError) {
  testing::TempDir dir;
  auto log = *AuditLog::Open(dir.File("audit.db"), {});
  ASSERT_TRUE(log->AppendSync(Event(1)).ok());
  TcpReceiver closed;
  closed.Start();
  int port = closed.port();
  closed.Stop();  // nobody listens there now
  ExportTarget t;
  t.type = ExportTarget::Type::kSyslog;
  t.address = common::StrCat("127.0.0.1:", port);
  auto exporter = *Exporter::Start(dir.File("audit.db"), {t});
  ASSERT_TRUE(WaitFor([&] { return !exporter->Status()[0].last_error.empty(); }, seconds(5)));
  EXPECT_NE(exporter->Status()[0].last_error.find("cannot connect"), std::string::npos);
  EXPECT_EQ(exporter->Status()[0].exported_seq, 0u);
  EXPECT_FALSE(
      Exporter::Start(dir.File("audit.db"), {ExportTarget{.type = ExportTarget::Type::kJsonl}})
          .ok());
}

// ---------------------------------------------------------------------------
// Webhook

TEST(WebhookTest, ParsesUrls) {
  auto u = ParseWebhookUrl("http://127.0.0.1:9000/hooks/drawbridge?x=1");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->address, "127.0.0.1:9000");
  EXPECT_EQ(u->path, "/hooks/drawbridge?x=1");
  auto s = ParseWebhookUrl("https://alerts.example.com");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->tls);
  EXPECT_EQ(s->address, "alerts.example.com:443");
  EXPECT_EQ(s->path, "/");
  auto v6 = ParseWebhookUrl("http://[::1]:8080/x");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad : {"ftp://x/", "http://", "http://user:pw@host/", "http://h/ a",
                          "http://h:99999/", "http://h/#frag", "127.0.0.1:80"}) {
    EXPECT_FALSE(ParseWebhookUrl(bad).ok()) << bad;
  }
}

TEST(WebhookTest, PostsEachAlertAsJson) {
  TcpReceiver receiver("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
  receiver.Start();
  {
    auto sender = *WebhookSender::Start(common::StrCat("http://127.0.0.1:", receiver.port(), "/h"));
    sender->Post(R"({"rule":"a"})");
    sender->Post(R"({"rule":"b"})");
    ASSERT_TRUE(WaitFor([&] { return sender->GetStats().delivered == 2; }, seconds(10)));
  }
  auto requests = receiver.Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].substr(0, 17), "POST /h HTTP/1.1\r");
  EXPECT_NE(requests[0].find("Content-Type: application/json"), std::string::npos);
  EXPECT_NE(requests[0].find(R"({"rule":"a"})"), std::string::npos);
  EXPECT_NE(requests[1].find(R"({"rule":"b"})"), std::string::npos);
}

}  // namespace
}  // namespace drawbridge::audit

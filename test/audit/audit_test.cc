#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "audit/audit_log.h"
#include "audit/query.h"
#include "audit/record.h"
#include "audit/verify.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/strings.h"
#include "pki/keys.h"
#include "testing/temp_dir.h"

namespace drawbridge::audit {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::seconds;

// A real-looking JWT and PEM private key: the sanitizing tests search the database
// files for them.
constexpr char kJwt[] =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhZ2VudC9hIiwianRpIjoiMTIzIn0.c2lnbmF0dXJl";
constexpr char kPemPrivate[] =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
    "-----END PRIVATE KEY-----\n";
constexpr char kTokenValue[] = "tok-7f3a9c1e5b2d4f60";

common::PKeyPtr NewKey() {
  auto key = pki::GenerateKey(pki::KeyAlgorithm::kEs256);
  EXPECT_TRUE(key.ok()) << key.status();
  return *std::move(key);
}

std::string PublicPem(EVP_PKEY* key) {
  auto pem = pki::PublicKeyToPem(key);
  EXPECT_TRUE(pem.ok());
  return *pem;
}

Record Conn(int i, std::string actor = "client/alice", std::string dest = "gitlab.corp:443") {
  return MakeRecord(EventClass::kNetworkActivity, "connect", kOutcomeSuccess, std::move(actor),
                    "10.0.0.7:40000",
                    {{"destination", std::move(dest)},
                     {"agent", "agent/site-a"},
                     {"agent_instance", "i-1"},
                     {"bytes_up", 100 * i},
                     {"bytes_down", 1000 * i},
                     {"duration_ms", 1500},
                     {"i", i}});
}

// Raw SQL on a database file, as an attacker with write access would do it.
void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << msg;
}

std::string SqlText(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(stmt, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

void CopyDb(const std::string& from, const std::string& to) {
  for (const char* suffix : {"", "-wal"}) {
    std::string src = from + suffix;
    if (std::filesystem::exists(src)) {
      std::filesystem::copy_file(src, to + suffix,
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
}

std::string FileBytes(const std::string& path) {
  auto data = common::ReadFile(path);
  return data.ok() ? *data : "";
}

class AuditTest : public ::testing::Test {
 protected:
  AuditTest()
      : key_(NewKey()),
        pem_(PublicPem(key_.get())),
        clock_(std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000000))),
        path_(dir_.File("audit.db")) {}

  AuditLog::Options Opts(uint64_t every = 1000) {
    AuditLog::Options o;
    o.signing_key = key_.get();
    o.clock = &clock_;
    o.checkpoint_every_records = every;
    o.retention = std::chrono::milliseconds(0);  // tests that prune say so
    return o;
  }

  std::unique_ptr<AuditLog> OpenLog(AuditLog::Options o) {
    auto log = AuditLog::Open(path_, o);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  // n records 1..n, each 1 s after the previous, closed (the WAL folded back).
  void Write(int n, uint64_t every = 1000) {
    auto log = OpenLog(Opts(every));
    ASSERT_NE(log, nullptr);
    for (int i = 1; i <= n; ++i) {
      ASSERT_TRUE(log->AppendSync(Conn(i)).ok());
      clock_.Advance(seconds(1));
    }
  }

  VerifyResult Verify(const std::string& path, const std::string& pem) {
    auto r = VerifyAuditLog(path, pem);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : VerifyResult{};
  }

  // A tampered copy of the log; the original stays verifiable.
  std::string TamperedCopy(const std::string& sql) {
    std::string copy = dir_.File(common::StrCat("copy", ++copies_, ".db"));
    CopyDb(path_, copy);
    Sql(copy, sql);
    return copy;
  }

  Record StoredRecord(const std::string& path, uint64_t seq) {
    QueryFilter all;
    auto records = QueryAuditLog(path, all);
    EXPECT_TRUE(records.ok()) << records.status();
    for (const Record& r : *records) {
      if (r.seq == seq) {
        return r;
      }
    }
    ADD_FAILURE() << "no record " << seq;
    return Record{};
  }

  std::string InsertSql(const Record& r) {
    auto q = [](const std::string& s) {
      return common::StrCat("'", common::ReplaceAll(s, "'", "''"), "'");
    };
    return common::StrCat(
        "INSERT INTO audit_records(seq, time_ms, class_uid, class_name, activity, outcome, actor, "
        "source_address, details, prev_hash, hash) VALUES(",
        r.seq, ",", r.time_unix_ms, ",", r.class_uid, ",", q(r.class_name), ",", q(r.activity), ",",
        q(r.outcome), ",", q(r.actor), ",", q(r.source_address), ",", q(r.details.dump()), ",",
        q(r.prev_hash), ",", q(r.hash), ");");
  }

  testing::TempDir dir_;
  common::PKeyPtr key_;
  std::string pem_;
  common::FakeClock clock_;
  std::string path_;
  int copies_ = 0;
};

// ---------------------------------------------------------------- records

TEST(RecordTest, CanonicalJsonIsSortedCompactAndCoversEverythingButHash) {
  Record r = MakeRecord(EventClass::kAuthentication, "enroll", kOutcomeFailure, "agent/a",
                        "192.0.2.1:5000", {{"z", 1}, {"a", {{"y", true}, {"b", "x"}}}});
  r.seq = 7;
  r.time_unix_ms = 1700000000123;
  r.prev_hash = std::string(kGenesisHash);
  r.hash = "ignored";
  EXPECT_EQ(CanonicalJson(r),
            R"({"activity":"enroll","actor":"agent/a","class_name":"Authentication",)"
            R"("class_uid":3002,"details":{"a":{"b":"x","y":true},"z":1},"outcome":"failure",)"
            R"("prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",)"
            R"("seq":7,"source_address":"192.0.2.1:5000","time_unix_ms":1700000000123})");
  Record other = r;
  other.hash = "different";
  EXPECT_EQ(ComputeHash(r), ComputeHash(other));
  other.details["z"] = 2;
  EXPECT_NE(ComputeHash(r), ComputeHash(other));
  other = r;
  other.prev_hash = std::string(64, '1');
  EXPECT_NE(ComputeHash(r), ComputeHash(other));

  r.hash = ComputeHash(r);
  EXPECT_EQ(r.hash.size(), 64u);
  auto parsed = FromJson(ToJsonLine(r));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, r);
  EXPECT_EQ(ToJsonLine(*parsed), ToJsonLine(r));
  EXPECT_EQ(ToJsonLine(r).find('\n'), std::string::npos);
}

// CanonicalJson is written by hand (no copy of details); it must be byte for byte
// what nlohmann's sorted dump gives, escapes included.
TEST(RecordTest, CanonicalJsonMatchesNlohmannDump) {
  for (std::string s : {std::string("plain"), std::string("quote\" back\\ slash"),
                        std::string("\b\f\n\r\t\x01\x1f\x7f"), std::string("\0nul", 4),
                        std::string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92"),
                        std::string("bad \xff utf8"), std::string("\xed\xa0\x80surrogate"),
                        std::string("\xc0\xafoverlong"), std::string("trunc \xe2\x82")}) {
    Record r = MakeRecord(EventClass::kApiActivity, "policy_reload", kOutcomeSuccess, s, s,
                          {{s, s}, {"n", -1.5e-7}, {"u", 18446744073709551615ull}});
    r.seq = 3;
    r.time_unix_ms = -5;
    r.prev_hash = s;
    r.hash = s;
    json j = {{"seq", r.seq},
              {"time_unix_ms", r.time_unix_ms},
              {"class_uid", r.class_uid},
              {"class_name", r.class_name},
              {"activity", r.activity},
              {"outcome", r.outcome},
              {"actor", r.actor},
              {"source_address", r.source_address},
              {"details", r.details},
              {"prev_hash", r.prev_hash}};
    EXPECT_EQ(CanonicalJson(r), j.dump(-1, ' ', false, json::error_handler_t::replace)) << s;
    j["hash"] = r.hash;
    EXPECT_EQ(ToJsonLine(r), j.dump(-1, ' ', false, json::error_handler_t::replace)) << s;
  }
}

TEST(RecordTest, ClassNamesAreOcsf) {
  EXPECT_EQ(ClassName(kClassAuthentication), "Authentication");
  EXPECT_EQ(ClassName(kClassAccountChange), "Account Change");
  EXPECT_EQ(ClassName(kClassNetworkActivity), "Network Activity");
  EXPECT_EQ(ClassName(kClassApiActivity), "API Activity");
  EXPECT_EQ(ClassName(kClassDetectionFinding), "Detection Finding");
  EXPECT_EQ(ClassName(1234), "");
  EXPECT_FALSE(ClassFromUid(0).has_value());
}

TEST(RecordTest, FromJsonRejectsMalformedInput) {
  Record good = Conn(1);
  good.seq = 1;
  good.time_unix_ms = 5;
  good.prev_hash = std::string(kGenesisHash);
  good.hash = ComputeHash(good);
  const json base = json::parse(ToJsonLine(good));
  ASSERT_TRUE(FromJson(base.dump()).ok());

  auto with = [&](const char* key, json value) {
    json j = base;
    j[key] = std::move(value);
    return j.dump();
  };
  auto without = [&](const char* key) {
    json j = base;
    j.erase(key);
    return j.dump();
  };
  std::string deep = "{}";
  for (int i = 0; i < kMaxDetailsDepth + 1; ++i) {
    deep = "{\"a\":" + deep + "}";
  }
  std::string line = base.dump();
  std::vector<std::string> bad = {
      "",
      "null",
      "[]",
      "{",
      line + "x",
      line.substr(0, line.size() - 1),
      without("hash"),
      without("details"),
      with("extra", 1),
      "{\"seq\":1," + line.substr(1),  // duplicate key
      with("seq", 0),
      with("seq", -1),
      with("seq", 1.0),
      with("seq", "1"),
      with("time_unix_ms", 1.5),
      with("time_unix_ms", "now"),
      with("class_uid", 9999),
      with("class_uid", "4001"),
      with("class_name", "Authentication"),  // does not match 4001
      with("outcome", "ok"),
      with("activity", ""),
      with("activity", "Connect!"),
      with("actor", 5),
      with("prev_hash", std::string(63, 'a')),
      with("hash", std::string(64, 'A')),
      with("details", json::array()),
      with("details", "x"),
      with("details", json::parse(deep)),
      with("details", {{"n", 1}}).replace(line.size() / 2, 0, "\xff"),
      common::ReplaceAll(with("details", {{"n", 1}}), "\"n\":1", "\"n\":1e999"),
      common::ReplaceAll(with("details", {{"n", 1}}), "\"n\":1", "\"n\":1,\"n\":2"),
      with("details", {{"s", std::string(kMaxStringBytes + 1, 'x')}}),
  };
  for (const std::string& text : bad) {
    auto r = FromJson(text);
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << text.substr(0, 200) << " -> " << r.status();
  }
}

TEST(RecordTest, CheckNoSecretsFindsKeysJwtsAndSecretNamedFields) {
  std::vector<json> secret = {
      {{"note", kPemPrivate}},
      {{"note", std::string("-----BEGIN EC PRIVATE KEY-----\nabc")}},
      {{"header", std::string("Authorization: Bearer ") + kJwt}},
      {{"list", {1, {{"deep", kJwt}}}}},
      {{"authorization", "Bearer abc"}},
      {{"token", kTokenValue}},
      {{"jwt", "x"}},
      {{"private_key", "x"}},
      {{"password", "hunter2"}},
      {{"secret", "x"}},
      {{"client_secret", "x"}},
      {{"enrollmentToken", "x"}},
      {{"nested", {{"api-key", "x"}}}},
      {{"token", {{"value", "x"}}}},
  };
  for (const json& j : secret) {
    absl::Status s = CheckNoSecrets(j);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << j.dump();
    // The message names where, never what.
    EXPECT_EQ(std::string(s.message()).find(kJwt), std::string::npos);
    EXPECT_EQ(std::string(s.message()).find("hunter2"), std::string::npos);
    EXPECT_EQ(std::string(s.message()).find(kTokenValue), std::string::npos);
  }
  std::vector<json> fine = {
      {{"token_id", "f00"}},
      {{"token", nullptr}},
      {{"password", ""}},
      {{"public_key", "-----BEGIN PUBLIC KEY-----\nMFkw"}},
      {{"destination", "eyJhbGciOi.example:443"}},
      {{"reason", "token expired"}},
      {{"key_id", "0123456789abcdef01234567"}},
      {{"hash", std::string(64, 'a')}},
  };
  for (const json& j : fine) {
    EXPECT_TRUE(CheckNoSecrets(j).ok()) << j.dump();
  }
  json j = {{"a", {{"token", kTokenValue}}}, {"b", {kJwt}}};
  auto paths = RedactSecrets(&j);
  EXPECT_EQ(paths, (std::vector<std::string>{"$.a.token", "$.b[0]"}));
  EXPECT_TRUE(CheckNoSecrets(j).ok()) << j.dump();
  EXPECT_EQ(j["a"]["token"], kRedacted);
}

// ---------------------------------------------------------------- append + verify

TEST_F(AuditTest, AppendAndVerify) {
  Write(50, /*every=*/10);
  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 50u);
  EXPECT_EQ(v.first_seq, 1u);
  EXPECT_EQ(v.last_seq, 50u);
  EXPECT_EQ(v.first_bad_seq, 0u);
  EXPECT_EQ(v.checkpoints, 5u);
  EXPECT_TRUE(v.head_verified);
  EXPECT_TRUE(v.signatures_checked);

  Record r3 = StoredRecord(path_, 3);
  EXPECT_EQ(r3.actor, "client/alice");
  EXPECT_EQ(r3.class_name, "Network Activity");
  EXPECT_EQ(r3.details["i"], 3);
  EXPECT_EQ(r3.time_unix_ms, 1700000002000);
  EXPECT_EQ(r3.prev_hash, StoredRecord(path_, 2).hash);
  EXPECT_EQ(StoredRecord(path_, 1).prev_hash, kGenesisHash);

  // Reopening continues the same chain.
  {
    auto log = OpenLog(Opts(10));
    ASSERT_TRUE(log->AppendSync(Conn(51)).ok());
  }
  v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 51u);
}

TEST_F(AuditTest, TimeNeverGoesBackwards) {
  auto log = OpenLog(Opts());
  ASSERT_TRUE(log->AppendSync(Conn(1)).ok());
  clock_.Advance(-hours(1));  // NTP steps the wall clock back
  ASSERT_TRUE(log->AppendSync(Conn(2)).ok());
  log.reset();
  EXPECT_EQ(StoredRecord(path_, 2).time_unix_ms, StoredRecord(path_, 1).time_unix_ms);
  EXPECT_TRUE(Verify(path_, pem_).ok);
}

TEST_F(AuditTest, MalformedRecordsAreRefusedWithoutTakingASeq) {
  auto log = OpenLog(Opts());
  Record bad_class = Conn(1);
  bad_class.class_uid = 42;
  bad_class.class_name.clear();
  Record bad_outcome = Conn(1);
  bad_outcome.outcome = "maybe";
  Record bad_details = Conn(1);
  bad_details.details = json::array({1, 2});
  for (Record r : {bad_class, bad_outcome, bad_details}) {
    EXPECT_TRUE(absl::IsInvalidArgument(log->AppendSync(std::move(r))));
  }
  ASSERT_TRUE(log->AppendSync(Conn(1)).ok());
  log.reset();
  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 1u);
  EXPECT_EQ(StoredRecord(path_, 1).details["i"], 1);
}

// Secrets are redacted, not refused: an attacker must not be able to keep its own
// denied attempt out of the log by putting a JWT-looking string in a destination.
TEST_F(AuditTest, SecretsNeverReachTheLog) {
  auto log = OpenLog(Opts());
  Record r = MakeRecord(EventClass::kNetworkActivity, "deny", kOutcomeFailure, kJwt,
                        std::string("Bearer ") + kTokenValue,
                        {{"destination", std::string(kJwt) + ":443"},
                         {"note", kPemPrivate},
                         {"token", kTokenValue},
                         {"request", {{"headers", {{"Authorization", kTokenValue}}}}},
                         {"token_id", "jti-1"}});
  ASSERT_TRUE(log->AppendSync(r).ok());
  log.reset();

  for (const std::string& file : {path_, path_ + "-wal"}) {
    std::string bytes = FileBytes(file);
    EXPECT_EQ(bytes.find("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0"), std::string::npos) << file;
    EXPECT_EQ(bytes.find("PRIVATE KEY"), std::string::npos) << file;
    EXPECT_EQ(bytes.find(kTokenValue), std::string::npos) << file;
  }
  Record stored = StoredRecord(path_, 1);
  EXPECT_EQ(stored.actor, kRedacted);
  EXPECT_EQ(stored.source_address, kRedacted);
  EXPECT_EQ(stored.details["destination"], kRedacted);
  EXPECT_EQ(stored.details["note"], kRedacted);
  EXPECT_EQ(stored.details["token"], kRedacted);
  EXPECT_EQ(stored.details["request"]["headers"]["Authorization"], kRedacted);
  EXPECT_EQ(stored.details["token_id"], "jti-1");
  EXPECT_TRUE(CheckNoSecrets(stored.details).ok());
  EXPECT_TRUE(Verify(path_, pem_).ok);
}

TEST_F(AuditTest, PeerSuppliedGarbageIsStoredSafely) {
  auto log = OpenLog(Opts());
  std::string huge(kMaxStringBytes * 3, 'h');
  Record r = MakeRecord(EventClass::kNetworkActivity, "deny", kOutcomeFailure, "client/\xff\xfe",
                        "1.2.3.4:1", {{"destination", "bad\xc3(host\x1b[2J:80"}, {"sni", huge}});
  ASSERT_TRUE(log->AppendSync(r).ok());
  log.reset();
  Record stored = StoredRecord(path_, 1);
  EXPECT_EQ(stored.actor, "client/\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
  EXPECT_EQ(stored.details["sni"].get<std::string>().size(), kMaxStringBytes);
  EXPECT_TRUE(Verify(path_, pem_).ok);
  // The table never prints the escape sequence a peer chose.
  std::string table = FormatTable({stored});
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
}

// ---------------------------------------------------------------- tampering

TEST_F(AuditTest, VerifyPinpointsAnEdit) {
  Write(10, /*every=*/5);
  ASSERT_TRUE(Verify(path_, pem_).ok);
  VerifyResult v =
      Verify(TamperedCopy("UPDATE audit_records SET actor='client/mallory' WHERE seq=5"), pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 5u) << v.problem;

  v = Verify(TamperedCopy("UPDATE audit_records SET details=replace(details, '\"bytes_up\":700', "
                          "'\"bytes_up\":1') WHERE seq=7"),
             pem_);
  EXPECT_EQ(v.first_bad_seq, 7u) << v.problem;

  v = Verify(TamperedCopy("UPDATE audit_records SET time_ms=time_ms+1 WHERE seq=2"), pem_);
  EXPECT_EQ(v.first_bad_seq, 2u) << v.problem;

  v = Verify(TamperedCopy("UPDATE audit_records SET outcome='failure' WHERE seq=10"), pem_);
  EXPECT_EQ(v.first_bad_seq, 10u) << v.problem;
  // Even without the public key the chain alone finds it.
  v = Verify(TamperedCopy("UPDATE audit_records SET outcome='failure' WHERE seq=3"), "");
  EXPECT_EQ(v.first_bad_seq, 3u) << v.problem;
}

TEST_F(AuditTest, VerifyPinpointsAnEditWhoseHashWasRecomputed) {
  Write(10);  // no checkpoint inside: only the chain and the head protect it
  Record r = StoredRecord(path_, 4);
  r.actor = "client/mallory";
  r.hash = ComputeHash(r);
  VerifyResult v = Verify(
      TamperedCopy(common::StrCat("DELETE FROM audit_records WHERE seq=4;", InsertSql(r))), pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 4u) << v.problem;
}

TEST_F(AuditTest, VerifyPinpointsADeletion) {
  Write(10, /*every=*/5);
  VerifyResult v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq=7"), pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 7u) << v.problem;
  v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq IN (1, 2)"), pem_);
  EXPECT_EQ(v.first_bad_seq, 1u) << v.problem;
  // Dropping old records and moving the anchor by hand is not a signed prune.
  v = Verify(TamperedCopy(common::StrCat(
                 "DELETE FROM audit_records WHERE seq <= 5;"
                 "INSERT INTO audit_meta VALUES('anchor_seq','5');"
                 "INSERT INTO audit_meta VALUES('anchor_hash',(SELECT hash FROM audit_checkpoints "
                 "WHERE seq=5));")),
             pem_);
  EXPECT_EQ(v.first_bad_seq, 1u) << v.problem;
}

TEST_F(AuditTest, VerifyPinpointsAnInsertion) {
  Write(10, /*every=*/1000);
  // A forged record that chains perfectly to record 4, with the rest renumbered.
  Record prev = StoredRecord(path_, 4);
  Record forged = Conn(99, "client/mallory", "vault.corp:8200");
  forged.seq = 5;
  forged.time_unix_ms = prev.time_unix_ms;
  forged.prev_hash = prev.hash;
  forged.hash = ComputeHash(forged);
  std::string sql;
  for (int seq = 10; seq >= 5; --seq) {
    sql += common::StrCat("UPDATE audit_records SET seq=", seq + 1, " WHERE seq=", seq, ";");
  }
  sql += InsertSql(forged);
  VerifyResult v = Verify(TamperedCopy(sql), pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 5u) << v.problem;

  // Appended after the last signed commit: caught by the head at once.
  Record last = StoredRecord(path_, 10);
  Record tail = Conn(11);
  tail.seq = 11;
  tail.time_unix_ms = last.time_unix_ms;
  tail.prev_hash = last.hash;
  tail.hash = ComputeHash(tail);
  v = Verify(TamperedCopy(InsertSql(tail)), pem_);
  EXPECT_EQ(v.first_bad_seq, 11u) << v.problem;
}

TEST_F(AuditTest, VerifyPinpointsAReordering) {
  Write(10, /*every=*/5);
  VerifyResult v = Verify(TamperedCopy("UPDATE audit_records SET seq=-1 WHERE seq=3;"
                                       "UPDATE audit_records SET seq=3 WHERE seq=6;"
                                       "UPDATE audit_records SET seq=6 WHERE seq=-1;"),
                          pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 3u) << v.problem;

  // Swapping the contents but keeping each row's own seq and hashes.
  v = Verify(TamperedCopy("CREATE TEMP TABLE t AS SELECT * FROM audit_records WHERE seq IN (8, 9);"
                          "UPDATE audit_records SET actor=(SELECT actor FROM t WHERE seq=9), "
                          "details=(SELECT details FROM t WHERE seq=9) WHERE seq=8;"
                          "UPDATE audit_records SET actor=(SELECT actor FROM t WHERE seq=8), "
                          "details=(SELECT details FROM t WHERE seq=8) WHERE seq=9;"),
             pem_);
  EXPECT_EQ(v.first_bad_seq, 8u) << v.problem;
}

TEST_F(AuditTest, VerifyPinpointsATruncation) {
  Write(10, /*every=*/5);
  // The last 3 records: the signed head still names seq 10.
  VerifyResult v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq > 7"), pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 8u) << v.problem;
  // ...and with the head and the checkpoint at 10 gone too: the checkpoint scheme
  // alone would not see it, the missing head is reported.
  v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq > 7; DELETE FROM audit_head;"
                          "DELETE FROM audit_checkpoints WHERE seq > 7"),
             pem_);
  EXPECT_EQ(v.first_bad_seq, 8u) << v.problem;
  // ...or with the head rewritten to the new end (its signature no longer holds).
  v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq > 7;"
                          "DELETE FROM audit_checkpoints WHERE seq > 7;"
                          "UPDATE audit_head SET seq=7, hash=(SELECT hash FROM audit_records "
                          "WHERE seq=7)"),
             pem_);
  EXPECT_EQ(v.first_bad_seq, 8u) << v.problem;
  // Past a checkpoint, even a verifier without the key sees it.
  v = Verify(TamperedCopy("DELETE FROM audit_records WHERE seq > 3; DELETE FROM audit_head"), "");
  EXPECT_EQ(v.first_bad_seq, 4u) << v.problem;
}

TEST_F(AuditTest, VerifyNeverWritesTheDatabase) {
  Write(5);
  std::string before = FileBytes(path_);
  ASSERT_TRUE(Verify(path_, pem_).ok);
  ASSERT_TRUE(QueryAuditLog(path_, QueryFilter{}).ok());
  EXPECT_EQ(FileBytes(path_), before);
  EXPECT_FALSE(std::filesystem::exists(path_ + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(path_ + "-shm"));
  // A name that needs escaping in the URI the immutable open uses.
  std::string odd = dir_.File("odd ?#%name.db");
  CopyDb(path_, odd);
  EXPECT_EQ(Verify(odd, pem_).records, 5u);
}

TEST_F(AuditTest, VerifyErrors) {
  EXPECT_TRUE(absl::IsNotFound(VerifyAuditLog(dir_.File("missing.db"), pem_).status()));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("missing.db")));
  Sql(dir_.File("other.db"), "CREATE TABLE x(y)");
  EXPECT_TRUE(absl::IsNotFound(VerifyAuditLog(dir_.File("other.db"), pem_).status()));
  Write(1);
  EXPECT_TRUE(absl::IsInvalidArgument(VerifyAuditLog(path_, "not a pem").status()));
  EXPECT_TRUE(absl::IsNotFound(QueryAuditLog(dir_.File("missing.db"), {}).status()));
  // A log written by a newer binary is refused, not misread.
  std::string future = TamperedCopy("UPDATE audit_meta SET value='2' WHERE key='schema_version'");
  EXPECT_TRUE(absl::IsFailedPrecondition(VerifyAuditLog(future, pem_).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(QueryAuditLog(future, {}).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(AuditLog::Open(future, Opts()).status()));
}

// ---------------------------------------------------------------- checkpoints

TEST_F(AuditTest, CheckpointsEveryNRecordsAndEveryMSeconds) {
  {
    auto log = OpenLog(Opts(/*every=*/10));
    for (int i = 1; i <= 25; ++i) {
      log->Append(Conn(i));
    }
    log->Flush();
    EXPECT_EQ(log->GetStats().checkpoints, 2u);
  }
  EXPECT_EQ(SqlText(path_, "SELECT group_concat(seq) FROM audit_checkpoints"), "10,20");

  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.checkpoints, 2u);
  // Another key's public key: the first checkpoint fails.
  common::PKeyPtr other = NewKey();
  v = Verify(path_, PublicPem(other.get()));
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 10u) << v.problem;
  // A forged checkpoint row.
  v = Verify(TamperedCopy("UPDATE audit_checkpoints SET time_ms=time_ms+1 WHERE seq=20"), pem_);
  EXPECT_EQ(v.first_bad_seq, 20u) << v.problem;

  // Time-based: nothing until M seconds pass, then one at the last record: 26 if
  // the idle writer notices first, else 27 at the next commit; then not again
  // until another M seconds have passed.
  {
    AuditLog::Options o = Opts(/*every=*/1000);
    o.checkpoint_every = seconds(60);
    auto log = OpenLog(o);
    ASSERT_TRUE(log->AppendSync(Conn(26)).ok());
    EXPECT_EQ(log->GetStats().checkpoints, 0u);
    clock_.Advance(seconds(61));
    ASSERT_TRUE(log->AppendSync(Conn(27)).ok());
    EXPECT_EQ(log->GetStats().checkpoints, 1u);
    clock_.Advance(seconds(30));
    ASSERT_TRUE(log->AppendSync(Conn(28)).ok());
    EXPECT_EQ(log->GetStats().checkpoints, 1u);
  }
  std::string seqs = SqlText(path_, "SELECT group_concat(seq) FROM audit_checkpoints");
  EXPECT_TRUE(seqs == "10,20,26" || seqs == "10,20,27") << seqs;
  EXPECT_TRUE(Verify(path_, pem_).ok);
}

TEST_F(AuditTest, OpenRefusesADamagedOrForeignLog) {
  Write(5);
  std::string copy = TamperedCopy("DELETE FROM audit_records WHERE seq=5");
  AuditLog::Options o = Opts();
  auto opened = AuditLog::Open(copy, o);
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();

  common::PKeyPtr other = NewKey();
  o.signing_key = other.get();
  opened = AuditLog::Open(path_, o);
  EXPECT_TRUE(absl::IsFailedPrecondition(opened.status())) << opened.status();

  o.signing_key = nullptr;
  opened = AuditLog::Open(path_, o);
  EXPECT_TRUE(absl::IsFailedPrecondition(opened.status())) << opened.status();
  EXPECT_TRUE(Verify(path_, pem_).ok);
}

TEST_F(AuditTest, UnsignedLogStillChainsButCannotSeeTruncation) {
  AuditLog::Options o = Opts();
  o.signing_key = nullptr;
  {
    auto log = OpenLog(o);
    for (int i = 1; i <= 6; ++i) {
      ASSERT_TRUE(log->AppendSync(Conn(i)).ok());
    }
    EXPECT_EQ(log->GetStats().checkpoints, 0u);
  }
  VerifyResult v = Verify(path_, "");
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_FALSE(v.signatures_checked);
  EXPECT_EQ(
      Verify(TamperedCopy("UPDATE audit_records SET actor='x' WHERE seq=2"), "").first_bad_seq, 2u);
  // The documented limit.
  EXPECT_TRUE(Verify(TamperedCopy("DELETE FROM audit_records WHERE seq=6"), "").ok);
  // Verifying with a key demands the signed head.
  v = Verify(path_, pem_);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.first_bad_seq, 7u) << v.problem;
}

// ---------------------------------------------------------------- retention

TEST_F(AuditTest, PruneKeepsTheChainVerifiable) {
  AuditLog::Options o = Opts(/*every=*/10);
  // Checkpoints by count only: Flush returns before the writer's time-based
  // maintenance, which could otherwise checkpoint 25 once the clock has jumped.
  o.checkpoint_every = std::chrono::hours(24 * 365);
  auto log = OpenLog(o);
  for (int i = 1; i <= 25; ++i) {
    log->Append(Conn(i));
  }
  log->Flush();
  clock_.Advance(hours(24 * 31));
  for (int i = 26; i <= 30; ++i) {
    log->Append(Conn(i));
  }
  log->Flush();
  const int64_t cutoff =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now().time_since_epoch())
          .count() -
      int64_t{30} * 24 * 3600 * 1000;
  // Records 1..25 are old, but the newest checkpoint among them is 20.
  auto pruned = log->Prune(cutoff);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 20u);
  EXPECT_EQ(*log->Prune(cutoff), 0u);
  ASSERT_TRUE(log->AppendSync(Conn(31)).ok());
  log.reset();

  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.anchor_seq, 20u);
  EXPECT_EQ(v.first_seq, 21u);
  EXPECT_EQ(v.last_seq, 31u);
  EXPECT_EQ(v.records, 11u);

  // Tampering after a prune is still pinpointed.
  EXPECT_EQ(Verify(TamperedCopy("DELETE FROM audit_records WHERE seq=21"), pem_).first_bad_seq,
            21u);
  EXPECT_EQ(
      Verify(TamperedCopy("UPDATE audit_records SET actor='x' WHERE seq=22"), pem_).first_bad_seq,
      22u);
}

TEST_F(AuditTest, RetentionPrunesAtOpen) {
  Write(25, /*every=*/10);
  clock_.Advance(hours(24 * 31));
  AuditLog::Options o = Opts(10);
  o.retention = hours(24 * 30);
  {
    auto log = OpenLog(o);
    ASSERT_TRUE(log->AppendSync(Conn(26)).ok());
  }
  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.anchor_seq, 20u);
  EXPECT_EQ(v.records, 6u);

  o.retention = std::chrono::milliseconds(0);  // keep forever
  clock_.Advance(hours(24 * 365));
  { auto log = OpenLog(o); }
  EXPECT_EQ(Verify(path_, pem_).records, 6u);
}

// ---------------------------------------------------------------- durability

TEST_F(AuditTest, AcknowledgedRecordsSurviveDestructionWithoutFlush) {
  std::atomic<int> acked{0};
  absl::Notification some_acked;
  {
    auto log = OpenLog(Opts());
    for (int i = 1; i <= 500; ++i) {
      log->Append(Conn(i), [&](absl::Status s) {
        ASSERT_TRUE(s.ok()) << s;
        if (++acked == 100) {
          some_acked.Notify();
        }
      });
    }
    some_acked.WaitForNotification();
    // Destroyed here without Flush: everything queued is still committed.
  }
  EXPECT_EQ(acked.load(), 500);
  auto log = OpenLog(Opts());
  log.reset();
  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, 500u);
}

// The real thing: a child process appends as fast as it can and reports every
// acknowledgement over a pipe; the parent SIGKILLs it mid-stream, then checks that
// every acknowledged record is there and the chain (and its signed head) verifies.
TEST_F(AuditTest, SigkillRightAfterAckLosesNoAcknowledgedRecord) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: no threads until here; the writer thread is the child's own.
    ::close(fds[0]);
    AuditLog::Options o = Opts();
    o.clock = nullptr;
    o.max_queue = 256;
    o.checkpoint_every_records = 100;
    auto log = AuditLog::Open(path_, o);
    if (!log.ok()) {
      ::_exit(3);
    }
    for (int i = 1;; ++i) {
      (*log)->Append(Conn(i), [fd = fds[1], i](absl::Status s) {
        if (s.ok()) {
          std::string line = common::StrCat(i, "\n");
          if (::write(fd, line.data(), line.size()) < 0) {
            ::_exit(4);
          }
        }
      });
    }
  }
  ::close(fds[1]);
  FILE* acks = ::fdopen(fds[0], "r");
  ASSERT_NE(acks, nullptr);
  int last_acked = 0;
  int n = 0;
  bool killed = false;
  while (std::fscanf(acks, "%d", &n) == 1) {
    EXPECT_EQ(n, last_acked + 1);  // acknowledged in order
    last_acked = n;
    if (!killed && last_acked >= 1500) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
  std::fclose(acks);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(killed) << "child stopped early, status " << status;
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_GE(v.records, static_cast<uint64_t>(last_acked));
  auto records = QueryAuditLog(path_, QueryFilter{});
  ASSERT_TRUE(records.ok());
  ASSERT_GE(records->size(), static_cast<size_t>(last_acked));
  for (int i = 1; i <= last_acked; ++i) {
    ASSERT_EQ((*records)[i - 1].details["i"], i);
  }
  // The killed writer's log opens and continues.
  AuditLog::Options o = Opts();
  o.clock = nullptr;
  auto log = OpenLog(o);
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(log->AppendSync(Conn(0)).ok());
  log.reset();
  EXPECT_TRUE(Verify(path_, pem_).ok);
  std::printf(
      "[ info ] SIGKILL after %d acknowledged records; %llu on disk, all acknowledged "
      "present\n",
      last_acked, static_cast<unsigned long long>(v.records));
}

// A full disk (the database capped at its current size): records that gate an
// action fail at once, so the caller can refuse it; every other record is kept,
// in order, and committed once there is room again. Nothing that happened is lost.
TEST_F(AuditTest, FullStorageFailsGatesAndKeepsFactsUntilThereIsRoom) {
  AuditLog::Options o = Opts();
  o.retry_after_failure = std::chrono::milliseconds(20);
  std::vector<absl::Status> transitions;
  absl::Mutex mu;
  o.on_storage_state = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    transitions.push_back(s);
  };
  auto log = OpenLog(o);
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(log->AppendSync(Conn(i)).ok());
  }
  ASSERT_TRUE(log->StorageStatus().ok());
  ASSERT_TRUE(log->LimitPagesForTesting(1).ok());  // clamped to the current size

  // Records big enough to need new pages.
  auto big = [](int i) {
    Record r = Conn(i);
    r.details["padding"] = std::string(64 * 1024, 'x');
    return r;
  };
  // A fact (kept until durable): its caller hears of the failure.
  EXPECT_FALSE(log->AppendSync(big(100)).ok());
  // A gate: fails, and is dropped.
  absl::Notification gate_done;
  absl::Status gate_status;
  log->Append(
      big(101),
      [&](absl::Status s) {
        gate_status = s;
        gate_done.Notify();
      },
      AuditLog::Retention::kDropOnFailure);
  ASSERT_TRUE(gate_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(gate_status.ok());
  EXPECT_TRUE(absl::IsUnavailable(log->StorageStatus())) << log->StorageStatus();
  EXPECT_NE(log->StorageStatus().message().find("cannot write the audit log"), std::string::npos);

  // Facts appended while storage fails: their callers hear of the failure once,
  // the records wait.
  std::atomic<int> told{0};
  for (int i = 200; i < 205; ++i) {
    log->Append(big(i), [&](absl::Status s) {
      EXPECT_FALSE(s.ok());
      told.fetch_add(1);
    });
  }
  for (int i = 0; i < 500 && told.load() < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(told.load(), 5);
  EXPECT_GT(log->GetStats().retried, 0u);

  ASSERT_TRUE(log->LimitPagesForTesting(1 << 30).ok());  // room again
  log->Flush();
  EXPECT_TRUE(log->StorageStatus().ok());
  EXPECT_EQ(told.load(), 5);  // exactly once each
  log.reset();

  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  // 3 before, the AppendSync'd record (kept, committed late), the 5 facts; not the gate.
  EXPECT_EQ(v.records, 9u);
  QueryFilter all;
  auto records = QueryAuditLog(path_, all);
  ASSERT_TRUE(records.ok()) << records.status();
  std::vector<int> order;
  for (const Record& r : *records) {
    order.push_back(r.details["i"].get<int>());
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 100, 200, 201, 202, 203, 204}));
  absl::MutexLock lock(&mu);
  ASSERT_EQ(transitions.size(), 2u);
  EXPECT_FALSE(transitions[0].ok());
  EXPECT_TRUE(transitions[1].ok());
}

TEST_F(AuditTest, GroupCommitFromFourThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  AuditLog::Options o = Opts(/*every=*/1000);
  o.clock = nullptr;
  auto log = OpenLog(o);
  std::atomic<int> ok{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        log->Append(Conn(t * kPerThread + i, common::StrCat("client/t", t)), [&](absl::Status s) {
          if (s.ok()) {
            ++ok;
          }
        });
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  log->Flush();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  AuditLog::Stats stats = log->GetStats();
  log.reset();

  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(stats.records, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.commits, stats.records);  // batches, not one fsync per record
  EXPECT_EQ(stats.checkpoints, 10u);
  VerifyResult v = Verify(path_, pem_);
  EXPECT_TRUE(v.ok) << v.problem;
  EXPECT_EQ(v.records, static_cast<uint64_t>(kThreads * kPerThread));
  std::set<int> seen;
  auto all = QueryAuditLog(path_, QueryFilter{});
  ASSERT_TRUE(all.ok());
  for (const Record& r : *all) {
    seen.insert(r.details["i"].get<int>());
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
  std::printf(
      "[ info ] group commit: %d records from %d threads in %.3f s = %.0f records/s, "
      "%llu commits (%.1f records/commit)\n",
      kThreads * kPerThread, kThreads, secs, kThreads * kPerThread / secs,
      static_cast<unsigned long long>(stats.commits),
      static_cast<double>(stats.records) / static_cast<double>(stats.commits));
}

TEST_F(AuditTest, CallbacksMayAppendButNotWait) {
  auto log = OpenLog(Opts());
  absl::Notification done;
  absl::Status sync_status;
  log->Append(Conn(1), [&](absl::Status s) {
    ASSERT_TRUE(s.ok());
    sync_status = log->AppendSync(Conn(2));
    log->Flush();  // a no-op here, not a deadlock
    log->Append(Conn(3), [&](absl::Status) { done.Notify(); });
  });
  done.WaitForNotification();
  EXPECT_TRUE(absl::IsFailedPrecondition(sync_status));
  // A callback that appends while the log is being destroyed is still committed.
  std::atomic<int> late{0};
  AuditLog* raw = log.get();  // reset() nulls `log` before destroying the log
  raw->Append(Conn(4), [&, raw](absl::Status) {
    raw->Append(Conn(5), [&](absl::Status s) { late += s.ok() ? 1 : 100; });
  });
  log.reset();
  EXPECT_EQ(late.load(), 1);
  EXPECT_EQ(Verify(path_, pem_).records, 4u);
}

TEST_F(AuditTest, SharesTheServerStateDatabase) {
  Sql(path_,
      "PRAGMA journal_mode=WAL; CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);"
      "INSERT INTO meta VALUES('schema_version','1');");
  Write(3);
  EXPECT_EQ(SqlText(path_, "SELECT value FROM meta WHERE key='schema_version'"), "1");
  EXPECT_TRUE(Verify(path_, pem_).ok);
  auto mode = common::FileMode(dir_.File("fresh.db"));
  EXPECT_FALSE(mode.ok());
  AuditLog::Options o = Opts();
  { auto log = AuditLog::Open(dir_.File("fresh.db"), o); }
  mode = common::FileMode(dir_.File("fresh.db"));
  ASSERT_TRUE(mode.ok());
  EXPECT_EQ(*mode & 0077, 0u);
}

// ---------------------------------------------------------------- query

TEST_F(AuditTest, QueryFiltersAndFormats) {
  {
    auto log = OpenLog(Opts());
    ASSERT_TRUE(log->AppendSync(Conn(1, "client/alice", "gitlab.corp:443")).ok());
    clock_.Advance(hours(1));
    ASSERT_TRUE(log->AppendSync(Conn(2, "client/bob", "gitlab.corp:22")).ok());
    clock_.Advance(hours(1));
    ASSERT_TRUE(
        log->AppendSync(MakeRecord(EventClass::kNetworkActivity, "deny", kOutcomeFailure,
                                   "client/bob", "10.0.0.8:1",
                                   {{"destination", "vault.corp:8200"}, {"reason", "policy"}}))
            .ok());
    ASSERT_TRUE(log->AppendSync(MakeRecord(EventClass::kAuthentication, "enroll", kOutcomeSuccess,
                                           "agent/site-a", "10.0.0.9:1"))
                    .ok());
  }
  auto seqs = [&](const QueryFilter& f) {
    auto records = QueryAuditLog(path_, f);
    EXPECT_TRUE(records.ok()) << records.status();
    std::vector<uint64_t> out;
    for (const Record& r : *records) {
      out.push_back(r.seq);
    }
    return out;
  };
  using V = std::vector<uint64_t>;
  EXPECT_EQ(seqs({}), (V{1, 2, 3, 4}));
  QueryFilter f;
  f.identity = "client/bob";
  EXPECT_EQ(seqs(f), (V{2, 3}));
  f = {};
  f.identity = "agent/site-a";  // actor of 4, details.agent of 1 and 2
  EXPECT_EQ(seqs(f), (V{1, 2, 4}));
  f = {};
  f.destination = "gitlab.corp:443";
  EXPECT_EQ(seqs(f), (V{1}));
  f.destination = "gitlab.corp:*";
  EXPECT_EQ(seqs(f), (V{1, 2}));
  f = {};
  f.outcome = "failure";
  EXPECT_EQ(seqs(f), (V{3}));
  f = {};
  f.class_name = "network_activity";
  EXPECT_EQ(seqs(f), (V{1, 2, 3}));
  f.class_name = "3002";
  EXPECT_EQ(seqs(f), (V{4}));
  f = {};
  f.from_ms = 1700000000000 + 3600 * 1000;
  f.to_ms = 1700000000000 + 2 * 3600 * 1000;
  EXPECT_EQ(seqs(f), (V{2}));
  f = {};
  f.limit = 2;
  EXPECT_EQ(seqs(f), (V{1, 2}));

  auto records = QueryAuditLog(path_, {});
  std::string table = FormatTable(*records);
  EXPECT_NE(table.find("TIME (UTC)"), std::string::npos);
  EXPECT_NE(table.find("2023-11-14T22:13:20.000Z  1    Network Activity"), std::string::npos)
      << table;
  EXPECT_NE(table.find("gitlab.corp:443  agent/site-a (i-1)  100  1000  1.5s"), std::string::npos)
      << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 5);
  for (const Record& r : *records) {
    auto back = FromJson(ToJsonLine(r));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, r);
    EXPECT_EQ(ComputeHash(*back), r.hash);
  }
}

}  // namespace
}  // namespace drawbridge::audit

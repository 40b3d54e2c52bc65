#!/usr/bin/env bash
# End-to-end test of the audit trail, run the way an operator and an auditor use it:
# a server exporting to a real rsyslog (TCP), a TLS syslog receiver (Python's ssl module)
# and a JSON-lines file, alerting to a local webhook; an agent keeping its own log; a
# client proxy; curl as the application.
#
# Usage: audit_test.sh PATH/TO/drawbridge
#
# Shows: the records a tunnel session leaves on the server and on the agent; the
# operator's one-query answer to "who reached X, through which agent, how much";
# `audit verify` on untouched logs and on copies edited, cut, padded, reordered and
# truncated; SIGKILL right after an acknowledged connection loses no record; a burst
# of failed enrollments raises exactly one alert per rule, delivered to the webhook;
# rsyslog stopped and started again loses no record; no secret of the run appears in
# any file or output.
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback ports,
# every process killed on exit. Ends with "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout realpath sqlite3 openssl rsyslogd

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

use_work_dir audit-test
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
AGENT_LOG="$WORK/agent.log"
CLIENT_LOG="$WORK/client.log"
mkdir -p "$WORK/export" "$WORK/rsyslog/work" "$WORK/tls"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  show_log "agent log" "$AGENT_LOG" 10
  summary_and_exit
}

ADMIN=("$BIN" admin --credentials "$D/admin.json")
cd "$WORK"
SERVER_PORT=$(free_port)
HTTP_PORT=$(free_port)     # reachable: policy and the agent's allowlist allow it
DENY_PORT=$(free_port)     # the policy allows it, the agent's allowlist does not
OTHER_PORT=$(free_port)    # in no policy rule
PROXY_PORT=$(free_port)
SYSLOG_PORT=$(free_port)   # rsyslog, TCP
TLS_PORT=$(free_port)      # a TLS syslog receiver
HOOK_PORT=$(free_port)     # webhook receiver
PROXY="http://127.0.0.1:$PROXY_PORT"
TOKEN="audit-token-$RANDOM$RANDOM"
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

# seqs_in FILE: the sorted unique seq numbers of the audit records in FILE: JSON
# lines (the file export, rsyslog's %msg% lines) or an octet-counted syslog stream
# ("LEN <PRI>1 ... {json}LEN <PRI>1 ...", as a TLS receiver gets it).
seqs_in() {
  python3 - "$1" <<'EOF'
import json, re, sys
data = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
messages = []
if re.match(r"[0-9]+ <", data):
    pos = 0
    while True:
        m = re.compile(r"([0-9]+) ").match(data, pos)
        if not m or m.end() + int(m.group(1)) > len(data):
            break
        messages.append(data[m.end():m.end() + int(m.group(1))])
        pos = m.end() + int(m.group(1))
else:
    messages = data.splitlines()
seqs = set()
for msg in messages:
    start = msg.find("{")
    try:
        seqs.add(json.loads(msg[start:])["seq"])
    except Exception:
        pass
print(" ".join(str(s) for s in sorted(seqs)))
EOF
}

# last_seq: the newest seq in the server's audit log.
last_seq() {
  "$BIN" audit query --data-dir "$D" --json | tail -n 1 | python3 -c 'import json,sys;print(json.load(sys.stdin)["seq"])'
}

# missing_seqs FILE N: the seqs in 1..N that FILE's audit lines lack ("" when none).
missing_seqs() {
  python3 - "$(seqs_in "$1")" "$2" <<'EOF'
import sys
have = set(int(s) for s in sys.argv[1].split())
print(" ".join(str(s) for s in range(1, int(sys.argv[2]) + 1) if s not in have))
EOF
}

# wait_all_seqs FILE SECONDS: polls until FILE holds every seq up to last_seq.
wait_all_seqs() {
  local file=$1 secs=$2 n
  local deadline=$((SECONDS + secs))
  n=$(last_seq)
  while true; do
    if [[ -f $file && -z $(missing_seqs "$file" "$n") ]]; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------
section "1. setup: receivers, server with audit export and alerts, agent, client"
# ---------------------------------------------------------------------------
cat >"$WORK/rsyslog/rsyslog.conf" <<EOF
global(workDirectory="$WORK/rsyslog/work" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port="$SYSLOG_PORT" address="127.0.0.1")
template(name="msgonly" type="string" string="%msg%\n")
*.* action(type="omfile" file="$WORK/rsyslog/received.log" template="msgonly")
EOF
start_rsyslog() {
  start_bg "$WORK/rsyslog/rsyslogd.log" rsyslogd -n -f "$WORK/rsyslog/rsyslog.conf" \
    -i "$WORK/rsyslog/rsyslogd.pid"
  RSYSLOG_PID=$BG_PID
  wait_for_port "$SYSLOG_PORT" 15 "$RSYSLOG_PID"
}
start_rsyslog || abort "rsyslogd listens on 127.0.0.1:$SYSLOG_PORT"
pass "rsyslogd (Debian's) listening on 127.0.0.1:$SYSLOG_PORT"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
  -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" >/dev/null 2>&1
# A TLS syslog receiver (RFC 5425): appends whatever each connection sends to a file.
cat >"$WORK/tls/receiver.py" <<'EOF'
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
out = open(sys.argv[4], "ab", buffering=0)
lock = threading.Lock()
def serve(conn):
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                with lock:
                    out.write(data)
    except (OSError, ssl.SSLError):
        pass
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
EOF
start_bg "$WORK/tls/receiver.log" python3 "$WORK/tls/receiver.py" "$TLS_PORT" \
  "$WORK/tls/cert.pem" "$WORK/tls/key.pem" "$WORK/tls/received.log"
wait_for_port "$TLS_PORT" 10 "$BG_PID" || abort "TLS syslog receiver on $TLS_PORT"

cat >"$WORK/hook.py" <<'EOF'
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[2], "ab") as f:
            f.write(body + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
EOF
start_bg "$WORK/hook.log" python3 "$WORK/hook.py" "$HOOK_PORT" "$WORK/alerts.jsonl"
wait_for_port "$HOOK_PORT" 10 "$BG_PID" || abort "webhook receiver on $HOOK_PORT"
pass "TLS syslog receiver (python ssl) and webhook receiver up"

run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
expect_contains "server init creates the audit signing key's public half" \
  "$(ls "$D/audit")" 'audit\.pub'
# The audit section init wrote, replaced by this test's.
sed -i '/^# The tamper-evident audit trail/,$d' "$D/server.yaml"
cat >>"$D/server.yaml" <<EOF
audit:
  retention_days: 30
  checkpoint_every_records: 5
  checkpoint_every_seconds: 1
  export:
    - {type: jsonl, path: "$WORK/export/audit.jsonl"}
    - {type: syslog, address: "127.0.0.1:$SYSLOG_PORT"}
    - {type: syslog, address: "127.0.0.1:$TLS_PORT", tls: true, ca_file: "$WORK/tls/cert.pem", server_name: localhost}
  alerts:
    webhook: "http://127.0.0.1:$HOOK_PORT/alerts"
EOF
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: ci-to-web
    clients: ["client/ci"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$HTTP_PORT", "127.0.0.1:$DENY_PORT", "localhost:$DENY_PORT"]
EOF
start_server() {
  start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$WORK/policy.yaml" \
    --metrics-listen 127.0.0.1:0
  SERVER_PID=$BG_PID
  wait_for_count "$SERVER_LOG" 'server\.listening' 1 15 "$SERVER_PID" &&
    wait_for_port "$SERVER_PORT" 10 "$SERVER_PID"
}
start_server || abort "server starts with the audit section"
pass "server listening with jsonl, syslog (TCP and TLS) export and a webhook"

for id in agent/a1 client/ci client/bad; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
mkdir -p www && printf '%s\n' "$TOKEN" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "backend on $HTTP_PORT"
start_bg "$AGENT_LOG" "$BIN" agent --credentials a1.json --instance-id a1-one \
  --data-dir "$WORK/agent-data" --allow "127.0.0.1/32:$HTTP_PORT" --allow "localhost:$DENY_PORT"
AGENT_PID=$BG_PID
wait_for_count "$AGENT_LOG" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "agent connects"
start_bg "$CLIENT_LOG" "$BIN" client --credentials ci.json --listen "127.0.0.1:$PROXY_PORT"
CLIENT_PID=$BG_PID
wait_for_port "$PROXY_PORT" 15 "$CLIENT_PID" || abort "client proxy listens"
pass "agent/a1 (own audit log in agent-data/) and client/ci up"

# ---------------------------------------------------------------------------
section "2. a tunnel session leaves the expected records on the server and the agent"
# ---------------------------------------------------------------------------
run curl -sS --max-time 20 -p -x "$PROXY" "http://127.0.0.1:$HTTP_PORT/index.html"
expect_contains "curl through the tunnel gets the private page" "$LAST" "$TOKEN"
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "$PROXY" \
  "http://127.0.0.1:$DENY_PORT/" || true)
expect_eq "a destination outside the agent's allowlist is refused (403)" "$code" "403"
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "$PROXY" \
  "http://127.0.0.1:$OTHER_PORT/" || true)
expect_eq "a destination outside the policy is refused (403)" "$code" "403"
# The agent lists localhost:DENY_PORT by name only; it resolves to loopback, which the
# agent itself refuses (the server cannot know what a name resolves to inside).
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "$PROXY" \
  "http://localhost:$DENY_PORT/" || true)
expect_eq "a name resolving to loopback is refused by the agent (403)" "$code" "403"

# The close record is written when the tunnel ends, just after curl returns.
deadline=$((SECONDS + 10))
until "$BIN" audit query --data-dir "$D" --json --destination "127.0.0.1:$HTTP_PORT" |
  grep -q '"activity":"close"' || ((SECONDS >= deadline)); do sleep 0.1; done
run "$BIN" audit query --data-dir "$D" --json --class network_activity \
  --destination "127.0.0.1:$HTTP_PORT"
cp "$LAST" "$WORK/session.jsonl"
python3 - "$WORK/session.jsonl" "$HTTP_PORT" >"$WORK/session.check" 2>&1 <<'EOF' || true
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
dest = "127.0.0.1:" + sys.argv[2]
opens = [r for r in recs if r["activity"] == "open"]
closes = [r for r in recs if r["activity"] == "close"]
assert len(opens) == 1 and len(closes) == 1, (len(opens), len(closes))
o, c = opens[0], closes[0]
for r in (o, c):
    assert r["class_uid"] == 4001 and r["class_name"] == "Network Activity"
    assert r["actor"] == "client/ci" and r["source_address"] == "127.0.0.1"
    d = r["details"]
    assert d["client"] == "client/ci" and d["destination"] == dest
    assert d["agent"] == "agent/a1" and d["agent_instance"] == "a1-one"
    assert d["resolved_address"] == "127.0.0.1"
assert o["outcome"] == "success" and o["seq"] < c["seq"]
assert c["details"]["bytes_down"] > 0 and c["details"]["bytes_up"] > 0
assert "duration_ms" in c["details"] and c["details"]["close_reason"]
print("ok")
EOF
expect_contains "server: open + close with client, agent instance, resolved address, bytes, duration" \
  "$WORK/session.check" '^ok$'

run "$BIN" audit query --data-dir "$D" --json --outcome failure --class network_activity
expect_contains "server: the allowlist refusal is a deny record (denied_agent)" "$LAST" \
  "\"activity\":\"deny\".*\"destination\":\"127.0.0.1:$DENY_PORT\".*\"reason_code\":\"denied_agent\""
expect_contains "server: the policy refusal is a deny record (denied_policy)" "$LAST" \
  "\"activity\":\"deny\".*\"destination\":\"127.0.0.1:$OTHER_PORT\".*\"reason_code\":\"denied_policy\""
run "$BIN" audit query --data-dir "$D" --json
for activity in enroll issue_certificate agent_connect admin_change policy_reload server_start; do
  expect_contains "server: a $activity record" "$LAST" "\"activity\":\"$activity\""
done
expect_contains "server: certificate issue names serial and expiry" "$LAST" \
  '"activity":"issue_certificate".*"not_after":"[0-9-]+T[0-9:.]+Z".*"serial":"[0-9a-f]+"'
expect_contains "server: admin change records before and after" "$LAST" \
  '"activity":"admin_change".*"after":\{.*"before":null.*"method":"CreateIdentity"'

run "$BIN" audit query --data-dir "$WORK/agent-data" --json
cp "$LAST" "$WORK/agent-records.jsonl"
expect_contains "agent: its start with the allowlist in force" "$LAST" \
  "\"activity\":\"agent_start\".*\"allowlist\":\\[\"127.0.0.1/32:$HTTP_PORT\",\"localhost:$DENY_PORT\"\\]"
expect_contains "agent: the connection it made (client, destination, address)" "$LAST" \
  "\"activity\":\"open\".*\"client\":\"client/ci\".*\"destination\":\"127.0.0.1:$HTTP_PORT\".*\"resolved_address\":\"127.0.0.1\""
expect_contains "agent: its close with bytes each way" "$LAST" \
  '"activity":"close".*"bytes_down":[1-9][0-9]*,"bytes_up":[1-9]'
expect_contains "agent: the connection it refused (name resolved to loopback)" "$LAST" \
  "\"activity\":\"deny\".*\"destination\":\"localhost:$DENY_PORT\".*\"reason_code\":\"denied_agent\""

# The operator's question, in one command.
run "$BIN" audit query --data-dir "$D" --destination "127.0.0.1:$HTTP_PORT" --from 1d \
  --class network_activity
cp "$LAST" "$WORK/answer.txt"
expect_contains "one query answers who reached it, through which agent, how much" "$LAST" \
  "close +success +client/ci +127\.0\.0\.1 +127\.0\.0\.1:$HTTP_PORT +agent/a1 \(a1-one\) +[0-9]+ +[0-9]+ "

# ---------------------------------------------------------------------------
section "3. SIGKILL right after an acknowledged connection loses no record"
# ---------------------------------------------------------------------------
opens_before=$("$BIN" audit query --data-dir "$D" --json --destination "127.0.0.1:$HTTP_PORT" |
  grep -c '"activity":"open"' || true)
run curl -sS --max-time 20 -p -x "$PROXY" "http://127.0.0.1:$HTTP_PORT/index.html"
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
expect_contains "the connection was acknowledged (curl got the page)" "$LAST" "$TOKEN"
start_server || abort "server restarts after SIGKILL"
opens_after=$("$BIN" audit query --data-dir "$D" --json --destination "127.0.0.1:$HTTP_PORT" |
  grep -c '"activity":"open"' || true)
expect_eq "its open record survived the kill" "$opens_after" "$((opens_before + 1))"
run "$BIN" audit verify --data-dir "$D"
expect_contains "the chain verifies after the crash" "$LAST" '^OK: '

# ---------------------------------------------------------------------------
section "4. a burst of failed enrollments raises exactly one alert per rule"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" identity disable client/bad
for _ in 1 2 3 4 5 6 7 8; do
  run "$BIN" check --credentials bad.json
done
expect_exit "enrollment with a disabled identity is refused" 1 "$BIN" check --credentials bad.json
# 9 refusals: failed_auth_per_identity (5 in 5 min) and revoked_credential_used (1)
# fire once each for client/bad, however many follow in the window.
alerts_for() {  # alerts_for RULE: webhook deliveries of RULE for client/bad
  grep -c "\"key\":\"client/bad\".*\"rule\":\"$1\"" "$WORK/alerts.jsonl" 2>/dev/null || true
}
deadline=$((SECONDS + 15))
until [[ $(alerts_for failed_auth_per_identity) -ge 1 && $(alerts_for revoked_credential_used) -ge 1 ]] ||
  ((SECONDS >= deadline)); do sleep 0.1; done
run "$BIN" audit query --data-dir "$D" --json --class detection_finding
cp "$LAST" "$WORK/alert-records.jsonl"
expect_eq "failed_auth_per_identity: one audit record" \
  "$(grep -c '"key":"client/bad".*"rule":"failed_auth_per_identity"' "$WORK/alert-records.jsonl" || true)" 1
expect_eq "revoked_credential_used: one audit record" \
  "$(grep -c '"key":"client/bad".*"rule":"revoked_credential_used"' "$WORK/alert-records.jsonl" || true)" 1
expect_eq "failed_auth_per_identity: one webhook POST" "$(alerts_for failed_auth_per_identity)" 1
expect_eq "revoked_credential_used: one webhook POST" "$(alerts_for revoked_credential_used)" 1
expect_contains "the alert is in the server log too" "$SERVER_LOG" \
  'WARN alert rule=failed_auth_per_identity severity=high key=client/bad count=5'
run "$BIN" audit query --data-dir "$D" --json --identity client/bad --outcome failure
expect_eq "all 9 refusals are on record with their reason" \
  "$(grep -c '"activity":"enroll".*"reason_code":"identity_disabled"' "$LAST" || true)" 9

# ---------------------------------------------------------------------------
section "5. SIEM export: rsyslog stopped and started again loses nothing"
# ---------------------------------------------------------------------------
if wait_all_seqs "$WORK/rsyslog/received.log" 20; then
  pass "rsyslog received every record so far ($(last_seq))"
else
  fail "rsyslog received every record so far" \
    "missing: $(missing_seqs "$WORK/rsyslog/received.log" "$(last_seq)")"
fi
kill -TERM "$RSYSLOG_PID"
wait_for_exit "$RSYSLOG_PID" 10 || true
before_stop=$(last_seq)
for _ in 1 2 3; do
  run "${ADMIN[@]}" identity list   # each call: enroll, issue_certificate, admin_read
done
run curl -sS --max-time 20 -p -x "$PROXY" "http://127.0.0.1:$HTTP_PORT/index.html"
expect_contains "the tunnel works while the SIEM is down" "$LAST" "$TOKEN"
after_outage=$(last_seq)
expect_contains "records were written during the outage ($before_stop -> $after_outage)" \
  "$((after_outage - before_stop))" '^[1-9][0-9]*$'
start_rsyslog || abort "rsyslogd restarts on its port"
if wait_all_seqs "$WORK/rsyslog/received.log" 60; then
  pass "after the restart rsyslog holds every record 1..$(last_seq), none lost"
else
  fail "after the restart rsyslog holds every record" \
    "missing: $(missing_seqs "$WORK/rsyslog/received.log" "$(last_seq)")"
  show_log "server log" "$SERVER_LOG" 10
fi
if wait_all_seqs "$WORK/export/audit.jsonl" 20; then
  pass "the JSON-lines file holds every record"
else
  fail "the JSON-lines file holds every record" "missing: $(missing_seqs "$WORK/export/audit.jsonl" "$(last_seq)")"
fi
if wait_all_seqs "$WORK/tls/received.log" 20; then
  pass "the TLS syslog receiver holds every record"
else
  fail "the TLS syslog receiver holds every record" "missing: $(missing_seqs "$WORK/tls/received.log" "$(last_seq)")"
fi
expect_contains "syslog lines are RFC 5424 with the record's seq as structured data" \
  "$WORK/tls/received.log" '<1[0-9][0-9]>1 [0-9-]+T[0-9:.]+Z [^ ]+ drawbridge [0-9]+ [a-z_]+ \[drawbridge@32473 seq="[0-9]+"'

# ---------------------------------------------------------------------------
section "6. audit verify: untouched logs pass, every kind of tampering is pinpointed"
# ---------------------------------------------------------------------------
run "$BIN" audit verify --data-dir "$D"
expect_contains "the server's log verifies (chain, checkpoints, signed head)" "$LAST" \
  '^OK: [0-9]+ records .*signed checkpoints and the signed head verified'
run "$BIN" audit verify --data-dir "$WORK/agent-data"
expect_contains "the agent's log verifies with its own key" "$LAST" \
  '^OK: [0-9]+ records .*the signed head verified'

sqlite3 "$D/state.db" ".backup '$WORK/copy.db'"
COPY_LAST=$("$BIN" audit query --db "$WORK/copy.db" --json | tail -n 1 |
  python3 -c 'import json,sys;print(json.load(sys.stdin)["seq"])')
COLS="time_ms, class_uid, class_name, activity, outcome, actor, source_address, details, prev_hash, hash"
tamper() {  # tamper NAME WANT_SEQ SQL: verify on an edited copy names WANT_SEQ
  cp "$WORK/copy.db" "$WORK/t.db"
  sqlite3 "$WORK/t.db" "$3"
  expect_exit "$1: verify fails" 1 "$BIN" audit verify --db "$WORK/t.db" \
    --public-key "$D/audit/audit.pub"
  expect_contains "$1: the first bad seq is $2" "$LAST" "^TAMPERED: first bad record seq $2:"
}
tamper "edit" 10 "UPDATE audit_records SET actor='client/someone-else' WHERE seq=10"
tamper "delete" 10 "DELETE FROM audit_records WHERE seq=10"
tamper "insert" 10 "UPDATE audit_records SET seq=seq+1000000 WHERE seq>=10;
  UPDATE audit_records SET seq=seq-1000000+1 WHERE seq>=1000000;
  INSERT INTO audit_records(seq, $COLS) SELECT 10, time_ms, class_uid, class_name, activity,
    outcome, 'client/forged', source_address, details, hash, hash FROM audit_records WHERE seq=9"
tamper "reorder" 10 "UPDATE audit_records SET seq=-1 WHERE seq=10;
  UPDATE audit_records SET seq=10 WHERE seq=11; UPDATE audit_records SET seq=11 WHERE seq=-1"
tamper "truncate" "$((COPY_LAST - 2))" "DELETE FROM audit_records WHERE seq>$((COPY_LAST - 3))"
run "$BIN" audit verify --db "$WORK/copy.db" --public-key "$D/audit/audit.pub"
expect_contains "the untouched copy still verifies" "$LAST" '^OK: '
expect_exit "a wrong public key is refused" 1 "$BIN" audit verify --db "$WORK/copy.db" \
  --public-key "$WORK/agent-data/agent-audit.pub"

# ---------------------------------------------------------------------------
section "7. no secret of this run appears in any file or output"
# ---------------------------------------------------------------------------
kill -TERM "$SERVER_PID" "$AGENT_PID" "$CLIENT_PID" 2>/dev/null || true
wait_for_exit "$SERVER_PID" 10 || true
# Needles: every line of every credential's private key, and the KEK.
python3 - "$D/admin.json" a1.json ci.json bad.json >"$WORK/needles.txt" <<'EOF'
import json, sys
for path in sys.argv[1:]:
    pem = json.load(open(path))["private_key_pem"]
    for line in pem.splitlines():
        if line and not line.startswith("-----"):
            print(line)
EOF
cat "$D/kek" >>"$WORK/needles.txt"
expect_contains "there are secrets to look for" "$(wc -l <"$WORK/needles.txt")" '^ *[1-9]'
# Everything the run wrote, except the credential and KEK files that hold them on
# purpose (and the test's own TLS receiver key).
hits=""
while IFS= read -r -d '' f; do
  case "$f" in
    "$D/admin.json" | "$WORK/a1.json" | "$WORK/ci.json" | "$WORK/bad.json" | "$D/kek" | \
      "$WORK/needles.txt" | "$WORK/tls/key.pem") continue ;;
  esac
  if grep -aqF -f "$WORK/needles.txt" -- "$f" 2>/dev/null; then
    hits+="$f "
  fi
  if grep -aqE 'eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}|PRIVATE KEY' -- "$f" 2>/dev/null; then
    hits+="$f "
  fi
done < <(find "$WORK" -type f -print0)
expect_eq "no key, KEK, JWT or PEM private key in $(find "$WORK" -type f | wc -l) files" "$hits" ""

summary_and_exit

#!/usr/bin/env bash
# `drawbridge posture` against a live deployment, as an auditor's evidence run:
# a demo-like deployment (server, agent, client, a private HTTP server, alerts to
# a local webhook) with the server running as an unprivileged user passes every
# control; then, one at a time, a deliberately weakened setting makes posture
# fail naming exactly that control, and putting it back makes it pass again.
#
# Usage: posture_test.sh PATH/TO/drawbridge
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process killed on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

use_work_dir posture-test
TEST_STORE_ARGS=()
use_test_store
# The data directory sits in a directory any user may enter, so that the server
# can run as an unprivileged user when the test runs as root.
chmod 0755 "$WORK"
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
cd "$WORK"
SERVER_PORT=$(free_port)
HTTP_PORT=$(free_port)
PROXY_PORT=$(free_port)
HOOK_PORT=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

# As root, the server runs as nobody (as the systemd unit and the container do
# with their own users); otherwise as the user running the test.
AS_SERVER=()
if [[ $(id -u) -eq 0 ]]; then
  AS_SERVER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  # ... which must reach the test's PostgreSQL socket.
  [[ -n ${PG_DIR:-} ]] && chmod o+x "$PG_DIR"
fi

# posture_run NAME: runs posture (Markdown to NAME.md, JSON to NAME.json);
# POSTURE_RC is the Markdown run's exit code.
posture_run() {
  POSTURE_RC=0
  timeout 120 "$BIN" posture --credentials "$WORK/admin.json" --data-dir "$D" \
    >"$WORK/$1.md" 2>&1 || POSTURE_RC=$?
  timeout 120 "$BIN" posture --credentials "$WORK/admin.json" --data-dir "$D" --json \
    >"$WORK/$1.json" 2>"$WORK/$1.json.err" || true
}
# statuses NAME: "ID=status ..." from NAME.json, in report order.
statuses() {
  python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print(' '.join(c['id'] + '=' + c['status'] for c in r['controls']))" "$WORK/$1.json" 2>/dev/null ||
    echo "unreadable"
}
# failed NAME: the ids that failed in NAME.json.
failed() {
  python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print(' '.join(c['id'] for c in r['controls'] if c['status'] == 'fail'))" "$WORK/$1.json" 2>/dev/null ||
    echo "unreadable"
}

# ---------------------------------------------------------------------------
section "setup: a demo-like deployment with alerts to a webhook"
# ---------------------------------------------------------------------------
cat >"$WORK/hook.py" <<'EOF'
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
EOF
start_bg "$WORK/hook.log" python3 "$WORK/hook.py" "$HOOK_PORT"
wait_for_port "$HOOK_PORT" 10 "$BG_PID" || abort "webhook receiver"
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT" \
  "${TEST_STORE_ARGS[@]}"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
sed -i '/^# The tamper-evident audit trail/,$d' "$D/server.yaml"
cat >>"$D/server.yaml" <<EOF
audit:
  alerts:
    webhook: "http://127.0.0.1:$HOOK_PORT/alerts"
EOF
cp "$D/server.yaml" "$WORK/server.yaml.good"
# The admin credential leaves the data directory, as server init advises.
mv "$D/admin.json" "$WORK/admin.json"
[[ ${#AS_SERVER[@]} -gt 0 ]] && chown -R 65534:65534 "$D"
# The server keeps the policy file up to date (admin policy set), so it lives
# where the server's user may write.
mkdir -p "$WORK/etc"
cat >"$WORK/etc/policy.yaml" <<EOF
rules:
  - name: app-to-web
    clients: ["client/app"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
EOF
cp "$WORK/etc/policy.yaml" "$WORK/policy.yaml"
[[ ${#AS_SERVER[@]} -gt 0 ]] && chown -R 65534:65534 "$WORK/etc"
start_server() {
  start_bg "$SERVER_LOG" "${AS_SERVER[@]}" "$BIN" server --data-dir "$D" \
    --policy "$WORK/etc/policy.yaml" --metrics-listen 127.0.0.1:0
  SERVER_PID=$BG_PID
  wait_for_count "$SERVER_LOG" 'server\.listening' 1 15 "$SERVER_PID" &&
    wait_for_port "$SERVER_PORT" 10 "$SERVER_PID"
}
start_server || abort "server starts"
ADMIN=("$BIN" admin --credentials "$WORK/admin.json")
for id in agent/a1 client/app; do
  run "${ADMIN[@]}" identity create "$id" --cidr 127.0.0.1/32 --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
mkdir -p www && echo "private page" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "private HTTP server"
start_bg "$WORK/agent.log" "$BIN" agent --credentials a1.json --data-dir "$WORK/agent-data" \
  --allow "127.0.0.1/32:$HTTP_PORT"
wait_for_count "$WORK/agent.log" 'agent\.control_connected' 1 20 "$BG_PID" || abort "agent connects"
start_bg "$WORK/client.log" "$BIN" client --credentials app.json --listen "127.0.0.1:$PROXY_PORT"
wait_for_port "$PROXY_PORT" 15 "$BG_PID" || abort "client proxy listens"
run curl -sS --max-time 20 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_contains "a request through the tunnel reaches the private page" "$LAST" "private page"

# ---------------------------------------------------------------------------
section "1. the deployment passes every control, with evidence"
# ---------------------------------------------------------------------------
posture_run good
# sed alone: `| head` could end sed with SIGPIPE, which pipefail and set -e
# turn into the end of the test (seen once in a parallel ctest run).
sed -n -e '1,24s/^/       | /p' "$WORK/good.md"
expect_eq "posture exits 0" "$POSTURE_RC" 0
expect_eq "  ... no control failed" "$(failed good)" ""
expect_contains "  ... the Markdown report says PASS" "$WORK/good.md" '^- result: \*\*PASS\*\*'
n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['controls']))" "$WORK/good.json" 2>/dev/null || echo 0)
expect_eq "  ... and --json lists all 17 controls" "$n" 17
echo "       $(statuses good)"
[[ ${#AS_SERVER[@]} -gt 0 ]] &&
  expect_contains "  ... OPS-01: the server process found, not root" "$WORK/good.md" 'runs as uid 65534$'
expect_contains "  ... IAM-04: the revocation drill cut a live stream in time" "$WORK/good.md" \
  'ended the stream [0-9]+ ms after the disable'
expect_contains "  ... CRY-03: a TLS 1.2 ClientHello was refused by the gRPC port" "$WORK/good.md" \
  'gRPC port .*TLS 1.2-only ClientHello was refused'
expect_contains "  ... and by the lane port" "$WORK/good.md" 'lane port .*TLS 1.2-only ClientHello was refused'
expect_contains "  ... CRY-04: an Admin call without a client certificate was refused" "$WORK/good.md" \
  'gRPC port .*without a client certificate was refused'
expect_contains "  ... LOG-01: the audit chain verified" "$WORK/good.md" 'chain intact'
expect_contains "  ... LOG-02: the drill's disable is on record with before and after" "$WORK/good.md" \
  'is on record with its before'
expect_contains "  ... LOG-03: the drill's denied dial is on record" "$WORK/good.md" 'on record \(activity deny\)'
expect_contains "  ... each control names its SOC 2 criteria" "$WORK/good.md" '\| IAM-01 \| pass \| CC6.1'
run "${ADMIN[@]}" identity show client/posture-probe
expect_contains "the probe identity is left disabled" "$LAST" 'status: +disabled'
expect_not_contains "  ... with no active key" "$LAST" ' active '

# ---------------------------------------------------------------------------
section "2. a rule that allows everything: ACC-01 fails, and only it"
# ---------------------------------------------------------------------------
cat >"$WORK/policy-open.yaml" <<EOF
rules:
  - name: app-to-web
    clients: ["client/app"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
  - name: everything
    clients: ["client/*"]
    agents: ["agent/*"]
    destinations: ["0.0.0.0/1:*", "128.0.0.0/1:*"]
EOF
expect_ok "the admin sets it" "${ADMIN[@]}" policy set -f "$WORK/policy-open.yaml"
posture_run open
expect_eq "posture exits 1" "$POSTURE_RC" 1
expect_eq "  ... naming ACC-01 alone" "$(failed open)" "ACC-01"
expect_contains "  ... and the rule" "$WORK/open.md" 'rule "everything" lets every client through every agent'
expect_ok "the policy is put back" "${ADMIN[@]}" policy set -f "$WORK/policy.yaml"

# ---------------------------------------------------------------------------
section "3. an identity without a CIDR binding: IAM-02 fails, naming it"
# ---------------------------------------------------------------------------
expect_ok "client/loose is created without --cidr" "${ADMIN[@]}" identity create client/loose --out loose.json
posture_run loose
expect_eq "posture exits 1" "$POSTURE_RC" 1
expect_eq "  ... naming IAM-02 alone" "$(failed loose)" "IAM-02"
expect_contains "  ... and the identity" "$WORK/loose.md" 'client/loose: no CIDR binding'
expect_ok "client/loose is disabled" "${ADMIN[@]}" identity disable client/loose

# ---------------------------------------------------------------------------
section "4. a 24 h certificate lifetime: IAM-01 fails"
# ---------------------------------------------------------------------------
sed -i 's/^certificate_lifetime_seconds:.*/certificate_lifetime_seconds: 86400/' "$D/server.yaml"
expect_contains "server.yaml now says 24 h" "$D/server.yaml" '^certificate_lifetime_seconds: 86400'
kill -TERM "$SERVER_PID"
wait_for_exit "$SERVER_PID" 20 || true
start_server || abort "server restarts with a 24 h lifetime"
posture_run long
expect_eq "posture exits 1" "$POSTURE_RC" 1
expect_eq "  ... naming IAM-01 alone" "$(failed long)" "IAM-01"
expect_contains "  ... with the setting it saw" "$WORK/long.md" 'certificate_lifetime_seconds: 86400'
cp "$WORK/server.yaml.good" "$D/server.yaml"
[[ ${#AS_SERVER[@]} -gt 0 ]] && chown 65534:65534 "$D/server.yaml"
kill -TERM "$SERVER_PID"
wait_for_exit "$SERVER_PID" 20 || true
start_server || abort "server restarts with its good configuration"

# ---------------------------------------------------------------------------
section "5. a key-encryption key others can read: OPS-02 fails"
# ---------------------------------------------------------------------------
chmod 0644 "$D/kek"
posture_run modes
expect_eq "posture exits 1" "$POSTURE_RC" 1
expect_eq "  ... naming OPS-02 alone" "$(failed modes)" "OPS-02"
expect_contains "  ... and the file" "$WORK/modes.md" 'kek: mode 0644'
chmod 0600 "$D/kek"

# ---------------------------------------------------------------------------
section "6. everything put back: posture passes again"
# ---------------------------------------------------------------------------
posture_run again
expect_eq "posture exits 0" "$POSTURE_RC" 0
expect_eq "  ... no control failed" "$(failed again)" ""

# ---------------------------------------------------------------------------
section "7. usage errors are clear"
# ---------------------------------------------------------------------------
run "$BIN" posture --credentials "$WORK/admin.json" --data-dir "$WORK/nowhere"
expect_eq "a data directory without server.yaml: exit 1" "$LAST_RC" 1
expect_contains "  ... saying so" "$LAST" 'data-dir'
run "$BIN" posture --data-dir "$D"
expect_eq "no credentials: usage error (2)" "$LAST_RC" 2

# ---------------------------------------------------------------------------
section "8. make demo's deployment passes too"
# ---------------------------------------------------------------------------
start_bg "$WORK/demo.log" "$BIN" demo
DEMO_PID=$BG_PID
if wait_for_count "$WORK/demo.log" 'Try it yourself' 1 60 "$DEMO_PID"; then
  DEMO_DATA=$(sed -n 's/^ *data dir \(.*\)$/\1/p;T;q' "$WORK/demo.log")
  run "$BIN" posture --credentials "$DEMO_DATA/admin.json" --data-dir "$DEMO_DATA"
  expect_eq "posture on the running demo exits 0" "$LAST_RC" 0
  [[ $LAST_RC -eq 0 ]] || grep -A3 'FAIL$' "$LAST" | sed -e 's/^/       | /'
  expect_contains "  ... its report says PASS" "$LAST" '^- result: \*\*PASS\*\*'
  expect_contains "  ... the demo's alert webhook is reachable" "$LAST" "webhook's host .* accepts connections"
  expect_contains "  ... and its identities are bound to CIDRs" "$LAST" 'every one is bound to source CIDRs'
else
  fail "the demo runs" "$(tail -5 "$WORK/demo.log")"
fi
kill -TERM "$DEMO_PID" 2>/dev/null || true
wait_for_exit "$DEMO_PID" 20 || true

summary_and_exit

#!/usr/bin/env bash
# A clock jump of the server's certificate view (issue 11, fault injection).
#
# The server runs under libfaketime with its wall clock read from a file this test
# rewrites (monotonic time is left alone, so timers and backoff are untouched);
# the agent and the client keep the real clock. What must hold:
#   - a skew within max_clock_skew_seconds (60 s) in either direction changes
#     nothing: enrollment, renewal and dials work (certificates are backdated by
#     the tolerated skew, so a peer whose clock is behind does not reject its new
#     certificate as "not valid yet");
#   - a jump past the certificate lifetime, forward or backward, fails closed:
#     every new dial and enrollment is refused with an error that names the clock,
#     and the refusals are audited; a transfer already running goes on intact
#     (docs/tunnel.md: certificates are checked when a stream opens);
#   - when the clock is right again, service comes back without any restart, and
#     the audit chain (records stamped with the wrong time included) verifies.
#
# Usage: clock_test.sh PATH/TO/drawbridge
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback ports,
# every process stopped on exit. Needs libfaketime (scripts/install-deps.sh).
# Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout sha256sum

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

FAKETIME_LIB=$(find /usr/lib -path '*/faketime/libfaketimeMT.so.1' 2>/dev/null | head -n 1)
if [[ -z $FAKETIME_LIB ]]; then
  echo "libfaketime is missing (scripts/install-deps.sh installs the libfaketime package)"
  exit 1
fi

use_work_dir clock-test
use_test_store
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
CLOCK="$WORK/server-clock"  # libfaketime's offset for the server, e.g. "+7200"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  local f
  for f in "$WORK/client.log" "$WORK/a1.log" "$WORK/late.log"; do
    [[ -f $f ]] && show_log "$(basename "$f")" "$f" 15
  done
  summary_and_exit
}

ADMIN=("$BIN" admin --credentials "$D/admin.json")
cd "$WORK"
SERVER_PORT=$(free_port)
HTTP=$(free_port)
CP=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

# set_server_clock OFFSET: the server's wall clock becomes real time + OFFSET
# seconds (libfaketime reads the file at every clock call: FAKETIME_NO_CACHE).
set_server_clock() {
  echo "$1" >"$CLOCK.tmp"
  mv "$CLOCK.tmp" "$CLOCK"
}
# request: one request through the client; prints curl's exit code and the HTTP
# status, e.g. "0 200" (curl exits 0 on a 502 from the proxy too, hence both).
request() {
  local code rc=0
  code=$(curl -sp -o /dev/null -w '%{http_code}' --max-time 5 -x "http://127.0.0.1:$CP" \
    "http://127.0.0.1:$HTTP/small.bin") || rc=$?
  echo "$rc $code"
}
client_serves() { poll_until "$1" "$CLIENT_PID" _request_ok; }
# shellcheck disable=SC2317  # invoked by poll_until
_request_ok() { [[ $(request) == "0 200" ]]; }
# agent_connects NAME SECS: an agent with credential NAME.json starts, enrolls and
# connects its Control stream within SECS; it is stopped again either way.
agent_connects() {
  local name=$1 secs=$2 log="$WORK/late.log" ok=0
  : >"$log"
  start_bg "$log" "$BIN" agent --credentials "$name.json" --allow "127.0.0.1/32:$HTTP"
  local pid=$BG_PID
  wait_for_count "$log" 'agent\.control_connected' 1 "$secs" "$pid" && ok=1
  kill "$pid" 2>/dev/null || true
  wait_for_exit "$pid" 10 || true
  [[ $ok == 1 ]]
}
# expect_fails_closed WHAT PATTERN: under a jumped server clock, a new dial is refused
# and the client's log says WHAT (matching PATTERN); a starting agent cannot enroll
# and is told to check the clock.
expect_fails_closed() {
  local rc code
  read -r rc code <<<"$(request)"
  echo "       a new request under the jumped clock: curl exit $rc, HTTP $code"
  if [[ $code != 200 ]]; then pass "a new dial is refused"; else fail "a new dial is refused"; fi
  expect_contains "the client says why: $1 in the server's view" "$WORK/client.log" "$2"
  if agent_connects a2 6; then
    fail "an agent starting now cannot enroll"
  else
    pass "an agent starting now cannot enroll"
  fi
  expect_contains "  ... and says to check the clock" "$WORK/late.log" "check this host's clock"
}
audit_count() {  # audit_count ARGS...: records matching an offline audit query
  "$BIN" audit query --data-dir "$D" --limit 0 --json "$@" 2>/dev/null | grep -c . || true
}

# ---------------------------------------------------------------------------
section "setup: server (under libfaketime), agent, client, destination"
# ---------------------------------------------------------------------------
echo "+0" >"$CLOCK"
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT" \
  "${TEST_STORE_ARGS[@]}"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cat >"$D/policy.yaml" <<EOF
rules:
  - name: web
    clients: ["client/app"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$HTTP"]
EOF
# ASan must come first in the library list; libfaketime only wraps time calls.
start_bg "$SERVER_LOG" env LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$CLOCK" \
  FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  "$BIN" server --data-dir "$D" --metrics-listen off # 9464 may be another suite's
SERVER_PID=$BG_PID
wait_for_port "$SERVER_PORT" 20 "$SERVER_PID" || abort "server listens"
for id in agent/a1 agent/a2 client/app; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
head -c 200000 /dev/urandom >"$WORK/small.bin"
head -c 4000000 /dev/urandom >"$WORK/big.bin"
start_bg "$WORK/http.log" python3 -m http.server --bind 127.0.0.1 --directory "$WORK" "$HTTP"
wait_for_port "$HTTP" 10 "$BG_PID" || abort "http server listens"
start_bg "$WORK/a1.log" "$BIN" agent --credentials a1.json --allow "127.0.0.1/32:$HTTP"
A1_PID=$BG_PID
wait_for_count "$WORK/a1.log" 'agent\.control_connected' 1 20 "$A1_PID" || abort "agent up"
start_client() {
  [[ -n ${CLIENT_PID:-} ]] && { kill "$CLIENT_PID" 2>/dev/null || true; wait_for_exit "$CLIENT_PID" 10 || true; }
  start_bg "$WORK/client.log" "$BIN" client --credentials app.json --listen "127.0.0.1:$CP"
  CLIENT_PID=$BG_PID
  wait_for_port "$CP" 20 "$CLIENT_PID"
}
start_client || abort "client up"
client_serves 10 || abort "a request through the tunnel works"
pass "server, agent, client and destination up; a request goes through"

# ---------------------------------------------------------------------------
section "1. skew within the tolerance (±45 s): nothing changes"
# ---------------------------------------------------------------------------
for offset in +45 -45; do
  set_server_clock "$offset"
  # A fresh enrollment of the client and of an agent under the skewed clock.
  if start_client && client_serves 10; then
    pass "server clock $offset s: a client enrolls anew and its requests go through"
  else
    fail "server clock $offset s: a client enrolls anew and its requests go through" \
      "$(tail -n 3 "$WORK/client.log")"
  fi
  if agent_connects a2 15; then
    pass "server clock $offset s: an agent enrolls and connects"
  else
    fail "server clock $offset s: an agent enrolls and connects" "$(tail -n 3 "$WORK/late.log")"
  fi
done
set_server_clock +0
start_client || abort "client up"
client_serves 10 || abort "requests go through again"

# ---------------------------------------------------------------------------
section "2. the server's clock jumps 2 h forward (past the 1 h certificates)"
# ---------------------------------------------------------------------------
# A transfer already running (4 MB at 1 MB/s) must go on intact through the jump.
start_bg "$WORK/slow.log" curl -sp --limit-rate 1000k --max-time 30 -o "$WORK/slow.out" \
  -x "http://127.0.0.1:$CP" "http://127.0.0.1:$HTTP/big.bin"
SLOW_PID=$BG_PID
sleep 1
refused_before=$(audit_count --outcome failure)
set_server_clock +7200
expect_fails_closed "its certificate has expired" 'certificate has expired'
wait_for_exit "$SLOW_PID" 30 || true
slow_rc=0
wait "$SLOW_PID" || slow_rc=$?
expect_eq "the transfer started before the jump completes intact" \
  "$slow_rc $(sha256sum <"$WORK/slow.out" | cut -c1-16)" "0 $(sha256sum <"$WORK/big.bin" | cut -c1-16)"

# ---------------------------------------------------------------------------
section "3. the clock is right again: service comes back without a restart"
# ---------------------------------------------------------------------------
set_server_clock +0
t0=$(date +%s%N)
if client_serves 10; then
  pass "requests go through again ($((($(date +%s%N) - t0) / 1000000)) ms after the clock was read back)"
else
  fail "requests go through again" "$(tail -n 3 "$WORK/client.log")"
fi
if agent_connects a2 15; then pass "an agent enrolls again"; else fail "an agent enrolls again"; fi

# ---------------------------------------------------------------------------
section "4. the server's clock jumps 2 h back"
# ---------------------------------------------------------------------------
set_server_clock -7200
expect_fails_closed "its certificate is not valid yet" 'not valid yet'
set_server_clock +0
if client_serves 10; then pass "requests go through again once the clock is back"; else
  fail "requests go through again once the clock is back" "$(tail -n 3 "$WORK/client.log")"
fi

# ---------------------------------------------------------------------------
section "5. the audit trail"
# ---------------------------------------------------------------------------
refused_after=$(audit_count --outcome failure)
echo "       failure records: $refused_before before the jumps, $refused_after after"
if [[ $refused_after -ge $((refused_before + 4)) ]]; then
  pass "the refused dials and enrollments are audited"
else
  fail "the refused dials and enrollments are audited" "$refused_before -> $refused_after"
fi
expect_ok "the audit chain verifies, records stamped with the jumped clock included" \
  "$BIN" audit verify --data-dir "$D"

summary_and_exit

#!/usr/bin/env bash
# shellcheck disable=SC2317  # the _helpers below run through poll_until
# Two servers sharing their state in PostgreSQL (a real cluster started here:
# initdb, pg_ctl, a Unix socket): identities, keys and certificates written
# through one are used through the other, an identity disabled on one loses its
# live connections on the other within 1 s, and a PostgreSQL outage fails
# admin changes closed without stopping either server, which recover on their
# own when it returns.
#
# Usage: [CLUSTER_SANITIZED=1] replica_test.sh PATH/TO/drawbridge
# The 1 s bounds are for the Release build; CLUSTER_SANITIZED=1 (the ASan build)
# loosens them to 4 s, as in cluster_test.sh.
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it) plus the cluster's
# directory under /tmp, free loopback ports, every process stopped on exit. No
# fixed sleeps. Ends with "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=pg_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"

parse_bin_arg "$@"
require_tools python3 timeout realpath runuser curl
HELPERS="$(dirname "$(realpath "${BASH_SOURCE[0]}")")/helpers"
unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE PGPASSWORD PGHOST PGDATABASE PGUSER

use_work_dir replica-test
# shellcheck disable=SC2317  # invoked by the EXIT trap (lib.sh)
extra_cleanup() { cleanup_postgres; }

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server A log" "$WORK/a.log" 15
  show_log "server B log" "$WORK/b.log" 15
  show_log "agent log" "$WORK/agent.log" 10
  show_log "client log" "$WORK/client.log" 10
  [[ -n $PG_DIR ]] && show_log "PostgreSQL log" "$PG_DIR/server.log" 10
  summary_and_exit
}

# last_close_ms T0 DIR N: milliseconds from T0 to the last of N connections that
# conns.py (state DIR) saw end, once all N have (polled for 10 s); 999999 otherwise.
last_close_ms() {
  local t0=$1 dir=$2 n=$3
  _closed_n() { [[ $(count_matches "$dir/closed" .) -ge $n ]]; }
  poll_until 10 "" _closed_n || true
  python3 - "$t0" "$dir/closed" "$n" <<'PY'
import sys
t0, n = float(sys.argv[1]), int(sys.argv[3])
try:
    times = [float(l.split()[1]) for l in open(sys.argv[2]) if l.strip()]
except FileNotFoundError:
    times = []
print(round((max(times) - t0) * 1000) if len(times) == n else 999999)
PY
}

BOUND_MS=1000
[[ ${CLUSTER_SANITIZED:-0} == 1 ]] && BOUND_MS=4000
A_PORT=$(free_port)
B_PORT=$(free_port)
ECHO=$(free_port)
CP=$(free_port)
A_METRICS=$(free_port)
B_METRICS=$(free_port)
A_PID=""
B_PID=""

start_server() {  # start_server NAME PORT METRICS_PORT: sets NAME_PID
  local name=$1 port=$2 metrics=$3
  [[ -f $WORK/$name.log ]] && mv "$WORK/$name.log" "$WORK/$name.log.$SECONDS"
  start_bg "$WORK/$name.log" "$BIN" --log-level debug server --data-dir "$WORK/$name" \
    --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" --policy "$WORK/policy.yaml" --metrics-listen "127.0.0.1:$metrics"
  printf -v "${name^^}_PID" '%s' "$BG_PID"
  wait_for_port "$port" 20 "$BG_PID"
}

# ---------------------------------------------------------------------------
section "setup: PostgreSQL, server A initialised on it, server B a copy of A's directory"
# ---------------------------------------------------------------------------
start_postgres || abort "PostgreSQL starts (initdb, pg_ctl)"
pg_createdb drawbridge || abort "createdb"
URI=$(pg_uri drawbridge)
pass "a private PostgreSQL cluster is up"

expect_exit "server init --store refuses a URI that is not PostgreSQL" 1 \
  "$BIN" server init --data-dir "$WORK/bad" --trust-domain example.com --store "mysql://x/y"
expect_contains "  ... saying what it takes" "$LAST" "postgres:// or postgresql://"

run "$BIN" server init --data-dir "$WORK/a" --trust-domain example.com \
  --listen "127.0.0.1:$A_PORT" --store "$URI"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init --store"; }
expect_contains "server.yaml names the store" "$WORK/a/server.yaml" "^store: \"postgresql:///drawbridge"
cp -a "$WORK/a" "$WORK/b"
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: c
    clients: ["client/c"]
    agents: ["agent/a"]
    destinations: ["127.0.0.1:$ECHO"]
EOF
start_server a "$A_PORT" "$A_METRICS" || abort "server A starts on PostgreSQL"
start_server b "$B_PORT" "$B_METRICS" || abort "server B starts on the same PostgreSQL"
pass "both servers are up"
ADMIN_A=("$BIN" admin --credentials "$WORK/a/admin.json")
retarget "$WORK/a/admin.json" "$WORK/admin-b.json" "$B_PORT"
ADMIN_B=("$BIN" admin --credentials "$WORK/admin-b.json")

# replicas_seen ADMIN...: the advertised addresses of the live replicas, sorted, space-separated.
replicas_seen() {
  "$@" replicas list --json 2>/dev/null | python3 -c "
import json, sys
print(' '.join(sorted(r['advertise'] for r in json.load(sys.stdin).get('replicas', []))))"
}
BOTH="127.0.0.1:$A_PORT 127.0.0.1:$B_PORT"
[[ $A_PORT > $B_PORT ]] && BOTH="127.0.0.1:$B_PORT 127.0.0.1:$A_PORT"
_sees_both() { [[ $(replicas_seen "${ADMIN_A[@]}") == "$BOTH" ]]; }
if poll_until 3 "" _sees_both; then pass "admin replicas list through A shows both replicas"; else
  fail "admin replicas list through A shows both replicas" "got '$(replicas_seen "${ADMIN_A[@]}")'"
fi
run "${ADMIN_B[@]}" replicas list
expect_contains "  ... and through B, marking B itself" "$LAST" "127.0.0.1:$B_PORT .*this server"

# ---------------------------------------------------------------------------
section "1. one identity store: what A creates B uses, and the reverse"
# ---------------------------------------------------------------------------
expect_ok "A creates agent/a" "${ADMIN_A[@]}" identity create agent/a --out "$WORK/agent-a.json"
expect_ok "B creates client/c" "${ADMIN_B[@]}" identity create client/c --out "$WORK/client-a.json"
expect_ok "B shows agent/a, created through A" "${ADMIN_B[@]}" identity show agent/a
_lists() { "${ADMIN_A[@]}" identity list 2>/dev/null | grep -q "client/c"; }
if poll_until 2 "" _lists; then pass "A lists client/c, created through B, within 2 s"; else
  fail "A lists client/c, created through B, within 2 s"
fi
expect_exit "a name taken through A is refused through B" 1 \
  "${ADMIN_B[@]}" identity create agent/a --out "$WORK/dup.json"
expect_contains "  ... as already existing" "$LAST" "already exists"

# ---------------------------------------------------------------------------
section "2. an agent and a client enrolled through B, with credentials made through A and B"
# ---------------------------------------------------------------------------
retarget "$WORK/agent-a.json" "$WORK/agent.json" "$B_PORT"
retarget "$WORK/client-a.json" "$WORK/client.json" "$B_PORT"
start_bg "$WORK/echo.log" python3 "$HELPERS/echo_server.py" "$ECHO"
start_bg "$WORK/agent.log" "$BIN" --log-level debug agent --credentials "$WORK/agent.json" \
  --data-dir "$WORK/agent-data" --allow "127.0.0.1:$ECHO"
AGENT_PID=$BG_PID
start_bg "$WORK/client.log" "$BIN" --log-level debug client --credentials "$WORK/client.json" \
  --listen "127.0.0.1:$CP"
CLIENT_PID=$BG_PID
_agent_up() { "${ADMIN_B[@]}" agents list 2>/dev/null | grep -q "agent/a"; }
poll_until 20 "$AGENT_PID" _agent_up || abort "the agent connects to B"
pass "the agent enrolled and connected through B"
wait_for_port "$CP" 20 "$CLIENT_PID" || abort "the client proxy listens"
mkdir -p "$WORK/conns"
start_bg "$WORK/conns.log" python3 "$HELPERS/conns.py" "$CP" "127.0.0.1:$ECHO" 3 "$WORK/conns"
CONNS_PID=$BG_PID
poll_until 30 "$CONNS_PID" test -f "$WORK/conns/ready" || {
  show_log "conns" "$WORK/conns.log"
  abort "3 connections through B echo"
}
pass "3 tunneled connections through B echo"

# ---------------------------------------------------------------------------
section "3. disabled through A: B ends the identity's connections within 1 s"
# ---------------------------------------------------------------------------
t0=$(date +%s.%N)
expect_ok "A disables client/c" "${ADMIN_A[@]}" identity disable client/c
t_set=$(log_time "$WORK/a.log" 'admin\.call method=DisableIdentity .*result=ok')
worst=$(last_close_ms "${t_set:-$t0}" "$WORK/conns" 3)
echo "       the last of the 3 connections on B ended ${worst} ms after A committed the disable" \
  "($(last_close_ms "$t0" "$WORK/conns" 3) ms after the admin command started)"
if [[ $worst -le $BOUND_MS ]]; then
  pass "all 3 connections on B ended within $((BOUND_MS / 1000)) s"
else
  fail "all 3 connections on B ended within $((BOUND_MS / 1000)) s" "took ${worst} ms"
fi
expect_contains "B's log: the revocation came from the store" "$WORK/b.log" "state.changed.*revocations.*1"
_b_denies() {
  [[ $(timeout 10 curl -s -o /dev/null -w '%{http_connect}' -p -x "http://127.0.0.1:$CP" \
    "http://127.0.0.1:$ECHO/" 2>/dev/null) != 200 ]]
}
if poll_until 5 "" _b_denies; then pass "a new connection through B is refused"; else
  fail "a new connection through B is refused"
fi

expect_ok "B enables client/c again" "${ADMIN_B[@]}" identity enable client/c
_a_sees_enabled() { "${ADMIN_A[@]}" identity show client/c 2>/dev/null | grep -qw "enabled"; }
if poll_until 2 "" _a_sees_enabled; then pass "A sees it enabled within 2 s"; else
  fail "A sees it enabled within 2 s"
fi

# ---------------------------------------------------------------------------
section "4. a PostgreSQL outage: changes fail closed, both servers stay up and recover"
# ---------------------------------------------------------------------------
# The client's certificate was refused while it was disabled: restart it, and
# hold two connections through B across the outage.
kill -TERM "$CLIENT_PID"
wait_for_exit "$CLIENT_PID" 10 || true
start_bg "$WORK/client2.log" "$BIN" --log-level debug client --credentials "$WORK/client.json" \
  --listen "127.0.0.1:$CP"
CLIENT_PID=$BG_PID
wait_for_port "$CP" 20 "$CLIENT_PID" || abort "the client proxy listens again"
mkdir -p "$WORK/conns2"
_hold() {
  start_bg "$WORK/conns2.log" python3 "$HELPERS/conns.py" "$CP" "127.0.0.1:$ECHO" 2 "$WORK/conns2"
  poll_until 10 "$BG_PID" test -f "$WORK/conns2/ready"
}
poll_until 30 "" _hold || abort "2 connections through B before the outage"
pg_stop || abort "PostgreSQL stops"
# Every admin call enrolls first, and an enrollment records its token id.
expect_exit "an admin call through A fails while PostgreSQL is down" 1 \
  "${ADMIN_A[@]}" identity create client/x --out "$WORK/x.json"
expect_contains "  ... saying the server's storage is unavailable" "$LAST" "storage unavailable"
touch "$WORK/conns2/send-0-100000"
if poll_until 10 "" test -f "$WORK/conns2/sent-0-100000" &&
  [[ $(cat "$WORK/conns2/sent-0-100000") == ok ]]; then
  pass "  ... while a live tunnel through B carries 100 kB byte-exact"
else
  fail "  ... while a live tunnel through B carries 100 kB byte-exact"
fi
if kill -0 "$A_PID" 2>/dev/null && kill -0 "$B_PID" 2>/dev/null; then
  pass "  ... and both servers are still running"
else
  fail "  ... and both servers are still running"
fi
if wait_for_count "$WORK/b.log" "state.watch_failed" 1 5 "$B_PID"; then
  pass "  ... B logs that it cannot follow the store"
else
  fail "  ... B logs that it cannot follow the store"
fi
readyz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/readyz"; }
_b_unready() { [[ $(readyz "$B_METRICS") == 503 ]]; }
if poll_until 5 "" _b_unready; then pass "  ... B's /readyz turns 503"; else
  fail "  ... B's /readyz turns 503" "got $(readyz "$B_METRICS")"
fi
run curl -s "http://127.0.0.1:$B_METRICS/readyz"
expect_contains "  ... naming the shared store" "$LAST" "shared_store"
run curl -s "http://127.0.0.1:$B_METRICS/metrics"
expect_contains "  ... and drawbridge_shared_store_up is 0" "$LAST" "^drawbridge_shared_store_up 0"
code=$(timeout 10 curl -s -o /dev/null -w '%{http_connect}' -p -x "http://127.0.0.1:$CP" \
  "http://127.0.0.1:$ECHO/" 2>/dev/null) || true
if [[ $code != 200 ]]; then pass "  ... a new dial through B is refused (fail closed: HTTP $code)"; else
  fail "  ... a new dial through B is refused (fail closed)" "got 200"
fi
expect_exit "a server cannot start while PostgreSQL is down" 1 \
  "$BIN" server --data-dir "$WORK/a" --listen "127.0.0.1:$(free_port)" --metrics-listen off
expect_contains "  ... and says PostgreSQL is unreachable" "$LAST" "PostgreSQL .* unreachable"

pg_start || abort "PostgreSQL starts again"
_create_x() { "${ADMIN_A[@]}" identity create client/x --out "$WORK/x.json" >/dev/null 2>&1; }
if poll_until 10 "" _create_x; then pass "once it is back, A creates client/x (no restart)"; else
  fail "once it is back, A creates client/x (no restart)"
fi
if wait_for_count "$WORK/b.log" "state.watch_recovered" 1 5 "$B_PID"; then
  pass "B follows the store again"
else
  fail "B follows the store again"
fi
_b_ready() { [[ $(readyz "$B_METRICS") == 200 ]]; }
if poll_until 5 "" _b_ready; then pass "  ... and its /readyz is 200 again"; else
  fail "  ... and its /readyz is 200 again"
fi
_b_sees_x() { "${ADMIN_B[@]}" identity show client/x >/dev/null 2>&1; }
if poll_until 2 "" _b_sees_x; then pass "B sees client/x"; else fail "B sees client/x"; fi

# ---------------------------------------------------------------------------
section "5. one policy: set through A, in force on B within 1 s"
# ---------------------------------------------------------------------------
expect_contains "B put in force the policy A's file seeded the store with" "$WORK/b.log" \
  "policy.loaded.*store"
cat >"$WORK/policy-other.yaml" <<EOF
rules:
  - name: other
    clients: ["client/c"]
    agents: ["agent/a"]
    destinations: ["127.0.0.1:1"]
EOF
t0=$(date +%s.%N)
expect_ok "A sets a policy that no longer allows the echo server" \
  "${ADMIN_A[@]}" policy set -f "$WORK/policy-other.yaml"
t_set=$(log_time "$WORK/a.log" 'admin\.call method=SetPolicy .*result=ok')
worst=$(last_close_ms "${t_set:-$t0}" "$WORK/conns2" 2)
echo "       the last of the 2 connections on B ended ${worst} ms after A committed the policy" \
  "($(last_close_ms "$t0" "$WORK/conns2" 2) ms after the admin command started)"
if [[ $worst -le $BOUND_MS ]]; then
  pass "both connections on B ended within $((BOUND_MS / 1000)) s"
else
  fail "both connections on B ended within $((BOUND_MS / 1000)) s" "took ${worst} ms"
fi
run "${ADMIN_B[@]}" policy get
expect_contains "B's policy get shows A's rule" "$LAST" "other"
expect_contains "  ... from the shared store" "$LAST" "shared store"
expect_ok "B puts the first policy back" "${ADMIN_B[@]}" policy set -f "$WORK/policy.yaml"
_a_has_c() { "${ADMIN_A[@]}" policy get 2>/dev/null | grep -q "name: \"c\""; }
if poll_until 2 "" _a_has_c; then pass "A has it within 2 s"; else fail "A has it within 2 s"; fi

# ---------------------------------------------------------------------------
section "6. the state outlives the servers"
# ---------------------------------------------------------------------------
kill -TERM "$B_PID"
wait_for_exit "$B_PID" 20 || true
_only_a() { [[ $(replicas_seen "${ADMIN_A[@]}") == "127.0.0.1:$A_PORT" ]]; }
if poll_until 1 "" _only_a; then pass "B left on SIGTERM: A lists itself alone within 1 s"; else
  fail "B left on SIGTERM: A lists itself alone within 1 s" \
    "got '$(replicas_seen "${ADMIN_A[@]}")'"
fi
start_server b "$B_PORT" "$B_METRICS" || abort "server B restarts"
if poll_until 3 "" _sees_both; then pass "B is back in the list after its restart"; else
  fail "B is back in the list after its restart"
fi
kill -KILL "$B_PID"
t_kill=$SECONDS
if poll_until 6 "" _only_a; then
  pass "B killed (-9): A drops it after its heartbeats stop (within $((SECONDS - t_kill + 1)) s)"
else
  fail "B killed (-9): A drops it within 6 s"
fi
kill -TERM "$A_PID"
wait_for_exit "$A_PID" 20 || true
start_server b "$B_PORT" "$B_METRICS" || abort "server B restarts"
run "${ADMIN_B[@]}" identity list
expect_contains "B lists every identity after a restart" "$LAST" "client/x"
expect_contains "  ... with client/c" "$LAST" "client/c"

summary_and_exit

#!/usr/bin/env bash
# shellcheck disable=SC2317  # the _helpers below run through poll_until
# Three replicas on one PostgreSQL (started here: initdb, pg_ctl, a Unix
# socket) behind a round-robin TCP balancer written for the test
# (helpers/balancer.py, which skips replicas whose /readyz is not 200), two
# agent processes holding a Control stream to every replica (connect-all), and
# three client processes whose connections the balancer spreads over the
# replicas. Shows: 100 concurrent transfers byte-exact through all three;
# kill -9 of one replica during transfers fails only its tunnels, visibly, new
# dials go on through the others and the agents come back to it; a rolling
# restart of all three under load fails no new dial; an identity disabled on
# one replica loses its connections on the others within 1 s; PostgreSQL
# stopped for 10 s fails new dials closed and service returns on its own.
# Audit: every replica's chain verifies from any replica's data directory, a
# query shows all replicas' records, and a record edited in PostgreSQL is named
# with its replica.
#
# Usage: [CLUSTER_SANITIZED=1] cluster_test.sh PATH/TO/drawbridge
# The latency bounds are 1 s, as the issue asks, measured on the Release build;
# CLUSTER_SANITIZED=1 (the ASan build, several times slower) loosens them to 4 s
# and still checks everything else.
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it) plus the cluster's
# directory under /tmp, free loopback ports, every process stopped on exit.
# Ends with "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=pg_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"

parse_bin_arg "$@"
require_tools python3 timeout realpath runuser curl
HELPERS="$(dirname "$(realpath "${BASH_SOURCE[0]}")")/helpers"
unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE PGPASSWORD PGHOST PGDATABASE PGUSER

use_work_dir cluster-test
# shellcheck disable=SC2317  # invoked by the EXIT trap (lib.sh)
extra_cleanup() { cleanup_postgres; }

REPLICAS=(a b c)
declare -A PORT METRICS PID ADMIN_CRED
for r in "${REPLICAS[@]}"; do
  PORT[$r]=$(free_port)
  METRICS[$r]=$(free_port)
  PID[$r]=""
done
LB=$(free_port)
ECHO=$(free_port)
PROXIES=()
BOUND_MS=1000
[[ ${CLUSTER_SANITIZED:-0} == 1 ]] && BOUND_MS=4000

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  for r in "${REPLICAS[@]}"; do show_log "server $r log" "$WORK/$r.log" 12; done
  show_log "agent 1 log" "$WORK/agent1.log" 10
  show_log "client 1 log" "$WORK/client1.log" 10
  [[ -n $PG_DIR ]] && show_log "PostgreSQL log" "$PG_DIR/server.log" 10
  summary_and_exit
}

start_server() {  # start_server NAME
  local r=$1
  [[ -f $WORK/$r.log ]] && mv "$WORK/$r.log" "$WORK/$r.log.$SECONDS"
  start_bg "$WORK/$r.log" "$BIN" --log-level debug server --data-dir "$WORK/$r" \
    --listen "127.0.0.1:${PORT[$r]}" --advertise "127.0.0.1:${PORT[$r]}" \
    --policy "$WORK/policy.yaml" --metrics-listen "127.0.0.1:${METRICS[$r]}" \
    --shutdown-grace-ms 5000
  PID[$r]=$BG_PID
  wait_for_port "${PORT[$r]}" 20 "$BG_PID"
}

admin() {  # admin REPLICA ARGS...: an admin call straight to that replica
  local r=$1
  shift
  "$BIN" admin --credentials "${ADMIN_CRED[$r]}" "$@"
}

# agents_on REPLICA: how many agent instances have a Control stream to it.
agents_on() {
  admin "$1" agents list --json 2>/dev/null |
    python3 -c "import json,sys; print(len(json.load(sys.stdin).get('agents', [])))" 2>/dev/null || echo 0
}
# sessions_on REPLICA: live tunnels on it.
sessions_on() {
  admin "$1" sessions list --json 2>/dev/null |
    python3 -c "import json,sys; print(len(json.load(sys.stdin).get('sessions', [])))" 2>/dev/null || echo -1
}
_all_agents_on() { [[ $(agents_on "$1") -eq 2 ]]; }
readyz() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/readyz"; }

# report_field FILE EXPR: a Python expression over the JSON report `r`.
report_field() {
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}

# dial_ok PROXY: one new tunnel through PROXY echoes.
dial_ok() {
  [[ $(timeout 5 curl -s -o /dev/null -w '%{http_connect}' -p -x "http://127.0.0.1:$1" \
    "http://127.0.0.1:$ECHO/" 2>/dev/null) == 200 ]]
}

# ---------------------------------------------------------------------------
section "setup: PostgreSQL, three replicas, a balancer, two agents, three clients"
# ---------------------------------------------------------------------------
start_postgres || abort "PostgreSQL starts (initdb, pg_ctl)"
pg_createdb drawbridge || abort "createdb"
run "$BIN" server init --data-dir "$WORK/a" --trust-domain example.com \
  --listen "127.0.0.1:${PORT[a]}" --store "$(pg_uri drawbridge)"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init --store"; }
# Replicas b and c join: `server init` against a store that holds a CA takes
# it, once given the first replica's KEK (never in the database).
run "$BIN" server init --data-dir "$WORK/b" --trust-domain example.com \
  --listen "127.0.0.1:${PORT[b]}" --store "$(pg_uri drawbridge)"
expect_eq "a replica without the KEK cannot join" "$LAST_RC" 1
expect_contains "  ... and is told to give it the first replica's KEK" "$LAST" "DRAWBRIDGE_KEK_FILE"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/wrong.kek" && echo >>"$WORK/wrong.kek")
DRAWBRIDGE_KEK_FILE="$WORK/wrong.kek" run "$BIN" server init --data-dir "$WORK/b" \
  --trust-domain example.com --listen "127.0.0.1:${PORT[b]}" --store "$(pg_uri drawbridge)"
expect_eq "a replica with another KEK cannot join" "$LAST_RC" 1
expect_contains "  ... which does not open the shared CA key" "$LAST" "does not open the shared CA key"
DRAWBRIDGE_KEK_FILE="$WORK/a/kek" run "$BIN" server init --data-dir "$WORK/b" \
  --trust-domain other.example --listen "127.0.0.1:${PORT[b]}" --store "$(pg_uri drawbridge)"
expect_eq "a replica naming another trust domain cannot join" "$LAST_RC" 1
for r in b c; do
  DRAWBRIDGE_KEK_FILE="$WORK/a/kek" run "$BIN" server init --data-dir "$WORK/$r" \
    --trust-domain example.com --listen "127.0.0.1:${PORT[$r]}" --store "$(pg_uri drawbridge)"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "replica $r joins with the first replica's KEK"; }
  expect_contains "replica $r joined the store's deployment" "$LAST" "joining the deployment"
  cp "$WORK/a/kek" "$WORK/$r/kek" # each replica holds the KEK (a file here)
done
expect_eq "  ... with the same CA as a" "$(cat "$WORK/b/ca/root.crt")" "$(cat "$WORK/a/ca/root.crt")"
run "$BIN" server init --data-dir "$WORK/lone" --trust-domain example.com \
  --listen "127.0.0.1:$(free_port)"
run "$BIN" server --data-dir "$WORK/lone" --store "$(pg_uri drawbridge)" --metrics-listen off
expect_eq "a data directory with its own CA is refused on the shared store" "$LAST_RC" 1
expect_contains "  ... naming the mismatch" "$LAST" "not the one in the shared store"
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: c
    clients: ["client/c"]
    agents: ["agent/a"]
    destinations: ["127.0.0.1:$ECHO"]
EOF
for r in "${REPLICAS[@]}"; do
  start_server "$r" || abort "replica $r starts"
  ADMIN_CRED[$r]="$WORK/admin-$r.json"
  retarget "$WORK/a/admin.json" "${ADMIN_CRED[$r]}" "${PORT[$r]}"
done
pass "three replicas are up on one PostgreSQL"
start_bg "$WORK/lb.log" python3 "$HELPERS/balancer.py" "$LB" "$WORK/lb.json" \
  "${PORT[a]}:${METRICS[a]}" "${PORT[b]}:${METRICS[b]}" "${PORT[c]}:${METRICS[c]}"
wait_for_port "$LB" 10 "$BG_PID" || abort "the balancer listens"
start_bg "$WORK/echo.log" python3 "$HELPERS/scale_load.py" echo "$ECHO"
wait_for_port "$ECHO" 10 "$BG_PID" || abort "the echo server listens"

expect_ok "agent/a created" "$BIN" admin --credentials "${ADMIN_CRED[a]}" identity create agent/a --out "$WORK/agent-direct.json"
expect_ok "client/c created" "$BIN" admin --credentials "${ADMIN_CRED[a]}" identity create client/c --out "$WORK/client-direct.json"
retarget "$WORK/agent-direct.json" "$WORK/agent.json" "$LB"
retarget "$WORK/client-direct.json" "$WORK/client.json" "$LB"

AGENT_METRICS=()
for i in 1 2; do
  AGENT_METRICS[i]=$(free_port)
  start_bg "$WORK/agent$i.log" "$BIN" --log-level debug agent --credentials "$WORK/agent.json" \
    --data-dir "$WORK/agent$i" --allow "127.0.0.1:$ECHO" \
    --metrics-listen "127.0.0.1:${AGENT_METRICS[i]}"
done
for r in "${REPLICAS[@]}"; do
  if poll_until 15 "" _all_agents_on "$r"; then
    pass "both agents hold a Control stream to replica $r (connect-all)"
  else
    fail "both agents hold a Control stream to replica $r (connect-all)" "got $(agents_on "$r")"
  fi
done
run curl -s "http://127.0.0.1:${AGENT_METRICS[1]}/metrics"
expect_contains "agent 1 reports 3 Control streams" "$LAST" "^drawbridge_agent_control_streams 3"
expect_contains "agent 1's log: the replica set it was told" "$WORK/agent1.log" "agent.replica_set"

# Started one after another, the clients' connections go round the balancer
# and land on different replicas.
for i in 1 2 3; do
  port=$(free_port)
  start_bg "$WORK/client$i.log" "$BIN" --log-level debug client --credentials "$WORK/client.json" \
    --listen "127.0.0.1:$port"
  wait_for_port "$port" 20 "$BG_PID" || abort "client $i listens"
  PROXIES+=("$port")
  poll_until 10 "" dial_ok "$port" || abort "a first dial through client $i"
done
PROXY_LIST=$(
  IFS=,
  echo "${PROXIES[*]}"
)
pass "three clients, each reaching a replica through the balancer"

# ---------------------------------------------------------------------------
section "1. 100 concurrent transfers, byte-exact, across all replicas"
# ---------------------------------------------------------------------------
declare -A DIALS_BEFORE
for r in "${REPLICAS[@]}"; do DIALS_BEFORE[$r]=$(count_matches "$WORK/$r.log" "dial.allowed"); done
run timeout 120 python3 "$HELPERS/transfers.py" burst "$PROXY_LIST" "127.0.0.1:$ECHO" 100 262144 \
  "$WORK/burst.json"
[[ -f $WORK/burst.json ]] || abort "the transfers ran" "$(tail -5 "$LAST")"
ok=$(report_field "$WORK/burst.json" 'r["ok"]')
echo "       $(cat "$WORK/burst.json")"
expect_eq "100 of 100 transfers of 256 KiB echoed byte-exact" "$ok" 100
served=""
for r in "${REPLICAS[@]}"; do
  n=$(($(count_matches "$WORK/$r.log" "dial.allowed") - DIALS_BEFORE[$r]))
  served+="$r=$n "
  if [[ $n -gt 0 ]]; then pass "replica $r served some of them ($n)"; else
    fail "replica $r served some of them" "$served"
  fi
done

# ---------------------------------------------------------------------------
section "2. a session killed and an identity disabled on replica a: done on b and c within 1 s"
# ---------------------------------------------------------------------------
for i in 1 2 3; do
  mkdir -p "$WORK/conns$i"
  start_bg "$WORK/conns$i.log" python3 "$HELPERS/conns.py" "${PROXIES[i - 1]}" \
    "127.0.0.1:$ECHO" 2 "$WORK/conns$i"
  poll_until 30 "$BG_PID" test -f "$WORK/conns$i/ready" || abort "2 connections through client $i"
done
on_b=$(sessions_on b)
on_c=$(sessions_on c)
echo "       sessions: a=$(sessions_on a) b=$on_b c=$on_c"
[[ $on_b -gt 0 && $on_c -gt 0 ]] || abort "the clients' connections are on b and c too"
# A session on c, killed through a.
victim=$(admin c sessions list --json | python3 -c "import json,sys; print(json.load(sys.stdin)['sessions'][0]['id'])")
# closed_count: connections conns.py saw end, over the three clients.
closed_count() { cat "$WORK"/conns{1,2,3}/closed 2>/dev/null | wc -l || true; }
closed_before=$(closed_count)
run "$BIN" admin --credentials "${ADMIN_CRED[a]}" sessions kill "$victim"
expect_eq "replica a kills a session that lives on c" "$LAST_RC" 0
expect_contains "  ... and shows what it was" "$LAST" "client/c"
_one_more_closed() { [[ $(closed_count) -gt $closed_before ]]; }
poll_until 5 "" _one_more_closed || true
# From a's request (its log) to the application's end (conns.py's clock: the same host).
ms=$({ cat "$WORK"/conns{1,2,3}/closed 2>/dev/null || true; } | python3 -c "
import datetime, sys
line = [l for l in open(sys.argv[1]) if 'session.kill_requested' in l][-1]
t0 = datetime.datetime.strptime(line.split()[0], '%Y-%m-%dT%H:%M:%S.%fZ').replace(
    tzinfo=datetime.timezone.utc).timestamp()
times = sorted(float(l.split()[1]) for l in sys.stdin if l.strip())
print(round((times[-1] - t0) * 1000) if times else 999999)" "$WORK/a.log")
if [[ $ms -le $BOUND_MS ]]; then
  pass "  ... the application's connection ended within $((BOUND_MS / 1000)) s of a's request (${ms} ms)"
else
  fail "  ... the application's connection ended within $((BOUND_MS / 1000)) s of a's request" "${ms} ms"
fi
expect_contains "c's log: it ended the session at a's request" "$WORK/c.log" "session.killed.*origin=replica"
run "$BIN" admin --credentials "${ADMIN_CRED[a]}" sessions kill "$victim"
expect_eq "killing it again through a: not found" "$LAST_RC" 1

t0=$(date +%s.%N)
expect_ok "replica a disables client/c" "$BIN" admin --credentials "${ADMIN_CRED[a]}" identity disable client/c
t_cli=$t0
t0=$(log_time "$WORK/a.log" 'admin\.call method=DisableIdentity .*result=ok')
t0=${t0:-$t_cli}
_closed_all() {
  [[ $(closed_count) -ge 6 ]]  # with the one killed
}
poll_until 10 "" _closed_all || true
worst=$({ cat "$WORK"/conns{1,2,3}/closed 2>/dev/null || true; } | python3 -c "
import sys
t0 = float(sys.argv[1])
times = [float(l.split()[1]) for l in sys.stdin if l.strip()]
print(round((max(times) - t0) * 1000) if len(times) == 6 else 999999)" "$t0")
echo "       the last of the 6 connections ended ${worst} ms after a committed the disable" \
  "(the admin command started $(python3 -c "import sys; print(round((float(sys.argv[1]) - float(sys.argv[2])) * 1000))" "$t0" "$t_cli") ms before that)"
if [[ $worst -le $BOUND_MS ]]; then
  pass "all 6 (of which $on_b on b, $on_c on c) ended within $((BOUND_MS / 1000)) s"
else
  fail "all 6 (of which $on_b on b, $on_c on c) ended within $((BOUND_MS / 1000)) s" "took ${worst} ms"
fi
expect_ok "client/c enabled again" "$BIN" admin --credentials "${ADMIN_CRED[a]}" identity enable client/c

_all_dial() { for p in "${PROXIES[@]}"; do dial_ok "$p" || return 1; done; }
poll_until 20 "" _all_dial || abort "dials through every client work again after the enable"

# ---------------------------------------------------------------------------
section "3. kill -9 of one replica during transfers"
# ---------------------------------------------------------------------------
rm -f "$WORK/slow.json" "$WORK/slow.json.open"
# Paced so that every transfer is still running at the kill: counting c's
# sessions is an admin call, which under ASan on a loaded machine has taken
# long enough for 6 s transfers to finish first (all 60 "ok", none on c failed).
SLOW_SECONDS=6
[[ ${CLUSTER_SANITIZED:-0} == 1 ]] && SLOW_SECONDS=20
start_bg "$WORK/slow.log" timeout 120 python3 "$HELPERS/transfers.py" burst "$PROXY_LIST" \
  "127.0.0.1:$ECHO" 60 1048576 "$WORK/slow.json" "$SLOW_SECONDS"
SLOW_PID=$BG_PID
poll_until 30 "$SLOW_PID" test -f "$WORK/slow.json.open" || abort "60 transfers open"
t_open=$(date +%s.%N)
on_c=$(sessions_on c)
kill -KILL "${PID[c]}"
t_kill=$(date +%s.%N)
echo "       replica c carries $on_c of the 60 tunnels; killed" \
  "$(python3 -c "import sys; print(round((float(sys.argv[1]) - float(sys.argv[2])) * 1000))" "$t_kill" "$t_open") ms" \
  "into the ${SLOW_SECONDS} s transfers"
read -r fastest worst < <(python3 "$HELPERS/transfers.py" probe "$PROXY_LIST" "127.0.0.1:$ECHO" "$t_kill")
echo "       after the kill a new dial succeeded through the first client in ${fastest} ms," \
  "through every client in ${worst} ms"
# The failover is what the client that was on c needs beyond a dial's own
# latency, which the clients on a and b show: on a loaded 2-core machine (ctest
# -j2) that latency alone (two audit fsyncs under disk contention) has been
# 0.1-2 s, so it is reported, and bounded loosely, apart.
failover=$((worst - fastest))
if [[ $failover -le $BOUND_MS ]]; then
  pass "the client on c dials through another replica within $((BOUND_MS / 1000)) s of the others (+${failover} ms)"
else
  fail "the client on c dials through another replica within $((BOUND_MS / 1000)) s of the others" "+${failover} ms"
fi
if [[ $worst -le $((BOUND_MS * 5)) ]]; then
  pass "  ... and every client dials again within $((BOUND_MS * 5 / 1000)) s of the kill"
else
  fail "  ... and every client dials again within $((BOUND_MS * 5 / 1000)) s of the kill" "${worst} ms"
fi
wait_for_exit "$SLOW_PID" 120 || true
[[ -f $WORK/slow.json ]] || abort "the transfers finished" "$(tail -5 "$WORK/slow.log")"
echo "       $(cat "$WORK/slow.json")"
expect_eq "no transfer delivered wrong bytes" "$(report_field "$WORK/slow.json" 'r["corrupt"]')" 0
expect_eq "the transfers that failed are exactly replica c's" \
  "$(report_field "$WORK/slow.json" 'r["failed"]')" "$on_c"
expect_eq "  ... the $((60 - on_c)) others completed byte-exact" \
  "$(report_field "$WORK/slow.json" 'r["ok"]')" "$((60 - on_c))"
start_server c || abort "replica c restarts"
if poll_until 10 "" _all_agents_on c; then
  pass "both agents reconnect to replica c when it is back"
else
  fail "both agents reconnect to replica c when it is back" "got $(agents_on c)"
fi

# ---------------------------------------------------------------------------
section "4. rolling restart of all three replicas under load: no failed new dial"
# ---------------------------------------------------------------------------
rm -f "$WORK/stop-steady" "$WORK/steady.json"
start_bg "$WORK/steady.log" python3 "$HELPERS/transfers.py" steady "$PROXY_LIST" \
  "127.0.0.1:$ECHO" 20 "$WORK/stop-steady" "$WORK/steady.json"
STEADY_PID=$BG_PID
for r in "${REPLICAS[@]}"; do
  t0=$SECONDS
  kill -TERM "${PID[$r]}"
  wait_for_exit "${PID[$r]}" 30 || abort "replica $r stops on SIGTERM"
  start_server "$r" || abort "replica $r restarts"
  poll_until 15 "" _all_agents_on "$r" || abort "both agents are back on replica $r"
  _ready() { [[ $(readyz "${METRICS[$1]}") == 200 ]]; }
  poll_until 10 "" _ready "$r" || abort "replica $r is ready again"
  pass "replica $r restarted and has both agents back ($((SECONDS - t0)) s)"
done
sleep 1 # dials already under way when the last replica came back finish
touch "$WORK/stop-steady"
wait_for_exit "$STEADY_PID" 60 || true
[[ -f $WORK/steady.json ]] || abort "the load ran" "$(tail -5 "$WORK/steady.log")"
dials=$(report_field "$WORK/steady.json" 'r["dials"]')
failed=$(report_field "$WORK/steady.json" 'r["failed"]')
echo "       $dials new dials during the rolling restart, $failed failed"
[[ $failed -eq 0 ]] || echo "       failures: $(report_field "$WORK/steady.json" 'r["failures"][:10]')"
expect_eq "zero failed new dials during the rolling restart" "$failed" 0
expect_contains "clients were told to move (client.goaway)" "$WORK/client1.log" "client.goaway"

# ---------------------------------------------------------------------------
section "5. PostgreSQL stopped for 10 s: new dials fail closed, then full service"
# ---------------------------------------------------------------------------
pg_stop || abort "PostgreSQL stops"
t_stop=$SECONDS
_all_unready() {
  for r in "${REPLICAS[@]}"; do [[ $(readyz "${METRICS[$r]}") == 503 ]] || return 1; done
}
if poll_until 5 "" _all_unready; then pass "every replica's /readyz turns 503"; else
  fail "every replica's /readyz turns 503"
fi
if ! dial_ok "${PROXIES[0]}"; then pass "a new dial is refused (fail closed)"; else
  fail "a new dial is refused (fail closed)"
fi
while ((SECONDS - t_stop < 10)); do sleep 0.5; done
pg_start || abort "PostgreSQL starts again"
t_back=$(date +%s.%N)
if poll_until 15 "" _all_dial; then
  ms=$(python3 -c "import time,sys; print(round((time.time()-float(sys.argv[1]))*1000))" "$t_back")
  pass "after 10 s down, dials through every client succeed again (${ms} ms after the start)"
else
  fail "after 10 s down, dials through every client succeed again"
fi
_all_ready() {
  for r in "${REPLICAS[@]}"; do [[ $(readyz "${METRICS[$r]}") == 200 ]] || return 1; done
}
if poll_until 5 "" _all_ready; then pass "every replica is ready again, no restart"; else
  fail "every replica is ready again, no restart"
fi

# ---------------------------------------------------------------------------
section "6. audit across replicas: every chain verified and queried at once"
# ---------------------------------------------------------------------------
# Every replica keeps its own chain in PostgreSQL; `audit verify` from any
# replica's data directory (its server.yaml names the store) checks them all.
run "$BIN" audit verify --data-dir "$WORK/c"
expect_eq "audit verify from replica c's data directory succeeds" "$LAST_RC" 0
expect_contains "  ... over the three replicas' chains" "$LAST" "ALL OK: 3 replica chains"
for r in "${REPLICAS[@]}"; do
  id=$(cat "$WORK/$r/replica-id")
  expect_contains "  ... replica $r ($id): chain intact, key endorsed by the CA" "$LAST" \
    "OK: replica $id: .*chain intact; key endorsed by the CA"
done
run "$BIN" audit query --data-dir "$WORK/a" --json --class network_activity
expect_eq "audit query over the shared store" "$LAST_RC" 0
replicas_seen=$(python3 -c "
import json, sys
print(len({json.loads(l)['details'].get('replica') for l in sys.stdin if l.strip()} - {None}))" <"$LAST")
expect_eq "  ... shows connections served by all three replicas" "$replicas_seen" 3
b_id=$(cat "$WORK/b/replica-id")
cp "$LAST" "$WORK/all-records.json"
# `admin audit tail` through a replica follows that replica's own chain.
# Under ASan this call has failed once in CI (exit 1, output unseen) right after
# the PostgreSQL outage of section 5; it is tried a second time, and a first
# failure is shown with replica b's log so that its cause is on record.
run "$BIN" admin --credentials "${ADMIN_CRED[b]}" audit tail -n 5 --json
if [[ $LAST_RC -ne 0 ]]; then
  echo "       first attempt failed (exit $LAST_RC):"
  show_last
  show_log "replica b's log" "$WORK/b.log" 20
  sleep 2
  run "$BIN" admin --credentials "${ADMIN_CRED[b]}" audit tail -n 5 --json
fi
expect_eq "admin audit tail through replica b" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
tail_replicas=$(python3 -c "
import json, sys
print(sorted({json.loads(l)['details'].get('replica') for l in sys.stdin if l.startswith('{')}))" <"$LAST")
expect_eq "  ... shows replica b's own chain" "$tail_replicas" "['$b_id']"
# Someone with write access to PostgreSQL edits one of replica b's records.
bad_seq=$(python3 -c "
import json, sys
seqs = [r['seq'] for r in map(json.loads, filter(str.strip, sys.stdin))
        if r['details'].get('replica') == sys.argv[1]]
print(seqs[len(seqs) // 2])" "$b_id" <"$WORK/all-records.json")
pg_sql drawbridge "UPDATE audit_records SET actor = 'client/mallory'
  WHERE replica_id = '$b_id' AND seq = $bad_seq" || abort "edit a record in PostgreSQL"
run "$BIN" audit verify --data-dir "$WORK/a"
expect_eq "audit verify fails after a record was edited" "$LAST_RC" 1
expect_contains "  ... and names replica b's chain as tampered" "$LAST" "TAMPERED"
expect_contains "  ... with replica b's id and the edited record's seq" "$LAST" \
  "TAMPERED: replica $b_id: first bad record seq $bad_seq:"
expect_eq "  ... and only that chain" "$(grep -c TAMPERED "$LAST" || true)" 1

summary_and_exit

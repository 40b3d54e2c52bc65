#!/usr/bin/env bash
# End-to-end test of operating Drawbridge: the admin API (agents, sessions, policy,
# audit tail), revocation and policy changes cutting live connections, metrics and
# health endpoints, the shipped Prometheus rules (promtool) and a real Prometheus
# scraping the server, an agent and a client.
#
# Usage: ops_test.sh PATH/TO/drawbridge
#
# Two agents (agent/a1 reaching echo backend 1, agent/a2 reaching backend 2) and
# three clients hold long-lived tunneled connections (test/integration/helpers/
# conns.py). Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free
# loopback ports, every process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout realpath promtool prometheus

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HELPERS="$SRC/test/integration/helpers"
use_work_dir ops-test
use_test_store
D="$WORK/data"
SERVER_LOG="$WORK/server.log"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

ADMIN=("$BIN" admin --credentials "$D/admin.json")
cd "$WORK"
SERVER_PORT=$(free_port)
METRICS_PORT=$(free_port)
AGENT_METRICS_PORT=$(free_port)
CLIENT_METRICS_PORT=$(free_port)
ECHO1=$(free_port)
ECHO2=$(free_port)
CLOSED=$(free_port)   # agent/a1 may dial it; nothing listens: "refused"
PROM_PORT=$(free_port)
C1=$(free_port)
C2=$(free_port)
C3=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

# metric PORT 'NAME{LABELS}': the sample's value on that endpoint ("" if absent).
metric() {
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

# metric_eventually PORT 'NAME{LABELS}' WANT: the sample's value once it equals WANT,
# or its last value after 10 s (for counters updated just after the event a test sees).
metric_eventually() {
  local v deadline=$((SECONDS + 10))
  while true; do
    v=$(metric "$1" "$2")
    if [[ $v == "$3" ]] || ((SECONDS >= deadline)); then
      echo "$v"
      return
    fi
    sleep 0.1
  done
}

# hold NAME PROXY_PORT DEST N: N tunneled connections kept open in the background;
# state (ready, closed, commands) in $WORK/NAME.
hold() {
  local name=$1 port=$2 dest=$3 n=$4
  mkdir -p "$WORK/$name"
  start_bg "$WORK/$name.log" python3 "$HELPERS/conns.py" "$port" "$dest" "$n" "$WORK/$name"
  local pid=$BG_PID
  local deadline=$((SECONDS + 60))
  until [[ -f $WORK/$name/ready ]]; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      show_log "$name" "$WORK/$name.log"
      return 1
    fi
    sleep 0.05
  done
}

closed_count() {  # closed_count NAME: how many of NAME's connections have ended
  if [[ -f $WORK/$1/closed ]]; then wc -l <"$WORK/$1/closed" | tr -d ' '; else echo 0; fi
}

# send NAME K BYTES: BYTES bytes up connection K of NAME and their echo back.
send() {
  touch "$WORK/$1/send-$2-$3"
  local deadline=$((SECONDS + 30))
  until [[ -f $WORK/$1/sent-$2-$3 ]] || ((SECONDS >= deadline)); do sleep 0.02; done
  cat "$WORK/$1/sent-$2-$3" 2>/dev/null || echo "timeout"
}

# ---------------------------------------------------------------------------
section "1. the shipped Prometheus rules and dashboard"
# ---------------------------------------------------------------------------
expect_ok "promtool check rules deploy/prometheus/drawbridge-rules.yml" \
  promtool check rules "$SRC/deploy/prometheus/drawbridge-rules.yml"
expect_contains "  ... 6 rules" "$LAST" 'SUCCESS: 6 rules found'
run bash -c "cd '$SRC/deploy/prometheus' && promtool test rules drawbridge-rules.test.yml"
expect_contains "promtool test rules: every alert fires and clears as its series say" "$LAST" \
  'SUCCESS'
expect_ok "the Grafana dashboard is valid JSON with panels" python3 -c "
import json,sys
d=json.load(open('$SRC/deploy/grafana/drawbridge-dashboard.json'))
assert d['panels'] and all(p['targets'] for p in d['panels'])"

# ---------------------------------------------------------------------------
section "2. setup: server, two agents, three clients, echo backends"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT" \
  "${TEST_STORE_ARGS[@]}"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
# An export target, so that its lag is a metric too.
sed -i '/^# The tamper-evident audit trail/,$d' "$D/server.yaml"
printf 'audit:\n  export:\n    - {type: jsonl, path: "%s"}\n' "$WORK/audit.jsonl" >>"$D/server.yaml"
cat >policy-both.yaml <<EOF
rules:
  - name: to-echo1
    clients: ["client/*"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$ECHO1", "127.0.0.1:$CLOSED"]
  - name: to-echo2
    clients: ["client/*"]
    agents: ["agent/a2"]
    destinations: ["127.0.0.1:$ECHO2"]
EOF
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --metrics-listen "127.0.0.1:$METRICS_PORT"
SERVER_PID=$BG_PID
wait_for_port "$SERVER_PORT" 15 "$SERVER_PID" || abort "server listens"
wait_for_port "$METRICS_PORT" 5 "$SERVER_PID" || abort "metrics endpoint listens"
run curl -s "http://127.0.0.1:$METRICS_PORT/healthz"
expect_eq "/healthz answers ok" "$(cat "$LAST")" "ok"
run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/readyz"
expect_eq "/readyz is 200 (store, CA, listener)" "$(cat "$LAST")" "200"
run curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$METRICS_PORT/metrics"
expect_eq "the metrics listener refuses other methods (405)" "$(cat "$LAST")" "405"
run "${ADMIN[@]}" policy set -f policy-both.yaml
if [[ -n ${TEST_STORE_ARGS[*]} ]]; then
  expect_contains "admin policy set: validated and kept in the shared store" "$LAST" \
    "Policy set: 2 rule\(s\), kept in the shared store \(every replica\)"
else
  expect_contains "admin policy set: validated and kept in the data dir" "$LAST" \
    "Policy set: 2 rule\(s\), kept in $D/policy.yaml"
fi
expect_exit "admin policy set refuses an invalid policy" 1 "${ADMIN[@]}" policy set -f /dev/null
expect_contains "  ... naming the problem" "$LAST" 'error: /dev/null: '

for id in agent/a1 agent/a2 client/c1 client/c2 client/c3; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
start_bg "$WORK/echo1.log" python3 "$HELPERS/echo_server.py" "$ECHO1"
wait_for_port "$ECHO1" 10 "$BG_PID" || abort "echo backend 1"
start_bg "$WORK/echo2.log" python3 "$HELPERS/echo_server.py" "$ECHO2"
wait_for_port "$ECHO2" 10 "$BG_PID" || abort "echo backend 2"
start_bg "$WORK/a1.log" "$BIN" agent --credentials a1.json --instance-id a1-one \
  --allow "127.0.0.1/32:$ECHO1" --allow "127.0.0.1/32:$CLOSED" \
  --metrics-listen "127.0.0.1:$AGENT_METRICS_PORT"
A1_PID=$BG_PID
start_bg "$WORK/a2.log" "$BIN" agent --credentials a2.json --instance-id a2-one \
  --allow "127.0.0.1/32:$ECHO2"
wait_for_count "$WORK/a1.log" 'agent\.control_connected' 1 20 "$A1_PID" || abort "agent/a1 up"
wait_for_count "$WORK/a2.log" 'agent\.control_connected' 1 20 "$BG_PID" || abort "agent/a2 up"
start_bg "$WORK/c1.log" "$BIN" client --credentials c1.json --listen "127.0.0.1:$C1" \
  --metrics-listen "127.0.0.1:$CLIENT_METRICS_PORT"
wait_for_port "$C1" 15 "$BG_PID" || abort "client/c1 up"
start_bg "$WORK/c2.log" "$BIN" client --credentials c2.json --listen "127.0.0.1:$C2"
wait_for_port "$C2" 15 "$BG_PID" || abort "client/c2 up"
start_bg "$WORK/c3.log" "$BIN" client --credentials c3.json --listen "127.0.0.1:$C3"
wait_for_port "$C3" 15 "$BG_PID" || abort "client/c3 up"
pass "two agents and three clients up"

# ---------------------------------------------------------------------------
section "3. agents list and sessions list match what is connected"
# ---------------------------------------------------------------------------
hold c1-echo1 "$C1" "127.0.0.1:$ECHO1" 3 || abort "client/c1: 3 connections to echo 1"
hold c2-echo2 "$C2" "127.0.0.1:$ECHO2" 2 || abort "client/c2: 2 connections to echo 2"
hold c2-echo1 "$C2" "127.0.0.1:$ECHO1" 1 || abort "client/c2: 1 connection to echo 1"
pass "6 connections open: c1->echo1 x3, c2->echo2 x2, c2->echo1 x1"
run "${ADMIN[@]}" agents list --json
cp "$LAST" agents.json
expect_ok "agents list: both instances, their streams, addresses and allowlists" python3 -c "
import json
a = {x['instance_id']: x for x in json.load(open('agents.json'))['agents']}
assert set(a) == {'a1-one', 'a2-one'}, a
assert a['a1-one']['identity'] == 'agent/a1' and a['a2-one']['identity'] == 'agent/a2'
assert a['a1-one']['active_streams'] == 4, a['a1-one']
assert a['a2-one']['active_streams'] == 2, a['a2-one']
assert a['a1-one']['allowlist'] == ['127.0.0.1/32:$ECHO1', '127.0.0.1/32:$CLOSED']
assert a['a1-one']['peer'].startswith('ipv4:127.0.0.1:') and a['a1-one']['version']
assert int(a['a1-one']['connected_since_unix']) > 0
"
run "${ADMIN[@]}" sessions list --json
cp "$LAST" sessions.json
expect_ok "sessions list: exactly the 6 connections, by client, agent and destination" \
  python3 -c "
import json, collections
s = json.load(open('sessions.json'))['sessions']
got = collections.Counter((x['client'], x['agent_instance'], x['destination']) for x in s)
want = collections.Counter({('client/c1', 'a1-one', '127.0.0.1:$ECHO1'): 3,
                            ('client/c2', 'a2-one', '127.0.0.1:$ECHO2'): 2,
                            ('client/c2', 'a1-one', '127.0.0.1:$ECHO1'): 1})
assert got == want, got
assert all(len(x['id']) == 32 and int(x['started_unix_ms']) > 0 for x in s)
assert all(int(x.get('bytes_up', 0)) == 1 and int(x.get('bytes_down', 0)) == 1 for x in s), s
"
run "${ADMIN[@]}" sessions list
expect_contains "sessions list as a table" "$LAST" \
  "client/c1 +agent/a1 \(a1-one\) +127\.0\.0\.1:$ECHO1 +1 +1 "

# ---------------------------------------------------------------------------
section "4. metrics follow a scripted session"
# ---------------------------------------------------------------------------
up0=$(metric "$METRICS_PORT" 'drawbridge_tunnel_bytes_total{direction="up"}')
down0=$(metric "$METRICS_PORT" 'drawbridge_tunnel_bytes_total{direction="down"}')
expect_eq "drawbridge_tunnels_active is 6" "$(metric "$METRICS_PORT" drawbridge_tunnels_active)" 6
expect_eq "drawbridge_agents_connected is 2" \
  "$(metric "$METRICS_PORT" drawbridge_agents_connected)" 2
expect_eq "echo of 1 MiB through c1's first connection" "$(send c1-echo1 0 1048576)" ok
expect_eq "bytes up grew by exactly 1048576" \
  "$(($(metric "$METRICS_PORT" 'drawbridge_tunnel_bytes_total{direction="up"}') - up0))" 1048576
expect_eq "bytes down grew by exactly 1048576" \
  "$(($(metric "$METRICS_PORT" 'drawbridge_tunnel_bytes_total{direction="down"}') - down0))" 1048576
refused0=$(metric "$METRICS_PORT" 'drawbridge_dials_total{result="refused"}')
denied0=$(metric "$METRICS_PORT" 'drawbridge_dials_total{result="denied_policy"}')
ok0=$(metric "$METRICS_PORT" 'drawbridge_dials_total{result="ok"}')
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "http://127.0.0.1:$C3" \
  "http://127.0.0.1:$CLOSED/" || true)
expect_eq "a dial to a closed port fails with 502" "$code" 502
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "http://127.0.0.1:$C3" \
  "http://127.0.0.1:1/" || true)
expect_eq "a dial outside the policy is refused with 403" "$code" 403
expect_eq "dials_total{result=refused} +1" \
  "$(($(metric "$METRICS_PORT" 'drawbridge_dials_total{result="refused"}') - refused0))" 1
expect_eq "dials_total{result=denied_policy} +1" \
  "$(($(metric "$METRICS_PORT" 'drawbridge_dials_total{result="denied_policy"}') - denied0))" 1
expect_eq "dials_total{result=ok} unchanged" \
  "$(metric "$METRICS_PORT" 'drawbridge_dials_total{result="ok"}')" "$ok0"
expect_eq "agent: dials_total{result=refused} is 1" \
  "$(metric "$AGENT_METRICS_PORT" 'drawbridge_agent_dials_total{result="refused"}')" 1
expect_eq "client/c1: 3 connections open" \
  "$(metric "$CLIENT_METRICS_PORT" drawbridge_client_connections_active)" 3
expect_eq "dial latency histogram counted 6 successful dials" \
  "$(metric "$METRICS_PORT" drawbridge_dial_duration_seconds_count)" 6
expect_contains "enrollments_total{result=ok} counts every enrollment" \
  "$(metric "$METRICS_PORT" 'drawbridge_enrollments_total{result="ok"}')" '^[0-9]+$'
expect_contains "certificate expiry is exported" \
  "$(metric "$METRICS_PORT" 'drawbridge_certificate_expiry_seconds{certificate="server_tls"}')" \
  '^[0-9]{6,}$'

# ---------------------------------------------------------------------------
section "5. a policy change ends only the connections it no longer allows"
# ---------------------------------------------------------------------------
cat >policy-echo2.yaml <<EOF
rules:
  - name: to-echo2
    clients: ["client/*"]
    agents: ["agent/a2"]
    destinations: ["127.0.0.1:$ECHO2"]
EOF
run "${ADMIN[@]}" policy check -f policy-echo2.yaml --client client/c1 \
  --destination "127.0.0.1:$ECHO1"
expect_eq "policy check: the new policy denies c1 -> echo1 (exit 1)" "$LAST_RC" 1
run "${ADMIN[@]}" policy check -f policy-echo2.yaml --client client/c2 \
  --destination "127.0.0.1:$ECHO2"
expect_contains "policy check: ... and names the rule that allows c2 -> echo2" "$LAST" \
  '^  rule "to-echo2"'
run "${ADMIN[@]}" policy set -f policy-echo2.yaml
expect_contains "policy set ends the 4 connections to echo 1" "$LAST" '4 live connection\(s\)'
# The server ended them; the applications see it as the close travels back.
wait_for_count "$WORK/c1-echo1/closed" . 3 10 || true
wait_for_count "$WORK/c2-echo1/closed" . 1 10 || true
expect_eq "c1's 3 connections to echo 1 were closed" "$(closed_count c1-echo1)" 3
expect_eq "c2's connection to echo 1 was closed" "$(closed_count c2-echo1)" 1
expect_eq "c2's 2 connections to echo 2 are still open" "$(closed_count c2-echo2)" 0
# Agents and clients count a connection's bytes when it ends.
expect_eq "client/c1 metrics: bytes up of its ended connections = 3 probes + 1 MiB" \
  "$(metric_eventually "$CLIENT_METRICS_PORT" 'drawbridge_client_bytes_total{direction="up"}' \
    1048579)" 1048579
expect_eq "client/c1 metrics: no connection open" \
  "$(metric_eventually "$CLIENT_METRICS_PORT" drawbridge_client_connections_active 0)" 0
expect_eq "  ... and still carry data" "$(send c2-echo2 1 65536)" ok
run "${ADMIN[@]}" policy get
expect_contains "policy get shows the policy in force" "$LAST" 'name: "to-echo2"'

# ---------------------------------------------------------------------------
section "6. sessions kill, and revocation of 50 live connections within a second"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" sessions list --json
victim=$(python3 -c "import json;print(json.load(open('$LAST'))['sessions'][0]['id'])")
run "${ADMIN[@]}" sessions kill "$victim"
expect_contains "sessions kill ends that connection" "$LAST" "Ended session $victim: client/c2"
wait_for_count "$WORK/c2-echo2/closed" . 1 10 || true
expect_eq "  ... the application sees it closed; the other stays" "$(closed_count c2-echo2)" 1
expect_exit "killing it again: no such session" 1 "${ADMIN[@]}" sessions kill "$victim"

hold c3-fifty "$C3" "127.0.0.1:$ECHO2" 50 || abort "client/c3: 50 connections"
expect_eq "50 connections of client/c3 are live" \
  "$(metric "$METRICS_PORT" drawbridge_tunnels_active)" 51
run "${ADMIN[@]}" identity disable client/c3
returned=$(date +%s.%N)
wait_for_count "$WORK/c3-fifty/closed" . 50 10 || true
expect_eq "all 50 were cut" "$(closed_count c3-fifty)" 50
cut_ms=$(python3 -c "
import sys
last = max(float(l.split()[1]) for l in open('$WORK/c3-fifty/closed'))
print(round((last - $returned) * 1000, 1))")
echo "       revocation: last of 50 connections closed ${cut_ms} ms after \`identity disable\` returned" \
  "(negative: before it returned)"
expect_contains "  ... within 1 s of the admin call's return" \
  "$(python3 -c "print('ok' if $cut_ms < 1000 else 'slow')")" '^ok$'
code=$(curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "http://127.0.0.1:$C3" \
  "http://127.0.0.1:$ECHO2/" || true)
expect_contains "client/c3's next dial is refused (its certificate no longer works)" "$code" \
  '^(000|403|502|503)$'
run "${ADMIN[@]}" audit tail -n 200 --json
expect_contains "the revocation is audited with the count" "$LAST" \
  '"activity":"revoke".*"identity":"client/c3".*"tunnels_cut":50'
expect_contains "the kill is audited with the session" "$LAST" \
  "\"method\":\"KillSession\".*\"session\":\\{.*\"id\":\"$victim\""
expect_contains "the policy change is audited with before and after" "$LAST" \
  '"activity":"admin_change".*"after":\{"rules":\["to-echo2"\].*"before":\{"rules":\["to-echo1","to-echo2"\]'

# ---------------------------------------------------------------------------
section "7. a real Prometheus scrapes the server, an agent and a client"
# ---------------------------------------------------------------------------
cat >prometheus.yml <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $SRC/deploy/prometheus/drawbridge-rules.yml
scrape_configs:
  - job_name: drawbridge
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT", "127.0.0.1:$AGENT_METRICS_PORT", "127.0.0.1:$CLIENT_METRICS_PORT"]
EOF
start_bg "$WORK/prometheus.log" prometheus --config.file=prometheus.yml \
  --storage.tsdb.path="$WORK/tsdb" --web.listen-address="127.0.0.1:$PROM_PORT"
PROM_PID=$BG_PID
wait_for_port "$PROM_PORT" 30 "$PROM_PID" || abort "prometheus starts"
targets_up() {
  curl -s "http://127.0.0.1:$PROM_PORT/api/v1/targets" |
    python3 -c 'import json,sys;t=json.load(sys.stdin)["data"]["activeTargets"];print(sum(x["health"]=="up" for x in t))'
}
deadline=$((SECONDS + 30))
until [[ $(targets_up 2>/dev/null) == 3 ]] || ((SECONDS >= deadline)); do sleep 0.5; done
expect_eq "Prometheus reports all 3 targets up" "$(targets_up)" 3
query() {
  curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys;r=json.load(sys.stdin)["data"]["result"];print(r[0]["value"][1] if r else "")'
}
expect_eq "PromQL: drawbridge_agents_connected = 2" "$(query 'drawbridge_agents_connected')" 2
expect_eq "PromQL: drawbridge_agent_control_connected = 1" \
  "$(query 'drawbridge_agent_control_connected')" 1
run curl -s "http://127.0.0.1:$PROM_PORT/api/v1/rules"
expect_contains "Prometheus loaded the shipped rules" "$LAST" 'DrawbridgeNoAgentConnected'
# Every metric the rules and the dashboard use is one the binaries export.
for p in "$METRICS_PORT" "$AGENT_METRICS_PORT" "$CLIENT_METRICS_PORT"; do
  curl -s "http://127.0.0.1:$p/metrics"
done | awk '/^# TYPE/ {print $3}' | sort -u >exported.txt
grep -ohE 'drawbridge_[a-z_]+' "$SRC/deploy/prometheus/drawbridge-rules.yml" \
  "$SRC/deploy/grafana/drawbridge-dashboard.json" |
  sed -E 's/_(bucket|sum|count)$//' | sort -u >referenced.txt
missing=$(comm -23 referenced.txt exported.txt | tr '\n' ' ')
expect_eq "every metric the rules and dashboard use is exported" "$missing" ""

summary_and_exit

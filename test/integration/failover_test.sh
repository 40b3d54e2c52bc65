#!/usr/bin/env bash
# Several server addresses in a credential: enrollment past addresses that do
# not answer, an agent that loses its server at run time and reconnects through
# the next address, and a DNS SRV name served by a real DNS server started here.
#
# The whole suite runs in a network and mount namespace of its own (unshare):
# its loopback, and an /etc/resolv.conf naming 127.0.0.1, where
# helpers/dns_server.py answers on port 53. So the product's own resolver path
# (res_nquery for SRV, gRPC's and lanes' name resolution for the targets) is
# what is tested, with nothing outside the namespace touched.
#
# Usage: failover_test.sh PATH/TO/drawbridge
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), every process
# stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
if [[ -z ${DRAWBRIDGE_FAILOVER_NETNS:-} ]]; then
  command -v unshare >/dev/null || { echo "error: unshare (util-linux) is needed" >&2; exit 2; }
  # As root: new mount and network namespaces; otherwise in a user namespace too.
  ns=(-mn)
  [[ $(id -u) -eq 0 ]] || ns=(-rmn)
  DRAWBRIDGE_FAILOVER_NETNS=1 exec unshare "${ns[@]}" bash "$0" "$@"
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout ip mount
HELPERS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/helpers"

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

use_work_dir failover-test
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
cd "$WORK"
ip link set lo up
echo "nameserver 127.0.0.1" >"$WORK/resolv.conf"
mount --bind "$WORK/resolv.conf" /etc/resolv.conf
SERVER_PORT=$(free_port)
LANE_PORT=$(free_port)
HTTP_PORT=$(free_port)
CLIENT_PORT=$(free_port)
FORWARD_PORT=$(free_port)
FORWARD_PORT2=$(free_port)
CLIENT_PORT2=$(free_port)
DEAD_PORT=$(free_port)   # nothing ever listens here
DEAD_PORT2=$(free_port)
IMPOSTOR_PORT=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK (own network namespace)"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

# agent_run NAME CREDENTIAL: an agent; AGENT_PID.
agent_run() {
  start_bg "$WORK/$1.log" "$BIN" agent --credentials "$2" --data-dir "$WORK/$1-data" \
    --allow "127.0.0.1/32:$HTTP_PORT"
  AGENT_PID=$BG_PID
}
stop_agent() {
  kill "$AGENT_PID" 2>/dev/null || true
  wait_for_exit "$AGENT_PID" 10 || true
}
page_via_client() {
  run curl -sS --max-time 20 -p -x "http://127.0.0.1:$CLIENT_PORT" "http://127.0.0.1:$HTTP_PORT/"
}
# zone JSON: what the DNS server answers from now on.
zone() { echo "$1" >"$WORK/zone.json.tmp" && mv "$WORK/zone.json.tmp" "$WORK/zone.json"; }

# ---------------------------------------------------------------------------
section "setup: a server with lanes, a private HTTP server, a DNS server"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com \
  --listen "127.0.0.1:$SERVER_PORT" --advertise "broker.test.internal:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cat >"$WORK/policy.yaml" <<EOF2
rules:
  - name: app-to-web
    clients: ["client/app", "client/roamer"]
    agents: ["agent/*"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
EOF2
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$WORK/policy.yaml" \
  --metrics-listen off --lane-listen "127.0.0.1:$LANE_PORT"
wait_for_port "$SERVER_PORT" 20 "$BG_PID" || abort "server starts"
zone '{"a": {"broker.test.internal": "127.0.0.1", "dead.test.internal": "127.0.0.1"}}'
start_bg "$WORK/dns.out" python3 "$HELPERS/dns_server.py" "$WORK/zone.json" "$WORK/queries.log"
wait_for_count "$WORK/dns.out" listening 1 10 "$BG_PID" || abort "the DNS server starts"
# The admin credential names broker.test.internal: the name resolves here only.
ADMIN=("$BIN" admin --credentials "$D/admin.json")
run "${ADMIN[@]}" identity create client/app --server "127.0.0.1:$SERVER_PORT" --out "$WORK/app.json"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create client/app"; }
pass "the admin reaches the server by its name in this namespace's DNS"
mkdir -p www && echo "private page" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "private HTTP server"
start_bg "$WORK/client.log" "$BIN" client --credentials "$WORK/app.json" --listen "127.0.0.1:$CLIENT_PORT"
wait_for_port "$CLIENT_PORT" 15 "$BG_PID" || abort "the client listens"

# ---------------------------------------------------------------------------
section "1. addresses that do not answer are passed over, in order"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" identity create agent/a --server "127.0.0.1:$DEAD_PORT" \
  --server "127.0.0.1:$DEAD_PORT2" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/a.json"
expect_eq "identity create with three --server addresses" "$LAST_RC" 0
expect_contains "  ... the credential lists the other two as fallbacks" "$WORK/a.json" \
  "\"fallback_addresses\": \\[\\s*$"
expect_eq "  ... in the order given" \
  "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["server_address"], *c["fallback_addresses"])' "$WORK/a.json")" \
  "127.0.0.1:$DEAD_PORT 127.0.0.1:$DEAD_PORT2 127.0.0.1:$SERVER_PORT"
agent_run agent-a "$WORK/a.json"
wait_for_count "$WORK/agent-a.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "agent/a connects"
pass "the agent connects through the third address"
first=$(grep -n "server\.unreachable address=127\.0\.0\.1:$DEAD_PORT " "$WORK/agent-a.log" | head -1 | cut -d: -f1)
second=$(grep -n "server\.unreachable address=127\.0\.0\.1:$DEAD_PORT2 " "$WORK/agent-a.log" | head -1 | cut -d: -f1)
[[ -n $first && -n $second && $first -lt $second ]] &&
  pass "  ... after trying the first and then the second (logged as server.unreachable)" ||
  fail "  ... after trying the first and then the second" "lines: '$first' '$second'"
page_via_client
expect_contains "a request through the tunnel reaches the private page" "$LAST" "private page"
stop_agent
run "${ADMIN[@]}" identity create agent/x --server "127.0.0.1:0" --out "$WORK/x.json"
expect_eq "a --server without a usable port is refused" "$LAST_RC" 1
expect_contains "  ... saying why" "$LAST" "is not HOST:PORT"
[[ ! -e $WORK/x.json ]] && pass "  ... and nothing is written" || fail "  ... and nothing is written"
run "${ADMIN[@]}" identity create agent/x --server-srv "broker.test.internal" --out "$WORK/x.json"
expect_eq "an --server-srv that is not an SRV name is refused" "$LAST_RC" 1

# ---------------------------------------------------------------------------
section "2. losing the server at run time: the next address, after a jittered wait"
# ---------------------------------------------------------------------------
# agent/b reaches the server through a TCP forwarder first; the direct address
# is its fallback. Killing the forwarder is the first path going away.
start_bg "$WORK/forward.out" python3 "$HELPERS/fault_proxy.py" "$FORWARD_PORT" "$SERVER_PORT" "$WORK/forward.mode"
FORWARD_PID=$BG_PID
wait_for_port "$FORWARD_PORT" 10 "$FORWARD_PID" || abort "the forwarder starts"
run "${ADMIN[@]}" identity create agent/b --server "127.0.0.1:$FORWARD_PORT" \
  --server "127.0.0.1:$SERVER_PORT" --out "$WORK/b.json"
agent_run agent-b "$WORK/b.json"
wait_for_count "$WORK/agent-b.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "agent/b connects"
expect_not_contains "agent/b connects through its first address" "$WORK/agent-b.log" "server\.unreachable|server\.failover"
page_via_client
expect_contains "  ... and carries the tunnel" "$LAST" "private page"
kill "$FORWARD_PID"
killed_at=$(date +%s.%N)
if wait_for_count "$WORK/agent-b.log" 'agent\.control_connected' 2 20 "$AGENT_PID"; then
  took=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$killed_at")
  pass "after its first address goes away, agent/b reconnects (${took} s after the kill)"
else
  fail "after its first address goes away, agent/b reconnects"
  show_log "agent/b log" "$WORK/agent-b.log" 15
fi
expect_contains "  ... to the next address (server.failover)" "$WORK/agent-b.log" \
  "server\.failover from=127\.0\.0\.1:$FORWARD_PORT to=127\.0\.0\.1:$SERVER_PORT"
expect_contains "  ... and says where it is connected now" "$WORK/agent-b.log" \
  "agent\.control_connected server=127\.0\.0\.1:$SERVER_PORT "
page_via_client
expect_contains "  ... and carries the tunnel again" "$LAST" "private page"
stop_agent

# A client takes the same path: client/roamer reaches the server through a second
# forwarder first. Its tunnels ride lanes to the data port, which the forwarder
# does not carry; losing the forwarder ends its Watch stream, which takes the lanes
# down until it is back, so the dials right after the kill go over gRPC to
# whichever address the client has moved on to.
agent_run agent-a-2 "$WORK/a.json"
wait_for_count "$WORK/agent-a-2.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "agent/a back"
start_bg "$WORK/forward2.out" python3 "$HELPERS/fault_proxy.py" "$FORWARD_PORT2" "$SERVER_PORT" "$WORK/forward2.mode"
FORWARD2_PID=$BG_PID
wait_for_port "$FORWARD_PORT2" 10 "$FORWARD2_PID" || abort "the second forwarder starts"
run "${ADMIN[@]}" identity create client/roamer --server "127.0.0.1:$FORWARD_PORT2" \
  --server "127.0.0.1:$SERVER_PORT" --out "$WORK/roamer.json"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create client/roamer"; }
start_bg "$WORK/roamer.log" "$BIN" client --credentials "$WORK/roamer.json" --listen "127.0.0.1:$CLIENT_PORT2"
ROAMER_PID=$BG_PID
wait_for_port "$CLIENT_PORT2" 15 "$ROAMER_PID" || abort "client/roamer listens"
wait_for_count "$WORK/roamer.log" 'lane\.ready' 1 20 "$ROAMER_PID" || abort "client/roamer's lanes"
page_via() {
  run curl -sS --max-time 20 -p -x "http://127.0.0.1:$1" "http://127.0.0.1:$HTTP_PORT/"
}
page_via "$CLIENT_PORT2"
expect_contains "client/roamer carries a tunnel through its first address" "$LAST" "private page"
expect_not_contains "  ... without a failover" "$WORK/roamer.log" "server\.unreachable|server\.failover"
kill "$FORWARD2_PID"
wait_for_count "$WORK/roamer.log" 'client\.watch_lost' 1 10 "$ROAMER_PID" ||
  fail "client/roamer notices its first address is gone (client.watch_lost)"
page_via "$CLIENT_PORT2"
expect_contains "right after its first address goes away, client/roamer carries a tunnel again" \
  "$LAST" "private page"
# (Whether that dial met the dead address first depends on timing; if it did, it
# must have been dialled again rather than reset.)
expect_not_contains "  ... and no application connection was reset" "$WORK/roamer.log" \
  "client\.tunnel_reset"
if wait_for_count "$WORK/roamer.log" 'server\.failover' 1 20 "$ROAMER_PID"; then
  pass "  ... having moved to the next address (server.failover)"
else
  fail "  ... having moved to the next address (server.failover)"
  show_log "client/roamer log" "$WORK/roamer.log" 15
fi
expect_contains "  ... from the forwarder to the direct address" "$WORK/roamer.log" \
  "server\.failover from=127\.0\.0\.1:$FORWARD_PORT2 to=127\.0\.0\.1:$SERVER_PORT"
if wait_for_count "$WORK/roamer.log" 'lane\.ready' 2 20 "$ROAMER_PID"; then
  pass "  ... and its Watch stream is back there: the lanes are ready again"
else
  fail "  ... and its Watch stream is back there: the lanes are ready again"
  show_log "client/roamer log" "$WORK/roamer.log" 15
fi
page_via "$CLIENT_PORT2"
expect_contains "  ... over which it carries the next tunnel" "$LAST" "private page"
kill "$ROAMER_PID" 2>/dev/null || true
wait_for_exit "$ROAMER_PID" 10 || true
stop_agent

# ---------------------------------------------------------------------------
section "3. DNS SRV: the targets first, in priority order; the static address when DNS fails"
# ---------------------------------------------------------------------------
SRV=_drawbridge._tcp.test.internal
zone "{\"srv\": {\"$SRV\": [[20, 0, $SERVER_PORT, \"broker.test.internal\"], [10, 0, $DEAD_PORT, \"dead.test.internal\"]]},
       \"a\": {\"broker.test.internal\": \"127.0.0.1\", \"dead.test.internal\": \"127.0.0.1\"}}"
run "${ADMIN[@]}" identity create agent/c --server-srv "$SRV" --server "127.0.0.1:$DEAD_PORT2" --out "$WORK/c.json"
expect_eq "identity create --server-srv" "$LAST_RC" 0
expect_contains "  ... the credential holds the SRV name" "$WORK/c.json" "\"dns_srv\": \"$SRV\""
run "$BIN" check --credentials "$WORK/c.json" --count 1
expect_eq "check with an SRV credential succeeds" "$LAST_RC" 0
expect_contains "  ... having asked DNS for the SRV records" "$WORK/queries.log" "^SRV $SRV$"
expect_contains "  ... which named both targets, priority 10 first" "$LAST" \
  "server\.srv_resolved name=$SRV targets=dead\.test\.internal:$DEAD_PORT,broker\.test\.internal:$SERVER_PORT"
expect_contains "  ... the first did not answer" "$LAST" "server\.unreachable address=dead\.test\.internal:$DEAD_PORT "
expect_not_contains "  ... the second did, so the static address was not needed" "$LAST" "address=127\.0\.0\.1:$DEAD_PORT2"
agent_run agent-c "$WORK/c.json"
wait_for_count "$WORK/agent-c.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "agent/c connects"
page_via_client
expect_contains "an agent found through SRV carries the tunnel" "$LAST" "private page"
if wait_for_count "$WORK/agent-c.log" 'lane\.ready address=broker\.test\.internal:' 1 10; then
  pass "  ... and its lanes go to the SRV target's host"
else
  fail "  ... and its lanes go to the SRV target's host"
fi
stop_agent

# DNS is not trusted: a spoofed answer that sends us to another server (its own
# CA, a certificate for the same name) fails the TLS check, costs nothing but
# a try, and the enrollment token is never sent to it.
run "$BIN" server init --data-dir "$WORK/impostor" --trust-domain example.com \
  --listen "127.0.0.1:$IMPOSTOR_PORT" --advertise "broker.test.internal:$IMPOSTOR_PORT"
start_bg "$WORK/impostor.log" "$BIN" server --data-dir "$WORK/impostor" --metrics-listen off
wait_for_port "$IMPOSTOR_PORT" 20 "$BG_PID" || abort "the impostor server starts"
zone "{\"srv\": {\"$SRV\": [[20, 0, $SERVER_PORT, \"broker.test.internal\"], [5, 0, $IMPOSTOR_PORT, \"broker.test.internal\"]]},
       \"a\": {\"broker.test.internal\": \"127.0.0.1\"}}"
run "$BIN" check --credentials "$WORK/c.json" --count 1
expect_eq "a spoofed SRV target first (a server of another CA): check still succeeds" "$LAST_RC" 0
expect_contains "  ... the impostor failed the TLS check and was passed over" "$LAST" \
  "server\.unreachable address=broker\.test\.internal:$IMPOSTOR_PORT .*(handshake|SSL|certificate)"
expect_not_contains "  ... and never saw an enrollment" "$WORK/impostor.log" "enroll"

run "${ADMIN[@]}" identity create agent/d --server-srv "$SRV" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/d.json"
zone '{"servfail": true}'
run "$BIN" check --credentials "$WORK/d.json" --count 1
expect_eq "DNS failing (SERVFAIL): check succeeds through the static address" "$LAST_RC" 0
expect_contains "  ... saying the lookup failed" "$LAST" "server\.srv_failed name=$SRV"
zone '{"a": {}}'
run "$BIN" check --credentials "$WORK/d.json" --count 1
expect_eq "no such SRV name (NXDOMAIN): the static address" "$LAST_RC" 0
expect_contains "  ... saying so" "$LAST" "server\.srv_failed name=$SRV error=\"DNS has no SRV records"
zone "{\"srv\": {\"$SRV\": [[0, 0, 0, \".\"]]}}"
run "$BIN" check --credentials "$WORK/d.json" --count 1
expect_eq "SRV saying the service is not offered (target \".\"): the static address" "$LAST_RC" 0
expect_contains "  ... saying so" "$LAST" "is not offered"
run "$BIN" check --credentials "$WORK/c.json" --count 1
expect_eq "with neither DNS nor a live static address, check fails" "$LAST_RC" 1
expect_contains "  ... naming the address tried last" "$LAST" "127\.0\.0\.1:$DEAD_PORT2"

summary_and_exit

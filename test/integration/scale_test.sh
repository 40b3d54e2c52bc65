#!/usr/bin/env bash
# Scale (issue 11): N concurrent tunneled connections (10,000 by default) through
# one server, one agent and one client on this machine, every one carrying bytes
# both ways, and what that costs each process (RSS, file descriptors, threads).
#
# Usage: [SCALE_CONNECTIONS=N] [SCALE_SANITIZED=1] scale_test.sh PATH/TO/drawbridge
# (SCALE_SANITIZED=1: an ASan build, whose RSS is not compared across rounds.)
#
# Real processes; the applications and the destination are
# helpers/scale_load.py (asyncio: an echo server, and N connections through the
# client's HTTP CONNECT port, each checking a token of its own). Hermetic: one
# `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback ports, every
# process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
CONNS=${SCALE_CONNECTIONS:-10000}
require_tools python3 curl timeout

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
# Each of client, agent, destination and load holds N sockets.
need=$((CONNS + 1000))
ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < need)); then
  echo "the file descriptor limit ($(ulimit -Hn)) is below $need: running $(($(ulimit -n) - 1000)) connections"
  CONNS=$(($(ulimit -n) - 1000))
fi

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOAD="$SRC/test/integration/helpers/scale_load.py"
use_work_dir scale-test
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}
ADMIN=("$BIN" admin --credentials "$D/admin.json")
cd "$WORK"
SP=$(free_port)
MP=$(free_port)
DEST=$(free_port)
CP=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
threads() { awk '/^Threads/ { print $2 }' "/proc/$1/status"; }
tunnels_active() {
  curl -s --max-time 5 "http://127.0.0.1:$MP/metrics" | awk '$1 == "drawbridge_tunnels_active" { print $2 }'
}
# figures TITLE: RSS, fds and threads of the three processes.
figures() {
  local p name
  for name in server agent client; do
    case $name in server) p=$SERVER_PID ;; agent) p=$AGENT_PID ;; client) p=$CLIENT_PID ;; esac
    printf '       %-22s %-7s RSS %7s MiB  fds %6s  threads %3s\n' "$1" "$name" "$(rss_mib "$p")" \
      "$(fds "$p")" "$(threads "$p")"
  done
}

# ---------------------------------------------------------------------------
section "setup: server, agent, client, echo destination ($CONNS connections to come)"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SP"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
# One identity opens them all, as fast as it can: no per-identity rate limit here.
sed -i -e '/^dial_rate_per_second:/d' "$D/server.yaml"
echo "dial_rate_per_second: 0" >>"$D/server.yaml"
cat >"$D/policy.yaml" <<EOF
rules:
  - name: scale
    clients: ["client/app"]
    agents: ["agent/a1"]
    destinations: ["127.0.0.1:$DEST"]
EOF
start_bg "$SERVER_LOG" "$BIN" --log-level warn server --data-dir "$D" --metrics-listen "127.0.0.1:$MP"
SERVER_PID=$BG_PID
wait_for_port "$SP" 30 "$SERVER_PID" || abort "server listens"
for id in agent/a1 client/app; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
start_bg "$WORK/echo.log" python3 "$LOAD" echo "$DEST"
wait_for_port "$DEST" 10 "$BG_PID" || abort "echo destination listens"
start_bg "$WORK/agent.log" "$BIN" --log-level warn agent --credentials a1.json --allow "127.0.0.1/32:$DEST"
AGENT_PID=$BG_PID
start_bg "$WORK/client.log" "$BIN" --log-level warn client --credentials app.json --listen "127.0.0.1:$CP"
CLIENT_PID=$BG_PID
wait_for_port "$CP" 30 "$CLIENT_PID" || abort "client up"
# Warm up with a few connections, then the baseline.
touch "$WORK/hold0"
start_bg "$WORK/warm.log" python3 "$LOAD" open "$CP" "127.0.0.1:$DEST" 20 --hold-file "$WORK/hold0" \
  --report "$WORK/warm.json"
poll_until 60 "$BG_PID" test -s "$WORK/warm.json" || abort "20 warm-up tunnels"
rm -f "$WORK/hold0"
poll_until 30 "" test "$(wc -l <"$WORK/warm.json" 2>/dev/null || echo 0)" -ge 2 || true
grep -q '"open": 20, "failed": 0' "$WORK/warm.json" || { cat "$WORK/warm.json"; abort "20 warm-up tunnels"; }
pass "server, agent, client and destination up; 20 warm-up tunnels echo"
sleep 1
figures "idle"
base_server=$(rss_kib "$SERVER_PID")
base_agent=$(rss_kib "$AGENT_PID")
base_client=$(rss_kib "$CLIENT_PID")
base_fds=$(($(fds "$SERVER_PID") + $(fds "$AGENT_PID") + $(fds "$CLIENT_PID")))

per() { python3 -c "import sys; print(round((int(sys.argv[1]) - int(sys.argv[2])) / int(sys.argv[3]), 1))" "$@"; }
_drained() { [[ $(tunnels_active) == 0 ]]; }
# open_round K: CONNS connections at once, held 5 s, checked again, closed.
open_round() {
  local k=$1
  touch "$WORK/hold"
  start_bg "$WORK/load$k.log" python3 "$LOAD" open "$CP" "127.0.0.1:$DEST" "$CONNS" --hold-file "$WORK/hold" \
    --report "$WORK/load$k.json"
  LOAD_PID=$BG_PID
  poll_until 400 "$LOAD_PID" test -s "$WORK/load$k.json" || true
  echo "       $(head -1 "$WORK/load$k.json" 2>/dev/null || echo 'no report')"
  expect_contains "all $CONNS open, each echoing its own token" "$WORK/load$k.json" "\"open\": $CONNS, \"failed\": 0"
  expect_eq "  ... and the server counts $CONNS live tunnels" "$(tunnels_active)" "$CONNS"
  figures "with $CONNS open"
  OPEN_RSS=("$(rss_kib "$SERVER_PID")" "$(rss_kib "$AGENT_PID")" "$(rss_kib "$CLIENT_PID")")
  echo "       per connection: server $(per "$(rss_kib "$SERVER_PID")" "$base_server" "$CONNS") KiB," \
    "agent $(per "$(rss_kib "$AGENT_PID")" "$base_agent" "$CONNS") KiB," \
    "client $(per "$(rss_kib "$CLIENT_PID")" "$base_client" "$CONNS") KiB"
  sleep 5
  rm -f "$WORK/hold"
  poll_until 120 "$LOAD_PID" test "$(wc -l <"$WORK/load$k.json")" -ge 2 || true
  echo "       $(sed -n 2p "$WORK/load$k.json" 2>/dev/null || echo 'no second report')"
  expect_contains "after 5 s held, every one is alive and echoes again" "$WORK/load$k.json" \
    "\"alive\": $CONNS, \"echo_ok\": $CONNS"
  poll_until 60 "" _drained || true
  expect_eq "all closed: the server's live tunnels go back to 0" "$(tunnels_active)" 0
}

# ---------------------------------------------------------------------------
section "1. $CONNS concurrent tunneled connections"
# ---------------------------------------------------------------------------
open_round 1
r1=("${OPEN_RSS[@]}")
figures "after round 1"

# ---------------------------------------------------------------------------
section "2. again: memory does not grow, nothing is left behind"
# ---------------------------------------------------------------------------
# The allocator keeps some of what round 1 freed (and returns the rest every
# 10 s): the second round, all open, must need no more than the first did.
open_round 2
figures "after round 2"
if [[ ${SCALE_SANITIZED:-0} == 1 ]]; then
  echo "       (RSS not compared: ASan's quarantine holds freed memory back)"
else
  i=0
  for name in server agent client; do
    a=${r1[$i]} b=${OPEN_RSS[$i]}
    if ((b <= a * 110 / 100 + 4096)); then pass "the $name's RSS with all open in round 2 is within 10% of round 1's"; else
      fail "the $name's RSS with all open in round 2 is within 10% of round 1's" "$b KiB vs $a KiB"
    fi
    i=$((i + 1))
  done
fi
_fds_back() { (($(fds "$SERVER_PID") + $(fds "$AGENT_PID") + $(fds "$CLIENT_PID") <= base_fds + 30)); }
poll_until 30 "" _fds_back || true
now_fds=$(($(fds "$SERVER_PID") + $(fds "$AGENT_PID") + $(fds "$CLIENT_PID")))
echo "       file descriptors of server+agent+client: $base_fds before, $now_fds after"
if _fds_back; then pass "file descriptors return to the baseline"; else
  fail "file descriptors return to the baseline" "$now_fds vs $base_fds"
fi
gone=""
for p in "$SERVER_PID" "$AGENT_PID" "$CLIENT_PID"; do
  kill -0 "$p" 2>/dev/null || gone="$gone $p"
done
[[ -z $gone ]] && pass "every process is still up" || fail "every process is still up" "gone:$gone"

summary_and_exit

#!/usr/bin/env bash
# Fault injection with real processes (issue 11): a server, two agents and a
# client as real binaries, with faults injected between and into them:
#   - a TCP proxy between the client and the server, and another between the
#     agents and the server (helpers/fault_proxy.py), that stalls or resets;
#   - SIGSTOP/SIGCONT of each process;
#   - SIGKILL and restart of the server during 100 concurrent transfers;
#   - a full disk under the server's data directory (a small tmpfs).
# Asserts: no byte corrupted (every byte is pattern-checked), every failed
# transfer is seen as failed (a reset, never a clean but short end), service
# comes back by itself, the server refuses new dials with a clear error while
# its audit log cannot be written (fail closed) and recovers when space returns,
# and no audit record of anything that happened is lost.
#
# Usage: fault_test.sh PATH/TO/drawbridge
#
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit. The disk-full section mounts a tmpfs,
# which needs root (CAP_SYS_ADMIN); without it that section says SKIP.
# Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEER="$SRC/test/integration/helpers/failure_peer.py"
PROXY="$SRC/test/integration/helpers/fault_proxy.py"
use_work_dir fault-test
STATE="$WORK/dest"
mkdir -p "$STATE"

# The data directory lives on a small tmpfs when we may mount one.
DISK="$WORK/disk"
mkdir -p "$DISK"
MOUNTED=0
if mount -t tmpfs -o size=64m tmpfs "$DISK" 2>/dev/null; then
  MOUNTED=1
fi
extra_cleanup() {
  if [[ $MOUNTED == 1 ]]; then
    umount -l "$DISK" 2>/dev/null || true
  fi
}
D="$DISK/data"
SERVER_LOG="$WORK/server.log"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

ADMIN=("$BIN" admin --credentials "$WORK/admin.json")
cd "$WORK"
SERVER_PORT=$(free_port)
METRICS_PORT=$(free_port)
PX_CLIENT=$(free_port)  # client -> server
PX_AGENTS=$(free_port)  # agents -> server
DEST=$(free_port)
HTTP=$(free_port)
CP=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

# mode PROXY MODE: switches a fault proxy (pass, stall, reset).
mode() {
  echo "$2" >"$WORK/$1.mode.tmp"
  mv "$WORK/$1.mode.tmp" "$WORK/$1.mode"
}
field() {
  python3 -c "
import json,sys
try: print(json.load(open(sys.argv[1]))[sys.argv[2]])
except FileNotFoundError: print('missing')" "$1" "$2"
}
# app TAG DOWN END [OPTIONS...]: one application in the background (APP_PID);
# its result goes to $WORK/TAG.app.json.
app() {
  local tag=$1
  shift
  start_bg "$WORK/$tag.app.log" python3 "$PEER" app "$CP" "127.0.0.1:$DEST" "$tag" "$@" \
    --result "$WORK/$tag.app.json" --ready "$WORK/$tag.ready"
  APP_PID=$BG_PID
}
wait_ready() { poll_until 20 "$APP_PID" test -f "$WORK/$1.ready"; }
wait_app() { poll_until "${2:-30}" "" test -f "$WORK/$1.app.json" || true; }
app_result() { field "$WORK/$1.app.json" "$2"; }
# expect_intact TAG BYTES: the application got all BYTES, intact, then a clean end.
expect_intact() {
  wait_app "$1" 60
  expect_eq "$2" "$(app_result "$1" end)/$(app_result "$1" down_bytes)/$(app_result "$1" down_ok)" \
    "eof/$3/True"
}
# expect_failed_visibly NAME TAG: a reset (never a clean end), every byte it got intact.
expect_failed_visibly() {
  wait_app "$2" 30
  expect_eq "$1" "$(app_result "$2" end)/$(app_result "$2" down_ok)" "reset/True"
}
# client_serves SECS: polls until a request through the client is answered 200.
client_serves() {
  poll_until "$1" "$CLIENT_PID" curl -sfp -o /dev/null --max-time 2 \
    -x "http://127.0.0.1:$CP" "http://127.0.0.1:$HTTP/"
}
# want N: section N runs (all unless ONLY="N ..." is set, for debugging one).
want() { [[ -z ${ONLY:-} || " $ONLY " == *" $1 "* ]]; }
ms_since() { python3 -c "import sys,time; print(round((time.time() - float(sys.argv[1])) * 1000))" "$1"; }
now() { date +%s.%N; }
rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------------------
section "setup: server (data on a 64 MiB tmpfs), two agents and a client behind fault proxies"
# ---------------------------------------------------------------------------
[[ $MOUNTED == 1 ]] && echo "       data directory on a 64 MiB tmpfs" ||
  echo "       SKIP (disk full): cannot mount a tmpfs here (needs CAP_SYS_ADMIN)"
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cp "$D/admin.json" "$WORK/admin.json"
cat >"$D/policy.yaml" <<EOF
rules:
  - name: app
    clients: ["client/app"]
    agents: ["agent/a1", "agent/a2"]
    destinations: ["127.0.0.1:$DEST", "127.0.0.1:$HTTP"]
EOF
# The proxies sit in front of the gRPC port only: lanes would reach the data port
# around them, so this test runs the gRPC transport (docs/tunnel.md "Lanes").
sed -i 's/^lane_listen: .*/lane_listen: "off"/' "$D/server.yaml"
start_server() {
  [[ -f $SERVER_LOG ]] && cat "$SERVER_LOG" >>"$WORK/server.all.log"
  start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    --shutdown-grace-ms 1000
  SERVER_PID=$BG_PID
  wait_for_port "$SERVER_PORT" 30 "$SERVER_PID"
}
start_server || abort "server listens"
for id in agent/a1 agent/a2 client/app; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
# Agents and client reach the server through the fault proxies (the certificate
# name stays the server's: only the address changes).
retarget() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["server_name"] = c.get("server_name") or c["server_address"].rsplit(":", 1)[0]
c["server_address"] = "127.0.0.1:" + sys.argv[2]
json.dump(c, open(sys.argv[1], "w"))
EOF
}
retarget a1.json "$PX_AGENTS"
retarget a2.json "$PX_AGENTS"
retarget app.json "$PX_CLIENT"
mode pc pass
mode pa pass
start_bg "$WORK/pc.log" python3 "$PROXY" "$PX_CLIENT" "$SERVER_PORT" "$WORK/pc.mode"
start_bg "$WORK/pa.log" python3 "$PROXY" "$PX_AGENTS" "$SERVER_PORT" "$WORK/pa.mode"
wait_for_port "$PX_CLIENT" 10 || abort "fault proxies listen"
wait_for_port "$PX_AGENTS" 10 || abort "fault proxies listen"
start_bg "$WORK/dest.log" python3 "$PEER" dest "$DEST" "$STATE"
wait_for_port "$DEST" 10 "$BG_PID" || abort "destination listens"
mkdir -p "$WORK/www"
head -c 100000 /dev/urandom >"$WORK/www/file.bin"
start_bg "$WORK/http.log" python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$HTTP"
wait_for_port "$HTTP" 10 "$BG_PID" || abort "http server listens"
for a in a1 a2; do
  start_bg "$WORK/$a.log" "$BIN" agent --credentials "$a.json" --instance-id "$a-$RANDOM" \
    --allow "127.0.0.1/32:$DEST" --allow "127.0.0.1/32:$HTTP"
  declare "${a^^}_PID=$BG_PID"
done
wait_for_count "$WORK/a1.log" 'agent\.control_connected' 1 30 "$A1_PID" || abort "agent/a1 up"
wait_for_count "$WORK/a2.log" 'agent\.control_connected' 1 30 "$A2_PID" || abort "agent/a2 up"
start_bg "$WORK/client.log" "$BIN" client --credentials app.json --listen "127.0.0.1:$CP"
CLIENT_PID=$BG_PID
wait_for_port "$CP" 30 "$CLIENT_PID" || abort "client up"
client_serves 20 || abort "a request through the tunnel"
pass "server, two agents, client, destination and both fault proxies up"

if want 1; then
# ---------------------------------------------------------------------------
section "1. the network stalls for 3 s (client-server, then agents-server): transfers resume intact"
# ---------------------------------------------------------------------------
# 6 MB read at 1.5 MB/s: the stall falls in the middle of it. Keepalive (20 s)
# must not cut a connection that stalls for 3 s.
for px in pc pa; do
  app "stall-$px" 6000000 fin --rate 1500000
  wait_ready "stall-$px" || abort "transfer up"
  sleep 1
  mode "$px" stall
  sleep 3
  mode "$px" pass
  expect_intact "stall-$px" "a 3 s stall ($px): every byte arrives, then a clean end" 6000000
done

fi
if want 2; then
# ---------------------------------------------------------------------------
section "2. the network resets connections: the application sees a reset, service comes back"
# ---------------------------------------------------------------------------
for px in pc pa; do
  app "reset-$px" -1 none --up-end none --max-seconds 30
  wait_ready "reset-$px" || abort "transfer up"
  mode "$px" reset
  expect_failed_visibly "a reset between $([[ $px == pc ]] && echo client || echo agents) and server: the application sees a reset" "reset-$px"
  sleep 0.5
  t0=$(now)
  mode "$px" pass
  client_serves 15 || true
  ms=$(ms_since "$t0")
  echo "       a request succeeded again ${ms} ms after the network came back"
  if ((ms <= 5000)); then pass "  ... and service is back within 5 s"; else
    fail "  ... and service is back within 5 s" "took $ms ms"
  fi
done

fi
if want 3; then
# ---------------------------------------------------------------------------
section "3. SIGSTOP for 2 s of the client, an agent, the server: transfers resume intact"
# ---------------------------------------------------------------------------
for who in client agents server; do
  app "stop-$who" 6000000 fin --rate 1500000
  wait_ready "stop-$who" || abort "transfer up"
  case $who in
    client) pids=("$CLIENT_PID") ;;
    agents) pids=("$A1_PID" "$A2_PID") ;;
    server) pids=("$SERVER_PID") ;;
  esac
  sleep 1
  kill -STOP "${pids[@]}"
  sleep 2
  kill -CONT "${pids[@]}"
  expect_intact "stop-$who" "SIGSTOP of the $who for 2 s: every byte arrives, then a clean end" 6000000
done

fi
if want 4; then
# ---------------------------------------------------------------------------
section "4. the server is killed (SIGKILL) during 100 concurrent transfers, and restarted"
# ---------------------------------------------------------------------------
# 100 transfers of 8 MB each, read at 300 KB/s (27 s): in flight at the kill,
# apart from any the tunnel had already delivered whole to the client.
start_bg "$WORK/multi.log" python3 "$PEER" multi "$CP" "127.0.0.1:$DEST" multi 100 8000000 \
  --rate 300000 --max-seconds 60 --ready "$WORK/multi.ready" --result "$WORK/multi.json"
MULTI_PID=$BG_PID
poll_until 60 "$MULTI_PID" test -f "$WORK/multi.ready" || abort "100 transfers up"
sleep 1
echo "       RSS before the kill: client $(rss_mib "$CLIENT_PID") MiB, server $(rss_mib "$SERVER_PID") MiB," \
  "agents $(rss_mib "$A1_PID") + $(rss_mib "$A2_PID") MiB"
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
start_server || abort "server back"
t0=$(now)
client_serves 20 || true
ms=$(ms_since "$t0")
echo "       the client served a new request ${ms} ms after the server listened again"
if ((ms <= 5000)); then pass "service is back within 5 s of the restart"; else
  fail "service is back within 5 s of the restart" "took $ms ms"
fi
poll_until 90 "" test -f "$WORK/multi.json" || true
echo "       100 transfers across the kill: $(cat "$WORK/multi.json" 2>/dev/null || echo none)"
expect_eq "no transfer ended cleanly but short (a failure that looks like success)" \
  "$(field "$WORK/multi.json" truncated_clean)" 0
expect_eq "no byte corrupted" "$(field "$WORK/multi.json" corrupt)" 0
expect_eq "every transfer either completed or failed visibly (reset)" \
  "$(field "$WORK/multi.json" other)" "[]"
failed=$(field "$WORK/multi.json" failed)
if [[ $failed =~ ^[0-9]+$ ]] && ((failed >= 50)); then pass "  ... most were cut mid-transfer ($failed)"; else
  fail "  ... most were cut mid-transfer" "only '$failed' failed: the kill did not land mid-transfer"
fi
start_bg "$WORK/multi2.log" python3 "$PEER" multi "$CP" "127.0.0.1:$DEST" after 100 1000000 \
  --max-seconds 60 --result "$WORK/multi2.json"
poll_until 90 "$BG_PID" test -f "$WORK/multi2.json" || true
echo "       100 new transfers after the restart: $(cat "$WORK/multi2.json" 2>/dev/null || echo none)"
expect_eq "after the restart, 100 concurrent transfers all complete intact" \
  "$(field "$WORK/multi2.json" complete)/$(field "$WORK/multi2.json" corrupt)" "100/0"

fi
if want 5; then
# ---------------------------------------------------------------------------
section "5. the data directory's disk is full: new dials refused (fail closed), then recovery"
# ---------------------------------------------------------------------------
readyz() { curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/readyz" || true; }
gauge() {
  curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk -v m="$1" '$1 == m { print $2 }'
}
# connect_reply FILE: one CONNECT through the client to the HTTP server; the
# proxy's whole reply goes to FILE, its status code to stdout (000: none).
connect_reply() {
  python3 - "$CP" "127.0.0.1:$HTTP" "$1" <<'EOF'
import socket, sys
port, dest, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
reply = b""
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n".encode())
    while b"\r\n\r\n" not in reply:
        c = s.recv(4096)
        if not c:
            break
        reply += c
    if b" 200 " not in reply.split(b"\r\n")[0]:
        while c := s.recv(4096):  # the body says why
            reply += c
except OSError:
    pass
open(out, "wb").write(reply)
print(reply.split(b" ")[1].decode() if reply.startswith(b"HTTP/1.1 ") else "000")
EOF
}
if [[ $MOUNTED != 1 ]]; then
  echo "SKIP - disk full: no tmpfs (run as root to include it)"
else
  # A tunnel opened before the disk fills keeps going (its close is recorded later).
  app "live" 4000000 fin --rate 400000
  wait_ready live || abort "transfer up"
  dd if=/dev/zero of="$DISK/filler" bs=1M 2>/dev/null || true  # until ENOSPC
  # SQLite reuses its write-ahead log's space, so commits may go on for a while:
  # dial until the server refuses (bounded).
  refused=""
  for i in $(seq 1 300); do
    code=$(connect_reply "$WORK/refusal.txt")
    if [[ $code != 200 ]]; then
      refused=$i
      break
    fi
  done
  echo "       dial $refused after the disk filled was refused: $(tr '\r\n' '  ' <"$WORK/refusal.txt" | head -c 400)"
  [[ -n $refused ]] && pass "with the disk full, the server refuses new dials" ||
    fail "with the disk full, the server refuses new dials" "300 dials all succeeded"
  expect_contains "  ... with a clear error to the application" "$WORK/refusal.txt" 'cannot write its audit log'
  expect_contains "  ... and in the client's log" "$WORK/client.log" 'client.dial_refused.*audit log'
  expect_contains "  ... and in the server's log" "$SERVER_LOG" 'audit.storage_failed'
  r=$(readyz)
  echo "       /readyz: $r"
  [[ $r == *"not ready: audit"* ]] && pass "  ... /readyz says not ready (audit)" ||
    fail "  ... /readyz says not ready (audit)" "$r"
  expect_eq "  ... drawbridge_audit_writable is 0" "$(gauge drawbridge_audit_writable)" 0
  sleep 1
  expect_eq "  ... and keeps refusing while the disk is full" "$(connect_reply "$WORK/refusal2.txt")" 500
  rm -f "$DISK/filler"
  t0=$(now)
  client_serves 15 || true
  ms=$(ms_since "$t0")
  echo "       dials served again ${ms} ms after space returned"
  if ((ms <= 3000)); then pass "space returns: dials are served again within 3 s"; else
    fail "space returns: dials are served again within 3 s" "took $ms ms"
  fi
  expect_eq "  ... /readyz is ready again" "$(readyz)" ready
  expect_eq "  ... drawbridge_audit_writable is 1" "$(gauge drawbridge_audit_writable)" 1
  expect_intact live "the tunnel opened before the disk filled delivered every byte" 4000000
fi

fi
if want 6; then
# ---------------------------------------------------------------------------
section "6. zero audit records lost: every open and close the server logged is in the chain"
# ---------------------------------------------------------------------------
kill -TERM "$SERVER_PID"
wait_for_exit "$SERVER_PID" 15 || true
cat "$SERVER_LOG" >>"$WORK/server.all.log"
expect_ok "the audit chain verifies across every fault" "$BIN" audit verify --data-dir "$D"
"$BIN" audit query --data-dir "$D" --class network_activity --limit 0 --json >"$WORK/records.jsonl"
count() { python3 - "$WORK/records.jsonl" "$1" "${2:-}" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("activity") == sys.argv[2] and (not sys.argv[3] or r.get("details", {}).get("reason_code") == sys.argv[3]):
        n += 1
print(n)
EOF
}
allowed=$(count_matches "$WORK/server.all.log" 'dial\.allowed')
unrecorded=$(count_matches "$WORK/server.all.log" 'dial\.audit_failed')
closed=$(count_matches "$WORK/server.all.log" 'dial\.closed')
echo "       server logs: $allowed dials allowed ($unrecorded refused as unrecordable), $closed closed"
echo "       audit chain: $(count open) open, $(count open_failed audit_unavailable) refused as unrecordable, $(count close) close"
expect_eq "every dial opened is recorded (open)" "$(count open)" "$((allowed - unrecorded))"
expect_eq "every dial refused because the log was full is recorded once space returned" \
  "$(count open_failed audit_unavailable)" "$unrecorded"
# Tunnels cut by the SIGKILL never logged their close; every other close is recorded.
expect_eq "every close the server logged is recorded" "$(count close)" "$closed"

fi

summary_and_exit

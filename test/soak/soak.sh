#!/usr/bin/env bash
# Soak (`make soak`, not in `make test`): mixed traffic for SOAK_MINUTES (10 by
# default) through a server, two agents and a client, with one agent restarted
# every minute (alternating). Samples RSS, file descriptors and threads of every
# process every 10 s, and checks at the end that they stayed flat and that no
# request failed except those an agent restart cut.
#
# Usage: [SOAK_MINUTES=N] soak.sh PATH/TO/drawbridge
#
# Traffic, all through the client's HTTP CONNECT port, each loop in its own
# process: HTTP GETs of a 100 KB file (curl), 20 MB pattern-checked downloads
# (failure_peer.py), and bursts of 200 short echo connections (scale_load.py).
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$HERE/../integration/lib.sh"

parse_bin_arg "$@"
MINUTES=${SOAK_MINUTES:-10}
require_tools python3 curl timeout
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
ulimit -n 8192 2>/dev/null || true

HELPERS="$HERE/../integration/helpers"
use_work_dir soak
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
abort() {
  fail "$1" "${2:-aborting}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}
ADMIN=("$BIN" admin --credentials "$D/admin.json")
cd "$WORK"
SP=$(free_port)
MP=$(free_port)
DEST=$(free_port)
ECHO=$(free_port)
HTTP=$(free_port)
CP=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"
echo "duration:   $MINUTES minutes"

section "setup"
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SP"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cat >"$D/policy.yaml" <<EOF
rules:
  - name: soak
    clients: ["client/app"]
    agents: ["agent/a1", "agent/a2"]
    destinations: ["127.0.0.1:$DEST", "127.0.0.1:$ECHO", "127.0.0.1:$HTTP"]
EOF
start_bg "$SERVER_LOG" "$BIN" --log-level warn server --data-dir "$D" --metrics-listen "127.0.0.1:$MP"
SERVER_PID=$BG_PID
wait_for_port "$SP" 30 "$SERVER_PID" || abort "server listens"
for id in agent/a1 agent/a2 client/app; do
  run "${ADMIN[@]}" identity create "$id" --out "${id#*/}.json"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create $id"; }
done
mkdir -p www dest-state
head -c 100000 /dev/urandom >www/file.bin
start_bg "$WORK/http.log" python3 -m http.server --bind 127.0.0.1 --directory www "$HTTP"
start_bg "$WORK/dest.log" python3 "$HELPERS/failure_peer.py" dest "$DEST" "$WORK/dest-state"
start_bg "$WORK/echo.log" python3 "$HELPERS/scale_load.py" echo "$ECHO"
for p in "$HTTP" "$DEST" "$ECHO"; do wait_for_port "$p" 10 || abort "destinations listen"; done
declare -A AGENT
start_agent() {
  start_bg "$WORK/$1.log.$((++RESTARTS))" "$BIN" --log-level warn agent --credentials "$1.json" \
    --instance-id "$1-$RESTARTS" \
    --allow "127.0.0.1/32:$DEST" --allow "127.0.0.1/32:$ECHO" --allow "127.0.0.1/32:$HTTP"
  AGENT[$1]=$BG_PID
}
RESTARTS=0
start_agent a1
start_agent a2
start_bg "$WORK/client.log" "$BIN" --log-level warn client --credentials app.json --listen "127.0.0.1:$CP"
CLIENT_PID=$BG_PID
wait_for_port "$CP" 30 "$CLIENT_PID" || abort "client up"
poll_until 30 "" curl -sfp -o /dev/null -x "http://127.0.0.1:$CP" "http://127.0.0.1:$HTTP/file.bin" ||
  abort "a request through the tunnel"
pass "server, two agents, client and destinations up"

# Traffic loops: each line of their logs is "unix_time ok|fail detail".
END=$(($(date +%s) + MINUTES * 60))
start_bg "$WORK/t-http.log" bash -c '
while (($(date +%s) < '"$END"')); do
  if curl -sfp -o /dev/null --max-time 20 -x "http://127.0.0.1:'"$CP"'" "http://127.0.0.1:'"$HTTP"'/file.bin"; then
    echo "$(date +%s.%N) ok"; else echo "$(date +%s.%N) fail curl"; fi
  sleep 0.05
done'
start_bg "$WORK/t-bulk.log" bash -c '
i=0
while (($(date +%s) < '"$END"')); do
  i=$((i + 1))
  r=$(python3 "'"$HELPERS"'/failure_peer.py" app "'"$CP"'" "127.0.0.1:'"$DEST"'" "bulk$i" 20000000 fin \
      --up-end fin --max-seconds 60 2>&1 | tail -1)
  case $r in *"\"down_bytes\": 20000000, \"down_ok\": true, \"end\": \"eof\""*) echo "$(date +%s.%N) ok" ;;
    *) echo "$(date +%s.%N) fail $r" ;; esac
done'
start_bg "$WORK/t-echo.log" bash -c '
i=0
while (($(date +%s) < '"$END"')); do
  i=$((i + 1))
  python3 "'"$HELPERS"'/scale_load.py" open "'"$CP"'" "127.0.0.1:'"$ECHO"'" 200 --hold-file none \
    --report "'"$WORK"'/echo-burst.json" >/dev/null 2>&1 || true
  if grep -q "\"alive\": 200, \"echo_ok\": 200" "'"$WORK"'/echo-burst.json" 2>/dev/null &&
     grep -q "\"open\": 200, \"failed\": 0" "'"$WORK"'/echo-burst.json"; then
    echo "$(date +%s.%N) ok"; else echo "$(date +%s.%N) fail $(tr "\n" " " <"'"$WORK"'/echo-burst.json")"; fi
  sleep 1
done'

section "soak: $MINUTES minutes, one agent restarted every minute"
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
threads() { awk '/^Threads/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
sample() {  # time, then rss/fds/threads of server, client, a1, a2
  echo "$(date +%s) $(rss_kib "$SERVER_PID") $(fds "$SERVER_PID") $(threads "$SERVER_PID")" \
    "$(rss_kib "$CLIENT_PID") $(fds "$CLIENT_PID") $(threads "$CLIENT_PID")" \
    "$(rss_kib "${AGENT[a1]}") $(fds "${AGENT[a1]}") $(threads "${AGENT[a1]}")" \
    "$(rss_kib "${AGENT[a2]}") $(fds "${AGENT[a2]}") $(threads "${AGENT[a2]}")" >>"$WORK/samples.txt"
}
: >"$WORK/restarts.txt"
minute=0
while (($(date +%s) < END)); do
  for _ in 1 2 3 4 5 6; do
    sleep 10
    sample
  done
  minute=$((minute + 1))
  (($(date +%s) < END - 5)) || break
  who=$([[ $((minute % 2)) == 1 ]] && echo a1 || echo a2)
  echo "$(date +%s.%N) restart $who" >>"$WORK/restarts.txt"
  kill -TERM "${AGENT[$who]}"
  wait_for_exit "${AGENT[$who]}" 15 || true
  start_agent "$who"
  echo "       minute $minute: restarted agent/$who"
done
sleep 25  # the last transfers finish
sample

section "results"
# A failure within 20 s after an agent restart (its shutdown grace and the
# reconnect) was injected; any other is an error.
python3 - "$WORK" <<'EOF' | tee "$WORK/summary.txt"
import sys, glob
work = sys.argv[1]
restarts = [float(l.split()[0]) for l in open(f"{work}/restarts.txt")]
total = ok = injected = errors = 0
examples = []
for path in glob.glob(f"{work}/t-*.log"):
    for line in open(path):
        parts = line.split(" ", 2)
        if len(parts) < 2:
            continue
        t, what = float(parts[0]), parts[1].strip()
        total += 1
        if what == "ok":
            ok += 1
        elif any(0 <= t - r <= 20 for r in restarts):  # the restart, its grace, the reconnect
            injected += 1
        else:
            errors += 1
            examples.append(line.strip()[:200])
print(f"requests {total}: ok {ok}, cut by an agent restart {injected}, errors {errors}")
for e in examples[:5]:
    print("  error:", e)
s = [list(map(int, l.split())) for l in open(f"{work}/samples.txt")]
# The baseline is a third of the way in: by then gRPC's thread pools and the
# allocator's arenas have sized themselves to the load (a one-time step); growth
# after that is what a leak looks like.
first, last = s[len(s) // 3], s[-1]
names = ["server", "client"]
for i, name in enumerate(names):
    b = 1 + 3 * i
    print(f"{name}: RSS {first[b] // 1024} MiB a third of the way in -> {last[b] // 1024} MiB at the end (max {max(x[b] for x in s) // 1024}),"
          f" fds {first[b + 1]} -> {last[b + 1]}, threads {first[b + 2]} -> {last[b + 2]}")
print(f"agents (restarted every 2 minutes each): RSS at the end {last[7] // 1024} and {last[10] // 1024} MiB,"
      f" fds {last[8]} and {last[11]}, threads {last[9]} and {last[12]}")
open(f"{work}/verdict.txt", "w").write(
    f"{errors} {first[1]} {last[1]} {first[2]} {last[2]} {first[3]} {last[3]} "
    f"{first[4]} {last[4]} {first[5]} {last[5]} {first[6]} {last[6]} {total}\n")
EOF
read -r errors s_rss0 s_rss1 s_fd0 s_fd1 s_th0 s_th1 c_rss0 c_rss1 c_fd0 c_fd1 c_th0 c_th1 total <"$WORK/verdict.txt"
((total > 0)) && pass "traffic ran ($total requests)" || fail "traffic ran" "no requests"
expect_eq "no request failed except those an agent restart cut" "$errors" 0
flat() { (($2 <= $1 * 120 / 100 + 8192)); }
flat "$s_rss0" "$s_rss1" && pass "the server's RSS stayed flat" || fail "the server's RSS stayed flat" "$s_rss0 -> $s_rss1 KiB"
flat "$c_rss0" "$c_rss1" && pass "the client's RSS stayed flat" || fail "the client's RSS stayed flat" "$c_rss0 -> $c_rss1 KiB"
((s_fd1 <= s_fd0 + 5 && c_fd1 <= c_fd0 + 5)) && pass "file descriptors stayed flat" ||
  fail "file descriptors stayed flat" "server $s_fd0 -> $s_fd1, client $c_fd0 -> $c_fd1"
((s_th1 <= s_th0 + 2 && c_th1 <= c_th0 + 2)) && pass "threads stayed flat" ||
  fail "threads stayed flat" "server $s_th0 -> $s_th1, client $c_th0 -> $c_th1"
kill -0 "$SERVER_PID" && kill -0 "$CLIENT_PID" && pass "server and client still up" ||
  fail "server and client still up"
summary_and_exit

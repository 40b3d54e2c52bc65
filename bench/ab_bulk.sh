#!/usr/bin/env bash
# Interleaved A/B of two drawbridge binaries on bulk throughput: for each round,
# A then B each get a fresh server, agent and `client --forward` on loopback (as
# bench/compare.py sets them up), iperf3 runs through the tunnel with 1 and then
# 4 streams, and the CPU time of the three tunnel processes during the 1-stream
# run gives CPU seconds per GiB. Prints one line per run and the medians.
#
#   bench/ab_bulk.sh BIN_A BIN_B [ROUNDS (3)] [SECONDS per iperf3 run (4)]
#
# Extra flags for client and agent (e.g. --no-lanes) go in AB_FLAGS_A / AB_FLAGS_B.
# Loopback only; every process it starts is stopped on exit. Needs iperf3, python3.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
ROUNDS=${3:-3}
SECS=${4:-4}
for tool in iperf3 python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-ab.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf -- "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  local deadline=$((SECONDS + 20))
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
    ((SECONDS < deadline)) || { echo "error: nothing listens on $1" >&2; return 1; }
    sleep 0.1
  done
}
cpu_ticks() {  # cpu_ticks PID...: user+system clock ticks of the processes
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

# run_once BIN FLAGS: prints "bulk1 bulk4 cpu_per_gib"
run_once() {
  local bin=$1 flags=$2 d
  d=$(mktemp -d "$WORK/run.XXXXXX")
  local sp bp cp
  sp=$(free_port)
  bp=$(free_port)
  cp=$(free_port)
  "$bin" server init --data-dir "$d/server" --trust-domain bench.local \
    --listen "127.0.0.1:$sp" >"$d/init.log" 2>&1 || { cat "$d/init.log" >&2; exit 1; }
  echo "dial_rate_per_second: 0" >>"$d/server/server.yaml"
  printf 'rules:\n  - name: b\n    clients: ["client/b"]\n    agents: ["agent/b"]\n    destinations: ["127.0.0.1:%s"]\n' \
    "$bp" >"$d/policy.yaml"
  "$bin" server --data-dir "$d/server" --policy "$d/policy.yaml" --metrics-listen off \
    >"$d/server.log" 2>&1 &
  local server=$!
  PIDS+=("$server")
  wait_port "$sp"
  "$bin" admin --credentials "$d/server/admin.json" identity create agent/b --out "$d/agent.json" >/dev/null
  "$bin" admin --credentials "$d/server/admin.json" identity create client/b --out "$d/client.json" >/dev/null
  iperf3 -s -B 127.0.0.1 -p "$bp" >/dev/null 2>&1 &
  PIDS+=($!)
  # shellcheck disable=SC2086  # the flags are words
  "$bin" agent --credentials "$d/agent.json" --data-dir "$d/agent" --allow "127.0.0.1:$bp" \
    $flags >"$d/agent.log" 2>&1 &
  local agent=$!
  PIDS+=("$agent")
  # shellcheck disable=SC2086
  "$bin" client --credentials "$d/client.json" --forward "127.0.0.1:$cp=127.0.0.1:$bp" \
    $flags >"$d/client.log" 2>&1 &
  local client=$!
  PIDS+=("$client")
  wait_port "$cp"
  sleep 1  # the agent's Control stream and the lane pools
  local p
  for p in server agent client; do
    if ! kill -0 "${!p}" 2>/dev/null; then
      echo "error: the $p exited:" >&2
      tail -n 5 "$d/$p.log" >&2
      exit 1
    fi
  done
  local c0 c1 one four
  c0=$(cpu_ticks "$server" "$agent" "$client")
  one=$(iperf3 -c 127.0.0.1 -p "$cp" -t "$SECS" -J)
  c1=$(cpu_ticks "$server" "$agent" "$client")
  four=$(iperf3 -c 127.0.0.1 -p "$cp" -t "$SECS" -P 4 -J)
  kill "$server" "$agent" "$client" 2>/dev/null || true
  python3 - "$one" "$four" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
one, four = json.loads(sys.argv[1])["end"], json.loads(sys.argv[2])["end"]
ticks, hz = int(sys.argv[4]) - int(sys.argv[3]), int(sys.argv[5])
gib = one["sum_received"]["bytes"] / 2**30
print(f'{one["sum_received"]["bits_per_second"] / 1e9:.2f} '
      f'{four["sum_received"]["bits_per_second"] / 1e9:.2f} {ticks / hz / gib:.2f}')
PY
}

declare -A results
for ((r = 1; r <= ROUNDS; r++)); do
  for side in A B; do
    if [[ $side == A ]]; then bin=$A flags=${AB_FLAGS_A:-}; else bin=$B flags=${AB_FLAGS_B:-}; fi
    line=$(run_once "$bin" "$flags")
    results[$side]+="$line;"
    read -r b1 b4 cpu <<<"$line"
    printf 'round %d %s: bulk 1 stream %s Gbit/s, 4 streams %s Gbit/s, CPU %s s/GiB\n' \
      "$r" "$side" "$b1" "$b4" "$cpu"
  done
done
python3 - "${results[A]}" "${results[B]}" <<'PY'
import statistics, sys
for name, runs in zip("AB", sys.argv[1:]):
    rows = [list(map(float, r.split())) for r in runs.split(";") if r]
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"median {name}: bulk 1 stream {med[0]:.2f} Gbit/s, 4 streams {med[1]:.2f} Gbit/s, "
          f"CPU {med[2]:.2f} s/GiB")
PY

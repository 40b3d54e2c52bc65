#!/usr/bin/env bash
# Dial latency through Drawbridge on loopback: a server, an agent, a client proxy and
# a backend that writes one byte on accept; N sequential HTTP CONNECTs, each timed from
# the CONNECT to the backend's first byte (p50/p90/p99/max in ms).
#
#   bench/dial_latency.sh [PATH/TO/drawbridge] [N]     (defaults: build/drawbridge, 500)
#
# Loopback only, temporary directory, every process stopped on exit. A first step of
# the benchmark suite (issue #6); run it on an idle machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../build/drawbridge}")
n=${2:-500}
work=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c 'import socket,sys;socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$1" \
      2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}
cd "$work"
sp=$(port); bp=$(port); pp=$(port)
"$bin" server init --data-dir d --trust-domain bench.local --listen "127.0.0.1:$sp" >/dev/null 2>&1
printf 'rules:\n  - name: bench\n    clients: ["client/bench"]\n    agents: ["agent/bench"]\n    destinations: ["127.0.0.1:%s"]\n' \
  "$bp" >policy.yaml
"$bin" --log-level warn server --data-dir d --policy policy.yaml --metrics-listen 127.0.0.1:0 2>server.log & pids+=($!)
wait_port "$sp"
"$bin" admin --credentials d/admin.json identity create agent/bench --out agent.json >/dev/null
"$bin" admin --credentials d/admin.json identity create client/bench --out client.json >/dev/null
python3 "$here/first_byte_backend.py" "$bp" & pids+=($!)
"$bin" --log-level warn agent --credentials agent.json --allow "127.0.0.1/32:$bp" 2>agent.log &
pids+=($!)
"$bin" --log-level warn client --credentials client.json --listen "127.0.0.1:$pp" 2>client.log &
pids+=($!)
wait_port "$pp"
wait_port "$bp"
python3 "$here/dial_latency.py" "$pp" "127.0.0.1:$bp" 50 >/dev/null  # warm-up (enrollment, agent up)
python3 "$here/dial_latency.py" "$pp" "127.0.0.1:$bp" "$n"

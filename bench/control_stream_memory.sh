#!/usr/bin/env bash
# What one connected agent instance costs a server (for replica sizing,
# docs/operations.md "Running replicas"): the server's RSS with no agent, then
# with N agent instances connected (each holds one Control stream, its gRPC
# connection and its pre-opened lanes), and the difference per instance.
#
# Usage: bench/control_stream_memory.sh PATH/TO/drawbridge [N]   (default N=40)
# Loopback only; everything it starts is stopped on exit.
set -euo pipefail
BIN=$(realpath "$1")
N=${2:-40}
W=$(mktemp -d)
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$BIN" server init --data-dir "$W/s" --trust-domain example.com --listen "127.0.0.1:$PORT" >/dev/null 2>&1
printf 'rules: []\n' >"$W/policy.yaml"
"$BIN" --log-level warn server --data-dir "$W/s" --policy "$W/policy.yaml" --metrics-listen off \
  >"$W/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do
  "$BIN" admin --credentials "$W/s/admin.json" identity create agent/a --out "$W/a.json" \
    >/dev/null 2>&1 && break
  sleep 0.2
done
rss() { awk '/VmRSS/{print $2}' "/proc/$SERVER/status"; }
connected() {
  "$BIN" admin --credentials "$W/s/admin.json" agents list --json 2>/dev/null |
    python3 -c "import json,sys; print(len(json.load(sys.stdin).get('agents', [])))"
}
agent() { "$BIN" --log-level warn agent --credentials "$W/a.json" --allow 127.0.0.1:1 --data-dir "$W/$1" >/dev/null 2>&1 & }
# One agent comes and goes first, so that what a server allocates once is in the baseline.
agent warm
WARM=$!
until [[ $(connected) -ge 1 ]]; do sleep 0.2; done
kill "$WARM"
until [[ $(connected) -eq 0 ]]; do sleep 0.2; done
sleep 1
before=$(rss)
for i in $(seq "$N"); do agent "a$i"; done
deadline=$((SECONDS + 90))
while [[ $(connected) -lt $N && $SECONDS -lt $deadline ]]; do sleep 0.5; done
sleep 3 # lanes pre-opened after the Control stream
n=$(connected)
after=$(rss)
echo "server RSS: ${before} KiB with no agent, ${after} KiB with ${n} agent instances connected:" \
  "$(((after - before) / n)) KiB per agent instance"

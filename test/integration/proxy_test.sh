#!/usr/bin/env bash
# Agents and clients behind a corporate HTTP proxy: their gRPC channels and
# their lanes reach the server only through CONNECT on a real proxy (Debian's
# tinyproxy, started by the test), with proxy authentication, a proxy that
# refuses, HTTPS_PROXY/NO_PROXY from the environment, and --proxy direct.
#
# Proof that traffic went through the proxy: the proxy's own log of CONNECT
# requests (to the gRPC port and to the lane port), and that a proxy that
# refuses (wrong password, a destination port it does not allow) keeps the
# agent from connecting at all, with the proxy's reason in the agent's error.
#
# Usage: proxy_test.sh PATH/TO/drawbridge
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout tinyproxy

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
unset grpc_proxy no_grpc_proxy

use_work_dir proxy-test
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
cd "$WORK"
SERVER_PORT=$(free_port)
LANE_PORT=$(free_port)
HTTP_PORT=$(free_port)
CLIENT_PORT=$(free_port)
OPEN_PROXY=$(free_port)
AUTH_PROXY=$(free_port)
STRICT_PROXY=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

# start_proxy NAME PORT [CONFIG LINES...]: tinyproxy in the foreground, its log in NAME.log.
start_proxy() {
  local name=$1 port=$2
  shift 2
  {
    echo "Port $port"
    echo "Listen 127.0.0.1"
    echo "Timeout 600"
    echo "LogFile \"$WORK/$name.log\""
    echo "LogLevel Connect"
    echo "PidFile \"$WORK/$name.pid\""
    echo "MaxClients 200"
    [[ $(id -u) -eq 0 ]] && echo "User nobody" && echo "Group nogroup"
    printf '%s\n' "$@"
  } >"$WORK/$name.conf"
  touch "$WORK/$name.log"
  [[ $(id -u) -eq 0 ]] && chown nobody:nogroup "$WORK/$name.log" && chmod 0777 "$WORK"
  start_bg "$WORK/$name.out" tinyproxy -d -c "$WORK/$name.conf"
  wait_for_port "$port" 10 "$BG_PID"
}
# connects_to NAME PORT: CONNECT requests proxy NAME has logged for 127.0.0.1:PORT.
connects_to() { count_matches "$WORK/$1.log" "CONNECT 127\\.0\\.0\\.1:$2 HTTP"; }

# agent_run NAME ARGS...: starts an agent with agent.json (plus ARGS); AGENT_PID.
agent_run() {
  local name=$1
  shift
  start_bg "$WORK/$name.log" "$BIN" agent --credentials "$WORK/agent.json" \
    --data-dir "$WORK/$name-data" --allow "127.0.0.1/32:$HTTP_PORT" "$@"
  AGENT_PID=$BG_PID
}
stop_agent() {
  kill "$AGENT_PID" 2>/dev/null || true
  wait_for_exit "$AGENT_PID" 10 || true
}
page_via_client() {
  run curl -sS --max-time 20 -p -x "http://127.0.0.1:$CLIENT_PORT" "http://127.0.0.1:$HTTP_PORT/"
}

# ---------------------------------------------------------------------------
section "setup: a server with lanes, three tinyproxy instances, a private HTTP server"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: app-to-web
    clients: ["client/app"]
    agents: ["agent/a"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
EOF
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$WORK/policy.yaml" \
  --metrics-listen off --lane-listen "127.0.0.1:$LANE_PORT"
wait_for_port "$SERVER_PORT" 20 "$BG_PID" || abort "server starts"
ADMIN=("$BIN" admin --credentials "$D/admin.json")
run "${ADMIN[@]}" identity create agent/a --out "$WORK/agent.json"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create agent/a"; }
run "${ADMIN[@]}" identity create client/app --out "$WORK/app.json"
mkdir -p www && echo "private page" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "private HTTP server"
start_proxy open "$OPEN_PROXY" || abort "tinyproxy (open) starts"
start_proxy auth "$AUTH_PROXY" "BasicAuth alice s3cr3t-pw" || abort "tinyproxy (authenticated) starts"
# Only port 443 may be tunneled: the server's ports are refused.
start_proxy strict "$STRICT_PROXY" "ConnectPort 443" || abort "tinyproxy (strict) starts"

# ---------------------------------------------------------------------------
section "1. agent and client through a proxy: gRPC and lanes both CONNECT"
# ---------------------------------------------------------------------------
agent_run agent1 --proxy "http://127.0.0.1:$OPEN_PROXY"
wait_for_count "$WORK/agent1.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "the agent connects through the proxy"
pass "the agent connects through the proxy"
expect_contains "  ... and logs the proxy it uses" "$WORK/agent1.log" "server\.via_proxy.*proxy=http://127\.0\.0\.1:$OPEN_PROXY"
start_bg "$WORK/client.log" "$BIN" client --credentials "$WORK/app.json" \
  --listen "127.0.0.1:$CLIENT_PORT" --proxy "http://127.0.0.1:$OPEN_PROXY"
wait_for_port "$CLIENT_PORT" 15 "$BG_PID" || abort "the client listens"
page_via_client
expect_contains "a request through the tunnel reaches the private page" "$LAST" "private page"
for i in 1 2 3 4 5; do page_via_client; done
expect_contains "  ... again and again" "$LAST" "private page"
n=$(connects_to open "$SERVER_PORT")
[[ $n -ge 2 ]] && pass "the proxy carried CONNECTs to the gRPC port (agent and client: $n)" ||
  fail "the proxy carried CONNECTs to the gRPC port" "got $n"
if wait_for_count "$WORK/open.log" "CONNECT 127\\.0\\.0\\.1:$LANE_PORT HTTP" 1 10; then
  pass "  ... and to the lane port ($(connects_to open "$LANE_PORT") lanes)"
else
  fail "  ... and to the lane port"
fi
stop_agent

# ---------------------------------------------------------------------------
section "2. proxy authentication"
# ---------------------------------------------------------------------------
agent_run agent2 --proxy "http://alice:s3cr3t%2Dpw@127.0.0.1:$AUTH_PROXY"
if wait_for_count "$WORK/agent2.log" 'agent\.control_connected' 1 20 "$AGENT_PID"; then
  pass "with the right user and password (percent-encoded), the agent connects"
else
  fail "with the right user and password (percent-encoded), the agent connects"
  show_log "agent log" "$WORK/agent2.log" 10
fi
expect_not_contains "  ... and the password is in no log line" "$WORK/agent2.log" 's3cr3t'
wait_for_count "$WORK/auth.log" "CONNECT 127\\.0\\.0\\.1:$LANE_PORT HTTP" 1 10 || true
[[ $(connects_to auth "$LANE_PORT") -ge 1 ]] && pass "  ... lanes authenticate too" ||
  fail "  ... lanes authenticate too"
stop_agent
run "$BIN" check --credentials "$WORK/agent.json" --count 1 --proxy "http://alice:wrong@127.0.0.1:$AUTH_PROXY"
expect_eq "a wrong password: enrollment fails" "$LAST_RC" 1
run "$BIN" check --credentials "$WORK/agent.json" --count 1 --proxy "http://127.0.0.1:$AUTH_PROXY"
expect_eq "no password for a proxy that wants one: enrollment fails" "$LAST_RC" 1
expect_contains "  ... naming the proxy's answer" "$LAST" "HTTP proxy returned response code 407"

# ---------------------------------------------------------------------------
section "3. a proxy that refuses the destination"
# ---------------------------------------------------------------------------
run "$BIN" check --credentials "$WORK/agent.json" --count 1 --proxy "http://127.0.0.1:$STRICT_PROXY"
expect_eq "through a proxy that allows port 443 only, enrollment fails" "$LAST_RC" 1
expect_contains "  ... visibly, with the proxy's answer" "$LAST" "enrollment of agent/a .*response code 403"
expect_contains "the proxy saw the attempt and refused it" "$WORK/strict.log" "CONNECT 127\\.0\\.0\\.1:$SERVER_PORT"
run "$BIN" check --credentials "$WORK/agent.json" --count 1 --proxy "https://127.0.0.1:$OPEN_PROXY"
expect_eq "an https:// proxy URL is refused" "$LAST_RC" 1
expect_contains "  ... saying so" "$LAST" "https:// proxies .* not supported"
run "$BIN" check --credentials "$WORK/agent.json" --count 1 --proxy "socks5://127.0.0.1:1080"
expect_contains "a socks5:// proxy URL is refused" "$LAST" "scheme \"socks5\" is not supported"

# ---------------------------------------------------------------------------
section "4. HTTPS_PROXY and NO_PROXY from the environment; --proxy direct"
# ---------------------------------------------------------------------------
before=$(connects_to auth "$SERVER_PORT")
HTTPS_PROXY="http://alice:s3cr3t%2Dpw@127.0.0.1:$AUTH_PROXY" run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "HTTPS_PROXY: check succeeds" "$LAST_RC" 0
[[ $(connects_to auth "$SERVER_PORT") -gt $before ]] && pass "  ... through that proxy" ||
  fail "  ... through that proxy"
https_proxy="http://127.0.0.1:$STRICT_PROXY" run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "https_proxy (lower case) is honoured too: through the strict proxy, it fails" "$LAST_RC" 1
before=$(connects_to strict "$SERVER_PORT")
HTTPS_PROXY="http://127.0.0.1:$STRICT_PROXY" NO_PROXY="localhost,127.0.0.0/8" \
  run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "NO_PROXY with the server's network: check succeeds directly" "$LAST_RC" 0
expect_eq "  ... the refusing proxy saw nothing" "$(connects_to strict "$SERVER_PORT")" "$before"
HTTPS_PROXY="http://127.0.0.1:$STRICT_PROXY" NO_PROXY="example.org,127.0.0.1:$SERVER_PORT" \
  run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "NO_PROXY naming the server's address and port: direct" "$LAST_RC" 0
HTTPS_PROXY="http://127.0.0.1:$STRICT_PROXY" NO_PROXY="example.org,10.0.0.0/8" \
  run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "NO_PROXY not naming it: through the proxy (which refuses)" "$LAST_RC" 1
HTTPS_PROXY="http://127.0.0.1:$STRICT_PROXY" run "$BIN" check --credentials "$WORK/agent.json" \
  --count 1 --proxy direct
expect_eq "--proxy direct ignores HTTPS_PROXY" "$LAST_RC" 0
# An agent started with only the environment carries tunnels through the proxy.
before=$(connects_to open "$LANE_PORT")
HTTPS_PROXY="http://127.0.0.1:$OPEN_PROXY" agent_run agent3
wait_for_count "$WORK/agent3.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "the agent connects with HTTPS_PROXY"
page_via_client
expect_contains "an agent configured by HTTPS_PROXY alone carries the tunnel" "$LAST" "private page"
_lanes_grew() { [[ $(connects_to open "$LANE_PORT") -gt $1 ]]; }
if poll_until 10 "" _lanes_grew "$before"; then
  pass "  ... its lanes through the proxy too"
else
  fail "  ... its lanes through the proxy too"
fi
stop_agent

summary_and_exit

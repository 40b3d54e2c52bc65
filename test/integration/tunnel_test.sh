#!/usr/bin/env bash
# End-to-end test of the tunnel data plane, run the way an operator runs it: a server
# with a policy file, agents with local allowlists, a client proxy (HTTP CONNECT, SOCKS5,
# --forward, stdio for ssh), real backends (python3 http.server, sshd) on loopback.
#
# Usage: tunnel_test.sh PATH/TO/drawbridge
#
# Hermetic: everything lives in one `mktemp -d` directory that is removed on exit (set
# KEEP_WORK=1 to keep it), every process listens on a free loopback port and is killed
# on exit (even on failure). No fixed sleeps: every wait polls with a deadline.
# Prints one line per check and ends with exactly "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl timeout realpath sha256sum head

# The environment must not leak an operator's settings into the test.
unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

use_work_dir tunnel-test
use_test_store
D="$WORK/data"           # the server's data directory
SERVER_LOG="$WORK/server.log"
AGENT1_LOG="$WORK/agent1.log"
AGENT2_LOG="$WORK/agent2.log"
CLIENT_LOG="$WORK/client.log"
SSHD_LOG="$WORK/sshd.log"
SERVER_PID=""
MADE_PRIVSEP_DIR=""      # /run/sshd, if we had to create it for sshd

# shellcheck disable=SC2317  # invoked by the EXIT trap (lib.sh)
extra_cleanup() {
  if [[ -n $MADE_PRIVSEP_DIR ]]; then
    rmdir -- "$MADE_PRIVSEP_DIR" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------------------
# Helpers only this script uses (the shared ones are in lib.sh)
# ---------------------------------------------------------------------------
# A fatal failure: later checks would only produce noise.
abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  show_log "agent/a1 log" "$AGENT1_LOG" 10
  show_log "agent/a2 log" "$AGENT2_LOG" 10
  show_log "client log" "$CLIENT_LOG" 10
  summary_and_exit
}

sha_of() {  # sha_of FILE: the hex SHA-256 of FILE (empty if missing)
  if [[ -f $1 ]]; then sha256sum <"$1" | cut -d' ' -f1; fi
}

PROXY=""  # set below: http://127.0.0.1:PROXY_PORT

# connect_code URL: the proxy's reply status to curl's CONNECT for URL (000 when none).
connect_code() {
  local code
  code=$(timeout 30 curl -s -o /dev/null --max-time 20 -w '%{http_connect}' -p -x "$PROXY" "$1" \
    2>/dev/null) || true
  echo "${code:-000}"
}

# connect_get URL: GET URL through an HTTP CONNECT tunnel; output to $LAST, rc to $LAST_RC.
connect_get() {
  run curl -sS --max-time 30 -p -x "$PROXY" "$1"
}

# poll_connect_get URL TOKEN SECONDS: retries connect_get until the body holds TOKEN.
poll_connect_get() {
  local url=$1 token=$2 secs=$3
  local deadline=$((SECONDS + secs))
  while true; do
    connect_get "$url"
    if [[ $LAST_RC -eq 0 ]] && grep -qF -- "$token" "$LAST"; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# write_policy FILE RULE_BLOCK...: a policy file with the given rules (YAML list items).
write_policy() {
  local file=$1
  shift
  {
    echo "rules:"
    printf '%s\n' "$@"
  } >"$file.tmp"
  mv -f -- "$file.tmp" "$file"
}

ADMIN=("$BIN" admin --credentials "$D/admin.json")

cd "$WORK"
SERVER_PORT=$(free_port)
HTTP_PORT=$(free_port)    # backend 1 (agent/a1 may reach it by IP and by name)
HTTP2_PORT=$(free_port)   # backend 2 (agent/a2 lists it only by name: DNS-rebinding case)
DENY_PORT=$(free_port)    # backend 3: allowed by policy, NOT in agent/a1's allowlist
OTHER_PORT=$(free_port)   # in no policy rule at all
PROXY_PORT=$(free_port)   # client CONNECT + SOCKS5
FWD_PORT=$(free_port)     # client --forward to backend 1
SSH_PORT=$(free_port)     # local sshd
PROXY="http://127.0.0.1:$PROXY_PORT"
TOKEN="drawbridge-token-$RANDOM$RANDOM-$$"
TOKEN2="drawbridge-token2-$RANDOM$RANDOM-$$"
TOKEN3="drawbridge-token3-$RANDOM$RANDOM-$$"
echo "drawbridge: $BIN"
echo "work dir:   $WORK"
echo "ports:      server $SERVER_PORT, http $HTTP_PORT, http2 $HTTP2_PORT, deny $DENY_PORT," \
  "other $OTHER_PORT, proxy $PROXY_PORT, forward $FWD_PORT, ssh $SSH_PORT"

# Policy P1: what the first half of the test runs with.
RULE_WEB="  - name: ci-to-web
    clients: [\"client/ci\"]
    agents: [\"agent/a1\"]
    destinations: [\"127.0.0.1:$HTTP_PORT\", \"localhost:$HTTP_PORT\"]"
RULE_SSH_DENY="  - name: ci-to-ssh-and-deny
    clients: [\"client/ci\"]
    agents: [\"agent/a1\"]
    destinations: [\"127.0.0.1:$SSH_PORT\", \"127.0.0.1:$DENY_PORT\"]"
RULE_REBIND="  - name: ci-to-rebind
    clients: [\"client/ci\"]
    agents: [\"agent/a2\"]
    destinations: [\"localhost:$HTTP2_PORT\"]"
POLICY="$WORK/policy.yaml"
write_policy "$POLICY" "$RULE_WEB" "$RULE_SSH_DENY" "$RULE_REBIND"

# ---------------------------------------------------------------------------
section "1. setup: server, identities, backends, agents, client"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT" \
  "${TEST_STORE_ARGS[@]}"
[[ $LAST_RC -eq 0 && -f $D/admin.json ]] || { show_last; abort "server init"; }

start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$POLICY" --metrics-listen 127.0.0.1:0
SERVER_PID=$BG_PID
if wait_for_count "$SERVER_LOG" 'server\.listening' 1 15 "$SERVER_PID" &&
  wait_for_port "$SERVER_PORT" 10 "$SERVER_PID"; then
  pass "server is listening on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID)"
else
  abort "server is listening on 127.0.0.1:$SERVER_PORT"
fi
expect_contains "  ... and loaded policy.yaml (3 rules)" "$SERVER_LOG" 'policy\.loaded.*rules=3'

for id in agent/a1 agent/a2 client/ci; do
  f="${id#*/}.json"
  run "${ADMIN[@]}" identity create "$id" --out "$f"
  [[ $LAST_RC -eq 0 && -f $f ]] || { show_last; abort "identity create $id"; }
done
pass "identities agent/a1, agent/a2, client/ci created"

# Backends: python3 http.server serving a unique token and a 20 MiB random file.
mkdir -p www www2 www3
printf '<html><body>%s</body></html>\n' "$TOKEN" >www/index.html
printf '<html><body>%s</body></html>\n' "$TOKEN2" >www2/index.html
printf '<html><body>%s</body></html>\n' "$TOKEN3" >www3/index.html
head -c 20M /dev/urandom >www/big.bin
BIG_SHA=$(sha_of www/big.bin)
start_bg "$WORK/http1.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
HTTP1_PID=$BG_PID
start_bg "$WORK/http2.log" python3 -m http.server "$HTTP2_PORT" --bind 127.0.0.1 --directory www2
HTTP2_PID=$BG_PID
start_bg "$WORK/http3.log" python3 -m http.server "$DENY_PORT" --bind 127.0.0.1 --directory www3
HTTP3_PID=$BG_PID
for spec in "$HTTP_PORT:$HTTP1_PID:$TOKEN" "$HTTP2_PORT:$HTTP2_PID:$TOKEN2" \
  "$DENY_PORT:$HTTP3_PID:$TOKEN3"; do
  IFS=: read -r port pid tok <<<"$spec"
  if wait_for_port "$port" 15 "$pid" &&
    [[ $(timeout 10 curl -sS --noproxy '*' "http://127.0.0.1:$port/index.html") == *"$tok"* ]]; then
    :
  else
    abort "backend http.server on 127.0.0.1:$port serves its token"
  fi
done
pass "backends up on $HTTP_PORT, $HTTP2_PORT, $DENY_PORT (big.bin sha256 ${BIG_SHA:0:16}...)"
# Requests each refused backend has served so far (the readiness probes above): any
# later increase means a refused connection reached it after all.
HTTP2_GETS=$(count_matches "$WORK/http2.log" '"GET ')
HTTP3_GETS=$(count_matches "$WORK/http3.log" '"GET ')


# Agents: agent/a1 may reach backend 1 (by IP and by name) and sshd; NOT the DENY_PORT
# backend, although the policy allows it. agent/a2 lists backend 2 only by name, which
# resolves to loopback: refused without an explicit IP/CIDR entry (DNS-rebinding defence).
start_bg "$AGENT1_LOG" "$BIN" agent --credentials a1.json --instance-id a1-one \
  --allow "127.0.0.1/32:$HTTP_PORT" --allow "localhost:$HTTP_PORT" --allow "127.0.0.1/32:$SSH_PORT"
AGENT1_PID=$BG_PID
start_bg "$AGENT2_LOG" "$BIN" agent --credentials a2.json --instance-id a2-one \
  --allow "localhost:$HTTP2_PORT"
AGENT2_PID=$BG_PID
if wait_for_count "$AGENT1_LOG" 'agent\.control_connected' 1 20 "$AGENT1_PID"; then
  pass "agent/a1 registered with the server (agent.control_connected)"
else
  abort "agent/a1 registered with the server (agent.control_connected)"
fi
if wait_for_count "$AGENT2_LOG" 'agent\.control_connected' 1 20 "$AGENT2_PID"; then
  pass "agent/a2 registered with the server (agent.control_connected)"
else
  abort "agent/a2 registered with the server (agent.control_connected)"
fi

start_bg "$CLIENT_LOG" "$BIN" client --credentials ci.json --listen "127.0.0.1:$PROXY_PORT" \
  --forward "127.0.0.1:$FWD_PORT=127.0.0.1:$HTTP_PORT"
CLIENT_PID=$BG_PID
if wait_for_count "$CLIENT_LOG" 'client\.listening' 1 20 "$CLIENT_PID" &&
  wait_for_port "$PROXY_PORT" 10 "$CLIENT_PID"; then
  pass "client proxy listening on 127.0.0.1:$PROXY_PORT (client.listening)"
else
  abort "client proxy listening on 127.0.0.1:$PROXY_PORT (client.listening)"
fi

# ---------------------------------------------------------------------------
section "2. HTTP CONNECT"
# ---------------------------------------------------------------------------
connect_get "http://127.0.0.1:$HTTP_PORT/index.html"
if [[ $LAST_RC -eq 0 ]] && grep -qF -- "$TOKEN" "$LAST"; then
  pass "CONNECT 127.0.0.1:$HTTP_PORT: index.html has the token"
else
  fail "CONNECT 127.0.0.1:$HTTP_PORT: index.html has the token" "curl exit $LAST_RC"
  show_last
fi
expect_eq "  ... proxy answers the CONNECT with 200" \
  "$(connect_code "http://127.0.0.1:$HTTP_PORT/index.html")" 200
expect_contains "  ... server log: dial.allowed client/ci -> 127.0.0.1:$HTTP_PORT via agent/a1" \
  "$SERVER_LOG" "dial\\.allowed client=client/ci .*destination=127\\.0\\.0\\.1:$HTTP_PORT agent=agent/a1"

rm -f got-big.bin
start=$SECONDS
expect_ok "CONNECT: download 20 MiB big.bin" \
  curl -sS --max-time 50 -p -x "$PROXY" -o got-big.bin "http://127.0.0.1:$HTTP_PORT/big.bin"
echo "       (took $((SECONDS - start)) s)"
expect_eq "  ... size is 20971520 bytes" "$(stat -c %s got-big.bin 2>/dev/null || echo missing)" 20971520
expect_eq "  ... sha256 matches the original" "$(sha_of got-big.bin)" "$BIG_SHA"
rm -f got-big.bin

# ---------------------------------------------------------------------------
section "3. SOCKS5"
# ---------------------------------------------------------------------------
expect_ok "SOCKS5 (local resolution) 127.0.0.1:$HTTP_PORT" \
  curl -sS --max-time 30 --socks5 "127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/index.html"
expect_contains "  ... index.html has the token" "$LAST" "$TOKEN"
expect_ok "SOCKS5 (remote resolution, --socks5-hostname) localhost:$HTTP_PORT" \
  curl -sS --max-time 30 --socks5-hostname "127.0.0.1:$PROXY_PORT" "http://localhost:$HTTP_PORT/"
expect_contains "  ... index.html has the token" "$LAST" "$TOKEN"
expect_contains "  ... server log: the destination went through as the name localhost:$HTTP_PORT" \
  "$SERVER_LOG" "dial\\.allowed client=client/ci .*destination=localhost:$HTTP_PORT agent=agent/a1"
expect_contains "  ... agent/a1 resolved it and connected to 127.0.0.1" "$AGENT1_LOG" \
  "agent\\.connected_destination destination=localhost:$HTTP_PORT address=127\\.0\\.0\\.1"

# ---------------------------------------------------------------------------
section "4. server policy denies a destination in no rule"
# ---------------------------------------------------------------------------
expect_eq "CONNECT 127.0.0.1:$OTHER_PORT (in no rule) gets 403" \
  "$(connect_code "http://127.0.0.1:$OTHER_PORT/")" 403
expect_exit "SOCKS5 127.0.0.1:$OTHER_PORT fails with curl exit 97 (proxy handshake refused)" 97 \
  curl -sS --max-time 30 --socks5 "127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$OTHER_PORT/"
expect_eq "  ... server log: 2 x dial.refused for 127.0.0.1:$OTHER_PORT with denied_policy" \
  "$(count_matches "$SERVER_LOG" "dial\\.refused .*destination=127\\.0\\.0\\.1:$OTHER_PORT .*denied_policy")" 2
expect_not_contains "  ... and no agent was asked (agent/a1 log)" "$AGENT1_LOG" ":$OTHER_PORT"

# ---------------------------------------------------------------------------
section "5. agent allowlist denies what the policy allows"
# ---------------------------------------------------------------------------
# 127.0.0.1:DENY_PORT is in the policy but not in agent/a1's --allow list. The server
# routes only to agents whose advertised allowlist covers the destination (DESIGN §3), so
# it refuses on the agent's behalf (denied_agent) without asking it; the agent's own
# enforcement (agent.refused) is exercised by the DNS-rebinding case in section 6.
expect_eq "CONNECT 127.0.0.1:$DENY_PORT (policy yes, agent allowlist no) gets 403" \
  "$(connect_code "http://127.0.0.1:$DENY_PORT/index.html")" 403
expect_exit "SOCKS5 127.0.0.1:$DENY_PORT fails with curl exit 97" 97 \
  curl -sS --max-time 30 --socks5 "127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$DENY_PORT/index.html"
expect_not_contains "  ... and the output has no token from that backend" "$LAST" "$TOKEN3"
expect_eq "  ... server log: 2 x dial.refused for 127.0.0.1:$DENY_PORT with denied_agent" \
  "$(count_matches "$SERVER_LOG" "dial\\.refused .*destination=127\\.0\\.0\\.1:$DENY_PORT .*result=denied_agent")" 2
expect_eq "  ... the DENY_PORT backend received no request" \
  "$(count_matches "$WORK/http3.log" '"GET ')" "$HTTP3_GETS"
expect_not_contains "  ... agent/a1 never connected to it" "$AGENT1_LOG" \
  "agent\\.connected_destination destination=[^ ]*:$DENY_PORT"

# ---------------------------------------------------------------------------
section "6. DNS rebinding: a name that resolves to loopback (agent/a2)"
# ---------------------------------------------------------------------------
expect_eq "CONNECT localhost:$HTTP2_PORT via agent/a2 (name-only allowlist) gets 403" \
  "$(connect_code "http://localhost:$HTTP2_PORT/")" 403
expect_exit "SOCKS5 --socks5-hostname localhost:$HTTP2_PORT fails with curl exit 97" 97 \
  curl -sS --max-time 30 --socks5-hostname "127.0.0.1:$PROXY_PORT" "http://localhost:$HTTP2_PORT/"
expect_not_contains "  ... and the output has no token from that backend" "$LAST" "$TOKEN2"
expect_contains "  ... server log: the dial was routed to agent/a2" "$SERVER_LOG" \
  "destination=localhost:$HTTP2_PORT agent=agent/a2"
expect_contains "  ... agent/a2 log: agent.refused localhost:$HTTP2_PORT mentioning loopback" \
  "$AGENT2_LOG" "agent\\.refused .*localhost:$HTTP2_PORT.*loopback"
expect_not_contains "  ... agent/a2 never connected to it" "$AGENT2_LOG" "agent\\.connected_destination"
expect_eq "  ... backend 2 received no request" \
  "$(count_matches "$WORK/http2.log" '"GET ')" "$HTTP2_GETS"

# ---------------------------------------------------------------------------
section "7. --forward"
# ---------------------------------------------------------------------------
if wait_for_port "$FWD_PORT" 10 "$CLIENT_PID"; then
  pass "forward listener 127.0.0.1:$FWD_PORT is up"
else
  fail "forward listener 127.0.0.1:$FWD_PORT is up" "nothing accepts on it within 10 s"
fi
expect_ok "curl http://127.0.0.1:$FWD_PORT/index.html (--forward to 127.0.0.1:$HTTP_PORT)" \
  curl -sS --noproxy '*' --max-time 30 "http://127.0.0.1:$FWD_PORT/index.html"
expect_contains "  ... has the token" "$LAST" "$TOKEN"

# ---------------------------------------------------------------------------
section "8. ssh through \`client stdio\` as ProxyCommand"
# ---------------------------------------------------------------------------
SSH_READY=0
SSH_WHY=""
SSHD=/usr/sbin/sshd
if ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null || [[ ! -x $SSHD ]]; then
  SSH_WHY="ssh, ssh-keygen or $SSHD is not installed (scripts/install-deps.sh installs them)"
else
  mkdir -p ssh
  ssh-keygen -q -t ed25519 -N '' -C host -f ssh/host_key
  ssh-keygen -q -t ed25519 -N '' -C user -f ssh/user_key
  cp ssh/user_key.pub ssh/authorized_keys
  cat >ssh/sshd_config <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/ssh/host_key
AuthorizedKeysFile $WORK/ssh/authorized_keys
PidFile $WORK/ssh/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel VERBOSE
EOF
  # As root, sshd insists on its privilege-separation directory (normally made by the
  # service manager). Create it if missing; the exit trap removes it again.
  if [[ $(id -u) -eq 0 && ! -d /run/sshd ]] && mkdir -m 0755 /run/sshd 2>/dev/null; then
    MADE_PRIVSEP_DIR=/run/sshd
  fi
  start_bg "$SSHD_LOG" "$SSHD" -D -e -f "$WORK/ssh/sshd_config"
  SSHD_PID=$BG_PID
  if wait_for_port "$SSH_PORT" 15 "$SSHD_PID"; then
    SSH_READY=1
  else
    SSH_WHY="sshd did not start: $(tail -n 3 "$SSHD_LOG" 2>/dev/null | tr '\n' ' ')"
  fi
fi
SSH_CHECKS=("ssh ... echo tunnel-ok prints tunnel-ok" "upload 5 MiB through ssh: remote sha256 matches"
  "download 5 MiB through ssh: sha256 matches" "server log: dial.allowed for 127.0.0.1:$SSH_PORT")
if [[ $SSH_READY -eq 1 ]]; then
  pass "sshd listening on 127.0.0.1:$SSH_PORT (pid $SSHD_PID)"
  PROXY_CMD=$(printf '%q ' "$BIN" client --credentials "$WORK/ci.json" stdio "127.0.0.1:$SSH_PORT")
  SSH=(ssh -F /dev/null -i "$WORK/ssh/user_key" -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
    -o LogLevel=ERROR -o ConnectTimeout=30 -o "ProxyCommand=$PROXY_CMD"
    -p "$SSH_PORT" "$(id -un)@127.0.0.1")
  expect_ok "${SSH_CHECKS[0]}" "${SSH[@]}" echo tunnel-ok
  if ! grep -qx 'tunnel-ok' "$LAST"; then
    fail "  ... output is exactly tunnel-ok" "ssh printed something else"
    show_last
    show_log "sshd log" "$SSHD_LOG" 10
  else
    pass "  ... output is exactly tunnel-ok"
  fi

  head -c 5M /dev/urandom >ssh/payload.bin
  PAYLOAD_SHA=$(sha_of ssh/payload.bin)
  rc=0
  timeout "$CMD_TIMEOUT" "${SSH[@]}" sha256sum <ssh/payload.bin >"$OUT/ssh-up.txt" 2>&1 || rc=$?
  remote_sha=$(cut -d' ' -f1 <"$OUT/ssh-up.txt" | head -n 1)
  if [[ $rc -eq 0 && $remote_sha == "$PAYLOAD_SHA" ]]; then
    pass "${SSH_CHECKS[1]}"
  else
    fail "${SSH_CHECKS[1]}" "ssh exit $rc, remote '$remote_sha', local '$PAYLOAD_SHA'"
  fi
  rc=0
  timeout "$CMD_TIMEOUT" "${SSH[@]}" cat "$WORK/ssh/payload.bin" </dev/null >ssh/download.bin \
    2>"$OUT/ssh-down.txt" || rc=$?
  if [[ $rc -eq 0 && $(sha_of ssh/download.bin) == "$PAYLOAD_SHA" ]]; then
    pass "${SSH_CHECKS[2]}"
  else
    fail "${SSH_CHECKS[2]}" "ssh exit $rc, got $(stat -c %s ssh/download.bin) bytes"
  fi
  expect_contains "${SSH_CHECKS[3]}" "$SERVER_LOG" \
    "dial\\.allowed client=client/ci .*destination=127\\.0\\.0\\.1:$SSH_PORT agent=agent/a1"
else
  fail "sshd listening on 127.0.0.1:$SSH_PORT" "$SSH_WHY"
  for c in "${SSH_CHECKS[@]}"; do
    fail "$c" "not run: no sshd ($SSH_WHY)"
  done
fi

# ---------------------------------------------------------------------------
section "9. policy hot reload (SIGHUP)"
# ---------------------------------------------------------------------------
loaded=$(count_matches "$SERVER_LOG" 'policy\.loaded')
# P_without_web: the web rule is gone.
write_policy "$POLICY" "$RULE_SSH_DENY" "$RULE_REBIND"
kill -HUP "$SERVER_PID"
if wait_for_count "$SERVER_LOG" 'policy\.loaded' $((loaded + 1)) 10 "$SERVER_PID"; then
  pass "HUP with the web rule removed: policy.loaded"
else
  fail "HUP with the web rule removed: policy.loaded" "no new policy.loaded within 10 s"
fi
expect_eq "  ... CONNECT 127.0.0.1:$HTTP_PORT now gets 403" \
  "$(connect_code "http://127.0.0.1:$HTTP_PORT/index.html")" 403
expect_exit "  ... SOCKS5 127.0.0.1:$HTTP_PORT now fails with exit 97" 97 \
  curl -sS --max-time 30 --socks5 "127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/index.html"

# P2: the web rule is back, the rebind rule is gone (so P2 is distinguishable from P1).
loaded=$(count_matches "$SERVER_LOG" 'policy\.loaded')
write_policy "$POLICY" "$RULE_WEB" "$RULE_SSH_DENY"
kill -HUP "$SERVER_PID"
if wait_for_count "$SERVER_LOG" 'policy\.loaded' $((loaded + 1)) 10 "$SERVER_PID"; then
  pass "HUP with policy P2 (web back, rebind rule gone): policy.loaded"
else
  fail "HUP with policy P2 (web back, rebind rule gone): policy.loaded" "no new policy.loaded within 10 s"
fi
connect_get "http://127.0.0.1:$HTTP_PORT/index.html"
if [[ $LAST_RC -eq 0 ]] && grep -qF -- "$TOKEN" "$LAST"; then
  pass "  ... CONNECT 127.0.0.1:$HTTP_PORT works again"
else
  fail "  ... CONNECT 127.0.0.1:$HTTP_PORT works again" "curl exit $LAST_RC"
  show_last
fi

# An invalid policy: rejected whole, P2 stays.
loaded=$(count_matches "$SERVER_LOG" 'policy\.loaded')
rejected=$(count_matches "$SERVER_LOG" 'policy\.rejected')
printf 'rules: [ {name: x} ]\n' >"$POLICY"
kill -HUP "$SERVER_PID"
if wait_for_count "$SERVER_LOG" 'policy\.rejected' $((rejected + 1)) 10 "$SERVER_PID"; then
  pass "HUP with an invalid policy: policy.rejected"
else
  fail "HUP with an invalid policy: policy.rejected" "no policy.rejected within 10 s"
  show_log "server log" "$SERVER_LOG" 5
fi
expect_eq "  ... and no new policy.loaded" "$(count_matches "$SERVER_LOG" 'policy\.loaded')" "$loaded"
if kill -0 "$SERVER_PID" 2>/dev/null; then
  pass "  ... and the server is still running"
else
  fail "  ... and the server is still running" "it exited"
fi
connect_get "http://127.0.0.1:$HTTP_PORT/index.html"
if [[ $LAST_RC -eq 0 ]] && grep -qF -- "$TOKEN" "$LAST"; then
  pass "  ... P2 still applies: CONNECT 127.0.0.1:$HTTP_PORT works"
else
  fail "  ... P2 still applies: CONNECT 127.0.0.1:$HTTP_PORT works" "curl exit $LAST_RC"
  show_last
fi
before=$(count_matches "$SERVER_LOG" "dial\\.refused .*destination=localhost:$HTTP2_PORT .*denied_policy")
expect_eq "  ... P2 still applies (not P1): CONNECT localhost:$HTTP2_PORT gets 403" \
  "$(connect_code "http://localhost:$HTTP2_PORT/")" 403
expect_eq "  ... refused by policy (denied_policy), not by agent/a2" \
  "$(count_matches "$SERVER_LOG" "dial\\.refused .*destination=localhost:$HTTP2_PORT .*denied_policy")" \
  $((before + 1))

# ---------------------------------------------------------------------------
section "10. server restart: the agent reconnects"
# ---------------------------------------------------------------------------
write_policy "$POLICY" "$RULE_WEB" "$RULE_SSH_DENY"
connected=$(count_matches "$AGENT1_LOG" 'agent\.control_connected')
kill -TERM "$SERVER_PID"
start=$SECONDS
# The default --shutdown-grace-ms is 10 s, and the agents' Control streams stay open
# until it runs out, so expect ~10 s here.
if wait_for_exit "$SERVER_PID" 20; then
  rc=0
  wait "$SERVER_PID" || rc=$?
  pass "server exits after SIGTERM (took $((SECONDS - start)) s)"
  expect_eq "  ... with status 0" "$rc" 0
  expect_contains "  ... and logs server.shutdown" "$SERVER_LOG" 'server\.shutdown'
else
  fail "server exits within 20 s of SIGTERM" "still running; killing it"
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
fi
SERVER_LOG1="$SERVER_LOG"
SERVER_LOG="$WORK/server2.log"
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$POLICY" --metrics-listen 127.0.0.1:0
SERVER_PID=$BG_PID
if wait_for_count "$SERVER_LOG" 'server\.listening' 1 15 "$SERVER_PID"; then
  pass "server restarted with the same data dir and policy (pid $SERVER_PID)"
else
  abort "server restarted with the same data dir and policy"
fi
start=$SECONDS
if wait_for_count "$AGENT1_LOG" 'agent\.control_connected' $((connected + 1)) 40 "$AGENT1_PID"; then
  pass "agent/a1 reconnected (agent.control_connected again, after $((SECONDS - start)) s)"
else
  fail "agent/a1 reconnected within 40 s" "no new agent.control_connected"
  show_log "agent/a1 log" "$AGENT1_LOG" 10
fi
start=$SECONDS
if poll_connect_get "http://127.0.0.1:$HTTP_PORT/index.html" "$TOKEN" 20; then
  pass "CONNECT 127.0.0.1:$HTTP_PORT works again (after $((SECONDS - start)) s)"
else
  fail "CONNECT 127.0.0.1:$HTTP_PORT works again within 20 s" "curl exit $LAST_RC"
  show_last
  show_log "client log" "$CLIENT_LOG" 10
fi
rm -f got-big.bin
expect_ok "  ... and 20 MiB big.bin arrives intact" \
  curl -sS --max-time 50 -p -x "$PROXY" -o got-big.bin "http://127.0.0.1:$HTTP_PORT/big.bin"
expect_eq "  ... sha256 matches the original" "$(sha_of got-big.bin)" "$BIG_SHA"
rm -f got-big.bin

# ---------------------------------------------------------------------------
section "11. no private keys or tokens in any log"
# ---------------------------------------------------------------------------
LOGS=("$SERVER_LOG1" "$SERVER_LOG" "$AGENT1_LOG" "$AGENT2_LOG" "$CLIENT_LOG")
mapfile -t all_logs < <(find "$WORK" "$OUT" -maxdepth 1 -type f \( -name '*.log' -o -name '*.txt' \) | sort)
for f in "${LOGS[@]}"; do
  expect_not_contains "${f#"$WORK"/} has no PRIVATE KEY" "$f" "PRIVATE KEY"
  expect_not_contains "${f#"$WORK"/} has no JWT" "$f" 'eyJ[A-Za-z0-9_-]+\.eyJ'
done
hits=$(grep -lE 'PRIVATE KEY|eyJ[A-Za-z0-9_-]+\.eyJ' "${all_logs[@]}" 2>/dev/null || true)
expect_eq "no key or JWT in any of the ${#all_logs[@]} logs and command outputs" "$hits" ""

summary_and_exit

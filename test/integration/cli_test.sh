#!/usr/bin/env bash
# End-to-end test of the drawbridge CLI, run the way an operator runs it:
# `server init`, `server`, `admin ...`, `check`, plus openssl probes of the listener.
#
# Usage: cli_test.sh PATH/TO/drawbridge
#
# Hermetic: everything lives in one `mktemp -d` directory that is removed on exit,
# the server listens on a free loopback port and is killed on exit (even on failure).
# Prints one line per check and ends with exactly "N passed, M failed"; exits 1 if M > 0.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 openssl timeout realpath

# The environment must not leak an operator's settings into the test.
unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-cli-test.XXXXXX")
D="$WORK/data"           # the server's data directory
OUT="$WORK/out"          # captured command outputs
LAST="$OUT/last.txt"     # stdout+stderr of the most recent expect_* command
SERVER_LOG="$WORK/server.log"
SERVER_PID=""
mkdir -p "$OUT"

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf -- "$WORK"
  _release_ports
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Helpers only this script uses (the shared ones are in lib.sh)
# ---------------------------------------------------------------------------
# expect_fail NAME CMD...: CMD must exit non-zero (a timeout does not count).
expect_fail() {
  local name=$1
  shift
  run "$@"
  if [[ $LAST_RC -eq 124 ]]; then
    fail "$name" "timed out after ${CMD_TIMEOUT}s: $*"
  elif [[ $LAST_RC -ne 0 ]]; then
    pass "$name"
  else
    fail "$name" "expected a non-zero exit, got 0: $*"
    show_last
  fi
}

# expect_mode NAME FILE MODE: FILE exists with exactly this octal permission mode.
expect_mode() {
  local name=$1 file=$2 want=$3 got
  if [[ ! -e $file ]]; then
    fail "$name" "$file does not exist"
    return
  fi
  got=$(stat -c '%a' -- "$file")
  if [[ $got == "$want" ]]; then
    pass "$name"
  else
    fail "$name" "$file has mode $got, want $want"
  fi
}

# expect_file NAME FILE / expect_no_file NAME FILE
expect_file() {
  if [[ -f $2 ]]; then pass "$1"; else fail "$1" "$2 does not exist"; fi
}
expect_no_file() {
  if [[ -e $2 ]]; then fail "$1" "$2 exists"; else pass "$1"; fi
}

# skip NAME WHY: a check that cannot run because an earlier one failed (not counted).
skip() {
  printf 'skip - %s (%s)\n' "$1" "$2"
}

# A fatal failure: later checks would only produce noise.
abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

key_id_of() {
  python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["key_id"])' "$1"
}

ADMIN=("$BIN" admin --credentials "$D/admin.json")

cd "$WORK"
PORT=$(free_port)
echo "drawbridge: $BIN"
echo "work dir:   $WORK (removed on exit)"
echo "listen:     127.0.0.1:$PORT"

# Every credential file we create: the only files allowed to hold a private key.
CRED_FILES=("$D/admin.json")

# ---------------------------------------------------------------------------
section "1. server init"
# ---------------------------------------------------------------------------
expect_ok "server init succeeds" \
  "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$PORT"
for f in server.yaml state.db kek ca/root.crt ca/root.key.sealed ca/intermediate.key.sealed \
  tls/server.crt admin.json; do
  expect_file "init created $f" "$D/$f"
done
expect_mode "kek is mode 600" "$D/kek" 600
expect_mode "admin.json is mode 600" "$D/admin.json" 600
expect_ok "ca/root.crt is a valid certificate" openssl x509 -in "$D/ca/root.crt" -noout
[[ -f $D/admin.json ]] || abort "admin credential present" "server init did not produce admin.json"

# ---------------------------------------------------------------------------
section "2. server init refuses bad input"
# ---------------------------------------------------------------------------
before=$(cd "$D" && sha256sum kek admin.json ca/root.key.sealed server.yaml)
expect_fail "init on a non-empty data dir fails" \
  "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$PORT"
expect_contains "  ... and says the directory is not empty" "$LAST" "not empty"
after=$(cd "$D" && sha256sum kek admin.json ca/root.key.sealed server.yaml)
expect_eq "  ... and leaves the existing data dir untouched" "$after" "$before"

expect_fail "init with invalid trust domain Bad_Domain! fails" \
  "$BIN" server init --data-dir "$WORK/bad-domain" --trust-domain 'Bad_Domain!' \
  --listen "127.0.0.1:$PORT"
expect_contains "  ... and names the bad trust domain" "$LAST" "trust domain"
if [[ -d $WORK/bad-domain ]] && [[ -n $(ls -A "$WORK/bad-domain") ]]; then
  fail "  ... and leaves no half-initialised data dir" "$WORK/bad-domain has content"
else
  pass "  ... and leaves no half-initialised data dir"
fi

expect_exit "init without --trust-domain exits with usage code 2" 2 \
  "$BIN" server init --data-dir "$WORK/no-domain"
expect_contains "  ... and says --trust-domain is required" "$LAST" "trust-domain"

# ---------------------------------------------------------------------------
section "3. CA keys sealed at rest"
# ---------------------------------------------------------------------------
for f in ca/root.key.sealed ca/intermediate.key.sealed tls/server.key.sealed; do
  if [[ -f $D/$f ]]; then
    expect_not_contains "$f has no PEM armour (BEGIN)" "$D/$f" "BEGIN"
  else
    fail "$f has no PEM armour (BEGIN)" "$D/$f does not exist"
  fi
done
expect_fail "openssl cannot parse ca/root.key.sealed as a key" \
  openssl pkey -in "$D/ca/root.key.sealed" -noout
expect_fail "openssl cannot parse ca/intermediate.key.sealed as a key" \
  openssl pkey -in "$D/ca/intermediate.key.sealed" -noout
expect_mode "kek is still mode 600" "$D/kek" 600

# ---------------------------------------------------------------------------
section "4. server start"
# ---------------------------------------------------------------------------
"$BIN" server --data-dir "$D" --metrics-listen 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
ready=0
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    break
  fi
  if timeout 10 "$BIN" check --credentials "$D/admin.json" --count 0 >"$OUT/ready.txt" 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
if [[ $ready -eq 1 ]]; then
  pass "server is up and admin.json enrolls (pid $SERVER_PID)"
elif ! kill -0 "$SERVER_PID" 2>/dev/null; then
  abort "server is up and admin.json enrolls" "the server exited during startup"
else
  abort "server is up and admin.json enrolls" "server not ready within 10 s"
fi
expect_contains "server log shows it listening on 127.0.0.1:$PORT" "$SERVER_LOG" \
  "server\\.listening.*127\\.0\\.0\\.1:$PORT"

# ---------------------------------------------------------------------------
section "5. admin identity create / list / show"
# ---------------------------------------------------------------------------
expect_ok "identity create agent/acme --out agent.json" \
  "${ADMIN[@]}" identity create agent/acme --out agent.json
CRED_FILES+=("$WORK/agent.json")
expect_mode "agent.json is mode 600" agent.json 600
expect_ok "identity list" "${ADMIN[@]}" identity list
expect_contains "  ... shows agent/acme" "$LAST" "^agent/acme +enabled"
expect_contains "  ... shows admin/admin" "$LAST" "^admin/admin +enabled"
# An operator types the flag after the subcommand.
expect_ok "identity list --json" "${ADMIN[@]}" identity list --json
if [[ $LAST_RC -eq 0 ]]; then
  cp "$LAST" list.json
  expect_ok "  ... is valid JSON" python3 -m json.tool list.json
  expect_contains "  ... contains \"agent/acme\"" list.json '"agent/acme"'
else
  skip "  ... is valid JSON and contains \"agent/acme\"" "the command failed"
fi
# The form the parser accepts today (flag on `admin`), so the JSON itself is still covered.
expect_ok "admin --json identity list" "$BIN" admin --json --credentials "$D/admin.json" \
  identity list
cp "$LAST" list2.json
expect_ok "  ... is valid JSON" python3 -m json.tool list2.json
expect_contains "  ... contains \"agent/acme\"" list2.json '"agent/acme"'
expect_ok "identity show agent/acme" "${ADMIN[@]}" identity show agent/acme
expect_contains "  ... shows status enabled" "$LAST" "status: +enabled"
expect_contains "  ... shows the SPIFFE ID" "$LAST" "spiffe://example\\.com/agent/acme"

# ---------------------------------------------------------------------------
section "6. bad admin input: clear errors, nothing changes"
# ---------------------------------------------------------------------------
"${ADMIN[@]}" identity list >"$OUT/list-before.txt" 2>&1 || true
agent_sum=$(sha256sum <agent.json)

expect_fail "identity create Agent/X (bad kind case) fails" \
  "${ADMIN[@]}" identity create Agent/X --out bad-kind.json
expect_contains "  ... with an 'invalid identity' error" "$LAST" "invalid identity"
expect_no_file "  ... and writes no credential file" bad-kind.json

expect_fail "identity create agent/acme again fails" \
  "${ADMIN[@]}" identity create agent/acme --out dup.json
expect_contains "  ... with 'already exists'" "$LAST" "already exists"
expect_no_file "  ... and leaves no credential file behind" dup.json

expect_fail "identity create agent/x --cidr 10.0.0.0/33 fails" \
  "${ADMIN[@]}" identity create agent/x --out x.json --cidr 10.0.0.0/33
expect_contains "  ... with an 'invalid CIDR' error" "$LAST" "invalid CIDR"
expect_no_file "  ... and leaves no credential file behind" x.json
expect_fail "  ... and agent/x does not exist" "${ADMIN[@]}" identity show agent/x

expect_fail "identity create agent/x2 --out EXISTING_FILE fails" \
  "${ADMIN[@]}" identity create agent/x2 --out agent.json
expect_contains "  ... refusing to overwrite" "$LAST" "overwrite"
expect_eq "  ... and agent.json is unchanged" "$(sha256sum <agent.json)" "$agent_sum"
expect_fail "  ... and agent/x2 was not created" "${ADMIN[@]}" identity show agent/x2
expect_contains "  ... (not found)" "$LAST" "not found"

"${ADMIN[@]}" identity list >"$OUT/list-after.txt" 2>&1 || true
expect_eq "identity list unchanged by the rejected commands" \
  "$(cat "$OUT/list-after.txt")" "$(cat "$OUT/list-before.txt")"

# ---------------------------------------------------------------------------
section "7. check with the agent credential"
# ---------------------------------------------------------------------------
expect_ok "check --credentials agent.json" "$BIN" check --credentials agent.json
expect_contains "  ... enrolled as spiffe://example.com/agent/acme" "$LAST" \
  "spiffe://example\\.com/agent/acme"
expect_contains "  ... and pings round-trip" "$LAST" "^OK$"

# ---------------------------------------------------------------------------
section "8. credential file permissions"
# ---------------------------------------------------------------------------
cp agent.json loose.json
chmod 644 loose.json
CRED_FILES+=("$WORK/loose.json")
expect_fail "check with a 0644 credential file fails" "$BIN" check --credentials loose.json
expect_contains "  ... and says chmod 600" "$LAST" "chmod 600"

# ---------------------------------------------------------------------------
section "9. per-identity source CIDRs"
# ---------------------------------------------------------------------------
expect_ok "identity create client/far --cidr 10.9.0.0/16" \
  "${ADMIN[@]}" identity create client/far --out far.json --cidr 10.9.0.0/16
CRED_FILES+=("$WORK/far.json")
expect_fail "check from 127.0.0.1 with client/far fails" "$BIN" check --credentials far.json
expect_contains "  ... because of the source address" "$LAST" "source address"
expect_ok "identity create client/near --cidr 127.0.0.0/8" \
  "${ADMIN[@]}" identity create client/near --out near.json --cidr 127.0.0.0/8
CRED_FILES+=("$WORK/near.json")
expect_ok "check with client/near succeeds" "$BIN" check --credentials near.json
expect_contains "  ... as spiffe://example.com/client/near" "$LAST" \
  "spiffe://example\\.com/client/near"

# ---------------------------------------------------------------------------
section "10. disable / enable"
# ---------------------------------------------------------------------------
expect_ok "identity disable agent/acme" "${ADMIN[@]}" identity disable agent/acme
expect_fail "check with agent.json fails while disabled" "$BIN" check --credentials agent.json
expect_contains "  ... saying disabled" "$LAST" "disabled"
expect_ok "identity show agent/acme" "${ADMIN[@]}" identity show agent/acme
expect_contains "  ... shows status disabled" "$LAST" "status: +disabled"
expect_ok "identity enable agent/acme" "${ADMIN[@]}" identity enable agent/acme
expect_ok "check with agent.json succeeds again" "$BIN" check --credentials agent.json --count 1

# ---------------------------------------------------------------------------
section "11. key rotation"
# ---------------------------------------------------------------------------
expect_ok "key add agent/acme --out agent2.json" "${ADMIN[@]}" key add agent/acme --out agent2.json
CRED_FILES+=("$WORK/agent2.json")
expect_mode "agent2.json is mode 600" agent2.json 600
expect_ok "key list agent/acme" "${ADMIN[@]}" key list agent/acme
expect_eq "  ... shows 2 active keys" "$(count_matches "$LAST" ' active ')" 2
expect_ok "check with agent.json (old key)" "$BIN" check --credentials agent.json --count 1
expect_ok "check with agent2.json (new key)" "$BIN" check --credentials agent2.json --count 1
old_key=$(key_id_of agent.json)
new_key=$(key_id_of agent2.json)
if [[ -n $old_key && $old_key != "$new_key" ]]; then
  pass "agent.json and agent2.json hold different key ids ($old_key, $new_key)"
else
  fail "agent.json and agent2.json hold different key ids" "old '$old_key', new '$new_key'"
fi
# `--` because a base64url key id may start with '-'.
expect_ok "key remove agent/acme $old_key" "${ADMIN[@]}" key remove agent/acme "$old_key"
expect_ok "key list agent/acme" "${ADMIN[@]}" key list agent/acme
expect_eq "  ... shows 1 active key" "$(count_matches "$LAST" ' active ')" 1
expect_contains "  ... and the old key as removed" "$LAST" "^$old_key +[A-Za-z0-9]+ +removed"
expect_fail "check with agent.json (removed key) fails" "$BIN" check --credentials agent.json
expect_contains "  ... saying removed" "$LAST" "removed"
expect_ok "check with agent2.json still succeeds" "$BIN" check --credentials agent2.json --count 1

# ---------------------------------------------------------------------------
section "12. admin API needs an admin identity"
# ---------------------------------------------------------------------------
expect_fail "admin identity list with agent2.json fails" \
  "$BIN" admin --credentials agent2.json identity list
expect_contains "  ... saying it needs an admin identity" "$LAST" "requires an admin"
expect_not_contains "  ... and lists nothing" "$LAST" "^agent/acme"
expect_fail "admin identity create with agent2.json fails" \
  "$BIN" admin --credentials agent2.json identity create agent/evil --out evil.json
expect_no_file "  ... and leaves no credential file behind" evil.json
expect_fail "  ... and agent/evil does not exist" "${ADMIN[@]}" identity show agent/evil

# ---------------------------------------------------------------------------
section "13. TLS 1.3 only"
# ---------------------------------------------------------------------------
run openssl s_client -connect "127.0.0.1:$PORT" -tls1_2 -alpn h2 </dev/null
cp "$LAST" tls12.txt
if grep -qE 'Cipher is [^(]' tls12.txt; then
  fail "TLS 1.2 handshake is refused" "$(grep -E 'Cipher is' tls12.txt | head -n 1)"
elif [[ $LAST_RC -ne 0 ]] || grep -q 'Cipher is (NONE)' tls12.txt; then
  pass "TLS 1.2 handshake is refused"
else
  fail "TLS 1.2 handshake is refused" "openssl exited 0 without 'Cipher is (NONE)'"
fi
expect_ok "TLS 1.3 handshake with the pinned root CA" \
  openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -alpn h2 -CAfile "$D/ca/root.crt"
cp "$LAST" tls13.txt
expect_contains "  ... negotiates TLSv1.3" tls13.txt "TLSv1\\.3"
expect_contains "  ... verifies the server chain (Verify return code: 0)" tls13.txt \
  "Verify return code: 0 "
expect_contains "  ... negotiates ALPN h2" tls13.txt "ALPN protocol: h2"

# ---------------------------------------------------------------------------
section "14. no private keys or tokens where they do not belong"
# ---------------------------------------------------------------------------
mapfile -t key_files < <(grep -rl "PRIVATE KEY" "$WORK" | sort)
stray=()
for f in "${key_files[@]}"; do
  allowed=0
  for c in "${CRED_FILES[@]}"; do
    if [[ $f == "$c" ]]; then allowed=1; fi
  done
  if [[ $allowed -eq 0 ]]; then stray+=("${f#"$WORK"/}"); fi
done
if [[ ${#stray[@]} -eq 0 ]]; then
  pass "only credential files hold a PRIVATE KEY (${#key_files[@]} files)"
else
  fail "only credential files hold a PRIVATE KEY" "also in: ${stray[*]}"
fi
expect_not_contains "server log has no PRIVATE KEY" "$SERVER_LOG" "PRIVATE KEY"
expect_not_contains "server log has no JWT" "$SERVER_LOG" 'eyJ[A-Za-z0-9_-]+\.eyJ'
jwt_files=$(grep -rlE 'eyJ[A-Za-z0-9_-]+\.eyJ' "$WORK" || true)
expect_eq "no JWT anywhere under the work dir (outputs, state.db)" "$jwt_files" ""

# ---------------------------------------------------------------------------
section "15. graceful stop"
# ---------------------------------------------------------------------------
kill -TERM "$SERVER_PID"
stopped=0
deadline=$((SECONDS + 15))
while ((SECONDS < deadline)); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    stopped=1
    break
  fi
  sleep 0.2
done
if [[ $stopped -eq 1 ]]; then
  pass "server exits within 15 s of SIGTERM"
  rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  expect_eq "  ... with status 0" "$rc" 0
  expect_contains "  ... and logs server.shutdown" "$SERVER_LOG" "server\\.shutdown"
else
  fail "server exits within 15 s of SIGTERM" "still running; killed by the exit trap"
fi

summary_and_exit

#!/usr/bin/env bash
# Workload identity: an agent enrolls with a token from an external OIDC issuer
# (as a Kubernetes pod does with its projected service account token) and no
# key of its own. The issuer is a stand-in written for the test
# (helpers/oidc_issuer.py): an HTTPS server with its own CA serving an OIDC
# discovery document and a JWKS, and tokens signed with openssl.
#
# Shows: an identity created with --oidc-issuer gets a credential file with no
# secret; an agent enrolls with the token file and carries a tunnel; tokens that
# are expired, for another audience, issuer or subject, signed with an unknown
# kid, `alg: none`, or HMAC-signed with the issuer's public key are refused with
# their reason on record; the issuer rotates its keys and the server follows; the
# agent re-reads its token file at renewal; removing the trust ends the agent's
# connections; an offline JWKS given to the admin CLI works with no issuer at all.
#
# Usage: workload_test.sh PATH/TO/drawbridge
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl openssl timeout

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

ISS_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/helpers/oidc_issuer.py"
use_work_dir workload-test
D="$WORK/data"
I="$WORK/issuer"
SERVER_LOG="$WORK/server.log"
cd "$WORK"
SERVER_PORT=$(free_port)
ISSUER_PORT=$(free_port)
HTTP_PORT=$(free_port)
PROXY_PORT=$(free_port)
ISSUER="https://127.0.0.1:$ISSUER_PORT"
SUB="system:serviceaccount:ci:runner"
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}
issuer() { python3 "$ISS_PY" "$@"; }
# token KID [ISS SUB AUD EXP_IN] [--alg ...]: a token on stdout.
token() {
  local kid=$1
  shift
  issuer token "$I" "$kid" "${1:-$ISSUER}" "${2:-$SUB}" "${3:-drawbridge}" "${4:-600}" "${@:5}"
}
# enroll_with TOKEN: `drawbridge check` with the workload credential and TOKEN
# in its token file.
enroll_with() {
  printf '%s\n' "$1" >"$WORK/token"
  run "$BIN" check --credentials "$WORK/agent-ci.json" --count 1
}
# refused NAME TOKEN REASON: enrollment fails, and the server logs REASON's detail.
refused() {
  local before
  before=$(count_matches "$SERVER_LOG" 'enroll\.refused')
  enroll_with "$2"
  if [[ $LAST_RC -ne 0 ]]; then pass "$1: refused"; else fail "$1: refused" "check enrolled"; fi
  wait_for_count "$SERVER_LOG" 'enroll\.refused' $((before + 1)) 5 || true
  local line
  line=$(grep -E 'enroll\.refused' "$SERVER_LOG" | tail -n 1)
  if [[ $line =~ $3 ]]; then pass "  ... the server's reason: /$3/"; else
    fail "  ... the server's reason: /$3/" "got: ${line:0:300}"
  fi
}

# ---------------------------------------------------------------------------
section "setup: a server, an OIDC issuer on HTTPS with its own CA, a private HTTP server"
# ---------------------------------------------------------------------------
issuer pki "$I" || abort "issuer PKI"
issuer key "$I" rsa-1 rsa
issuer key "$I" ec-1 ec
issuer key "$I" rsa-2 rsa
issuer key "$I" stranger rsa
issuer key "$I" small rsa1024
issuer publish "$I" rsa-1 ec-1
start_bg "$WORK/issuer.log" python3 "$ISS_PY" serve "$I" "$ISSUER_PORT" "$ISSUER"
wait_for_port "$ISSUER_PORT" 10 "$BG_PID" || abort "the issuer serves HTTPS"
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
# Certificates live 60 s, so the agent renews (and re-reads its token) within 30 s.
sed -i 's/^certificate_lifetime_seconds:.*/certificate_lifetime_seconds: 60/' "$D/server.yaml"
grep -q '^certificate_lifetime_seconds: 60' "$D/server.yaml" ||
  echo "certificate_lifetime_seconds: 60" >>"$D/server.yaml"
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: app-to-web
    clients: ["client/app"]
    agents: ["agent/ci"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
EOF
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$WORK/policy.yaml" \
  --metrics-listen off
SERVER_PID=$BG_PID
wait_for_port "$SERVER_PORT" 20 "$SERVER_PID" || abort "server starts"
ADMIN=("$BIN" admin --credentials "$D/admin.json")
mkdir -p www && echo "private page" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "private HTTP server"

# ---------------------------------------------------------------------------
section "1. an identity that trusts the issuer: a credential without a secret"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" identity create agent/ci --oidc-issuer "$ISSUER" --oidc-subject "$SUB" \
  --oidc-audience drawbridge --oidc-ca-file "$I/ca.crt" --token-file "$WORK/token" \
  --out "$WORK/agent-ci.json"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create --oidc-issuer"; }
expect_contains "identity create names the trust" "$LAST" "workload trust oidc-[0-9a-f]{24}: issuer $ISSUER"
expect_not_contains "the credential file holds no private key" "$WORK/agent-ci.json" "PRIVATE KEY|private_key_pem|key_id"
expect_contains "  ... but the token file to read" "$WORK/agent-ci.json" "\"token_file\": \"$WORK/token\""
TRUST_ID=$(grep -m 1 -oE 'oidc-[0-9a-f]{24}' "$LAST")
run "${ADMIN[@]}" key list agent/ci
expect_contains "key list shows the trust as an OIDC key" "$LAST" "$TRUST_ID +OIDC +active"
run "${ADMIN[@]}" identity create agent/bad --oidc-issuer "http://127.0.0.1:$ISSUER_PORT" \
  --oidc-subject "$SUB" --out "$WORK/bad.json"
expect_eq "an http:// issuer is refused" "$LAST_RC" 1
expect_contains "  ... saying it must be https" "$LAST" "issuer must be an https:// URL"
[[ ! -e $WORK/bad.json ]] && pass "  ... and no file is left behind" || fail "  ... and no file is left behind"
run "${ADMIN[@]}" identity create agent/bad --oidc-issuer "$ISSUER" --out "$WORK/bad.json"
expect_contains "a trust without --oidc-subject is refused" "$LAST" "--oidc-subject is required"

# ---------------------------------------------------------------------------
section "2. the agent enrolls with its token and carries a tunnel"
# ---------------------------------------------------------------------------
enroll_with "$(token rsa-1)"
expect_eq "drawbridge check enrolls with an RS256 token" "$LAST_RC" 0
expect_contains "  ... as spiffe://example.com/agent/ci" "$LAST" "enrolled: +spiffe://example.com/agent/ci"
enroll_with "$(token ec-1)"
expect_eq "  ... and with an ES256 token" "$LAST_RC" 0
expect_eq "the server fetched discovery and keys once (cached since)" \
  "$(count_matches "$WORK/issuer.log" '^GET /keys')" 1
token rsa-1 >"$WORK/token"
start_bg "$WORK/agent.log" "$BIN" agent --credentials "$WORK/agent-ci.json" \
  --data-dir "$WORK/agent-data" --allow "127.0.0.1/32:$HTTP_PORT"
AGENT_PID=$BG_PID
wait_for_count "$WORK/agent.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "the agent connects"
pass "the agent connects with no key of its own"
run "${ADMIN[@]}" identity create client/app --out "$WORK/app.json"
start_bg "$WORK/client.log" "$BIN" client --credentials "$WORK/app.json" --listen "127.0.0.1:$PROXY_PORT"
wait_for_port "$PROXY_PORT" 15 "$BG_PID" || abort "client proxy listens"
run curl -sS --max-time 20 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_contains "a request through the tunnel reaches the private page" "$LAST" "private page"
run "$BIN" audit query --data-dir "$D" --json --identity agent/ci
expect_contains "the audit trail records the enrollment with the trust's key id" "$LAST" "\"key_id\":\"$TRUST_ID\""

# ---------------------------------------------------------------------------
section "3. tokens that must not enroll"
# ---------------------------------------------------------------------------
refused "an expired token" "$(token rsa-1 "$ISSUER" "$SUB" drawbridge -120)" 'workload token expired'
refused "a token for another audience" "$(token rsa-1 "$ISSUER" "$SUB" kubernetes)" 'no workload trust of agent/ci matches'
refused "a token from another issuer" "$(token rsa-1 "https://127.0.0.1:1" "$SUB")" 'no workload trust of agent/ci matches'
refused "a token for another subject" "$(token rsa-1 "$ISSUER" "system:serviceaccount:ci:other")" 'no workload trust of agent/ci matches'
refused "a token not yet valid" "$(token rsa-1 "$ISSUER" "$SUB" drawbridge 600 --nbf-in 300)" 'not valid yet'
refused "a token valid for 2 days" "$(token rsa-1 "$ISSUER" "$SUB" drawbridge 172800)" 'valid for [0-9]+ s more'
refused "a token signed with a key the issuer does not publish (unknown kid)" "$(token stranger)" 'publishes no key .*stranger'
refused "alg: none" "$(token rsa-1 "$ISSUER" "$SUB" drawbridge 600 --alg none)" 'algorithm .*none.* is not allowed'
refused "HS256 keyed with the issuer's public key (algorithm confusion)" \
  "$(token rsa-1 "$ISSUER" "$SUB" drawbridge 600 --alg hs256)" 'algorithm .*HS256.* is not allowed'
# A kid the issuer publishes, signed by another key: a forged signature.
cp "$I/stranger.pem" "$I/forged.pem"
forged=$(token forged | python3 -c "
import base64, json, sys
h, p, s = sys.stdin.read().strip().split('.')
hdr = base64.urlsafe_b64encode(json.dumps({'alg': 'RS256', 'kid': 'rsa-1'}).encode()).rstrip(b'=').decode()
print(hdr + '.' + p + '.' + s)")
refused "a published kid with a forged signature" "$forged" 'signature check failed'
run "$BIN" audit query --data-dir "$D" --json --outcome failure
for reason in expired no_workload_trust not_yet_valid lifetime_too_long unknown_key malformed_token bad_signature; do
  expect_contains "  ... audit has a refused enrollment with reason_code $reason" "$LAST" "\"reason_code\":\"$reason\""
done
expect_eq "the unknown kid cost at most one extra fetch" \
  "$([[ $(count_matches "$WORK/issuer.log" '^GET /keys') -le 2 ]] && echo yes)" yes

# ---------------------------------------------------------------------------
section "4. the issuer rotates its keys; the agent re-reads its token at renewal"
# ---------------------------------------------------------------------------
issuer publish "$I" rsa-2
token rsa-2 >"$WORK/token"
renewals=$(count_matches "$WORK/agent.log" 'certificate renewed|cert\.renewed|enroll\.renewed')
# The agent's certificate lives 60 s and renews at about half of it.
if wait_for_count "$WORK/agent.log" 'certificate renewed|cert\.renewed|enroll\.renewed' $((renewals + 1)) 60 "$AGENT_PID"; then
  pass "the agent renewed with the new token, signed by the rotated key"
else
  fail "the agent renewed with the new token, signed by the rotated key"
  show_log "agent log" "$WORK/agent.log" 10
fi
expect_contains "the server fetched the rotated keys" "$WORK/issuer.log" '^GET /keys'
run curl -sS --max-time 20 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_contains "  ... and the tunnel still works" "$LAST" "private page"
sleep 11 # past the refetch limit, so a refetch could have brought the old key back
refused "a token signed with the retired key" "$(token rsa-1)" 'publishes no key .*rsa-1'

# ---------------------------------------------------------------------------
section "5. removing the trust ends the agent's connections and enrollments"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" key remove agent/ci "$TRUST_ID"
expect_eq "key remove of the trust" "$LAST_RC" 0
if wait_for_count "$WORK/agent.log" 'agent\.control_(lost|disconnected|ended)|revoked|key_removed' 1 10; then
  pass "the agent's Control stream ended"
else
  fail "the agent's Control stream ended"
  show_log "agent log" "$WORK/agent.log" 10
fi
run curl -sS --max-time 10 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_not_contains "  ... and the tunnel no longer reaches the page" "$LAST" "private page"
refused "enrollment after the trust was removed" "$(token rsa-2)" 'has no workload trust|no workload trust'
kill "$AGENT_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------
section "6. an offline JWKS given to the admin CLI; the issuer unreachable"
# ---------------------------------------------------------------------------
issuer publish "$I" ec-1
cp "$I/jwks.json" "$WORK/offline-jwks.json"
run "${ADMIN[@]}" key add agent/ci --oidc-issuer "https://issuer.offline.example" \
  --oidc-subject "$SUB" --oidc-jwks-file "$WORK/offline-jwks.json"
expect_eq "key add --oidc-jwks-file" "$LAST_RC" 0
fetches=$(count_matches "$WORK/issuer.log" '^GET')
enroll_with "$(token ec-1 "https://issuer.offline.example")"
expect_eq "a token of the offline issuer enrolls" "$LAST_RC" 0
expect_eq "  ... without any fetch" "$(count_matches "$WORK/issuer.log" '^GET')" "$fetches"
printf '{"keys":[]}' >"$WORK/empty-jwks.json"
run "${ADMIN[@]}" key add agent/ci --oidc-issuer "https://issuer.offline.example" \
  --oidc-subject other --oidc-jwks-file "$WORK/empty-jwks.json"
expect_contains "a JWKS without a signing key is refused" "$LAST" "holds no RS256 or ES256 signing key"
issuer publish "$I" small
run "${ADMIN[@]}" key add agent/ci --oidc-issuer "https://issuer.offline.example" \
  --oidc-subject other --oidc-jwks-file "$I/jwks.json"
expect_contains "a JWKS with a 1024-bit RSA key is refused" "$LAST" "1024 bits \(at least 2048\)"

summary_and_exit

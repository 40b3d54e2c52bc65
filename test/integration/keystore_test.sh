#!/usr/bin/env bash
# Credential keys sealed with a passphrase: `admin identity create --seal`
# writes the key as encrypted PKCS#8 (scrypt, AES-256-CBC) that openssl itself
# can open; agents, clients and check unseal it in memory with the passphrase
# from a file descriptor (DRAWBRIDGE_KEY_PASSPHRASE_FD) or the environment
# (DRAWBRIDGE_KEY_PASSPHRASE), and refuse clearly without it or with a wrong one.
# And keys that never leave a PKCS#11 token (SoftHSM2 from Debian, through
# OpenSSL's pkcs11 engine): `--pkcs11-key URI --pkcs11-module LIB`, the PIN from
# the same descriptor or variable.
#
# Usage: keystore_test.sh PATH/TO/drawbridge
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

parse_bin_arg "$@"
require_tools python3 curl openssl timeout softhsm2-util
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
[[ -f $SOFTHSM_MODULE ]] || { echo "error: $SOFTHSM_MODULE missing (apt-get install softhsm2)" >&2; exit 2; }

unset DRAWBRIDGE_CREDENTIALS DRAWBRIDGE_KEK_FILE DRAWBRIDGE_KEY_PASSPHRASE DRAWBRIDGE_KEY_PASSPHRASE_FD
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

use_work_dir keystore-test
D="$WORK/data"
SERVER_LOG="$WORK/server.log"
cd "$WORK"
SERVER_PORT=$(free_port)
HTTP_PORT=$(free_port)
PROXY_PORT=$(free_port)
PASS="a passphrase of some length"
echo "drawbridge: $BIN"
echo "work dir:   $WORK"

abort() {
  fail "$1" "${2:-aborting: later checks depend on this one}"
  show_log "server log" "$SERVER_LOG" 20
  summary_and_exit
}

# ---------------------------------------------------------------------------
section "setup: a server and a private HTTP server"
# ---------------------------------------------------------------------------
run "$BIN" server init --data-dir "$D" --trust-domain example.com --listen "127.0.0.1:$SERVER_PORT"
[[ $LAST_RC -eq 0 ]] || { show_last; abort "server init"; }
cat >"$WORK/policy.yaml" <<EOF
rules:
  - name: app-to-web
    clients: ["client/app"]
    agents: ["agent/a", "agent/hsm"]
    destinations: ["127.0.0.1:$HTTP_PORT"]
EOF
start_bg "$SERVER_LOG" "$BIN" server --data-dir "$D" --policy "$WORK/policy.yaml" --metrics-listen off
wait_for_port "$SERVER_PORT" 20 "$BG_PID" || abort "server starts"
ADMIN=("$BIN" admin --credentials "$D/admin.json")
mkdir -p www && echo "private page" >www/index.html
start_bg "$WORK/http.log" python3 -m http.server "$HTTP_PORT" --bind 127.0.0.1 --directory www
wait_for_port "$HTTP_PORT" 10 "$BG_PID" || abort "private HTTP server"
printf '%s\n' "$PASS" >"$WORK/passphrase"
chmod 0600 "$WORK/passphrase"

# ---------------------------------------------------------------------------
section "1. identity create --seal"
# ---------------------------------------------------------------------------
run "${ADMIN[@]}" identity create agent/a --seal --out "$WORK/agent.json"
expect_eq "--seal without a passphrase is refused" "$LAST_RC" 1
expect_contains "  ... naming where to give it" "$LAST" "DRAWBRIDGE_KEY_PASSPHRASE_FD"
[[ ! -e $WORK/agent.json ]] && pass "  ... and writes nothing" || fail "  ... and writes nothing"
DRAWBRIDGE_KEY_PASSPHRASE=short run "${ADMIN[@]}" identity create agent/a --seal --out "$WORK/agent.json"
expect_contains "a passphrase under 12 bytes is refused" "$LAST" "passphrase must be 12 to 1024 bytes"
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 run "${ADMIN[@]}" identity create agent/a --seal --out "$WORK/agent.json" 3<"$WORK/passphrase"
expect_eq "identity create --seal with the passphrase on fd 3" "$LAST_RC" 0
expect_contains "  ... says the agent needs the passphrase" "$LAST" "and the passphrase"
expect_contains "the credential holds an encrypted key" "$WORK/agent.json" "BEGIN ENCRYPTED PRIVATE KEY"
expect_not_contains "  ... and no plain one" "$WORK/agent.json" "BEGIN PRIVATE KEY"
python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['private_key_pem'])" "$WORK/agent.json" >"$WORK/sealed.pem"
run openssl asn1parse -in "$WORK/sealed.pem"
expect_contains "  ... PBES2 with scrypt and AES-256-CBC" "$LAST" ":scrypt"
expect_contains "  ... (the cipher)" "$LAST" "aes-256-cbc"
run openssl pkey -in "$WORK/sealed.pem" -passin "pass:$PASS" -noout -text
expect_eq "openssl opens it with the passphrase (a standard format)" "$LAST_RC" 0
DRAWBRIDGE_KEY_PASSPHRASE="$PASS" run "${ADMIN[@]}" identity create client/app --seal --out "$WORK/app.json"
expect_eq "identity create --seal with DRAWBRIDGE_KEY_PASSPHRASE" "$LAST_RC" 0

# ---------------------------------------------------------------------------
section "2. using a sealed credential"
# ---------------------------------------------------------------------------
run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "without the passphrase, check fails" "$LAST_RC" 1
expect_contains "  ... saying the key is sealed and where to give the passphrase" "$LAST" \
  "is sealed with a passphrase: give it in DRAWBRIDGE_KEY_PASSPHRASE_FD"
DRAWBRIDGE_KEY_PASSPHRASE="not the passphrase" run "$BIN" check --credentials "$WORK/agent.json" --count 1
expect_eq "with a wrong passphrase, check fails" "$LAST_RC" 1
expect_contains "  ... saying so" "$LAST" "passphrase does not open the sealed credential key"
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 run "$BIN" check --credentials "$WORK/agent.json" --count 1 3<"$WORK/passphrase"
expect_eq "with the passphrase on a file descriptor, check enrolls" "$LAST_RC" 0
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 start_bg "$WORK/agent.log" "$BIN" agent --credentials "$WORK/agent.json" \
  --data-dir "$WORK/agent-data" --allow "127.0.0.1/32:$HTTP_PORT" 3<"$WORK/passphrase"
AGENT_PID=$BG_PID
wait_for_count "$WORK/agent.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "the agent with a sealed key connects"
pass "the agent with a sealed key connects"
# (Its /proc/PID/environ still shows the environment it was started with: the
# kernel keeps that copy, which is why the descriptor is the recommended way.)
if ls -l "/proc/$AGENT_PID/fd" 2>/dev/null | grep -q "$WORK/passphrase"; then
  fail "  ... and the passphrase file is closed"
else
  pass "  ... and the passphrase file is closed"
fi
DRAWBRIDGE_KEY_PASSPHRASE="$PASS" start_bg "$WORK/client.log" "$BIN" client --credentials "$WORK/app.json" \
  --listen "127.0.0.1:$PROXY_PORT"
wait_for_port "$PROXY_PORT" 15 "$BG_PID" || abort "the client with a sealed key listens"
run curl -sS --max-time 20 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_contains "a request through the tunnel reaches the private page" "$LAST" "private page"
# A credential that was copied and its key swapped for another sealed key.
python3 - "$WORK/agent.json" "$WORK/app.json" "$WORK/swapped.json" <<'EOF'
import json, os, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
a["private_key_pem"] = b["private_key_pem"]
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(a).encode())
os.close(fd)
EOF
DRAWBRIDGE_KEY_PASSPHRASE="$PASS" run "$BIN" check --credentials "$WORK/swapped.json" --count 1
expect_contains "a sealed key that is not the credential's key_id is refused" "$LAST" "key_id.* does not match the sealed private key"
kill "$AGENT_PID" 2>/dev/null || true
wait_for_exit "$AGENT_PID" 10 || true

# ---------------------------------------------------------------------------
section "3. a key in a PKCS#11 token (SoftHSM2)"
# ---------------------------------------------------------------------------
# A token of the test's own: SOFTHSM2_CONF points SoftHSM at a directory here.
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" >"$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
PIN=246810
printf '%s\n' "$PIN" >"$WORK/pin"
chmod 0600 "$WORK/pin"
run softhsm2-util --init-token --free --label drawbridge --pin "$PIN" --so-pin 13579135
[[ $LAST_RC -eq 0 ]] || { show_last; abort "softhsm2-util --init-token"; }
for object in agent-hsm other; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/$object.pem" 2>/dev/null
  run softhsm2-util --import "$WORK/$object.pem" --token drawbridge --label "$object" \
    --id "$(printf '%s' "$object" | od -An -tx1 | tr -d ' \n')" --pin "$PIN"
  [[ $LAST_RC -eq 0 ]] || { show_last; abort "softhsm2-util --import $object"; }
done
# The key now exists only in the token.
openssl pkey -in "$WORK/agent-hsm.pem" -pubout -out "$WORK/agent-hsm.pub" 2>/dev/null
rm -f "$WORK/agent-hsm.pem" "$WORK/other.pem"
URI="pkcs11:token=drawbridge;object=agent-hsm;type=private"
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 run "${ADMIN[@]}" identity create agent/hsm --pkcs11-key "$URI" \
  --pkcs11-module "$SOFTHSM_MODULE" --out "$WORK/hsm.json" 3<"$WORK/pin"
expect_eq "identity create --pkcs11-key registers the token's key" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || { show_last; abort "identity create --pkcs11-key"; }
expect_contains "  ... the credential names the key" "$WORK/hsm.json" "\"key_uri\": \"$URI\""
expect_not_contains "  ... and holds none" "$WORK/hsm.json" "PRIVATE KEY|private_key_pem"
run "${ADMIN[@]}" identity show agent/hsm --json
KEY_ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_id"])' "$WORK/hsm.json")
expect_contains "  ... the server holds that key id" "$LAST" "$KEY_ID"
run "$BIN" check --credentials "$WORK/hsm.json" --count 1
expect_eq "without the PIN, check fails" "$LAST_RC" 1
expect_contains "  ... saying the key is in a token and where to give the PIN" "$LAST" \
  "in a PKCS#11 token: give the token's PIN in DRAWBRIDGE_KEY_PASSPHRASE_FD"
DRAWBRIDGE_KEY_PASSPHRASE=999999 run "$BIN" check --credentials "$WORK/hsm.json" --count 1
expect_eq "with a wrong PIN, check fails" "$LAST_RC" 1
expect_contains "  ... saying the key cannot be used" "$LAST" "cannot use the key pkcs11:"
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 run "$BIN" check --credentials "$WORK/hsm.json" --count 1 3<"$WORK/pin"
expect_eq "with the PIN on a file descriptor, check enrolls with the token's key" "$LAST_RC" 0
DRAWBRIDGE_KEY_PASSPHRASE_FD=3 start_bg "$WORK/agent-hsm.log" "$BIN" agent --credentials "$WORK/hsm.json" \
  --data-dir "$WORK/agent-hsm-data" --allow "127.0.0.1/32:$HTTP_PORT" 3<"$WORK/pin"
AGENT_PID=$BG_PID
wait_for_count "$WORK/agent-hsm.log" 'agent\.control_connected' 1 20 "$AGENT_PID" || abort "the agent with a token key connects"
pass "the agent with its key in the token connects"
run curl -sS --max-time 20 -p -x "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$HTTP_PORT/"
expect_contains "  ... and carries the tunnel" "$LAST" "private page"
python3 - "$WORK/hsm.json" "$WORK/hsm-other.json" <<'EOF2'
import json, sys
c = json.load(open(sys.argv[1]))
c["key_uri"] = c["key_uri"].replace("object=agent-hsm", "object=other")
open(sys.argv[2], "w").write(json.dumps(c))
EOF2
DRAWBRIDGE_KEY_PASSPHRASE="$PIN" run "$BIN" check --credentials "$WORK/hsm-other.json" --count 1
expect_eq "a URI naming another key in the token is refused" "$LAST_RC" 1
expect_contains "  ... as not the credential's key" "$LAST" "is not the credential's key $KEY_ID"
DRAWBRIDGE_KEY_PASSPHRASE="$PIN" run "${ADMIN[@]}" identity create agent/pin --pkcs11-key "$URI;pin-value=$PIN" \
  --pkcs11-module "$SOFTHSM_MODULE" --out "$WORK/pin.json"
expect_eq "a URI carrying the PIN is refused" "$LAST_RC" 1
expect_contains "  ... saying where the PIN goes" "$LAST" "must not carry the PIN"
run "${ADMIN[@]}" identity create agent/x --pkcs11-key "$URI" --seal --out "$WORK/x.json"
expect_eq "--pkcs11-key with --seal is refused" "$LAST_RC" 2
expect_contains "  ... as a usage error" "$LAST" "--seal excludes --pkcs11-key"

summary_and_exit

#!/usr/bin/env bash
# What ships, checked as it will be used (docs/packaging.md):
#   1. the systemd units: `systemd-analyze verify` passes, `systemd-analyze
#      security` scores each at most 2.0 ("OK"), every hardening directive the
#      issue lists is there, and the server unit's own ExecStartPre/ExecStart
#      commands (from the installed .deb) create a data directory, keep it on the
#      next start, and run a server that answers /healthz;
#   2. `scripts/package.sh` (make package): the runtime tree holds the binary,
#      its libraries and no shell, and runs a server as UID 65532 chrooted into
#      it (needs root; skipped, and said so, otherwise); the .deb's control
#      fields, contents and dependencies (each satisfied by this Debian); the
#      .deb installs into and uninstalls from a private dpkg root;
#   3. deploy/container/Dockerfile: multi-stage, the runtime stage `scratch`
#      with only that tree, a numeric non-root USER, an exec-form ENTRYPOINT;
#   4. deploy/kubernetes: test/deploy/manifests_test.py, every hardening field;
#   5. the SBOM (make sbom): CycloneDX 1.5, valid against the official JSON
#      schema, every linked library with its Debian package's exact version and
#      checksums that match the files; a broken document is refused.
#
# Usage: deploy_test.sh PATH/TO/drawbridge
# Hermetic: one `mktemp -d` directory (KEEP_WORK=1 keeps it), free loopback
# ports, every process stopped on exit. Ends with "N passed, M failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

parse_bin_arg "$@"
require_tools systemd-analyze dpkg-deb dpkg objdump ldd curl node
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Debian's Python with python3-yaml (scripts/install-deps.sh).
PY=/usr/bin/python3
use_work_dir deploy-test

# ---------------------------------------------------------------------------
section "1. systemd units"
# ---------------------------------------------------------------------------
mkdir -p "$WORK/units"
for unit in "$SRC"/deploy/systemd/*.service; do
  # verify wants the binary the unit runs to exist: the one under test.
  sed "s#/usr/bin/drawbridge#$BIN#g" "$unit" >"$WORK/units/$(basename "$unit")"
done
run systemd-analyze verify --man=no "$WORK"/units/*.service
expect_eq "systemd-analyze verify passes for both units" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
for unit in "$WORK"/units/*.service; do
  name=$(basename "$unit")
  run systemd-analyze security --offline=true "$unit"
  score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' "$LAST")
  echo "       $name: exposure $score"
  if [[ -n $score ]] && $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "$score"; then
    pass "$name: systemd-analyze security exposure $score <= 2.0"
  else
    fail "$name: systemd-analyze security exposure <= 2.0" "got '${score}'"
  fi
  # Every flag the unit passes is one the binary knows (the units cannot
  # drift from the CLI unnoticed).
  unknown=$("$PY" -c "
import re, subprocess, sys
text = open(sys.argv[1]).read().replace('\\\\\n', ' ')
bad = []
for line in re.findall(r'^Exec(?:Start|StartPre)=(.*)$', text, re.M):
    words = line.split()
    command = [w for w in words[1:3] if not w.startswith('-')]
    help_text = subprocess.run([words[0], *command, '--help'], capture_output=True, text=True).stdout
    bad += [f for f in re.findall(r'(--[a-z][a-z0-9-]*)', line) if f not in help_text]
print(' '.join(bad))" "$unit")
  expect_eq "$name: every flag of its Exec lines is known to the binary" "$unknown" ""
  for directive in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
    'CapabilityBoundingSet=$' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$' \
    'SystemCallFilter=@system-service$' 'MemoryMax=[0-9]+[KMG]$' 'DynamicUser=yes$' \
    'UMask=0077$' 'LimitCORE=0$'; do
    expect_contains "$name: $directive" "$unit" "^$directive"
  done
done

# ---------------------------------------------------------------------------
section "2. make package: the runtime tree and the .deb"
# ---------------------------------------------------------------------------
run bash "$SRC/scripts/package.sh" "$BIN" "$WORK/pkg"
expect_eq "scripts/package.sh builds the tree and the .deb" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || { show_last; summary_and_exit; }
ROOTFS="$WORK/pkg/rootfs"
DEB=$(ls "$WORK"/pkg/drawbridge_*.deb)

shells=$(find "$ROOTFS" \( -name sh -o -name bash -o -name dash -o -name busybox \) | wc -l)
expect_eq "the runtime tree holds no shell" "$shells" 0
other_bins=$(find "$ROOTFS" -type f -perm -u+x ! -name 'drawbridge' ! -name '*.so*' | wc -l)
expect_eq "  ... and no executable but drawbridge and shared libraries" "$other_bins" 0
missing=0
while read -r lib; do
  [[ -e $ROOTFS$lib ]] || { echo "       missing: $lib"; missing=$((missing + 1)); }
done < <(ldd "$BIN" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}')
expect_eq "  ... and every library ldd resolves, at the path the loader asks for" "$missing" 0
echo "       runtime tree: $(du -sh "$ROOTFS" | cut -f1), $(find "$ROOTFS" -name '*.so*' | wc -l) libraries"

if [[ $(id -u) -eq 0 ]] && command -v chroot >/dev/null; then
  # A writable copy, its data directory owned by the image's user, as the
  # Dockerfile sets it up.
  cp -a "$ROOTFS" "$WORK/chroot"
  chown 65532:65532 "$WORK/chroot/var/lib/drawbridge"
  SP=$(free_port)
  MP=$(free_port)
  run chroot --userspec=65532:65532 "$WORK/chroot" /usr/bin/drawbridge server init \
    --data-dir /var/lib/drawbridge/server --trust-domain example.com --listen "127.0.0.1:$SP"
  expect_eq "server init runs as 65532 with only the runtime tree" "$LAST_RC" 0
  [[ $LAST_RC -eq 0 ]] || show_last
  LP=$(free_port)
  start_bg "$WORK/chroot-server.log" chroot --userspec=65532:65532 "$WORK/chroot" \
    /usr/bin/drawbridge server --data-dir /var/lib/drawbridge/server \
    --metrics-listen "127.0.0.1:$MP" --lane-listen "127.0.0.1:$LP"
  if wait_for_port "$SP" 20 "$BG_PID" &&
    [[ $(curl -s --max-time 5 "http://127.0.0.1:$MP/healthz") == ok* ]]; then
    pass "  ... and the server it starts answers /healthz"
  else
    fail "  ... and the server it starts answers /healthz"
    show_log "server in the runtime tree" "$WORK/chroot-server.log" 15
  fi
  if wait_for_port "$LP" 5 "$BG_PID"; then
    pass "  ... with its lanes on the fixed port --lane-listen gave (as a Service needs)"
  else
    fail "  ... with its lanes on the fixed port --lane-listen gave (as a Service needs)"
  fi
  kill -TERM "$BG_PID" 2>/dev/null || true
  wait_for_exit "$BG_PID" 20 || true
else
  echo "       (not root: the chrooted run of the runtime tree is skipped)"
fi

run dpkg-deb --field "$DEB" Package Version Architecture Depends
expect_contains "the .deb is drawbridge at the project's version" "$LAST" \
  "^Version: $(sed -n 's/^project(drawbridge VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")$"
unsatisfied=0
deps=$(dpkg-deb --field "$DEB" Depends)
IFS=',' read -ra dep_list <<<"$deps"
for dep in "${dep_list[@]}"; do
  pkg=$(echo "$dep" | awk '{print $1}')
  want=$(echo "$dep" | sed -n 's/.*(>= \(.*\)).*/\1/p')
  have=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
  if [[ -z $have ]] || ! dpkg --compare-versions "$have" ge "$want"; then
    echo "       unsatisfied: $dep (installed: ${have:-none})"
    unsatisfied=$((unsatisfied + 1))
  fi
done
expect_eq "every dependency of the .deb (${#dep_list[@]}) is satisfied by this Debian" \
  "$unsatisfied" 0
run dpkg-deb --contents "$DEB"
for path in ./usr/bin/drawbridge ./lib/systemd/system/drawbridge-server.service \
  ./lib/systemd/system/drawbridge-agent.service ./usr/share/doc/drawbridge/operations.md \
  ./usr/share/doc/drawbridge/examples/server.env; do
  expect_contains "the .deb holds $path" "$LAST" " $path\$"
done
run dpkg-deb --ctrl-tarfile "$DEB"
scripts=$(tar -tf - <"$LAST" 2>/dev/null | grep -cE 'preinst|postinst|prerm|postrm' || true)
expect_eq "the .deb runs no maintainer scripts" "$scripts" 0

# Installed into a private dpkg root (its own status database), as dpkg would
# on a host; the libraries come from this machine, as its Depends promise.
DROOT="$WORK/dpkg-root"
mkdir -p "$DROOT/var/lib/dpkg/info" "$DROOT/var/lib/dpkg/updates"
touch "$DROOT/var/lib/dpkg/status" "$DROOT/var/lib/dpkg/available"
run dpkg --root="$DROOT" --log=/dev/null --force-not-root --force-depends -i "$DEB"
expect_eq "dpkg -i installs the .deb" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
expect_contains "  ... dpkg records it as installed" \
  "$(dpkg --root="$DROOT" -s drawbridge 2>&1)" "^Status: install ok installed"

# The installed server unit's own commands, run as systemd would run them
# (%S is the state root, the environment from the example server.env).
INSTALLED_BIN="$DROOT/usr/bin/drawbridge"
UNIT="$DROOT/lib/systemd/system/drawbridge-server.service"
SP=$(free_port)
MP=$(free_port)
STATE="$WORK/state"
mkdir -p "$STATE/drawbridge-server"
chmod 0700 "$STATE/drawbridge-server"
# exec_line KEY: the unit's KEY= command with its continuation lines joined,
# %S, ${VAR} and $VAR expanded as systemd does.
exec_line() {
  $PY - "$UNIT" "$1" "$STATE" "$INSTALLED_BIN" "$SRC/deploy/examples/server.env" "$SP" "$MP" <<'PY'
import re, shlex, sys
unit, key, state, binary, env_file, sp, mp = sys.argv[1:]
text = open(unit).read().replace("\\\n", " ")
env = {}
for line in open(env_file):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        k, v = line.split("=", 1)
        env[k] = v
env["DRAWBRIDGE_LISTEN"] = "127.0.0.1:" + sp
env["DRAWBRIDGE_SERVER_ARGS"] = "--metrics-listen 127.0.0.1:" + mp
line = next(l for l in text.splitlines() if l.startswith(key + "="))[len(key) + 1:]
line = line.replace("%S", state).replace("/usr/bin/drawbridge", binary)
words = []
for w in shlex.split(line):
    if re.fullmatch(r"\$[A-Z_]+", w):          # $VAR: split into words, empty -> none
        words += env.get(w[1:], "").split()
    else:                                      # ${VAR}: one word
        words.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), w))
print("\0".join(words), end="")
PY
}
mapfile -d '' -t PRE < <(exec_line ExecStartPre)
mapfile -d '' -t START < <(exec_line ExecStart)
run "${PRE[@]}"
expect_eq "the unit's ExecStartPre (server init --skip-existing) creates the data directory" \
  "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
expect_ok "  ... which holds the CA and the first admin credential" \
  test -f "$STATE/drawbridge-server/admin.json"
cp "$STATE/drawbridge-server/ca/root.crt" "$WORK/root-before.crt" 2>/dev/null || true
run "${PRE[@]}"
expect_eq "  ... and on the next start leaves it as it is" "$LAST_RC" 0
expect_ok "  ... (same root CA)" cmp -s "$WORK/root-before.crt" "$STATE/drawbridge-server/ca/root.crt"
run "$INSTALLED_BIN" server init --skip-existing --data-dir "$STATE/drawbridge-server" \
  --trust-domain other.example --listen "127.0.0.1:$SP"
expect_eq "  ... but refuses when server.env names another trust domain" "$LAST_RC" 1
expect_contains "  ... saying which" "$LAST" "initialised for trust domain example.com, not other.example"
start_bg "$WORK/unit-server.log" "${START[@]}"
if wait_for_port "$SP" 20 "$BG_PID" &&
  [[ $(curl -s --max-time 5 "http://127.0.0.1:$MP/healthz") == ok* ]]; then
  pass "the unit's ExecStart runs the installed server, which answers /healthz"
else
  fail "the unit's ExecStart runs the installed server, which answers /healthz"
  show_log "server from the unit" "$WORK/unit-server.log" 15
fi
kill -TERM "$BG_PID" 2>/dev/null || true
wait_for_exit "$BG_PID" 20 || true

run dpkg --root="$DROOT" --log=/dev/null --force-not-root -r drawbridge
expect_eq "dpkg -r removes it" "$LAST_RC" 0
left=$(find "$DROOT" -type f ! -path "$DROOT/var/lib/dpkg/*" | wc -l)
expect_eq "  ... leaving no file behind" "$left" 0

# ---------------------------------------------------------------------------
section "3. the container image (deploy/container/Dockerfile)"
# ---------------------------------------------------------------------------
DF="$SRC/deploy/container/Dockerfile"
expect_eq "multi-stage: a build stage and a runtime stage" "$(grep -c '^FROM ' "$DF")" 2
expect_contains "the runtime stage is scratch (no distribution, no shell)" \
  "$(grep '^FROM ' "$DF" | tail -n 1)" "^FROM scratch$"
runtime=$(sed -n '/^FROM scratch/,$p' "$DF")
expect_contains "  ... holding the tree scripts/package.sh made" "$runtime" \
  "^COPY --from=build /out/rootfs/ /$"
expect_contains "  ... running as a numeric non-root user" "$runtime" "^USER 65532:65532$"
expect_contains "  ... with an exec-form entrypoint" "$runtime" \
  '^ENTRYPOINT \["/usr/bin/drawbridge"\]$'
expect_not_contains "  ... and no RUN (nothing to run it with)" "$runtime" "^RUN "

# ---------------------------------------------------------------------------
section "4. Kubernetes manifests (deploy/kubernetes)"
# ---------------------------------------------------------------------------
run "$PY" "$SRC/test/deploy/manifests_test.py" "$BIN"
grep -E "^(FAIL|       )" "$LAST" || true
expect_contains "every hardening field checked: $(tail -n 1 "$LAST")" "$LAST" "^[0-9]+ passed, 0 failed$"

# ---------------------------------------------------------------------------
section "5. the SBOM (make sbom)"
# ---------------------------------------------------------------------------
run "$PY" "$SRC/scripts/sbom.py" "$BIN" "$WORK/sbom.json"
expect_eq "scripts/sbom.py writes the SBOM" "$LAST_RC" 0
echo "       $(cat "$LAST")"
run node "$SRC/test/deploy/validate_sbom.js" "$WORK/sbom.json"
expect_eq "it is valid CycloneDX 1.5 (the official JSON schema)" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
run "$PY" "$SRC/test/deploy/check_sbom.py" "$WORK/sbom.json" "$BIN"
expect_eq "every linked library is there with its package's version and matching checksums" \
  "$LAST_RC" 0
echo "       $(head -n 3 "$LAST")"
"$PY" -c "
import json, sys
b = json.load(open(sys.argv[1])); b['components'][0]['hashes'][0]['alg'] = 'CRC32'
json.dump(b, open(sys.argv[2], 'w'))" "$WORK/sbom.json" "$WORK/sbom-broken.json"
run node "$SRC/test/deploy/validate_sbom.js" "$WORK/sbom-broken.json"
expect_eq "a broken SBOM (an unknown hash algorithm) is refused by the validator" "$LAST_RC" 1

# ---------------------------------------------------------------------------
section "6. the dependency lock (scripts/deps.lock)"
# ---------------------------------------------------------------------------
# Every package install-deps.sh names is locked, and this machine has exactly
# the locked versions (what CI checks with --check-lock).
run bash "$SRC/scripts/install-deps.sh" --check-lock
expect_eq "install-deps.sh --check-lock: the installed versions are the locked ones" "$LAST_RC" 0
[[ $LAST_RC -eq 0 ]] || show_last
missing_from_lock=$(bash -c 'source <(sed -n "/^BUILD_PACKAGES=(/,/^)/p;/^PACKAGES=(/,/^)/p" "$1")
  for p in "${PACKAGES[@]}"; do grep -q "^$p " "$2" || echo "$p"; done' _ \
  "$SRC/scripts/install-deps.sh" "$SRC/scripts/deps.lock")
expect_eq "  ... and every package it installs is in the lock" "$missing_from_lock" ""
# An unrecorded change: a lock naming another version of one package. Debian
# does not offer it, so the installed one stays, and the check must fail
# naming it (the apt-get it runs first needs root).
if [[ $(id -u) -eq 0 ]]; then
  sed 's/^cmake .*/cmake 3.0.0-fake/' "$SRC/scripts/deps.lock" >"$WORK/deps.lock"
  run env DRAWBRIDGE_DEPS_LOCK="$WORK/deps.lock" bash "$SRC/scripts/install-deps.sh" --check-lock
  expect_eq "a version that differs from the lock fails --check-lock (exit 3)" "$LAST_RC" 3
  expect_contains "  ... naming the package and both versions" "$LAST" \
    'cmake: locked 3.0.0-fake, installed 3\.25'
  run env DRAWBRIDGE_DEPS_LOCK="$WORK/deps.lock" bash "$SRC/scripts/install-deps.sh"
  expect_eq "  ... while plain install-deps.sh (make deps) only warns" "$LAST_RC" 0
  expect_contains "  ... saying so" "$LAST" 'UNRECORDED CHANGE of 1 dependencies'
fi

summary_and_exit

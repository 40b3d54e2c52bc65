#!/usr/bin/env bash
# Installs every build, test and demo dependency of Drawbridge from Debian 12's apt.
# Idempotent: packages already present are skipped, so `make test` can call it each time.
#
# Usage: install-deps.sh [--build-only] [--check-lock | --update-lock]
#   --build-only: only what building the binary needs (the container image's
#   build stage, deploy/container/Dockerfile), without test and demo tools.
#   --check-lock: fail (exit 3) if any package's installed version differs from
#   scripts/deps.lock (CI runs this: a dependency may not change unrecorded).
#   --update-lock: record the installed versions in scripts/deps.lock (after
#   reading what changed in them: `apt-get changelog PACKAGE`).
#
# The lock: scripts/deps.lock names the exact Debian version of every package
# below, and this script installs those versions (apt-get install PKG=VERSION,
# upgrading or downgrading what the machine had). When Debian no longer offers a
# locked version (a security update replaced it), it installs Debian's current
# one and reports the difference as an unrecorded change: a warning for `make`,
# a failure with --check-lock.
set -euo pipefail

# What building the binary (and scripts/package.sh) needs.
BUILD_PACKAGES=(
  build-essential cmake pkg-config git binutils
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libssl-dev openssl
  libsqlite3-dev
  libpq-dev
  libabsl-dev
  libasio-dev
  libyaml-cpp-dev
  libcli11-dev
  nlohmann-json3-dev
)

PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  sqlite3 postgresql
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  clang libclang-rt-14-dev clang-tidy
  curl procps iproute2
  libfaketime
  openssh-server openssh-client python3
  rsyslog
  prometheus
  # test/deploy/deploy_test.sh: systemd-analyze, Debian's Python with YAML
  systemd python3-yaml
  # test/integration/proxy_test.sh: a real HTTP CONNECT proxy
  tinyproxy
  # credential keys in a PKCS#11 token: OpenSSL's pkcs11 engine (used at run
  # time), and SoftHSM2 as the token in test/integration/keystore_test.sh
  libengine-pkcs11-openssl softhsm2
)
BUILD_ONLY=0
LOCK_MODE=""
for arg in "$@"; do
  case $arg in
    --build-only) BUILD_ONLY=1 ;;
    --check-lock | --update-lock) LOCK_MODE=$arg ;;
    *)
      echo "usage: install-deps.sh [--build-only] [--check-lock | --update-lock]" >&2
      exit 2
      ;;
  esac
done
if [[ $BUILD_ONLY == 1 ]]; then
  PACKAGES=("${BUILD_PACKAGES[@]}")
fi
LOCK=${DRAWBRIDGE_DEPS_LOCK:-"$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deps.lock"}

installed_version() {  # installed_version PKG: the installed version, or nothing
  # dpkg-query fails for a package dpkg has never seen (a fresh machine): that
  # is "nothing", not an error that set -e and pipefail would stop on.
  { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true; } |
    awk '$1 == "install" && $3 == "installed" {print $4}'
}
locked_version() {  # locked_version PKG: the version deps.lock names, or nothing
  [[ -f $LOCK ]] && awk -v p="$1" '$1 == p {print $2}' "$LOCK"
  return 0
}

# What to install: missing packages, and locked ones at another version.
wanted=()
for p in "${PACKAGES[@]}"; do
  have=$(installed_version "$p")
  lock=$(locked_version "$p")
  if [[ -z $have || (-n $lock && $have != "$lock" && $LOCK_MODE != --update-lock) ]]; then
    wanted+=("$p")
  fi
done
# The SBOM test validates with Node.js (any packaging of it: a machine may have
# NodeSource's nodejs, which carries npm itself). Not locked: the npm packages
# it runs are, in tools/sbom/package-lock.json.
extra=()
if [[ $BUILD_ONLY == 0 ]] && ! command -v npm >/dev/null; then
  extra=(nodejs npm)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
if [ $((${#wanted[@]} + ${#extra[@]})) -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  specs=()
  for p in "${wanted[@]}"; do
    lock=$(locked_version "$p")
    # The locked version if Debian still offers it; Debian's current one otherwise.
    if [[ -n $lock ]] && apt-cache madison "$p" | awk -F' [|] ' '{print $2}' | grep -qxF -- "$lock"; then
      specs+=("$p=$lock")
    else
      specs+=("$p")
    fi
  done
  echo "install-deps: installing ${specs[*]} ${extra[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends --allow-downgrades "${specs[@]}" "${extra[@]}"
fi

if [[ $LOCK_MODE == --update-lock ]]; then
  {
    echo "# Exact Debian versions of every package scripts/install-deps.sh installs."
    echo "# Written by: scripts/install-deps.sh --update-lock (read each change first:"
    echo "# apt-get changelog PACKAGE). CI fails when an installed version differs."
    for p in "${PACKAGES[@]}"; do
      echo "$p $(installed_version "$p")"
    done
    if [[ $BUILD_ONLY == 1 && -f $LOCK ]]; then
      # Keep what the full list locked beyond the build packages.
      awk 'NR > 3' "$LOCK" | while read -r p v; do
        printf '%s\n' "${BUILD_PACKAGES[@]}" | grep -qxF "$p" || echo "$p $v"
      done
    fi
  } >"$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  echo "install-deps: wrote $LOCK"
fi

# Every difference between what is installed and what is locked.
drift=()
for p in "${PACKAGES[@]}"; do
  lock=$(locked_version "$p")
  have=$(installed_version "$p")
  if [[ -z $lock ]]; then
    drift+=("$p: not in deps.lock (installed ${have:-nothing})")
  elif [[ $have != "$lock" ]]; then
    drift+=("$p: locked $lock, installed ${have:-nothing}")
  fi
done
if [ ${#drift[@]} -gt 0 ]; then
  echo "install-deps: UNRECORDED CHANGE of ${#drift[@]} dependencies:" >&2
  printf '  %s\n' "${drift[@]}" >&2
  echo "  Read what changed (apt-get changelog PACKAGE), then record it:" \
    "scripts/install-deps.sh --update-lock" >&2
  if [[ $LOCK_MODE == --check-lock ]]; then
    exit 3
  fi
fi

# The CycloneDX schemas and validator for test/deploy (exact versions in
# tools/sbom/package-lock.json, from the npm registry).
if [[ $BUILD_ONLY == 0 ]]; then
  tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/sbom"
  # .installed marks a complete `npm ci` of the current lock file.
  if ! [[ -f $tools/node_modules/.installed && $tools/node_modules/.installed -nt $tools/package-lock.json ]]; then
    echo "install-deps: npm ci in tools/sbom"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$tools/node_modules/.installed"
  fi
fi

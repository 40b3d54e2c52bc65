#!/usr/bin/env bash
# Installs every build, test and demo dependency of Drawbridge from Debian 12's apt.
# Idempotent: packages already present are skipped, so `make test` can call it each time.
#
# Usage: install-deps.sh [--build-only]
#   --build-only: only what building the binary needs (the container image's
#   build stage, deploy/container/Dockerfile), without test and demo tools.
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
  clang libclang-rt-14-dev
  curl procps iproute2
  libfaketime
  openssh-server openssh-client python3
  rsyslog
  prometheus
  # test/deploy/deploy_test.sh: systemd-analyze, Debian's Python with YAML
  systemd python3-yaml
)
if [[ ${1:-} == --build-only ]]; then
  PACKAGES=("${BUILD_PACKAGES[@]}")
elif [[ -n ${1:-} ]]; then
  echo "usage: install-deps.sh [--build-only]" >&2
  exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# The SBOM test validates with Node.js (any packaging of it: a machine may have
# NodeSource's nodejs, which carries npm itself).
if [[ ${1:-} != --build-only ]] && ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The CycloneDX schemas and validator for test/deploy (exact versions in
# tools/sbom/package-lock.json, from the npm registry).
if [[ ${1:-} != --build-only ]]; then
  tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/sbom"
  # .installed marks a complete `npm ci` of the current lock file.
  if ! [[ -f $tools/node_modules/.installed && $tools/node_modules/.installed -nt $tools/package-lock.json ]]; then
    echo "install-deps: npm ci in tools/sbom"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$tools/node_modules/.installed"
  fi
fi

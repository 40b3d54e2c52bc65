#!/usr/bin/env bash
# The peer comparison (see bench/compare.py): installs what it needs from Debian
# (iperf3, wrk, sockperf, nginx, OpenSSH, stunnel4), builds drawbridge, runs every
# scenario against every system on loopback and writes bench/results/latest.{md,json}.
#
#   bench/compare.sh [--quick] [--readme] [--systems direct,ssh-aes,...]
#
# Full mode takes about 10 minutes on 2 cores, --quick about 3.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(iperf3 wrk sockperf nginx-light stunnel4 openssh-server openssh-client openssl python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
make build >/dev/null
cmake --build build --target micro_bench ceiling >/dev/null
python3 bench/compare.py "$@"
echo
echo "Micro-benchmarks (hot paths):"
build/bench/micro/micro_bench --benchmark_min_time=0.2 | tee bench/results/micro.txt
echo
echo "Ceilings (one TLS hop, one gRPC hop, two gRPC hops with a relay; bench/README.md):"
bash bench/ceiling/run.sh build/bench/ceiling/ceiling 3 1024 | tee bench/results/ceiling.md

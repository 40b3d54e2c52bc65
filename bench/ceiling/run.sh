#!/usr/bin/env bash
# The ceiling table (bench/README.md, "Ceilings"): every configuration below, run
# REPS times interleaved (A B C ... A B C ...), median and range of each.
#   bench/ceiling/run.sh [PATH/TO/ceiling] [REPS] [MIB]
set -euo pipefail
BIN=${1:-build/bench/ceiling/ceiling}
REPS=${2:-3}
MIB=${3:-2048}
BIG="--max-frame 16777215 --lookahead 8388608 --bdp 0"
CONFIGS=(
  "tls --chunk 65536 --cipher TLS_AES_128_GCM_SHA256"
  "tls --chunk 65536 --cipher TLS_AES_256_GCM_SHA384"
  "grpc --chunk 65536 --cipher TLS_AES_256_GCM_SHA384"
  "grpc --chunk 65536 --cipher TLS_AES_128_GCM_SHA256"
  "grpc --chunk 65536 --cipher TLS_AES_128_GCM_SHA256 --bdp 0"
  "grpc --chunk 65536 --cipher TLS_AES_128_GCM_SHA256 $BIG"
  "grpc --chunk 262144 --cipher TLS_AES_128_GCM_SHA256 $BIG"
  "grpc --chunk 1048576 --cipher TLS_AES_128_GCM_SHA256 $BIG"
  "relay --chunk 65536 --cipher TLS_AES_256_GCM_SHA384"
  "relay --chunk 65536 --cipher TLS_AES_128_GCM_SHA256 $BIG"
  "relay --chunk 262144 --cipher TLS_AES_128_GCM_SHA256 $BIG"
)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((r = 0; r < REPS; r++)); do
  for i in "${!CONFIGS[@]}"; do
    # shellcheck disable=SC2086  # the configuration is a list of flags
    line=$("$BIN" ${CONFIGS[$i]} --mib "$MIB")
    echo "$i|$line" >>"$out"
  done
done
python3 - "$out" "${CONFIGS[@]}" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    i, text = line.split("|", 1)
    g = float(re.search(r"([\d.]+) Gbit/s", text).group(1))
    c = float(re.search(r"([\d.]+) CPU s/GiB", text).group(1))
    rows.setdefault(int(i), []).append((g, c))
print("| configuration | Gbit/s | CPU s/GiB |")
print("|---|---|---|")
for i, config in enumerate(sys.argv[2:]):
    g = [x[0] for x in rows[i]]
    c = [x[1] for x in rows[i]]
    print(f"| `{config}` | {statistics.median(g):.2f} ({min(g):.2f}–{max(g):.2f}) "
          f"| {statistics.median(c):.2f} ({min(c):.2f}–{max(c):.2f}) |")
PY

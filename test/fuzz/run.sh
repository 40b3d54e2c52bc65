#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS seconds each, starting from a temporary
# copy of its seed corpus (the repo's corpus/ is never written to).
#
#   bash test/fuzz/run.sh BUILD_DIR SECONDS
#
# Prints one line per target and a final "N passed, M failed"; exits 1 if any
# target crashed, leaked, timed out, ran out of memory or was not built. Logs and
# crashing inputs of failed targets are kept and their paths printed.
set -uo pipefail

if [[ $# -ne 2 || ! "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd) || exit 2
seconds=$2
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-fuzz.XXXXXX")
keep_work=0
cleanup() {
  if [[ $keep_work -eq 0 ]]; then
    rm -rf "$work"
  fi
}
trap cleanup EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

passed=0
failed=0
for source in "$src_dir"/*_fuzz.cc; do
  name=$(basename "$source" .cc)
  binary="$build_dir/test/fuzz/$name"
  if [[ ! -x "$binary" ]]; then
    printf '%-16s runs=%-10s %s\n' "$name" "-" "FAILED (not built: $binary)"
    failed=$((failed + 1))
    continue
  fi

  dir="$work/$name"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if [[ -d "$src_dir/corpus/$name" ]]; then
    cp -R "$src_dir/corpus/$name/." "$dir/corpus/"
  fi
  log="$dir/log.txt"
  # -timeout bounds a single input, so a hang fails the run instead of stalling CI.
  (cd "$dir" && "$binary" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 \
    -timeout=25 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" \
    >"$log" 2>&1)
  rc=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [[ -z "$runs" ]]; then
    runs=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
  fi
  artifact=$(find "$dir/artifacts" -type f | head -n 1)

  if [[ $rc -eq 0 && -z "$artifact" ]]; then
    printf '%-16s runs=%-10s %s\n' "$name" "${runs:-?}" "ok"
    passed=$((passed + 1))
    continue
  fi

  failed=$((failed + 1))
  keep_work=1
  kind="exit $rc"
  if [[ -n "$artifact" ]]; then
    kind=$(basename "$artifact" | cut -d- -f1)  # crash, leak, timeout, oom, slow-unit
  fi
  printf '%-16s runs=%-10s %s\n' "$name" "${runs:-?}" "FAILED ($kind)"
  grep -m 1 '^SUMMARY:' "$log" | sed 's/^/    /'
  grep -m 1 'fuzz invariant failed' "$log" | sed 's/^/    /'
  echo "    log: $log"
  if [[ -n "$artifact" ]]; then
    echo "    input: $artifact"
    echo "    input (hex, first 256 bytes): $(head -c 256 "$artifact" | od -An -v -tx1 | tr -d ' \n')"
    echo "    reproduce: $binary $artifact"
  fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

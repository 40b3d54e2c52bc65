#!/usr/bin/env bash
# clang-tidy with the curated checks in .clang-tidy over every source file of the
# product (src/, app/), using BUILD's compile_commands.json. Exits 1 on any
# finding (WarningsAsErrors), naming file, line and check.
#
# Usage: scripts/lint.sh [BUILD_DIR] [FILE_REGEX]
#   FILE_REGEX narrows the files (e.g. 'src/posture/'); default: all of src/ and app/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
files=${2:-}
[[ -f $build/compile_commands.json ]] || {
  echo "lint: no $build/compile_commands.json (configure the build first: make build)" >&2
  exit 2
}
tidy=$(command -v run-clang-tidy-14 || command -v run-clang-tidy || true)
[[ -n $tidy ]] || {
  echo "lint: run-clang-tidy not found (scripts/install-deps.sh installs clang-tidy)" >&2
  exit 2
}
pattern="^$root/(src|app)/.*\\.cc\$"
[[ -n $files ]] && pattern="^$root/.*($files).*\\.cc\$"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
"$tidy" -p "$build" -j "$(nproc)" -quiet "$pattern" >"$log" 2>&1 || status=$?
# The findings, without clang-tidy's progress lines and colour codes.
findings=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '(warning|error): ' | sort -u || true)
n=$(grep -c . <<<"$findings" || true)
if [[ $status -ne 0 || $n -gt 0 ]]; then
  echo "$findings"
  [[ $n -gt 0 ]] || tail -20 "$log"
  echo "lint: $n findings ($((SECONDS - start)) s)" >&2
  exit 1
fi
echo "lint: clean ($(grep -c '^clang-tidy' "$log" || true) files, $((SECONDS - start)) s)"

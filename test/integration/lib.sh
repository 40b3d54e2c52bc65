# shellcheck shell=bash
# Helpers shared by the integration tests (cli_test.sh, tunnel_test.sh). Sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing only defines functions and the defaults below; it starts nothing. The sourcing
# script then sets:
#   OUT   a directory for captured command outputs (run keeps a numbered copy of each)
#   LAST  the file run writes the most recent command's stdout+stderr to ("$OUT/last.txt")
# and may override any default below by assigning it after sourcing.

PASSED=0
FAILED=0
LAST_RC=0                # exit status of the most recent run/expect_* command
CMD_TIMEOUT=60           # a hung command is a failure, never a hung test
N=0                      # how many commands run has run (numbers the copies in $OUT)

# parse_bin_arg "$@": the script's arguments must be exactly PATH/TO/drawbridge, an
# executable; sets BIN to its absolute path. Exits 2 otherwise.
parse_bin_arg() {
  if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH/TO/drawbridge" >&2
    exit 2
  fi
  BIN=$(realpath -- "$1")
  if [[ ! -x $BIN ]]; then
    echo "error: $BIN is not an executable" >&2
    exit 2
  fi
}

# require_tools TOOL...: every TOOL must be on PATH. Exits 2 otherwise.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 2; }
  done
}

pass() {
  PASSED=$((PASSED + 1))
  printf 'ok   - %s\n' "$1"
}

fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL - %s\n' "$1"
  if [[ $# -gt 1 ]]; then
    printf '       %s\n' "$2"
  fi
}

# Shows the tail of the last command's output, indented (for failure diagnosis).
show_last() {
  if [[ -s $LAST ]]; then
    sed -e 's/^/       | /' "$LAST" | tail -n 15
  fi
}

# Shows the tail of a log file, indented.
show_log() {  # show_log TITLE FILE [LINES]
  if [[ -s $2 ]]; then
    echo "       $1:"
    tail -n "${3:-10}" "$2" | sed -e 's/^/       | /'
  fi
}

# run CMD...: runs CMD with a timeout, output to $LAST (and a numbered copy), rc to $LAST_RC.
run() {
  N=$((N + 1))
  LAST_RC=0
  timeout "$CMD_TIMEOUT" "$@" </dev/null >"$LAST" 2>&1 || LAST_RC=$?
  cp "$LAST" "$OUT/$(printf '%03d' "$N").txt"
}

# expect_ok NAME CMD...: CMD must exit 0.
expect_ok() {
  local name=$1
  shift
  run "$@"
  if [[ $LAST_RC -eq 0 ]]; then
    pass "$name"
  else
    fail "$name" "expected exit 0, got $LAST_RC: $*"
    show_last
  fi
}

# expect_exit NAME CODE CMD...: CMD must exit with exactly CODE.
expect_exit() {
  local name=$1 code=$2
  shift 2
  run "$@"
  if [[ $LAST_RC -eq $code ]]; then
    pass "$name"
  else
    fail "$name" "expected exit $code, got $LAST_RC: $*"
    show_last
  fi
}

# _matches FILE|STRING PATTERN: extended-regex match against a file's content or a string.
_matches() {
  if [[ -f $1 ]]; then
    grep -qE -- "$2" "$1"
  else
    grep -qE -- "$2" <<<"$1"
  fi
}

# expect_contains NAME FILE|STRING PATTERN
expect_contains() {
  local name=$1 subject=$2 pattern=$3
  if _matches "$subject" "$pattern"; then
    pass "$name"
  else
    fail "$name" "no match for /$pattern/"
    if [[ -f $subject ]]; then
      sed -e 's/^/       | /' "$subject" | tail -n 15
    else
      printf '       | %s\n' "$subject"
    fi
  fi
}

# expect_not_contains NAME FILE|STRING PATTERN
expect_not_contains() {
  local name=$1 subject=$2 pattern=$3
  if _matches "$subject" "$pattern"; then
    fail "$name" "unexpected match for /$pattern/"
    if [[ -f $subject ]]; then
      grep -E -- "$pattern" "$subject" | head -n 5 | sed -e 's/^/       | /'
    fi
  else
    pass "$name"
  fi
}

# expect_eq NAME GOT WANT
expect_eq() {
  if [[ $2 == "$3" ]]; then
    pass "$1"
  else
    fail "$1" "got '$2', want '$3'"
  fi
}

section() { printf '\n## %s\n' "$1"; }

# Prints the final "N passed, M failed" line; exits 1 if M > 0, else 0.
summary_and_exit() {
  printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
  if [[ $FAILED -gt 0 ]]; then
    exit 1
  fi
  exit 0
}

# free_port: a free loopback TCP port, distinct from every port handed out before,
# here and in every other test script running at the same time (ctest -j): the
# kernel may hand the same just-released port to two scripts, and the second
# listener then fails to bind while the first one's clients talk to the wrong
# process. A claim is a directory (mkdir is atomic), removed when the script exits;
# claims older than an hour are from a killed run and are taken over.
#
# The ports come from below the kernel's ephemeral range: a process binding
# port 0 (the server's lane listener on "auto") or connecting out gets an
# ephemeral port, which must never be one claimed here for a listener started
# later (seen: the lane listener took the port chosen for a client, whose bind
# then failed while the test's CONNECTs reached the lane port).
PORT_CLAIMS="${TMPDIR:-/tmp}/drawbridge-port-claims"
_EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {  # called as $(free_port), a subshell: the claim records $$, the script
  local p
  mkdir -p "$PORT_CLAIMS"
  find "$PORT_CLAIMS" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null || true
  while true; do
    p=$(python3 - "$_EPHEMERAL_LOW" <<'PY'
import random, socket, sys
low = max(int(sys.argv[1]), 12000)
while True:
    p = random.randrange(10000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
)
    if mkdir "$PORT_CLAIMS/$p" 2>/dev/null; then
      echo "$$" >"$PORT_CLAIMS/$p/owner"
      echo "$p"
      return
    fi
  done
}
_release_ports() {
  local d
  for d in "$PORT_CLAIMS"/*/; do
    [[ -f ${d}owner && $(cat "${d}owner" 2>/dev/null) == "$$" ]] && rm -rf "$d"
  done
  return 0
}

# log_time FILE PATTERN: when the last line of drawbridge log FILE matching
# PATTERN was written, in epoch seconds (the log's own UTC timestamp); empty
# when no line matches. Measures from a server's own moment (e.g. a change
# committed) rather than from a CLI's start, which under ASan takes seconds.
log_time() {
  local ts
  ts=$(grep -E "$2" "$1" 2>/dev/null | tail -n 1 | cut -d' ' -f1)
  [[ -n $ts ]] && date -d "$ts" +%s.%N
  return 0
}

count_matches() {  # count_matches FILE PATTERN (0 when none)
  grep -cE -- "$2" "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Background processes and polling (no fixed sleeps: every wait has a deadline).
# The sourcing script owns PIDS=() and kills them in its EXIT trap.

# poll_until SECONDS PID CMD...: runs CMD every 0.1 s until it succeeds (return 0).
# Fails at the deadline, or as soon as PID (if not empty) has exited.
poll_until() {
  local secs=$1 pid=$2
  shift 2
  local deadline=$((SECONDS + secs))
  while true; do
    if "$@"; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.1
  done
}

_has_count() { [[ $(count_matches "$1" "$2") -ge $3 ]]; }
_accepts() {
  python3 -c 'import socket,sys;socket.create_connection(("127.0.0.1",int(sys.argv[1])),1).close()' \
    "$1" 2>/dev/null
}

# wait_for_count FILE PATTERN MIN SECONDS [PID]: polls until FILE has at least MIN lines
# matching PATTERN. Fails at the deadline, or as soon as PID (if given) has exited.
wait_for_count() { poll_until "$4" "${5:-}" _has_count "$1" "$2" "$3"; }

# wait_for_port PORT SECONDS [PID]: polls until something accepts on 127.0.0.1:PORT.
wait_for_port() { poll_until "$2" "${3:-}" _accepts "$1"; }

# wait_for_exit PID SECONDS: polls until PID has exited.
wait_for_exit() {
  local pid=$1 secs=$2
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.1
  done
  return 0
}

# start_bg LOG CMD...: starts CMD in the background (stdin /dev/null, output to LOG);
# its pid is in $BG_PID and recorded for the exit trap.
BG_PID=""
start_bg() {
  local log=$1
  shift
  "$@" </dev/null >"$log" 2>&1 &
  BG_PID=$!
  PIDS+=("$BG_PID")
}


# stop_started_processes: TERM every pid in PIDS, then KILL what is still there after 3 s.
stop_started_processes() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      # Give it a moment to go, then insist.
      timeout 3 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

# use_work_dir NAME: a fresh $WORK (mktemp), $OUT for captured outputs and $LAST, an
# empty PIDS, and traps: on exit every started process is stopped, `extra_cleanup` runs
# if the script defines one, and $WORK is removed (KEEP_WORK=1 keeps it).
use_work_dir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-$1.XXXXXX")
  OUT="$WORK/out"
  LAST="$OUT/last.txt"
  PIDS=()
  mkdir -p "$OUT"
  trap _cleanup_work_dir EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# The store a single-node suite's server uses, as arguments for `server init`:
# none (the embedded SQLite default) unless DRAWBRIDGE_TEST_STORE=postgres; then
# `--store URI` of a fresh database in a private PostgreSQL cluster started here
# (pg_lib.sh) and removed on exit. ctest runs some suites both ways (the
# *_postgres entries), so single-node behaviour is checked against each store.
# A cluster that cannot start aborts the suite, never a silent fallback.
TEST_STORE_ARGS=()
use_test_store() {
  [[ ${DRAWBRIDGE_TEST_STORE:-sqlite} == postgres ]] || return 0
  # shellcheck source-path=SCRIPTDIR source=pg_lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"
  require_tools runuser
  TEST_STORE_ARGS=(--store "postgres-not-started")
  if ! start_postgres || ! pg_createdb drawbridge; then
    echo "error: DRAWBRIDGE_TEST_STORE=postgres but PostgreSQL did not start" >&2
    exit 2
  fi
  TEST_STORE_ARGS=(--store "$(pg_uri drawbridge)")
  echo "store: PostgreSQL ($PG_DIR)"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
_cleanup_work_dir() {
  stop_started_processes
  _release_ports
  if declare -F extra_cleanup >/dev/null; then
    extra_cleanup
  fi
  if [[ -n ${TEST_STORE_ARGS[*]:-} ]]; then
    cleanup_postgres
  fi
  if [[ ${KEEP_WORK:-0} == 1 ]]; then
    echo "work dir kept: $WORK"
  else
    rm -rf -- "$WORK"
  fi
}

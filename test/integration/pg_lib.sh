# shellcheck shell=bash
# A private PostgreSQL cluster for an integration test. Sourced after lib.sh:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"
#   start_postgres            # initdb + pg_ctl start; sets PG_DIR
#   pg_createdb NAME          # prints nothing; the database's URI is $(pg_uri NAME)
#   pg_sql DB SQL             # psql -c, as the cluster's owner
#   pg_stop / pg_start        # an outage (immediate stop, as a crash) and the return
#   cleanup_postgres          # from the script's extra_cleanup
#   retarget CRED OUT PORT    # a credential copy that dials another replica or a balancer
#
# The cluster listens only on a Unix socket in its own directory (no TCP port),
# trusts local connections, and lives under /tmp (not $WORK: when the test runs
# as root the server runs as the postgres user, which cannot enter $WORK).

PG_DIR=""
PG_USER=""
PG_PORT=5432  # names the socket file only

_pg_bin() {
  local dir
  dir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [[ -z $dir || ! -x $dir/initdb ]]; then
    echo "error: no PostgreSQL server under /usr/lib/postgresql (scripts/install-deps.sh)" >&2
    exit 2
  fi
  echo "$dir"
}

# Runs a server tool as the cluster's owner (postgres when we are root).
_pg_run() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  PG_BIN=$(_pg_bin)
  PG_DIR=$(mktemp -d /tmp/drawbridge-pg.XXXXXX)
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$PG_DIR"
    PG_USER=postgres
  else
    PG_USER=$(id -un)
  fi
  _pg_run "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust -E UTF8 --no-sync \
    --no-instructions >"$PG_DIR/initdb.log" 2>&1 || {
    cat "$PG_DIR/initdb.log" >&2
    return 1
  }
  pg_start
}

pg_start() {
  _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $PG_DIR -p $PG_PORT -c max_connections=200" start >/dev/null
}

pg_stop() {
  _pg_run "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null
}

pg_uri() { echo "postgresql:///$1?host=$PG_DIR&port=$PG_PORT&user=$PG_USER"; }

# pg_sql DB SQL: runs SQL (as someone with write access to the database would).
pg_sql() {
  _pg_run "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_USER" \
    -d "$1" -c "$2"
}

pg_createdb() {
  _pg_run "$PG_BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_USER" "$1"
}

cleanup_postgres() {
  if [[ -n $PG_DIR && -d $PG_DIR ]]; then
    pg_stop 2>/dev/null || true
    rm -rf -- "$PG_DIR"
  fi
}

# retarget CREDENTIAL OUT PORT: a copy of CREDENTIAL that dials 127.0.0.1:PORT
# (as a credential naming a load balancer in front of replicas would).
retarget() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
c["server_address"] = "127.0.0.1:" + sys.argv[3]
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(c).encode())
os.close(fd)
PY
}

#!/usr/bin/env bash
# Start (or stop) a throw-away PostgreSQL server for the explorers' integration test.
#   export MPSEARCH_TEST_POSTGRES_URL="$(.ci/postgres.sh start)"   # prints the URL on stdout
#   .ci/postgres.sh stop
# Uses Debian's postgresql package (installed with apt-get when missing), a cluster in
# $MPSEARCH_PG_DIR (default /tmp/mpsearch-pg) on localhost:$MPSEARCH_PG_PORT (default 54329),
# owned by the 'postgres' system user (initdb refuses root). Logs go to stderr / the data dir.
set -euo pipefail
PG_DIR="${MPSEARCH_PG_DIR:-/tmp/mpsearch-pg}"
PG_PORT="${MPSEARCH_PG_PORT:-54329}"
DB=mpsearch_test
ROLE=mpsearch
PASSWORD=mpsearch

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [[ -n "$d" ]] && echo "$d"
}

as_pg() {  # run a command as the postgres user when we are root
  if [[ "$(id -u)" == "0" ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  if [[ -z "$(pg_bin)" ]]; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  local bin; bin="$(pg_bin)"
  mkdir -p "$PG_DIR"
  chown postgres:postgres "$PG_DIR" 2>/dev/null || true
  if [[ ! -f "$PG_DIR/PG_VERSION" ]]; then
    as_pg "$bin/initdb" -D "$PG_DIR" -U postgres --auth=trust >&2
  fi
  if ! as_pg "$bin/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w \
      -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=localhost -c max_connections=100" start >&2
  fi
  local psql=("$bin/psql" -h localhost -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [[ "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$ROLE'")" != "1" ]]; then
    as_pg "${psql[@]}" -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
  fi
  if [[ "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" != "1" ]]; then
    as_pg "${psql[@]}" -c "CREATE DATABASE $DB OWNER $ROLE" >&2
  fi
  echo "postgresql+psycopg2://$ROLE:$PASSWORD@localhost:$PG_PORT/$DB"
}

stop() {
  local bin; bin="$(pg_bin)"
  [[ -n "$bin" && -f "$PG_DIR/PG_VERSION" ]] && as_pg "$bin/pg_ctl" -D "$PG_DIR" -m fast stop >&2 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

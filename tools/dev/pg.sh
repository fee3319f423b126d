#!/usr/bin/env bash
# A throwaway PostgreSQL server from the installed binaries, on a port of its own.
#   tools/dev/pg.sh start DATA_DIR PORT   (initialises DATA_DIR on first use)
#   tools/dev/pg.sh stop DATA_DIR
#   tools/dev/pg.sh url PORT              (prints the admin connection string)
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
  if [ "$(id -u)" = 0 ]; then
    echo "installing PostgreSQL (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >&2
    for dir in /usr/lib/postgresql/*/bin; do
      [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
    done
  fi
  echo "PostgreSQL binaries not found (apt-get install postgresql postgresql-contrib)" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?usage: pg.sh start|stop|url ...}
case "$cmd" in
  start)
    # Absolute: PostgreSQL resolves the socket directory from inside its data directory.
    dir=$(realpath -m "${2:?data dir}"); port=${3:?port}
    bin=$(find_bin)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir" && chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      exit 0
    fi
    # fsync off: these servers hold development and test data only.
    if ! as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=600 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null; then
      echo "PostgreSQL did not start on port $port; its log:" >&2
      tail -n 20 "$dir/server.log" >&2 || true
      exit 1
    fi
    ;;
  stop)
    dir=$(realpath -m "${2:?data dir}")
    bin=$(find_bin)
    if [ -f "$dir/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    fi
    ;;
  url)
    echo "postgres://postgres@127.0.0.1:${2:?port}/postgres?sslmode=disable"
    ;;
  *)
    echo "unknown command $cmd" >&2; exit 2 ;;
esac

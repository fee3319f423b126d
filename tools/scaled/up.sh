#!/usr/bin/env bash
# The scaled-out topology on one machine (docs/scaling.md), from the installed binaries:
#
#   order-pg-0   PostgreSQL server: order shard database 0 (+ the user database)
#   order-pg-1   PostgreSQL server: order shard database 1
#   product-pg   PostgreSQL server: product primary
#   product-rep  PostgreSQL server: streaming standby of product-pg (pg_basebackup -R)
#   redis-a      users, products0/1, deliveries0/1
#   redis-b      products2/3, deliveries2/3
#   app-1, app-2 two instances of the application (real `spin up`; the test host with USE_TEST_HOST=1)
#   haproxy      one load balancer in front of both, on $LISTEN (default 127.0.0.1:3000)
#
#   tools/scaled/up.sh start   start everything, return once it is healthy (non-blocking)
#   tools/scaled/up.sh stop    stop everything a `start` started (and nothing else)
#   tools/scaled/up.sh run     start, stay in the foreground, stop on Ctrl-C / TERM (make up-scaled)
#   tools/scaled/up.sh status  print what runs, and the replica's streaming state
#   tools/scaled/up.sh env     print the variables of the running topology (for bench/ and tests)
#
# Knobs: LISTEN, SCALED_RUN_DIR (state, default .spin/scaled), SCALED_PORT_BASE (default
# 26500: PostgreSQL +1..+4, Redis +11/+12, app instances +21/+22, haproxy stats +30),
# APP_INSTANCES (default 2), KV_BACKEND (redis, default, or sqlite: SQLite files as on a laptop), USE_TEST_HOST=1 (serve with the test host, HOST_BIN), SPIN_VARIABLE_ADMIN_EMAILS
# (default admin@marketplace.test, which the black-box tests use). Every start begins from
# empty databases and stores. Ports are below the kernel's ephemeral range (32768+), so no
# outgoing connection can be holding one when a server binds it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
run=${SCALED_RUN_DIR:-$root/.spin/scaled}
listen=${LISTEN:-127.0.0.1:3000}
base=${SCALED_PORT_BASE:-26500}
instances=${APP_INSTANCES:-2}
migrate=${MIGRATE_BIN:-$root/target/debug/marketplace-migrate}

pg_order0=$((base + 1)); pg_order1=$((base + 2)); pg_product=$((base + 3)); pg_replica=$((base + 4))
redis_a=$((base + 11)); redis_b=$((base + 12))
app_port() { echo $((base + 20 + $1)); }
stats_port=$((base + 30))

log() { printf '[scaled] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
pgbin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }; done
  die "PostgreSQL binaries not found"
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
url() { echo "postgres://postgres@127.0.0.1:$1/$2?sslmode=disable"; }
psql_q() { psql "$(url "$1" "$2")" -qtAX -v ON_ERROR_STOP=1 -c "$3"; }

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql postgresql-contrib)
  [ ${#missing[@]} = 0 ] && return
  [ "$(id -u)" = 0 ] || die "missing: ${missing[*]} (apt-get install them)"
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# A pid file names one process we started; it only counts while that process is still the one
# we started (its command line mentions our run directory or port), so a recycled pid is never
# signalled.
alive() {
  local f=$1 pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$run" || return 1
}
kill_pidfile() {
  local f=$1 pid i
  alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

wait_http() { # URL SECONDS
  local i
  for i in $(seq 1 $(($2 * 10))); do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

do_stop() {
  [ -d "$run" ] || return 0
  kill_pidfile "$run/haproxy.pid"
  local i
  for i in $(seq 1 "$instances"); do kill_pidfile "$run/app-$i.pid"; done
  for d in product-rep product-pg order-pg-1 order-pg-0; do
    [ -f "$run/$d/postmaster.pid" ] && as_pg "$(pgbin)/pg_ctl" -D "$run/$d" -m fast -w stop >/dev/null 2>&1 || true
  done
  tools/dev/redis.sh stop "$run/redis-a" "$redis_a" || true
  tools/dev/redis.sh stop "$run/redis-b" "$redis_b" || true
  log "stopped (state kept in $run until the next start)"
}

write_env() {
  # The variables both app instances get; also what bench/ and the tests source.
  local secrets=$run/secrets.env
  if [ ! -f "$secrets" ] || ! grep -q RELAY_SIGNING_KEY "$secrets"; then # (older files: no relay key)
    read -r user_seed user_pub < <(tools/dev/keys.sh)
    read -r order_seed order_pub < <(tools/dev/keys.sh)
    read -r delivery_seed delivery_pub < <(tools/dev/keys.sh)
    read -r relay_seed relay_pub < <(tools/dev/keys.sh)
    (umask 077; cat > "$secrets" <<ENV
SPIN_VARIABLE_JWT_SIGNING_KEY=scaled1:$user_seed
SPIN_VARIABLE_JWT_PUBLIC_KEYS=scaled1:$user_pub
SPIN_VARIABLE_ORDER_SERVICE_SIGNING_KEY=scaled1:$order_seed
SPIN_VARIABLE_DELIVERY_SERVICE_SIGNING_KEY=scaled1:$delivery_seed
SPIN_VARIABLE_SERVICE_PUBLIC_KEYS=order:scaled1:$order_pub,delivery:scaled1:$delivery_pub,relay:scaled1:$relay_pub
# The outbox relay's own identity (its CronJobs on Kubernetes): not a Spin variable, no
# component signs with it; tests and the soak use it to trigger relay runs.
RELAY_SIGNING_KEY=scaled1:$relay_seed
ENV
    )
  fi
  cat > "$run/topology.env" <<ENV
SPIN_VARIABLE_ADMIN_EMAILS=${SPIN_VARIABLE_ADMIN_EMAILS:-admin@marketplace.test}
SPIN_VARIABLE_USER_DB_URL=$(url "$pg_order0" marketplace_user)
SPIN_VARIABLE_PRODUCT_DB_URL=$(url "$pg_product" marketplace_product)
SPIN_VARIABLE_PRODUCT_DB_REPLICA_URLS=$(url "$pg_replica" marketplace_product)
SPIN_VARIABLE_ORDER_DB_URLS=$(url "$pg_order0" marketplace_order_0),$(url "$pg_order1" marketplace_order_1)
SCALED_BASE_URL=http://$listen
SCALED_PG_ORDER_0=$pg_order0
SCALED_PG_ORDER_1=$pg_order1
SCALED_PG_PRODUCT=$pg_product
SCALED_PG_REPLICA=$pg_replica
SCALED_REDIS_A=$redis_a
SCALED_REDIS_B=$redis_b
SCALED_APP_PORTS="$(for i in $(seq 1 "$instances"); do printf '%s ' "$(app_port "$i")"; done)"
ENV
}

write_runtime_config() {
  local a="redis://127.0.0.1:$redis_a" b="redis://127.0.0.1:$redis_b"
  if [ "${KV_BACKEND:-redis}" = sqlite ]; then
    # The laptop shape (runtime-config/local.toml): Spin's SQLite store, files in the run dir.
    {
      echo "# Generated by tools/scaled/up.sh: key-value labels in SQLite files (KV_BACKEND=sqlite)."
      printf '[key_value_store.default]\ntype = "spin"\npath = "kv-default.db"\n\n'
      printf '[key_value_store.users]\ntype = "spin"\npath = "kv-users.db"\n\n'
      # One file per label: Spin opens one SQLite connection per label (key-value-spin), so
      # labels sharing a file would also contend for that file's write lock.
      for label in web-sessions web-carts; do
        printf '[key_value_store.%s]\ntype = "spin"\npath = "kv-%s.db"\n\n' "$label" "$label"
      done
      for kind in products deliveries; do
        for i in 0 1 2 3; do
          printf '[key_value_store.%s%s]\ntype = "spin"\npath = "kv-%s%s.db"\n\n' "$kind" "$i" "$kind" "$i"
        done
      done
    } > "$run/runtime-config.toml"
    return
  fi
  {
    echo "# Generated by tools/scaled/up.sh: key-value labels over two Redis servers."
    printf '[key_value_store.default]\ntype = "redis"\nurl = "%s"\n\n' "$a"
    printf '[key_value_store.users]\ntype = "redis"\nurl = "%s"\n\n' "$a"
    printf '[key_value_store.%s]\ntype = "redis"\nurl = "%s"\n\n' web-sessions "$b" web-carts "$b"
    for kind in products deliveries; do
      for i in 0 1 2 3; do
        if [ "$i" -lt 2 ]; then u=$a; else u=$b; fi
        printf '[key_value_store.%s%s]\ntype = "redis"\nurl = "%s"\n\n' "$kind" "$i" "$u"
      done
    done
  } > "$run/runtime-config.toml"
}

write_haproxy() {
  {
    cat <<CFG
# Generated by tools/scaled/up.sh.
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend marketplace
    bind $listen
    default_backend apps
frontend stats
    bind 127.0.0.1:$stats_port
    stats enable
    stats uri /stats
backend apps
    balance roundrobin
    option httpchk
    http-check send meth GET uri /api/users/healthz ver HTTP/1.1 hdr Host localhost
    default-server check inter 2s fall 2 rise 1
CFG
    for i in $(seq 1 "$instances"); do
      echo "    server app-$i 127.0.0.1:$(app_port "$i")"
    done
  } > "$run/haproxy.cfg"
}

start_pg() { # NAME PORT [extra postgres -c options]
  local dir=$run/$1 port=$2; shift 2
  local bin; bin=$(pgbin)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir" && chmod 700 "$dir"
  [ -f "$dir/PG_VERSION" ] || as_pg "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  # Throwaway data: fsync off. Commits still write their WAL at once (synchronous_commit on,
  # nearly free without fsync) so the standby receives a commit within milliseconds instead
  # of after the WAL writer's next round. wal_level=replica and senders for the standby; the
  # same settings on every server keep them interchangeable. pg_stat_statements: what each
  # request sends (bench/ reads it; the extension lives in the `postgres` database).
  mkdir -p "$run/sockets"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$run/sockets"
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start -o "-p $port -k $run/sockets \
    -c listen_addresses=127.0.0.1 -c max_connections=600 -c fsync=off -c synchronous_commit=on \
    -c full_page_writes=on -c wal_level=replica -c max_wal_senders=8 -c hot_standby=on \
    -c shared_buffers=256MB -c shared_preload_libraries=pg_stat_statements \
    -c pg_stat_statements.track=all $*" >/dev/null || { tail -20 "$dir/server.log" >&2; die "PostgreSQL $1 did not start"; }
}

create_db() { # PORT NAME
  psql_q "$1" postgres "select 1 from pg_database where datname = '$2'" | grep -q 1 \
    || psql_q "$1" postgres "create database $2"
}

# Streaming replication is verified, not assumed: the primary reports the standby as
# `streaming`, and a row written on the primary becomes visible on the standby.
verify_replica() {
  local i state token
  for i in $(seq 1 100); do
    state=$(psql_q "$pg_product" postgres "select state from pg_stat_replication limit 1" || true)
    [ "$state" = streaming ] && break
    sleep 0.1
  done
  [ "$state" = streaming ] || die "replica is not streaming (state '$state')"
  [ "$(psql_q "$pg_replica" postgres "select pg_is_in_recovery()")" = t ] || die "replica is not a standby"
  token=$(date +%s%N)
  psql_q "$pg_product" postgres "create table if not exists replication_check (token text); insert into replication_check values ('$token')"
  for i in $(seq 1 100); do
    psql_q "$pg_replica" postgres "select 1 from replication_check where token = '$token'" 2>/dev/null | grep -q 1 && {
      log "product replica streaming from the primary (row replicated)"; return 0; }
    sleep 0.1
  done
  die "a row written on the product primary did not reach the replica"
}

running() { alive "$run/haproxy.pid" || alive "$run/app-1.pid"; }

do_start() {
  ensure_packages
  runtime=$(tools/dev/runtime.sh) || die "no runtime to serve the app"
  [ -x "$runtime" ] || die "$runtime not built (make build)"
  log "app instances served by $runtime"
  [ -x "$migrate" ] || die "$migrate not built (make build)"
  do_stop >/dev/null 2>&1 || true
  # Fresh state every start (the secrets are kept).
  if [ -d "$run" ]; then
    find "$run" -mindepth 1 -maxdepth 1 ! -name secrets.env -exec rm -rf {} +
  fi
  mkdir -p "$run"
  local listen_port=${listen##*:}
  for p in "$listen_port" $pg_order0 $pg_order1 $pg_product $pg_replica $redis_a $redis_b $stats_port $(for i in $(seq 1 "$instances"); do app_port "$i"; done); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is already in use (SCALED_PORT_BASE / LISTEN)"; fi
  done

  log "PostgreSQL: order shards on :$pg_order0 and :$pg_order1, product primary on :$pg_product"
  start_pg order-pg-0 "$pg_order0"
  start_pg order-pg-1 "$pg_order1"
  start_pg product-pg "$pg_product"
  for p in $pg_order0 $pg_order1 $pg_product; do
    psql_q "$p" postgres "create extension if not exists pg_stat_statements" >/dev/null
  done
  create_db "$pg_order0" marketplace_user
  create_db "$pg_order0" marketplace_order_0
  create_db "$pg_order1" marketplace_order_1
  create_db "$pg_product" marketplace_product
  "$migrate" --service user --database-url "$(url "$pg_order0" marketplace_user)"
  "$migrate" --service product --database-url "$(url "$pg_product" marketplace_product)"
  "$migrate" --service order --database-url "$(url "$pg_order0" marketplace_order_0)"
  "$migrate" --service order --database-url "$(url "$pg_order1" marketplace_order_1)"

  log "PostgreSQL: product replica on :$pg_replica (pg_basebackup -R, streaming)"
  mkdir -p "$run/product-rep"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$run/product-rep" && chmod 700 "$run/product-rep"
  as_pg "$(pgbin)/pg_basebackup" -h 127.0.0.1 -p "$pg_product" -U postgres -D "$run/product-rep" \
    -R -X stream -c fast >/dev/null
  start_pg product-rep "$pg_replica"
  verify_replica

  log "Redis: :$redis_a and :$redis_b"
  tools/dev/redis.sh start "$run/redis-a" "$redis_a"
  tools/dev/redis.sh start "$run/redis-b" "$redis_b"

  write_env
  write_runtime_config
  set -a
  # shellcheck disable=SC1091
  . "$run/secrets.env"; . "$run/topology.env"
  set +a

  local i port
  for i in $(seq 1 "$instances"); do
    port=$(app_port "$i")
    log "app-$i on 127.0.0.1:$port"
    setsid nohup "$runtime" up -f "$root/spin.toml" --listen "127.0.0.1:$port" \
      --runtime-config-file "$run/runtime-config.toml" > "$run/app-$i.log" 2>&1 < /dev/null &
    echo $! > "$run/app-$i.pid"
  done
  for i in $(seq 1 "$instances"); do
    wait_http "http://127.0.0.1:$(app_port "$i")/api/users/healthz" 120 \
      || { tail -20 "$run/app-$i.log" >&2; die "app-$i did not become healthy"; }
  done

  write_haproxy
  haproxy -c -q -f "$run/haproxy.cfg" || die "bad haproxy config"
  setsid nohup haproxy -db -f "$run/haproxy.cfg" > "$run/haproxy.log" 2>&1 < /dev/null &
  echo $! > "$run/haproxy.pid"
  for svc in users products orders deliveries; do
    wait_http "http://$listen/api/$svc/healthz" 30 || die "/api/$svc/healthz not healthy through the load balancer"
  done
  log "serving http://$listen (haproxy → ${instances} app instances); stop with: tools/scaled/up.sh stop"
}

do_status() {
  local i
  for f in haproxy $(for i in $(seq 1 "$instances"); do echo "app-$i"; done); do
    if alive "$run/$f.pid"; then echo "$f: running (pid $(cat "$run/$f.pid"))"; else echo "$f: stopped"; fi
  done
  for d in order-pg-0 order-pg-1 product-pg product-rep; do
    if [ -f "$run/$d/postmaster.pid" ]; then echo "$d: running"; else echo "$d: stopped"; fi
  done
  psql_q "$pg_product" postgres \
    "select 'replication: ' || application_name || ' ' || state || ' lag_bytes=' || pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) from pg_stat_replication" 2>/dev/null || true
  for p in $redis_a $redis_b; do
    echo "redis :$p: $(redis-cli -p "$p" dbsize 2>/dev/null || echo down) keys"
  done
}

case "${1:-}" in
  start)
    running && die "already running ($run); stop it first"
    started=0
    trap '[ "$started" = 1 ] || do_stop' EXIT
    do_start
    started=1
    ;;
  stop) do_stop ;;
  status) do_status ;;
  env) cat "$run/secrets.env" "$run/topology.env" ;;
  run)
    running && die "already running ($run); stop it first"
    trap 'trap - EXIT; do_stop; exit 0' INT TERM
    trap 'do_stop' EXIT
    do_start
    log "press Ctrl-C to stop"
    # Stay in the foreground while every process lives; if one dies, stop the rest.
    while :; do
      for f in haproxy $(for i in $(seq 1 "$instances"); do echo "app-$i"; done); do
        alive "$run/$f.pid" || { log "$f exited (see $run/$f.log); stopping"; exit 1; }
      done
      sleep 1 &
      wait $! || true
    done
    ;;
  *) echo "usage: $0 start|stop|run|status|env" >&2; exit 2 ;;
esac

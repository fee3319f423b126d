#!/usr/bin/env bash
# `make up`: serve the marketplace on 127.0.0.1:3000 (override with LISTEN=host:port).
#
# - Every SPIN_VARIABLE_* already in the environment wins over what this script would choose.
# - Without SPIN_VARIABLE_USER_DB_URL & co., a local PostgreSQL is started from the installed
#   binaries (data in .spin/pg, port $PG_PORT), its four databases created and migrated.
# - Development signing keys are generated once into .spin/dev-secrets.env.
# - Served by `spin up` (tools/dev/runtime.sh finds it); by the project's test host only with USE_TEST_HOST=1.
# Stops what it started (the PostgreSQL server) when the app stops.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
listen=${LISTEN:-127.0.0.1:3000}
pg_port=${PG_PORT:-15329}  # below 32768: never taken by a client socket
pg_dir="$root/.spin/pg"
mkdir -p .spin

# Development secrets: generated on first run, kept for the next.
secrets=.spin/dev-secrets.env
if [ ! -f "$secrets" ] || ! grep -q DEV_RELAY_SIGNING_KEY "$secrets"; then # (older files: no relay key)
  read -r user_seed user_pub < <(tools/dev/keys.sh)
  read -r order_seed order_pub < <(tools/dev/keys.sh)
  read -r delivery_seed delivery_pub < <(tools/dev/keys.sh)
  read -r relay_seed relay_pub < <(tools/dev/keys.sh)
  umask 077
  cat > "$secrets" <<ENV
DEV_JWT_SIGNING_KEY=dev1:$user_seed
DEV_JWT_PUBLIC_KEYS=dev1:$user_pub
DEV_ORDER_SERVICE_SIGNING_KEY=dev1:$order_seed
DEV_DELIVERY_SERVICE_SIGNING_KEY=dev1:$delivery_seed
DEV_RELAY_SIGNING_KEY=dev1:$relay_seed
DEV_SERVICE_PUBLIC_KEYS=order:dev1:$order_pub,delivery:dev1:$delivery_pub,relay:dev1:$relay_pub
ENV
  echo "generated development keys in $secrets"
fi
# shellcheck disable=SC1090
. "$secrets"
export SPIN_VARIABLE_JWT_SIGNING_KEY=${SPIN_VARIABLE_JWT_SIGNING_KEY:-$DEV_JWT_SIGNING_KEY}
export SPIN_VARIABLE_JWT_PUBLIC_KEYS=${SPIN_VARIABLE_JWT_PUBLIC_KEYS:-$DEV_JWT_PUBLIC_KEYS}
export SPIN_VARIABLE_ORDER_SERVICE_SIGNING_KEY=${SPIN_VARIABLE_ORDER_SERVICE_SIGNING_KEY:-$DEV_ORDER_SERVICE_SIGNING_KEY}
export SPIN_VARIABLE_DELIVERY_SERVICE_SIGNING_KEY=${SPIN_VARIABLE_DELIVERY_SERVICE_SIGNING_KEY:-$DEV_DELIVERY_SERVICE_SIGNING_KEY}
export SPIN_VARIABLE_SERVICE_PUBLIC_KEYS=${SPIN_VARIABLE_SERVICE_PUBLIC_KEYS:-$DEV_SERVICE_PUBLIC_KEYS}

# PostgreSQL: the configured one, or a local one started here.
started_pg=0
if [ -z "${SPIN_VARIABLE_USER_DB_URL:-}${SPIN_VARIABLE_PRODUCT_DB_URL:-}${SPIN_VARIABLE_ORDER_DB_URLS:-}" ]; then
  tools/dev/pg.sh start "$pg_dir" "$pg_port"
  started_pg=1
  admin=$(tools/dev/pg.sh url "$pg_port")
  for db in marketplace_user marketplace_product marketplace_order_0 marketplace_order_1; do
    psql "$admin" -qtAc "select 1 from pg_database where datname = '$db'" | grep -q 1 \
      || psql "$admin" -qc "create database $db"
  done
  url() { echo "postgres://postgres@127.0.0.1:$pg_port/$1?sslmode=disable"; }
  export SPIN_VARIABLE_USER_DB_URL; SPIN_VARIABLE_USER_DB_URL=$(url marketplace_user)
  export SPIN_VARIABLE_PRODUCT_DB_URL; SPIN_VARIABLE_PRODUCT_DB_URL=$(url marketplace_product)
  export SPIN_VARIABLE_ORDER_DB_URLS; SPIN_VARIABLE_ORDER_DB_URLS="$(url marketplace_order_0),$(url marketplace_order_1)"
fi
stop_pg() { if [ "$started_pg" = 1 ]; then tools/dev/pg.sh stop "$pg_dir"; fi; }
trap stop_pg EXIT

# Migrations (each once; safe if another runner is at it too).
migrate=target/debug/marketplace-migrate
"$migrate" --service user --database-url "$SPIN_VARIABLE_USER_DB_URL"
"$migrate" --service product --database-url "$SPIN_VARIABLE_PRODUCT_DB_URL"
IFS=',' read -r -a order_urls <<< "$SPIN_VARIABLE_ORDER_DB_URLS"
for u in "${order_urls[@]}"; do "$migrate" --service order --database-url "$u"; done

runtime=$(tools/dev/runtime.sh)
echo "serving with $runtime"
"$runtime" up -f spin.toml --listen "$listen" --runtime-config-file runtime-config/local.toml &
app=$!
trap 'kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; stop_pg' EXIT INT TERM
wait "$app"

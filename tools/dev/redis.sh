#!/usr/bin/env bash
# A throwaway Redis server on a port of its own (installs redis-server when missing).
#   tools/dev/redis.sh start DIR PORT
#   tools/dev/redis.sh stop DIR PORT
set -euo pipefail

ensure_redis() {
  command -v redis-server >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    echo "installing redis-server (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "redis-server not found (apt-get install redis-server)" >&2; exit 1
  fi
}

cmd=${1:?usage: redis.sh start|stop DIR PORT}
dir=${2:?dir}; port=${3:?port}
case "$cmd" in
  start)
    ensure_redis
    mkdir -p "$dir"
    if redis-cli -p "$port" ping >/dev/null 2>&1; then exit 0; fi
    # 1024 databases: each test app takes one of its own.
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --databases 1024 \
      --save "" --appendonly no --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && exit 0
      sleep 0.1
    done
    echo "redis did not start (see $dir/redis.log)" >&2; exit 1
    ;;
  stop)
    if [ -f "$dir/redis.pid" ]; then
      redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    fi
    ;;
esac

#!/usr/bin/env bash
# The black-box HTTP tests (pytest, standard library HTTP client), on real `spin up`.
#   tests/blackbox/run.sh [BASE_URL]   against a running marketplace (default http://127.0.0.1:3000)
#   tests/blackbox/run.sh --single     start one app process with SQLite key-value files (the
#                                      laptop shape), test it directly, stop it
#   tests/blackbox/run.sh --scaled     start the scaled topology (two app instances, Redis
#                                      labels, haproxy), test through its load balancer, stop it
# Both started shapes are private (own run dir and ports) and served by tools/dev/runtime.sh:
# real Spin unless USE_TEST_HOST=1. Extra arguments after `--` go to pytest (e.g. `-- -k order`).
# BLACKBOX_ENV names the env file(s) with the app's signing keys (set here for the started
# shapes), so the tests can call /internal/... routes with service tokens.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
python=${PYTHON:-python3}
"$python" -c 'import pytest' 2>/dev/null || "$python" -m pip install -q 'pytest>=7' >&2

mode=url
case "${1:-}" in
  --single) mode=single; shift ;;
  --scaled) mode=scaled; shift ;;
esac
base=${BASE_URL:-http://127.0.0.1:3000}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then base=$1; shift; fi
[ "${1:-}" = "--" ] && shift

if [ "$mode" != url ]; then
  if [ "$mode" = single ]; then
    export SCALED_RUN_DIR=${SCALED_RUN_DIR:-$root/.spin/blackbox-single} APP_INSTANCES=1 KV_BACKEND=sqlite
    export SCALED_PORT_BASE=${SCALED_PORT_BASE:-27000}
  else
    export SCALED_RUN_DIR=${SCALED_RUN_DIR:-$root/.spin/blackbox-scaled}
    export SCALED_PORT_BASE=${SCALED_PORT_BASE:-27500}
  fi
  export LISTEN=${LISTEN:-127.0.0.1:$((SCALED_PORT_BASE + 40))}
  trap 'tools/scaled/up.sh stop' EXIT
  tools/scaled/up.sh start
  base=$(tools/scaled/up.sh env | sed -n 's/^SCALED_BASE_URL=//p')
  if [ "$mode" = single ]; then
    # Straight to the one app process, no load balancer in between.
    base=http://127.0.0.1:$(tools/scaled/up.sh env | sed -n 's/^SCALED_APP_PORTS="\{0,1\}\([0-9]*\).*/\1/p')
  fi
  export BLACKBOX_ENV=$SCALED_RUN_DIR/secrets.env:$SCALED_RUN_DIR/topology.env
fi
echo "black-box tests against $base ($mode)" >&2
BASE_URL=$base "$python" -m pytest -q -p no:cacheprovider tests/blackbox "$@"

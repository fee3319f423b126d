#!/usr/bin/env bash
# The black-box HTTP tests (pytest, standard library HTTP client).
#   tests/blackbox/run.sh [BASE_URL]   against a running marketplace (default http://127.0.0.1:3000)
#   tests/blackbox/run.sh --scaled     start tools/scaled/up.sh, test through its load balancer, stop it
# Extra arguments after `--` go to pytest (e.g. `-- -k order`).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
"$python" -c 'import pytest' 2>/dev/null || "$python" -m pip install -q 'pytest>=7' >&2

scaled=0
if [ "${1:-}" = "--scaled" ]; then scaled=1; shift; fi
base=${BASE_URL:-http://127.0.0.1:3000}
if [ $# -gt 0 ] && [ "$1" != "--" ]; then base=$1; shift; fi
[ "${1:-}" = "--" ] && shift

if [ "$scaled" = 1 ]; then
  trap 'tools/scaled/up.sh stop' EXIT
  tools/scaled/up.sh start
  # shellcheck disable=SC1090
  base=$(tools/scaled/up.sh env | sed -n 's/^SCALED_BASE_URL=//p')
fi
echo "black-box tests against $base" >&2
BASE_URL=$base "$python" -m pytest -q -p no:cacheprovider tests/blackbox "$@"

#!/usr/bin/env bash
# The fault soak (docs/reliability.md): starts a private scaled topology (tools/scaled/up.sh with
# its own run directory and ports), runs tests/soak under load, stops everything it started.
#   tests/soak/run.sh [-- pytest args, e.g. -k redis]
# Knobs: SOAK_PORT_BASE (default 27000; LISTEN = base+40), PYTHON (default: the fuzz venv's).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
[ "${1:-}" = "--" ] && shift
venv=${FUZZ_VENV:-$HOME/.cache/marketplace-fuzz-venv}
if [ -z "${PYTHON:-}" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c 'import pytest' 2>/dev/null || "$venv/bin/pip" install -q 'pytest>=7' >&2
  PYTHON=$venv/bin/python
fi
command -v psql >/dev/null || { echo "psql missing (postgresql-client)" >&2; exit 1; }

export SCALED_RUN_DIR=$root/.spin/soak SCALED_PORT_BASE=${SOAK_PORT_BASE:-27000} APP_INSTANCES=2
export LISTEN=127.0.0.1:$((SCALED_PORT_BASE + 40))
cleanup() {
  # app-3 (the detour instance) is the tests' own; stop it too if a test left it behind.
  if [ -f "$SCALED_RUN_DIR/app-3.pid" ]; then
    pid=$(cat "$SCALED_RUN_DIR/app-3.pid")
    if { tr "\0" " " < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$SCALED_RUN_DIR"; then kill "$pid" || true; fi
  fi
  tools/scaled/up.sh stop
}
trap cleanup EXIT
tools/scaled/up.sh start
"$PYTHON" -m pytest -q -s -p no:cacheprovider tests/soak "$@"

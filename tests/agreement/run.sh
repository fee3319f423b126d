#!/usr/bin/env bash
# The agreement test: the test host and real Spin serve the same probe app and must answer
# the same requests the same way (tests/agreement/README.md).
#   tests/agreement/run.sh [pytest args…]      (`make agreement` builds first, then runs this)
# Needs target/debug/spin-test-host and target/wasm32-wasip2/release/probe_component.wasm
# (`make build`) and the Spin CLI (../shared/spin/spin, `spin` on PATH, or SPIN_BIN).
# PostgreSQL, Redis and both runtimes are started by the pytest session (conftest.py) on free
# ports in 30000-30999, in a fresh directory under /tmp, and stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
"$python" -c 'import pytest' 2>/dev/null || "$python" -m pip install -q 'pytest>=7' >&2
command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2
exec "$python" -m pytest -p no:cacheprovider -rxXfE tests/agreement "$@"

#!/usr/bin/env bash
# `make bench`: starts the scaled topology (tools/scaled/up.sh) on ports of its own, its app
# instances on real Spin (tools/dev/runtime.sh), seeds it, starts the project's test host beside
# them on the same stores, measures every scenario and ceiling on both (bench/bench.py), writes
# BENCHMARKS.md and bench/results/*.json, and stops what it started.
# Knobs: BENCH_DURATION (s per run, default 15), BENCH_CONNECTIONS (32), BENCH_PRODUCTS
# (100000), BENCH_BUYERS (10000), BENCH_PORT_BASE (26600), BENCH_LISTEN (127.0.0.1:26650),
# BENCH_RUN_DIR (.spin/bench), BENCH_HOST=0 (Spin only), USE_TEST_HOST=1 (the test host only),
# HOST_BIN; BENCH_SCENARIOS, BENCH_RESULTS and BENCH_REPORT for development runs (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python3}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
[ -f /usr/share/dict/words ] || missing+=(wamerican)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
"$python" -c 'import argon2' 2>/dev/null || "$python" -m pip install -q argon2-cffi >&2

export SCALED_RUN_DIR=${BENCH_RUN_DIR:-$root/.spin/bench}
export SCALED_PORT_BASE=${BENCH_PORT_BASE:-26600}
export LISTEN=${BENCH_LISTEN:-127.0.0.1:26650}
export HOST_BIN=${HOST_BIN:-$root/target/debug/spin-test-host}
RUNTIME=$(tools/dev/runtime.sh)
export RUNTIME
echo "[bench] app instances: $RUNTIME ($("$RUNTIME" --version 2>/dev/null || echo test host))" >&2
# As deployed (the SpinKube shim sets no RUST_BACKTRACE): with RUST_BACKTRACE=1 (set on the
# development machines) Spin captures a backtrace for every internal error value, ~10 % more
# CPU per request on the constant component (0.30 vs 0.27 ms, measured).
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export SPIN_VARIABLE_ADMIN_EMAILS=${SPIN_VARIABLE_ADMIN_EMAILS:-admin@marketplace.test}

trap 'tools/scaled/up.sh stop' EXIT
tools/scaled/up.sh start
"$python" bench/bench.py

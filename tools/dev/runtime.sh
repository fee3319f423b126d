#!/usr/bin/env bash
# Prints the command that serves the app: the real Spin CLI by default (`spin` on PATH, else
# ../shared/spin/spin beside the checkout), the project's test host only with USE_TEST_HOST=1.
# Both take the same `up -f … --listen … --runtime-config-file …` arguments.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -n "${USE_TEST_HOST:-}" ]; then
  echo "${HOST_BIN:-$root/target/debug/spin-test-host}"
elif command -v spin >/dev/null 2>&1; then
  command -v spin
elif [ -x "$root/../shared/spin/spin" ]; then
  echo "$(cd "$root/../shared/spin" && pwd)/spin"
else
  echo "no Spin CLI: put spin on PATH (or ../shared/spin/spin), or set USE_TEST_HOST=1" >&2
  exit 1
fi

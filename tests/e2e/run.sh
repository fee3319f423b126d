#!/usr/bin/env bash
# The storefront's journeys in a real headless Chromium (Debian's `chromium`, driven by
# playwright-core; no browser download) against a private app on real Spin: one instance,
# SQLite key-value files, ports from E2E_PORT_BASE (default 32000: +1..+4 PostgreSQL, +21 the
# app, +50 the listener), state in E2E_RUN_DIR (default .spin/e2e). Installs what it needs,
# starts the app, runs `node --test`, saves screenshots under tests/e2e/artifacts/, stops it all.
# The journeys read and edit the storefront's session records in the SQLite file of
# `web-sessions` (E2E_SESSIONS_DB) to expire sessions and tokens without waiting 15 minutes.
#
#   tests/e2e/run.sh            (make e2e builds the components first; 1 to 3 minutes)
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)

log() { printf '[e2e] %s\n' "$*" >&2; }

# Only what is missing: a machine may have Node.js from another source (NodeSource's nodejs
# ships npm and conflicts with Debian's npm package, so asking for both fails the install).
missing=()
for pair in chromium:chromium node:nodejs npm:npm sqlite3:sqlite3; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  log "installing playwright-core and axe-core (npm ci; it downloads no browser)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
fi

base=${E2E_PORT_BASE:-32000}
export SCALED_RUN_DIR=${E2E_RUN_DIR:-$root/.spin/e2e} SCALED_PORT_BASE=$base APP_INSTANCES=1 KV_BACKEND=sqlite
export LISTEN=127.0.0.1:$((base + 50))
up="$root/tools/scaled/up.sh"
trap '"$up" stop >/dev/null 2>&1 || true' EXIT
log "starting the app on real Spin ($SCALED_RUN_DIR)"
"$up" start

eval "$("$up" env | grep '^SCALED_APP_PORTS=')"
port=${SCALED_APP_PORTS%% *}
export E2E_BASE_URL=http://127.0.0.1:$port
log "storefront at $E2E_BASE_URL"

rm -rf "$here/artifacts"
mkdir -p "$here/artifacts"
status=0
node --test --test-concurrency=1 journeys.test.mjs || status=$?
if [ "$status" != 0 ]; then
  log "failed; the app's log:"
  tail -30 "$SCALED_RUN_DIR/app-1.log" >&2 || true
  tail -30 "$root/.spin/logs/web_stderr.txt" >&2 2>/dev/null || true
fi
exit "$status"

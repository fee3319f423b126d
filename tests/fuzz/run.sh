#!/usr/bin/env bash
# Schemathesis against every service's OpenAPI document (docs/reliability.md).
#   tests/fuzz/run.sh [--quick]           start a private topology (tools/scaled/up.sh, one app
#                                         instance, own ports and run dir), fuzz it, stop it
#   FUZZ_BASE_URL=http://... FUZZ_ENV=... tests/fuzz/run.sh   against a running one
# Knobs: FUZZ_MAX_EXAMPLES (default 40; --quick 10), FUZZ_SERVICES (default all four),
# FUZZ_PHASES (default examples,coverage,fuzzing), FUZZ_SEED, FUZZ_PORT_BASE (default 28000).
# Checks: not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance. Reports land in $FUZZ_REPORT_DIR (default .spin/fuzz-report).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
quick=0
[ "${1:-}" = "--quick" ] && quick=1
venv=${FUZZ_VENV:-$HOME/.cache/marketplace-fuzz-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4.3,<5' >&2
fi
if [ "$quick" = 1 ]; then examples=${FUZZ_MAX_EXAMPLES:-10}; else examples=${FUZZ_MAX_EXAMPLES:-40}; fi
services=${FUZZ_SERVICES:-users products orders deliveries}
phases=${FUZZ_PHASES:-examples,coverage,fuzzing}
report=${FUZZ_REPORT_DIR:-$root/.spin/fuzz-report}
mkdir -p "$report"

if [ -z "${FUZZ_BASE_URL:-}" ]; then
  export SCALED_RUN_DIR=$root/.spin/fuzz SCALED_PORT_BASE=${FUZZ_PORT_BASE:-28000} APP_INSTANCES=1
  export LISTEN=127.0.0.1:$((SCALED_PORT_BASE + 40))
  trap '"$root/tools/scaled/up.sh" stop || true' EXIT
  tools/scaled/up.sh start
  export FUZZ_BASE_URL=http://$LISTEN
  export FUZZ_ENV=$SCALED_RUN_DIR/secrets.env:$SCALED_RUN_DIR/topology.env
fi
: "${FUZZ_ENV:?FUZZ_ENV: the env file(s) holding the signing keys}"
export SCHEMATHESIS_HOOKS=$root/tests/fuzz/hooks.py
# Schemathesis keeps its state in ./.schemathesis: keep it out of the checkout.
cd "$report"

status=0
for svc in $services; do
  echo "== schemathesis: /api/$svc/openapi.json ($examples examples per operation)" >&2
  "$venv/bin/schemathesis" run "$FUZZ_BASE_URL/api/$svc/openapi.json" \
    --url "$FUZZ_BASE_URL" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases "$phases" --max-examples "$examples" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
    --workers 1 --request-timeout 30 --suppress-health-check all --no-color \
    --report junit --report-junit-path "$report/$svc.xml" \
    || status=1
done
exit $status

#!/usr/bin/env bash
# Smoke test of a deployed environment through its public ingress.
#   smoke.sh https://api.staging.marketplace.example.com
# Checks: every service's healthz, readyz (databases answer) and OpenAPI document; a public
# read path of the catalog; the storefront's health, home page and stylesheet; and that
# /internal/... is not reachable from outside (the storefront answers it with 404).
set -euo pipefail
base=${1:?base URL}
fail=0
check() { # check METHOD PATH EXPECTED_STATUS
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 40 -X "$1" "$base$2" || echo 000)
  if [ "$code" = "$3" ]; then echo "ok   $1 $2 -> $code"; else echo "FAIL $1 $2 -> $code (want $3)"; fail=1; fi
}
for prefix in users products orders deliveries; do
  check GET "/api/$prefix/healthz" 200   # user may cold-start here: --max-time covers it
  check GET "/api/$prefix/readyz" 200
  check GET "/api/$prefix/openapi.json" 200
done
check GET "/api/products?limit=1" 200
check GET /api/auth/jwks 200
check GET /api/web/healthz 200         # web may cold-start here too
check GET / 200
check GET /static/style.css 200
check POST /internal/orders/outbox/relay 404
check POST /internal/products/reservations 404
exit "$fail"

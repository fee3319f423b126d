#!/usr/bin/env bash
# Prints the image tag the environment's cluster runs now (from the product SpinApp), so the
# deploy workflow can record the last known-good release before it changes anything.
#   current-tag.sh            (kubectl pointing at the cluster)
set -euo pipefail
image=$(kubectl -n marketplace get spinapp product -o jsonpath='{.spec.image}' 2>/dev/null || true)
[ -n "$image" ] || { echo "none"; exit 0; }
echo "${image##*:}"

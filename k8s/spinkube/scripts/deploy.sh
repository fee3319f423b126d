#!/usr/bin/env bash
# Deploy one release (one image tag for all seven images) to an environment, in the order that
# keeps the running version serving: data layer and config first, then migrations, then apps.
#
#   deploy.sh ENVIRONMENT TAG [--dry-run]      ENVIRONMENT: staging | production
#
# TAG is the commit SHA the deploy workflow pushed every image under. The same command rolls
# back: deploy.sh production <previous tag> (see docs/deploy.md, "Rolling back").
# Needs kubectl >= 1.31 pointing at the environment's cluster; secrets bootstrapped once with
# create-secrets.sh --env ENVIRONMENT bootstrap.
set -euo pipefail

env=${1:?environment (staging|production)}
tag=${2:?image tag}
dry_run=${3:-}
case "$env" in staging|production) ;; *) echo "unknown environment $env" >&2; exit 2 ;; esac
if ! [[ "$tag" =~ ^[0-9a-f]{7,40}$|^v?[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "tag $tag is neither a commit SHA nor a version" >&2; exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
spinkube=$(cd "$here/.." && pwd)
registry=${IMAGE_REGISTRY:-ghcr.io/marketplace}
NS=marketplace

# A throwaway kustomization on top of the overlay that only pins the tag.
release=$(mktemp -d "$spinkube/.release-XXXXXX")
trap 'rm -rf "$release"' EXIT
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources: [../overlays/$env]"
  echo "images:"
  for img in user product order delivery web migrate relay; do
    echo "  - {name: ghcr.io/marketplace/marketplace-$img, newName: $registry/marketplace-$img, newTag: \"$tag\"}"
  done
} > "$release/kustomization.yaml"
kubectl kustomize "$release" > "$release/rendered.yaml"
echo "rendered $env at $tag: $(grep -c '^kind:' "$release/rendered.yaml") objects"
if [ "$dry_run" = --dry-run ]; then
  cat "$release/rendered.yaml"
  exit 0
fi

apply() { kubectl apply -f "$release/rendered.yaml" --selector "$1"; }

# 1. Everything but the apps and the migration Jobs: namespaces, config, databases, Redis,
#    policies, scalers, ingress, CronJobs.
apply 'app.kubernetes.io/component notin (api,migration)'
kubectl -n "$NS" wait --for=condition=Ready cluster.postgresql.cnpg.io --all --timeout=15m
kubectl -n marketplace-orders wait --for=condition=Ready cluster.postgresql.cnpg.io --all --timeout=15m
for s in redis-users redis-products-0 redis-products-1 redis-deliveries-0 redis-deliveries-1 redis-web; do
  kubectl -n "$NS" rollout status "statefulset/$s" --timeout=10m
done

# 2. Connection strings from CloudNativePG's generated credentials (follows password rotation),
#    with the environment's sslmode (overlays/$env/transport.env).
"$here/create-secrets.sh" --env "$env" db-urls

# 3. Migrations (expand-only: the running release must keep working on the new schema).
kubectl -n "$NS" delete job --selector app.kubernetes.io/component=migration --ignore-not-found --wait=true
apply 'app.kubernetes.io/component=migration'
if ! kubectl -n "$NS" wait --for=condition=complete job --selector app.kubernetes.io/component=migration --timeout=15m; then
  kubectl -n "$NS" logs --selector app.kubernetes.io/component=migration --tail=50 || true
  echo "migrations failed: the apps were not touched" >&2
  exit 1
fi

# 4. The SpinApps; the operator rolls their Deployments (readiness-gated, one pod at a time).
apply 'app.kubernetes.io/component=api'
for svc in user product order delivery web; do
  # Give the operator a moment to update the Deployment before watching it.
  kubectl -n "$NS" wait --for=jsonpath='{.spec.template.spec.containers[0].image}'="$registry/marketplace-$svc:$tag" \
    "deployment/$svc" --timeout=3m
  kubectl -n "$NS" rollout status "deployment/$svc" --timeout=10m
done
echo "deployed $env at $tag"

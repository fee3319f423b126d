#!/usr/bin/env bash
# Creates the Secrets (and the public-key ConfigMap) the manifests reference but never contain.
# Nothing secret is written to disk or to the repository; values go straight to the cluster.
#
#   create-secrets.sh bootstrap   # once per cluster: namespaces, JWT and service keys, Redis
#                                 # password, runtime-config Secrets. Skips what exists.
#   create-secrets.sh db-urls     # after the CloudNativePG clusters are ready (deploy.sh runs it
#                                 # on every deploy): connection strings from the <cluster>-app
#                                 # Secrets CloudNativePG generates. Idempotent.
#   create-secrets.sh rotate-keys # new JWT and service key pairs; the public-key ConfigMap lists
#                                 # the new and the old keys, so tokens signed before stay valid
#                                 # until they expire. Then restart: kubectl -n marketplace
#                                 # rollout restart deployment user product order delivery
#
# Needs kubectl (pointing at the cluster), openssl and base64. An external secret manager
# (External Secrets Operator, Sealed Secrets, ...) may create the same objects instead: see
# docs/deploy.md, "Secrets and keys", for the names and keys.
set -euo pipefail

NS=marketplace
ORDERS_NS=marketplace-orders
here=$(cd "$(dirname "$0")" && pwd)
rc_dir="$here/../runtime-config"

b64url() { base64 | tr -d '\n=' | tr '+/' '-_'; }
exists() { kubectl -n "$NS" get "$1" "$2" >/dev/null 2>&1; }
apply_secret() { # apply_secret NAME --from-literal=... (stdin-free, shows no values)
  local name=$1; shift
  kubectl -n "$NS" create secret generic "$name" "$@" --dry-run=client -o yaml \
    | kubectl label --local -f - app.kubernetes.io/part-of=marketplace -o yaml \
    | kubectl apply -f - >/dev/null
  echo "secret/$name applied"
}

# new_keypair -> sets SEED (base64url 32 bytes) and PUB (base64url 32 bytes)
new_keypair() {
  local der
  der=$(openssl genpkey -algorithm ed25519 -outform DER | base64 | tr -d '\n')
  # PKCS#8 DER of an Ed25519 key ends with the 32-byte seed.
  SEED=$(printf '%s' "$der" | base64 -d | tail -c 32 | b64url)
  PUB=$(printf '%s' "$der" | base64 -d | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | b64url)
}

kid() { echo "k$(date -u +%Y%m%d%H%M%S)"; }

write_keys() { # write_keys KEEP_OLD(0|1)
  local keep_old=$1 k old_jwt="" old_svc=""
  if [ "$keep_old" = 1 ] && exists configmap marketplace-public-keys; then
    old_jwt=$(kubectl -n "$NS" get configmap marketplace-public-keys -o jsonpath='{.data.jwt_public_keys}')
    old_svc=$(kubectl -n "$NS" get configmap marketplace-public-keys -o jsonpath='{.data.service_public_keys}')
  fi
  k=$(kid)
  new_keypair; apply_secret marketplace-jwt --from-literal=signing_key="$k:$SEED"; local jwt_pub="$k:$PUB"
  new_keypair; apply_secret order-service-key --from-literal=signing_key="$k:$SEED"; local order_pub="order:$k:$PUB"
  new_keypair; apply_secret delivery-service-key --from-literal=signing_key="$k:$SEED"; local delivery_pub="delivery:$k:$PUB"
  # Newest first; old keys stay listed until removed by hand after the token lifetimes (15 min
  # for access tokens, 60 s for service tokens).
  kubectl -n "$NS" create configmap marketplace-public-keys \
    --from-literal=jwt_public_keys="$jwt_pub${old_jwt:+,$old_jwt}" \
    --from-literal=service_public_keys="$order_pub,$delivery_pub${old_svc:+,$old_svc}" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  echo "configmap/marketplace-public-keys applied"
  unset SEED PUB
}

bootstrap() {
  for ns in "$NS" "$ORDERS_NS"; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  done
  if exists secret marketplace-jwt; then echo "keys exist: kept (use rotate-keys to replace them)"; else write_keys 0; fi
  local pw
  if exists secret redis-auth; then
    pw=$(kubectl -n "$NS" get secret redis-auth -o jsonpath='{.data.password}' | base64 -d)
    echo "secret/redis-auth exists: kept"
  else
    pw=$(openssl rand -hex 32)  # hex: safe in a URL without encoding
    apply_secret redis-auth --from-literal=password="$pw"
  fi
  local svc
  for svc in user product delivery; do
    # The template carries ${REDIS_PASSWORD}; substitute in memory only (the password is hex).
    apply_secret "$svc-runtime-config" \
      --from-literal=runtime-config.toml="$(sed "s|\${REDIS_PASSWORD}|$pw|g" "$rc_dir/$svc.toml")"
  done
}

# app_url CLUSTER NAMESPACE SERVICE_SUFFIX -> postgres URL with the generated app password
app_url() {
  local cluster=$1 ns=$2 suffix=$3 user pw
  user=$(kubectl -n "$ns" get secret "$cluster-app" -o jsonpath='{.data.username}' | base64 -d)
  pw=$(kubectl -n "$ns" get secret "$cluster-app" -o jsonpath='{.data.password}' | base64 -d \
       | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))')
  # sslmode=disable: see the comment at the top of base/postgres.yaml.
  echo "postgres://$user:$pw@$cluster-$suffix.$ns.svc.cluster.local:5432/app?sslmode=disable"
}

db_urls() {
  local c
  for c in user-db product-db; do
    kubectl -n "$NS" wait --for=create "secret/$c-app" --timeout=10m >/dev/null
  done
  for c in order-db-0 order-db-1; do
    kubectl -n "$ORDERS_NS" wait --for=create "secret/$c-app" --timeout=10m >/dev/null
  done
  apply_secret user-db-url --from-literal=url="$(app_url user-db "$NS" rw)"
  apply_secret product-db-url \
    --from-literal=url="$(app_url product-db "$NS" rw)" \
    --from-literal=replica_urls="$(app_url product-db "$NS" ro)"
  local s0 s1
  s0=$(app_url order-db-0 "$ORDERS_NS" rw)
  s1=$(app_url order-db-1 "$ORDERS_NS" rw)
  # order_db_urls: position = physical shard index. Never reorder: orders would move shards.
  apply_secret order-db-urls --from-literal=urls="$s0,$s1" \
    --from-literal=shard_0_url="$s0" --from-literal=shard_1_url="$s1"
}

case "${1:-}" in
  bootstrap) bootstrap ;;
  db-urls) db_urls ;;
  rotate-keys) write_keys 1 ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac

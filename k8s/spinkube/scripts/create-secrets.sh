#!/usr/bin/env bash
# Creates the Secrets (and the public-key ConfigMap) the manifests reference but never contain.
# Nothing secret is written to disk, to the repository or onto a command line: values travel in
# the environment of one python3 process that prints the object for `kubectl apply -f -`.
#
#   create-secrets.sh --env ENV bootstrap  # once per cluster: namespaces, JWT, service and relay
#                                          # keys, one password per Redis instance, runtime-config
#                                          # Secrets (redis:// or rediss:// per transport.env).
#                                          # Skips what exists.
#   create-secrets.sh --env ENV db-urls    # after the CloudNativePG clusters are ready (deploy.sh
#                                          # runs it on every deploy): connection strings from the
#                                          # <cluster>-app Secrets, sslmode per transport.env.
#   create-secrets.sh rotate-keys          # new JWT, service and relay key pairs; the public-key
#                                          # ConfigMap lists the new keys first and keeps every old
#                                          # one, so tokens signed before stay valid until revoked.
#   create-secrets.sh revoke KID           # removes every public key with that kid from every
#                                          # trust list (jwt_public_keys, service_public_keys);
#                                          # refuses the kid the Secrets sign with now.
#   create-secrets.sh list-keys            # the kids in the trust lists, newest first.
# After rotate-keys or revoke, restart: kubectl -n marketplace rollout restart deployment
#   user product order delivery web    (the relay CronJobs read their key on every run)
#
# ENV (staging | production, or $MARKETPLACE_ENV) selects k8s/spinkube/overlays/ENV/transport.env:
# redis_scheme (redis | rediss) and pg_sslmode (disable | require | verify-full; see
# docs/deploy.md, "TLS"). Needs kubectl (pointing at the cluster), openssl and python3.
# An external secret manager may create the same objects instead: docs/deploy.md, "Secrets and
# keys", lists the names and keys.
set -euo pipefail

NS=marketplace
ORDERS_NS=marketplace-orders
here=$(cd "$(dirname "$0")" && pwd)
rc_dir="$here/../runtime-config"
overlays="$here/../overlays"
# Every Redis instance (base/redis.yaml) has its own password, Secret redis-<instance>-auth.
REDIS_INSTANCES=(redis-users redis-products-0 redis-products-1 redis-deliveries-0 redis-deliveries-1 redis-web)
# The services with key-value stores, each with runtime-config/<svc>.toml.
KV_SERVICES=(user product delivery web)

env_name=${MARKETPLACE_ENV:-}
if [ "${1:-}" = --env ]; then env_name=${2:?--env needs staging or production}; shift 2; fi

b64url() { base64 | tr -d '\n=' | tr '+/' '-_'; }
exists() { kubectl -n "$1" get "$2" "$3" >/dev/null 2>&1; }
jsonpath() { kubectl -n "$1" get "$2" "$3" -o "jsonpath={.data.$4}"; }

transport() { # transport KEY -> value from overlays/$env_name/transport.env
  case "$env_name" in staging|production) ;; *) echo "create-secrets.sh: --env staging|production (or MARKETPLACE_ENV) is required for this command" >&2; exit 2 ;; esac
  local v
  v=$(sed -n "s/^$1=//p" "$overlays/$env_name/transport.env")
  [ -n "$v" ] || { echo "create-secrets.sh: no $1 in $overlays/$env_name/transport.env" >&2; exit 2; }
  printf '%s' "$v"
}

# apply_object KIND NAMESPACE NAME KEY... : the object's data values are read from the
# environment variables V_<KEY> (non-alphanumerics as _), exported for the python3 process only.
apply_object() {
  local kind=$1 ns=$2 name=$3; shift 3
  python3 - "$kind" "$ns" "$name" "$@" <<'PY' | kubectl apply -f - >/dev/null
import base64, json, os, re, sys
kind, ns, name, keys = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
val = lambda k: os.environ["V_" + re.sub(r"[^A-Za-z0-9]", "_", k)]
obj = {"apiVersion": "v1", "kind": kind,
       "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "marketplace"}}}
if kind == "Secret":
    obj["type"] = "Opaque"
    obj["data"] = {k: base64.b64encode(val(k).encode()).decode() for k in keys}
else:
    obj["data"] = {k: val(k) for k in keys}
print(json.dumps(obj))
PY
  echo "${kind,,}/$name applied"
}

# new_keypair -> sets SEED (base64url 32 bytes) and PUB (base64url 32 bytes)
new_keypair() {
  local der
  der=$(openssl genpkey -algorithm ed25519 -outform DER | base64 | tr -d '\n')
  # PKCS#8 DER of an Ed25519 key ends with the 32-byte seed.
  SEED=$(printf '%s' "$der" | base64 -d | tail -c 32 | b64url)
  PUB=$(printf '%s' "$der" | base64 -d | openssl pkey -inform DER -pubout -outform DER | tail -c 32 | b64url)
}

# A new kid per rotation: time plus randomness, so two rotations never share one.
kid() { echo "k$(date -u +%Y%m%d%H%M%S)$(openssl rand -hex 3)"; }

# The four signing identities and their Secrets: user (access tokens), order, delivery, relay.
SIGNERS=(marketplace-jwt order-service-key delivery-service-key relay-service-key)

write_keys() { # write_keys KEEP_OLD(0|1)
  local keep_old=$1 k old_jwt="" old_svc=""
  if [ "$keep_old" = 1 ] && exists "$NS" configmap marketplace-public-keys; then
    old_jwt=$(jsonpath "$NS" configmap marketplace-public-keys jwt_public_keys)
    old_svc=$(jsonpath "$NS" configmap marketplace-public-keys service_public_keys)
  fi
  k=$(kid)
  local jwt_pub svc_pub="" s svc
  for s in "${SIGNERS[@]}"; do
    new_keypair
    V_signing_key="$k:$SEED" apply_object Secret "$NS" "$s" signing_key
    case "$s" in
      marketplace-jwt) jwt_pub="$k:$PUB" ;;
      *) svc=${s%-service-key}; svc_pub="${svc_pub:+$svc_pub,}$svc:$k:$PUB" ;;
    esac
  done
  unset SEED PUB
  # Newest first; every old key stays listed until `revoke` removes it (after the longest token
  # lifetime: 15 min for access tokens, 60 s for service tokens).
  V_jwt_public_keys="$jwt_pub${old_jwt:+,$old_jwt}" V_service_public_keys="$svc_pub${old_svc:+,$old_svc}" \
    apply_object ConfigMap "$NS" marketplace-public-keys jwt_public_keys service_public_keys
  echo "signing keys now: kid $k"
}

current_kids() { # the kids the Secrets sign with now, one a line
  local s
  for s in "${SIGNERS[@]}"; do
    if exists "$NS" secret "$s"; then jsonpath "$NS" secret "$s" signing_key | base64 -d | cut -d: -f1; fi
  done | sort -u
}

revoke() { # revoke KID
  local kid=${1:?revoke needs a kid (create-secrets.sh list-keys shows them)}
  [[ "$kid" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "revoke: $kid is not a kid" >&2; exit 2; }
  if current_kids | grep -qxF "$kid"; then
    echo "revoke: $kid is the kid the Secrets sign with now: run rotate-keys first, restart, then revoke it" >&2
    exit 1
  fi
  exists "$NS" configmap marketplace-public-keys || { echo "revoke: no configmap/marketplace-public-keys" >&2; exit 1; }
  local jwt svc out
  jwt=$(jsonpath "$NS" configmap marketplace-public-keys jwt_public_keys)
  svc=$(jsonpath "$NS" configmap marketplace-public-keys service_public_keys)
  # jwt_public_keys entries are kid:pub, service_public_keys entries service:kid:pub.
  out=$(V_JWT="$jwt" V_SVC="$svc" python3 - "$kid" <<'PY'
import os, sys
kid = sys.argv[1]
jwt = [e for e in os.environ["V_JWT"].split(",") if e.strip()]
svc = [e for e in os.environ["V_SVC"].split(",") if e.strip()]
keep_jwt = [e for e in jwt if e.strip().split(":")[0] != kid]
keep_svc = [e for e in svc if (e.strip().split(":") + [""])[1] != kid]
removed = (len(jwt) - len(keep_jwt)) + (len(svc) - len(keep_svc))
print(removed)
print(",".join(keep_jwt))
print(",".join(keep_svc))
PY
)
  local removed new_jwt new_svc
  { read -r removed; read -r new_jwt; read -r new_svc; } <<<"$out"
  if [ "$removed" = 0 ]; then echo "revoke: no key with kid $kid in the trust lists" >&2; exit 1; fi
  if [ -z "$new_jwt" ] || [ -z "$new_svc" ]; then echo "revoke: refusing to empty a trust list" >&2; exit 1; fi
  V_jwt_public_keys="$new_jwt" V_service_public_keys="$new_svc" \
    apply_object ConfigMap "$NS" marketplace-public-keys jwt_public_keys service_public_keys
  echo "revoked $kid: $removed public keys removed from jwt_public_keys and service_public_keys"
  echo "restart to take effect: kubectl -n $NS rollout restart deployment user product order delivery web"
}

list_keys() {
  local jwt svc
  jwt=$(jsonpath "$NS" configmap marketplace-public-keys jwt_public_keys)
  svc=$(jsonpath "$NS" configmap marketplace-public-keys service_public_keys)
  echo "signing now: $(current_kids | tr '\n' ' ')"
  echo "jwt_public_keys: $(tr ',' '\n' <<<"$jwt" | cut -d: -f1 | tr '\n' ' ')"
  echo "service_public_keys: $(tr ',' '\n' <<<"$svc" | cut -d: -f1,2 | tr '\n' ' ')"
}

# runtime_config SVC SCHEME -> the runtime config of SVC with each URL's password (that of the
# instance the URL names) and scheme filled in. Passwords come from V_REDIS_PW_<instance>.
runtime_config() {
  python3 - "$rc_dir/$1.toml" "$2" <<'PY'
import os, re, sys, urllib.parse
text, scheme = open(sys.argv[1]).read(), sys.argv[2]
def fill(m):
    host = m.group(1)
    instance = host.split(".")[0]
    pw = os.environ.get("V_REDIS_PW_" + instance.replace("-", "_"))
    if pw is None:
        sys.exit(f"no password for Redis instance {instance!r} (runtime config {sys.argv[1]})")
    return f'{scheme}://:{urllib.parse.quote(pw, safe="")}@{host}'
out, n = re.subn(r'redis://:\$\{REDIS_PASSWORD\}@([a-z0-9.-]+:\d+)', fill, text)
if n == 0 or re.search(r"^[^#]*\$\{", out, re.M):
    sys.exit(f"{sys.argv[1]}: no redis://:${{REDIS_PASSWORD}}@host:port URL to fill")
sys.stdout.write(out)
PY
}

bootstrap() {
  local scheme ns
  scheme=$(transport redis_scheme)
  case "$scheme" in redis|rediss) ;; *) echo "redis_scheme must be redis or rediss" >&2; exit 2 ;; esac
  for ns in "$NS" "$ORDERS_NS"; do
    python3 -c 'import json,sys; print(json.dumps({"apiVersion":"v1","kind":"Namespace","metadata":{"name":sys.argv[1]}}))' "$ns" \
      | kubectl apply -f - >/dev/null
  done
  if exists "$NS" secret marketplace-jwt; then
    echo "keys exist: kept (use rotate-keys to replace them)"
    # Clusters bootstrapped before the relay had its own identity: give it one now.
    exists "$NS" secret relay-service-key || echo "warning: no secret/relay-service-key: run rotate-keys" >&2
  else
    write_keys 0
  fi
  local inst var pw
  for inst in "${REDIS_INSTANCES[@]}"; do
    var="V_REDIS_PW_${inst//-/_}"
    if exists "$NS" secret "$inst-auth"; then
      pw=$(jsonpath "$NS" secret "$inst-auth" password | base64 -d)
      echo "secret/$inst-auth exists: kept"
    else
      pw=$(openssl rand -hex 32)  # hex: safe in a URL and in redis.conf without quoting
      V_password="$pw" V_auth_conf="requirepass $pw" apply_object Secret "$NS" "$inst-auth" password auth.conf
    fi
    printf -v "$var" '%s' "$pw"
    export "${var?}"
  done
  local svc cfg
  for svc in "${KV_SERVICES[@]}"; do
    cfg=$(runtime_config "$svc" "$scheme")
    V_runtime_config_toml="$cfg" apply_object Secret "$NS" "$svc-runtime-config" runtime-config.toml
  done
  for inst in "${REDIS_INSTANCES[@]}"; do unset "V_REDIS_PW_${inst//-/_}"; done
}

# app_url CLUSTER NAMESPACE SERVICE_SUFFIX SSLMODE -> postgres URL with the generated password
app_url() {
  local cluster=$1 ns=$2 suffix=$3 mode=$4 user
  user=$(jsonpath "$ns" secret "$cluster-app" username | base64 -d)
  jsonpath "$ns" secret "$cluster-app" password | base64 -d | python3 -c '
import sys, urllib.parse
user, host, mode = sys.argv[1:4]
pw = urllib.parse.quote(sys.stdin.read(), safe="")
print(f"postgres://{user}:{pw}@{host}:5432/app?sslmode={mode}")' "$user" "$cluster-$suffix.$ns.svc.cluster.local" "$mode"
}

db_urls() {
  local mode c
  mode=$(transport pg_sslmode)
  case "$mode" in
    disable) ;;
    # tokio-postgres (Spin's client and marketplace-migrate's) parses disable|prefer|require
    # only, and its `require` verifies the chain and the host name (native-tls / rustls), which
    # is libpq's verify-full. So verify-full is written as `require` for these clients.
    require|verify-full) mode=require ;;
    *) echo "pg_sslmode must be disable, require or verify-full" >&2; exit 2 ;;
  esac
  for c in user-db product-db; do
    kubectl -n "$NS" wait --for=create "secret/$c-app" --timeout=10m >/dev/null
  done
  for c in order-db-0 order-db-1; do
    kubectl -n "$ORDERS_NS" wait --for=create "secret/$c-app" --timeout=10m >/dev/null
  done
  local u r s0 s1
  u=$(app_url user-db "$NS" rw "$mode")
  V_url="$u" apply_object Secret "$NS" user-db-url url
  u=$(app_url product-db "$NS" rw "$mode")
  r=$(app_url product-db "$NS" ro "$mode")
  V_url="$u" V_replica_urls="$r" apply_object Secret "$NS" product-db-url url replica_urls
  s0=$(app_url order-db-0 "$ORDERS_NS" rw "$mode")
  s1=$(app_url order-db-1 "$ORDERS_NS" rw "$mode")
  # order_db_urls: position = physical shard index. Never reorder: orders would move shards.
  V_urls="$s0,$s1" V_shard_0_url="$s0" V_shard_1_url="$s1" \
    apply_object Secret "$NS" order-db-urls urls shard_0_url shard_1_url
}

case "${1:-}" in
  bootstrap) bootstrap ;;
  db-urls) db_urls ;;
  rotate-keys) write_keys 1 ;;
  revoke) revoke "${2:-}" ;;
  list-keys) list_keys ;;
  *) sed -n '2,27p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Prepare the build context of each service image: target/images/<svc>/ holding exactly the
# per-service spin.toml (that component, its triggers, the variables it uses) and its component
# marketplace_<svc>.wasm. Then build/push with images/<svc>/Dockerfile or `spin registry push`
# (docs/deploy.md, "Images").
#
#   images/build.sh [--placeholder-wasm] [--out DIR] [SERVICE...]    (default: all five)
#
# A missing target/wasm32-wasip2/release/marketplace_<svc>.wasm is built with
# `cargo build --target wasm32-wasip2 --release -p marketplace-<svc>`. With --placeholder-wasm
# a missing one is replaced by an empty WebAssembly component instead (8 bytes): enough for the
# layout check in tests/deploy/validate.sh, never for an image that is pushed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/images"
placeholder=0
services=()
while [ $# -gt 0 ]; do
  case "$1" in
    --placeholder-wasm) placeholder=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    user|product|order|delivery|web) services+=("$1") ;;
    *) echo "images/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ ${#services[@]} -gt 0 ] || services=(user product order delivery web)

for svc in "${services[@]}"; do
  wasm="$root/target/wasm32-wasip2/release/marketplace_${svc}.wasm"
  ctx="$out/$svc"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  python3 "$root/images/service_manifest.py" "$root/spin.toml" "$svc" > "$ctx/spin.toml"
  if [ ! -f "$wasm" ]; then
    if [ "$placeholder" = 1 ]; then
      # "\0asm" + component-model layer header: the smallest valid (empty) component.
      printf '\000asm\015\000\001\000' > "$ctx/marketplace_${svc}.wasm"
      echo "images/build.sh: $svc: placeholder component (layout check only)" >&2
      continue
    fi
    echo "images/build.sh: building marketplace-$svc for wasm32-wasip2" >&2
    (cd "$root" && cargo build --target wasm32-wasip2 --release -p "marketplace-$svc")
  fi
  cp "$wasm" "$ctx/marketplace_${svc}.wasm"
  echo "images/build.sh: $svc -> $ctx" >&2
done

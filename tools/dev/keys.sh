#!/usr/bin/env bash
# Prints a fresh Ed25519 key as `SEED PUBLIC`, both base64url without padding (32 bytes each),
# the formats of the signing-key and public-key variables (docs/conventions.md).
set -euo pipefail
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
pem=$(openssl genpkey -algorithm ed25519 2>/dev/null)
seed=$(printf '%s\n' "$pem" | openssl pkey -outform DER 2>/dev/null | tail -c 32 | b64url)
public=$(printf '%s\n' "$pem" | openssl pkey -pubout -outform DER 2>/dev/null | tail -c 32 | b64url)
echo "$seed $public"

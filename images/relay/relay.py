#!/usr/bin/env python3
"""Trigger one outbox relay run: POST <url> with a freshly signed service token.

    relay.py --url http://order.marketplace.svc.cluster.local/internal/orders/outbox/relay \
             --service relay --audience order --signing-key-file /var/run/secrets/marketplace/signing_key

The key file holds `kid:base64url(32-byte Ed25519 seed)`: the relay's own key (Secret
relay-service-key), never a service's. The token follows docs/conventions.md: EdDSA JWT,
iss = sub = the caller identity (`relay`), role = "service", aud = the callee, 60 s lifetime,
random jti. The callees trust `relay:<kid>:<pub>` in service_public_keys and accept that
identity on their relay route only. Exit 0 on a 2xx answer, 1 otherwise (the CronJob
shows it as a failed Job; the next run retries, relays are idempotent).
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TOKEN_LIFETIME = 60


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    kid, sep, seed = text.strip().partition(":")
    if not sep or not kid:
        raise ValueError("signing key must be `kid:base64url(seed)`")
    raw = b64url_decode(seed)
    if len(raw) != 32:
        raise ValueError("signing key seed must be 32 bytes")
    return kid, Ed25519PrivateKey.from_private_bytes(raw)


def service_token(kid: str, key: Ed25519PrivateKey, service: str, audience: str, now: int | None = None) -> str:
    now = int(time.time()) if now is None else now
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    claims = {"iss": service, "sub": service, "aud": audience, "role": "service",
              "iat": now, "exp": now + TOKEN_LIFETIME, "jti": str(uuid.uuid4())}
    signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Trigger an outbox relay run with a service token.")
    ap.add_argument("--url", required=True)
    ap.add_argument("--service", required=True, help="caller identity (iss, sub): relay")
    ap.add_argument("--audience", required=True, help="callee service (aud)")
    ap.add_argument("--signing-key-file", required=True)
    ap.add_argument("--timeout", type=float, default=45.0)
    args = ap.parse_args(argv)

    try:
        with open(args.signing_key_file, encoding="utf-8") as f:
            kid, key = parse_key(f.read())
    except (OSError, ValueError) as e:
        print(f"relay: cannot read the signing key: {e}", file=sys.stderr)
        return 1
    token = service_token(kid, key, args.service, args.audience)
    req = urllib.request.Request(args.url, data=b"{}", method="POST", headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    })
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            body = resp.read(4096).decode(errors="replace")
            print(f"relay: {args.url} -> {resp.status} {body}")
            return 0
    except urllib.error.HTTPError as e:
        body = e.read(4096).decode(errors="replace")
        print(f"relay: {args.url} -> {e.code} {body}", file=sys.stderr)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        print(f"relay: {args.url} unreachable: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Ed25519 JWTs minted from the topology's own keys (`secrets.env` of tools/scaled/up.sh).

Signing uses the `openssl` CLI (raw seed wrapped in PKCS#8), so no Python crypto package is
needed. Access tokens look exactly like the user service's; service tokens like the order
and delivery services' (`iss` = `sub` = calling service, `aud` = callee, `role: service`).
"""

import atexit
import base64
import json
import os
import subprocess
import tempfile
import time
import uuid

# PKCS#8 prefix of an Ed25519 private key; the 32-byte seed follows.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def read_env(path):
    """KEY=VALUE lines (quotes stripped) of an env file."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            env[k] = v.strip().strip('"')
    return env


class Signer:
    """One `kid:base64url(seed)` signing key."""

    def __init__(self, config: str):
        kid, seed = config.split(":", 1)
        self.kid = kid.strip()
        der = _PKCS8_PREFIX + _b64url_decode(seed.strip())
        fd, self._der_path = tempfile.mkstemp(prefix="mp-key-", suffix=".der")
        with os.fdopen(fd, "wb") as f:
            f.write(der)
        atexit.register(self.close)

    def sign(self, claims: dict) -> str:
        header = {"alg": "EdDSA", "typ": "JWT", "kid": self.kid}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        # Ed25519 signs in one shot: openssl wants the message in a file, not a pipe.
        with tempfile.NamedTemporaryFile(prefix="mp-msg-") as msg:
            msg.write(signing_input.encode())
            msg.flush()
            sig = subprocess.run(
                ["openssl", "pkeyutl", "-sign", "-inkey", self._der_path, "-keyform", "DER",
                 "-rawin", "-in", msg.name],
                capture_output=True,
                check=True,
            ).stdout
        return signing_input + "." + _b64url(sig)

    def close(self):
        try:
            os.unlink(self._der_path)
        except OSError:
            pass


class Minter:
    """Access and service tokens for a running topology, from its env file(s)."""

    def __init__(self, env: dict):
        self.env = env
        self.user = Signer(env["SPIN_VARIABLE_JWT_SIGNING_KEY"])
        self.services = {
            "order": Signer(env["SPIN_VARIABLE_ORDER_SERVICE_SIGNING_KEY"]),
            "delivery": Signer(env["SPIN_VARIABLE_DELIVERY_SERVICE_SIGNING_KEY"]),
            # The outbox relay's own identity (the CronJobs'): only the relay routes accept it.
            "relay": Signer(env["RELAY_SIGNING_KEY"]),
        }
        self.issuer = env.get("SPIN_VARIABLE_JWT_ISSUER", "marketplace-user-service")
        self.audience = env.get("SPIN_VARIABLE_JWT_AUDIENCE", "marketplace")
        self._cache = {}

    def _cached(self, key, ttl, make):
        now = time.time()
        hit = self._cache.get(key)
        if hit and hit[0] > now + 5:
            return hit[1]
        tok = make(now, ttl)
        self._cache[key] = (now + ttl, tok)
        return tok

    def access(self, user_id: str, role: str, ttl: int = 600) -> str:
        def make(now, ttl):
            return self.user.sign({
                "sub": user_id, "role": role, "iss": self.issuer, "aud": self.audience,
                "iat": int(now), "exp": int(now) + ttl, "jti": str(uuid.uuid4()),
            })
        return self._cached(("access", user_id, role), ttl, make)

    def service(self, caller: str, callee: str, ttl: int = 60) -> str:
        def make(now, ttl):
            return self.services[caller].sign({
                "sub": caller, "role": "service", "iss": caller, "aud": callee,
                "iat": int(now), "exp": int(now) + ttl, "jti": str(uuid.uuid4()),
            })
        return self._cached(("service", caller, callee), ttl, make)

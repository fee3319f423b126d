#!/usr/bin/env python3
"""k8s/spinkube/scripts/create-secrets.sh against a fake kubectl (tests/deploy/fake_kubectl.py):

- bootstrap: four signing identities (user, order, delivery and the relay's own), one password
  per Redis instance, runtime configs whose URLs carry exactly their instance's password, with
  rediss:// in production and redis:// in staging; nothing secret on a kubectl command line;
- rotate-keys keeps every old public key; revoke KID removes it from every trust list, refuses
  the kid in use, and a token signed with the revoked key is refused by the resulting trust
  list (while it was accepted before the revoke) — checked with an Ed25519 verifier that reads
  the lists as the components do (`kid:pub` and `service:kid:pub`, lookup by kid and issuer);
- db-urls: sslmode per environment (require in production), password URL-encoded.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "k8s" / "spinkube" / "scripts" / "create-secrets.sh"
NS = "marketplace"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64ud(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(signing_key: str, claims: dict) -> str:
    kid, seed = signing_key.split(":", 1)
    key = Ed25519PrivateKey.from_private_bytes(b64ud(seed))
    head = b64u(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": kid}).encode())
    body = b64u(json.dumps(claims).encode())
    return f"{head}.{body}.{b64u(key.sign(f'{head}.{body}'.encode()))}"


def accepted(token: str, trust: str, service: bool) -> bool:
    """Verifies like marketplace_shared::tokens: the key is found by kid (and, for service
    tokens, by the issuing service), then the EdDSA signature must hold."""
    head_b64, body_b64, sig_b64 = token.split(".")
    kid = json.loads(b64ud(head_b64))["kid"]
    iss = json.loads(b64ud(body_b64))["iss"]
    for entry in filter(None, (e.strip() for e in trust.split(","))):
        parts = entry.split(":")
        if service:
            svc, k, pub = parts
            if (svc, k) != (iss, kid):
                continue
        else:
            k, pub = parts
            if k != kid:
                continue
        try:
            Ed25519PublicKey.from_public_bytes(b64ud(pub)).verify(b64ud(sig_b64), f"{head_b64}.{body_b64}".encode())
            return True
        except InvalidSignature:
            return False
    return False


class CreateSecretsTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="fake-kube-"))
        bin_dir = self.dir / "bin"
        bin_dir.mkdir()
        (bin_dir / "kubectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/deploy/fake_kubectl.py" "$@"\n')
        (bin_dir / "kubectl").chmod(0o755)
        self.env = dict(os.environ, FAKE_KUBE_DIR=str(self.dir), PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.env.pop("MARKETPLACE_ENV", None)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def run_script(self, *args, ok=True) -> subprocess.CompletedProcess:
        p = subprocess.run(["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120)
        if ok and p.returncode != 0:
            self.fail(f"create-secrets.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def obj(self, kind: str, name: str, ns: str = NS) -> dict:
        return json.loads((self.dir / ns / kind / f"{name}.json").read_text())

    def secret(self, name: str, key: str, ns: str = NS) -> str:
        return base64.b64decode(self.obj("Secret", name, ns)["data"][key]).decode()

    def trust(self) -> tuple[str, str]:
        d = self.obj("ConfigMap", "marketplace-public-keys")["data"]
        return d["jwt_public_keys"], d["service_public_keys"]

    def secrets_never_on_a_command_line(self):
        calls = (self.dir / "calls.log").read_text()
        for f in (self.dir / NS / "Secret").glob("*.json"):
            for v in json.loads(f.read_text())["data"].values():
                value = base64.b64decode(v).decode()
                for piece in re.split(r"[\s:@,/=]", value):
                    if len(piece) >= 20:
                        self.assertNotIn(piece, calls, f"a value of {f.stem} was on a kubectl command line")

    # ---------------------------------------------------------------- bootstrap
    def test_bootstrap_gives_each_redis_its_own_password_and_production_tls(self):
        self.run_script("--env", "production", "bootstrap")
        instances = ["redis-users", "redis-products-0", "redis-products-1", "redis-deliveries-0",
                     "redis-deliveries-1", "redis-web"]
        pw = {i: self.secret(f"{i}-auth", "password") for i in instances}
        self.assertEqual(len(set(pw.values())), len(instances), "one password per instance")
        for i in instances:
            self.assertEqual(self.secret(f"{i}-auth", "auth.conf"), f"requirepass {pw[i]}")
        for svc, want in {"user": {"redis-users"}, "product": {"redis-products-0", "redis-products-1"},
                          "delivery": {"redis-deliveries-0", "redis-deliveries-1"}, "web": {"redis-web"}}.items():
            cfg = self.secret(f"{svc}-runtime-config", "runtime-config.toml")
            urls = re.findall(r'url = "([^"]+)"', cfg)
            self.assertTrue(urls, svc)
            seen = set()
            for u in urls:
                m = re.fullmatch(r"rediss://:([0-9a-f]{64})@([a-z0-9-]+)\.marketplace\.svc\.cluster\.local:6379", u)
                self.assertIsNotNone(m, f"{svc}: {u}")
                self.assertEqual(m.group(1), pw[m.group(2)], f"{svc}: URL of {m.group(2)} carries another password")
                seen.add(m.group(2))
            self.assertEqual(seen, want, svc)
            for other in set(instances) - want:
                self.assertNotIn(pw[other], cfg, f"{svc} holds {other}'s password")
        jwt, svc_keys = self.trust()
        self.assertEqual(sorted(e.split(":")[0] for e in svc_keys.split(",")), ["delivery", "order", "relay"])
        self.assertEqual(len(jwt.split(",")), 1)
        for s in ("marketplace-jwt", "order-service-key", "delivery-service-key", "relay-service-key"):
            self.assertRegex(self.secret(s, "signing_key"), r"^k[0-9a-f]+:[A-Za-z0-9_-]{43}$")
        self.secrets_never_on_a_command_line()
        # Re-running keeps everything (bootstrap is idempotent).
        before = {i: pw[i] for i in instances}
        self.run_script("--env", "production", "bootstrap")
        self.assertEqual({i: self.secret(f"{i}-auth", "password") for i in instances}, before)

    def test_staging_runtime_configs_are_plain_redis(self):
        self.run_script("--env", "staging", "bootstrap")
        cfg = self.secret("user-runtime-config", "runtime-config.toml")
        self.assertIn('url = "redis://:', cfg)
        self.assertNotIn('url = "rediss://', cfg)

    def test_bootstrap_needs_an_environment(self):
        p = self.run_script("bootstrap", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--env", p.stderr)

    # ---------------------------------------------------------------- rotate, revoke
    def test_rotate_then_revoke_refuses_tokens_of_the_old_key(self):
        self.run_script("--env", "production", "bootstrap")
        old = {s: self.secret(s, "signing_key") for s in ("marketplace-jwt", "relay-service-key", "order-service-key")}
        old_kid = old["marketplace-jwt"].split(":")[0]
        now = int(time.time())
        old_access = sign(old["marketplace-jwt"], {"iss": "marketplace-user-service", "sub": str(uuid.uuid4()),
                                                   "aud": "marketplace", "role": "buyer", "iat": now, "exp": now + 900})
        old_relay = sign(old["relay-service-key"], {"iss": "relay", "sub": "relay", "aud": "order", "role": "service",
                                                     "iat": now, "exp": now + 60})
        old_order = sign(old["order-service-key"], {"iss": "order", "sub": "order", "aud": "product", "role": "service",
                                                     "iat": now, "exp": now + 60})

        self.run_script("rotate-keys")
        new_kid = self.secret("marketplace-jwt", "signing_key").split(":")[0]
        self.assertNotEqual(new_kid, old_kid)
        jwt, svc = self.trust()
        # Rotation appends: the new keys first, every old one still there.
        self.assertEqual([e.split(":")[0] for e in jwt.split(",")], [new_kid, old_kid])
        self.assertEqual(sorted(e.split(":")[1] for e in svc.split(",")), sorted([new_kid] * 3 + [old_kid] * 3))
        self.assertTrue(accepted(old_access, jwt, service=False))
        self.assertTrue(accepted(old_relay, svc, service=True))
        self.assertTrue(accepted(old_order, svc, service=True))

        # The kid in use cannot be revoked (every token would be refused).
        p = self.run_script("revoke", new_kid, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("the Secrets sign with now", p.stderr)
        self.assertEqual(self.trust(), (jwt, svc))

        out = self.run_script("revoke", old_kid).stdout
        self.assertIn(f"revoked {old_kid}: 4 public keys removed", out)
        jwt, svc = self.trust()
        self.assertNotIn(old_kid, jwt + svc)
        self.assertEqual(jwt.split(",")[0].split(":")[0], new_kid)
        self.assertEqual(sorted(e.split(":")[0] for e in svc.split(",")), ["delivery", "order", "relay"])
        self.assertFalse(accepted(old_access, jwt, service=False), "access token of the revoked key accepted")
        self.assertFalse(accepted(old_relay, svc, service=True), "relay token of the revoked key accepted")
        self.assertFalse(accepted(old_order, svc, service=True), "service token of the revoked key accepted")
        new_relay = sign(self.secret("relay-service-key", "signing_key"),
                         {"iss": "relay", "sub": "relay", "aud": "delivery", "role": "service", "iat": now, "exp": now + 60})
        self.assertTrue(accepted(new_relay, svc, service=True))
        # A relay token never passes as order's: the lookup is by issuing service and kid.
        forged = sign(self.secret("relay-service-key", "signing_key"),
                      {"iss": "order", "sub": "order", "aud": "product", "role": "service", "iat": now, "exp": now + 60})
        self.assertFalse(accepted(forged, svc, service=True))

        p = self.run_script("revoke", old_kid, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no key with kid", p.stderr)
        self.assertIn(new_kid, self.run_script("list-keys").stdout)
        self.secrets_never_on_a_command_line()

    # ---------------------------------------------------------------- db-urls
    def test_db_urls_use_the_environments_sslmode(self):
        for ns, cluster in ((NS, "user-db"), (NS, "product-db"), ("marketplace-orders", "order-db-0"),
                            ("marketplace-orders", "order-db-1")):
            d = self.dir / ns / "Secret"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{cluster}-app.json").write_text(json.dumps({"kind": "Secret", "metadata": {"name": f"{cluster}-app"}, "data": {
                "username": base64.b64encode(b"app").decode(), "password": base64.b64encode(b"p@ss/w:rd").decode()}}))
        for env, mode in (("production", "require"), ("staging", "disable")):
            self.run_script("--env", env, "db-urls")
            url = self.secret("user-db-url", "url")
            self.assertEqual(url, f"postgres://app:p%40ss%2Fw%3Ard@user-db-rw.marketplace.svc.cluster.local:5432/app?sslmode={mode}")
            urls = self.secret("order-db-urls", "urls").split(",")
            self.assertEqual([u.split("@")[1].split(".")[0] for u in urls], ["order-db-0-rw", "order-db-1-rw"])
            self.assertTrue(all(u.endswith(f"sslmode={mode}") for u in urls))
            self.assertIn("product-db-ro", self.secret("product-db-url", "replica_urls"))
        self.secrets_never_on_a_command_line()


if __name__ == "__main__":
    unittest.main(verbosity=2)

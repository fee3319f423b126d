#!/usr/bin/env python3
"""The outbox relay trigger (images/relay/relay.py) sends a service token the services accept:
EdDSA over the header and claims, signed with the relay's own seed, iss = sub = "relay",
aud = callee, role service, 60 s lifetime. Runs against a local HTTP server on 127.0.0.1.
Also: the CronJobs in the rendered manifests run it as `relay` and mount only the relay's key
(relay-service-key), never the order or delivery signing keys."""
from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "images" / "relay"))
sys.path.insert(0, str(ROOT / "tests" / "deploy"))
import relay  # noqa: E402


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []
    status = 200

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self.send_response(Recorder.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"relayed": 0}')

    def log_message(self, *args):
        pass


class RelayTest(unittest.TestCase):
    def setUp(self):
        self.key = Ed25519PrivateKey.generate()
        seed = self.key.private_bytes_raw()
        self.keyfile = tempfile.NamedTemporaryFile("w", delete=False)
        self.keyfile.write("k1:" + base64.urlsafe_b64encode(seed).rstrip(b"=").decode() + "\n")
        self.keyfile.close()
        Recorder.seen = []
        Recorder.status = 200
        self.server = HTTPServer(("127.0.0.1", 0), Recorder)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/internal/orders/outbox/relay"

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        Path(self.keyfile.name).unlink()

    def run_relay(self):
        return relay.main(["--url", self.url, "--service", "relay", "--audience", "order",
                           "--signing-key-file", self.keyfile.name, "--timeout", "5"])

    def test_posts_a_token_signed_with_the_relays_own_key(self):
        self.assertEqual(self.run_relay(), 0)
        (req,) = Recorder.seen
        self.assertEqual(req["path"], "/internal/orders/outbox/relay")
        scheme, token = req["auth"].split(" ", 1)
        self.assertEqual(scheme, "Bearer")
        h, c, s = token.split(".")
        self.key.public_key().verify(b64d(s), f"{h}.{c}".encode())  # raises if forged
        header, claims = json.loads(b64d(h)), json.loads(b64d(c))
        self.assertEqual(header, {"alg": "EdDSA", "typ": "JWT", "kid": "k1"})
        self.assertEqual((claims["iss"], claims["sub"], claims["aud"], claims["role"]),
                         ("relay", "relay", "order", "service"))
        self.assertEqual(claims["exp"] - claims["iat"], 60)
        self.assertTrue(claims["jti"])

    def test_a_refused_relay_fails_the_job(self):
        Recorder.status = 403
        self.assertEqual(self.run_relay(), 1)

    def test_a_malformed_key_fails_without_calling(self):
        Path(self.keyfile.name).write_text("no-colon-here")
        self.assertEqual(self.run_relay(), 1)
        self.assertEqual(Recorder.seen, [])


@unittest.skipUnless(os.environ.get("KUSTOMIZE_LIB"), "needs the kustomize library (validate.sh sets it)")
class CronJobTest(unittest.TestCase):
    """The relay CronJobs as rendered: identity `relay`, the relay's key only."""

    def test_cronjobs_sign_as_relay_with_the_relay_key_only(self):
        import kustomize
        import yaml
        docs = [d for d in yaml.safe_load_all(kustomize.build(str(ROOT / "k8s/spinkube/overlays/production"))) if d]
        jobs = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "CronJob"}
        self.assertEqual(sorted(jobs), ["delivery-outbox-relay", "order-outbox-relay"])
        for name, job in jobs.items():
            callee = name.split("-")[0]
            spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            (c,) = spec["containers"]
            args = c["args"]
            self.assertEqual(args[args.index("--service") + 1], "relay", name)
            self.assertEqual(args[args.index("--audience") + 1], callee, name)
            self.assertIn(f"/internal/{callee}s/outbox/relay" if callee == "order" else
                          "/internal/deliveries/outbox/relay", args[args.index("--url") + 1])
            secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            secrets |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                        if "secretKeyRef" in (e.get("valueFrom") or {})}
            self.assertEqual(secrets, {"relay-service-key"}, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The soak's world: users and products on the topology tools/scaled/up.sh started
(tests/soak/run.sh starts it with a run directory and ports of its own)."""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from load import Client  # noqa: E402
from tokens import Minter  # noqa: E402
from topology import ENV, log  # noqa: E402

PASSWORD = "soak password 0123456"


class World:
    def __init__(self):
        self.hostport = ENV["SCALED_BASE_URL"].split("//", 1)[1]
        self.mint = Minter(ENV)
        c = Client(self.hostport)
        admin_email = ENV.get("SPIN_VARIABLE_ADMIN_EMAILS", "admin@marketplace.test").split(",")[0]
        self.admin = self._register(c, admin_email, "buyer", ok=(201, 409))
        self.sellers = [self._register(c, None, "seller") for _ in range(2)]
        self.buyers = [self._register(c, None, "buyer") for _ in range(8)]
        self.carrier = self._register(c, None, "buyer")
        s, doc = c.request("PUT", f"/api/users/{self.carrier}/role", {"role": "carrier"},
                           token=self.admin_token())
        assert s == 200, (s, doc)
        self.category = f"soak-{uuid.uuid4().hex[:8]}"
        self.initial_stock = {}
        for i in range(8):
            stock = 100000 if i < 6 else 40  # two products run out: 409s, no overselling
            s, doc = c.request("POST", "/api/products", {
                "title": f"Soak item {i}", "description": "Stock under faults.",
                "category": self.category, "price_cents": 500 + i, "currency": "EUR",
                "stock": stock}, token=self.mint.access(self.sellers[i % 2], "seller"))
            assert s == 201, (s, doc)
            self.initial_stock[doc["id"]] = stock
        self.products = list(self.initial_stock)
        log(f"world: {len(self.buyers)} buyers, {len(self.products)} products on {self.hostport}")

    def _register(self, c, email, role, ok=(201,)):
        email = email or f"soak-{role}-{uuid.uuid4().hex[:10]}@soak.test"
        s, doc = c.request("POST", "/api/auth/register", {
            "email": email, "password": PASSWORD, "display_name": f"soak {role}", "role": role})
        assert s in ok, (s, doc)
        if s == 409:
            s, doc = c.request("POST", "/api/auth/login", {"email": email, "password": PASSWORD})
            assert s == 200, (s, doc)
            doc = doc["user"]
        return doc["id"]

    def token(self, user):
        return self.mint.access(user, "buyer")

    def carrier_token(self):
        return self.mint.access(self.carrier, "carrier")

    def admin_token(self):
        return self.mint.access(self.admin, "admin")


@pytest.fixture(scope="session")
def world():
    return World()

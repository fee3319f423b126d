"""Schemathesis hooks: every operation gets the token of the caller it is meant for.

Loaded with SCHEMATHESIS_HOOKS=tests/fuzz/hooks.py by tests/fuzz/run.sh. Needs FUZZ_BASE_URL
and FUZZ_ENV (the topology's env files, colon-separated: signing keys and admin email).

Users are registered for real (buyer, seller, carrier, admin), so their ids exist; their
access tokens are then minted with the topology's signing key (no login per case, no login
throttling). Internal endpoints get service tokens of the service that really calls them.
"""

import itertools
import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid

import schemathesis

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
from tokens import Minter, read_env  # noqa: E402

BASE = os.environ["FUZZ_BASE_URL"].rstrip("/")
ENV = {}
for path in os.environ["FUZZ_ENV"].split(":"):
    ENV.update(read_env(path))
MINT = Minter(ENV)
ADMIN_EMAIL = ENV.get("SPIN_VARIABLE_ADMIN_EMAILS", "admin@marketplace.test").split(",")[0]
PASSWORD = "fuzzing password 0123"


def _call(method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _user(role, email=None):
    email = email or f"fuzz-{role}-{uuid.uuid4().hex[:10]}@fuzz.test"
    reg_role = role if role in ("buyer", "seller") else "buyer"
    status, body = _call("POST", "/api/auth/register",
                         {"email": email, "password": PASSWORD, "display_name": f"fuzz {role}",
                          "role": reg_role})
    if status == 409:  # the admin of an earlier run
        status, body = _call("POST", "/api/auth/login", {"email": email, "password": PASSWORD})
        assert status == 200, (status, body)
        body = body["user"]
    assert status in (200, 201), (status, body)
    return body["id"]


ADMIN_ID = _user("admin", ADMIN_EMAIL)
USERS = {
    "admin": ADMIN_ID,
    "buyer": _user("buyer"),
    "seller": _user("seller"),
    "carrier": _user("carrier"),
}
_call("PUT", f"/api/users/{USERS['carrier']}/role", {"role": "carrier"},
      token=MINT.access(ADMIN_ID, "admin"))

# (method regex, path regex, who): the first match decides.
RULES = [
    (r".*", r"^/internal/products/", ("service", "order", "product")),
    (r".*", r"^/internal/orders/outbox/relay$", ("service", "relay", "order")),
    (r".*", r"^/internal/orders/", ("service", "delivery", "order")),
    (r".*", r"^/internal/deliveries/outbox/relay$", ("service", "relay", "delivery")),
    (r".*", r"^/internal/deliveries", ("service", "order", "delivery")),
    (r"POST", r"^/api/deliveries/[^/]+/events$", ("user", "carrier")),
    (r".*", r"^/api/deliveries", ("user", "admin")),
    (r".*", r"^/api/orders", ("user", "buyer")),
    (r"POST|PATCH|DELETE", r"^/api/products", ("user", "seller")),
    (r".*", r"^/api/users/(me)", ("user", "buyer")),
    (r".*", r"^/api/users/", ("user", "admin")),
]


def token_for(method, path):
    for m, p, who in RULES:
        if re.match(m, method, re.I) and re.match(p, path):
            if who[0] == "service":
                return MINT.service(who[1], who[2])
            return MINT.access(USERS[who[1]], who[1])
    return None


@schemathesis.auth(refresh_interval=None)
class RoleAuth:
    def get(self, case, context):
        return token_for(context.operation.method.upper(), context.operation.path)

    def set(self, case, data, context):
        if data:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"


# Real resources, so that half of the generated ids reach past the 404 into the handlers.
def _resources():
    seller = MINT.access(USERS["seller"], "seller")
    buyer = MINT.access(USERS["buyer"], "buyer")
    products = []
    for i in range(3):
        status, p = _call("POST", "/api/products", {
            "title": f"Fuzz lamp {i}", "description": "A lamp for fuzzing.", "category": "home",
            "price_cents": 1000 + i, "currency": "EUR", "stock": 100000,
            "attributes": {"color": "red"}}, token=seller)
        assert status == 201, (status, p)
        products.append(p["id"])
    req = urllib.request.Request(
        BASE + "/api/orders", method="POST",
        data=json.dumps({"items": [{"product_id": products[0], "quantity": 1}],
                         "shipping_address": {"name": "F", "line1": "1 Fuzz St", "city": "Berlin",
                                              "postal_code": "10115", "country": "DE"}}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {buyer}",
                 "idempotency-key": str(uuid.uuid4())})
    with urllib.request.urlopen(req, timeout=30) as r:
        order = json.loads(r.read())
    shipment = tracking = None
    status, page = _call("GET", f"/api/deliveries?order_id={order['id']}",
                         token=MINT.access(ADMIN_ID, "admin"))
    if status == 200 and page["items"]:
        shipment = page["items"][0]["id"]
        tracking = page["items"][0]["tracking_number"]
    return {
        "product": products, "order": [order["id"]], "shipment": [shipment] if shipment else [],
        "tracking": [tracking] if tracking else [], "user": list(USERS.values()),
    }


REAL = _resources()
PARAM_KINDS = [
    (r"^/api/products/\{id\}", "id", "product"),
    (r"^/(api|internal)/orders/\{id\}", "id", "order"),
    (r"^/internal/products/reservations/", "reservation_id", "order"),
    (r"^/api/deliveries/track/", "tracking_number", "tracking"),
    (r"^/api/deliveries/\{id\}", "id", "shipment"),
    (r"^/api/users/\{id\}", "id", "user"),
]


_TURN = itertools.count()


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    # Every other case of an operation with an id gets a real one (a counter, not `random`:
    # Hypothesis wants its draws reproducible).
    path = context.operation.path
    for pattern, name, kind in PARAM_KINDS:
        if re.match(pattern, path) and name in (path_parameters or {}) and REAL[kind]:
            turn = next(_TURN)
            if turn % 2 == 0:
                path_parameters[name] = REAL[kind][(turn // 2) % len(REAL[kind])]
            break
    return path_parameters

"""Black-box contract tests: real HTTP against a running marketplace (../shared/API.md).

    BASE_URL=http://127.0.0.1:3000 python3 -m pytest tests/blackbox
    (or tests/blackbox/run.sh --single | --scaled, `make blackbox BASE_URL=...`)

The marketplace under test must name ADMIN_EMAIL (default admin@marketplace.test) in its
`admin_emails` variable: the tests make carriers through the admin API. Every test makes
users and products of its own (unique emails, made-up title words), so the suite can run
against a marketplace that already holds data, and more than once.

BLACKBOX_ENV (colon-separated env files, set by run.sh for the shapes it starts) names the
app's signing keys; only the tests of /internal/... routes with service tokens (and of
expired access tokens) need it, and they skip without it.

This file holds every shared helper: HTTP client, users, products, orders, shipments,
carrier events, token minting and small format checks.
"""

import base64
import datetime
import functools
import http.client
import json
import os
import random
import re
import sys
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
from tokens import Minter, Signer, read_env  # noqa: E402  (tests/soak/tokens.py)

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:3000").rstrip("/")
ADMIN_EMAIL = os.environ.get("ADMIN_EMAIL", "admin@marketplace.test")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "blackbox admin password 1")
PASSWORD = "correct horse battery staple"
TIMEOUT = float(os.environ.get("BLACKBOX_TIMEOUT", "30"))

SERVICES = ["users", "products", "orders", "deliveries"]
ROLES = ["buyer", "seller", "carrier", "admin"]
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Test Street",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
PROBLEM_TYPE = "application/problem+json"


# ---------------------------------------------------------------- ordering


LAST_FILE = "test_zz_address_limit.py"


def pytest_collection_modifyitems(items):
    """The per-address failed-login test fills the window of the one address every test
    comes from, which refuses every login from it for 5 minutes: it runs after everything
    else in any selection (its file name also sorts last)."""
    items[:] = sorted(items, key=lambda i: os.path.basename(i.nodeid.split("::")[0]) == LAST_FILE)


# ---------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, headers, body, elapsed=0.0):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:  # pragma: no cover - shows the body on failure
            raise AssertionError(f"body is not JSON ({e}): {self.body[:500]!r}")

    def expect(self, *statuses):
        assert self.status in statuses, (
            f"expected {' or '.join(map(str, statuses))}, got {self.status}; "
            f"body: {self.body[:1000]!r}"
        )
        return self

    def expect_problem(self, *statuses):
        """An RFC 9457 problem document with one of `statuses`; returns the document."""
        self.expect(*statuses)
        ctype = (self.header("content-type") or "").split(";")[0].strip()
        assert ctype == PROBLEM_TYPE, f"problem content type: {ctype!r}; body {self.body[:300]!r}"
        doc = self.json()
        assert doc.get("status") == self.status, f"problem status field: {doc}"
        assert isinstance(doc.get("type"), str) and isinstance(doc.get("title"), str), doc
        return doc

    def expect_unauthorized(self):
        doc = self.expect_problem(401)
        www = self.header("www-authenticate") or ""
        assert www.lower().startswith("bearer"), f"401 without WWW-Authenticate: Bearer ({www!r})"
        return doc

    def expect_invalid(self, *fields):
        """422 whose `errors` names every one of `fields`; returns `errors`."""
        doc = self.expect_problem(422)
        errors = doc.get("errors")
        assert isinstance(errors, dict) and errors, f"422 without `errors`: {doc}"
        for f in fields:
            assert names_field(errors, f), f"`errors` does not name {f!r}: {errors}"
        return errors


def names_field(errors, field):
    """True when a key of `errors` (a field name or JSON path such as `items[0].quantity`)
    names `field` (a name, or a dotted path like `shipping_address.city`)."""
    for key in errors:
        if key == field or field in key.split(".") or field in re.split(r"[.\[\]]+", key):
            return True
        if "." in field and field in key:
            return True
    return False


_BASE = urllib.parse.urlsplit(BASE_URL)


def request(method, path, body=None, token=None, headers=None, raw=None, timeout=TIMEOUT):
    """One HTTP request; never raises on an HTTP status. A connection the server dropped
    without an answer comes back as status 0 (so a test shows it instead of erroring)."""
    data = None
    hdrs = {"accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["content-type"] = "application/json"
    if raw is not None:
        data = raw
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    hdrs.update(headers or {})
    conn_cls = http.client.HTTPSConnection if _BASE.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(_BASE.hostname, _BASE.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        try:
            conn.request(method, _BASE.path.rstrip("/") + path, body=data, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the whole body was read (413): the answer is still there
        r = conn.getresponse()
        payload = r.read()
        got = {}
        for k, v in r.getheaders():
            got[k.lower()] = f"{got[k.lower()]}, {v}" if k.lower() in got else v
        return Response(r.status, got, payload, time.monotonic() - t0)
    except (http.client.HTTPException, OSError) as e:
        return Response(0, {}, f"connection failed: {e!r}".encode(), time.monotonic() - t0)
    finally:
        conn.close()


def get(path, token=None, headers=None, **kw):
    return request("GET", path, token=token, headers=headers, **kw)


def post(path, body=None, token=None, headers=None, **kw):
    return request("POST", path, body=body, token=token, headers=headers, **kw)


def patch(path, body=None, token=None, headers=None, **kw):
    return request("PATCH", path, body=body, token=token, headers=headers, **kw)


def put(path, body=None, token=None, headers=None, **kw):
    return request("PUT", path, body=body, token=token, headers=headers, **kw)


def delete(path, body=None, token=None, headers=None, **kw):
    return request("DELETE", path, body=body, token=token, headers=headers, **kw)


def qs(**params):
    """A query string (`?a=1&b=2`) of the non-None params."""
    params = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(params) if params else ""


def each(cases, check):
    """Runs check(case) for every case and fails once, naming every case that failed (one
    contract rule tried on many endpoints or inputs, with the whole picture on failure)."""
    failures = []
    for case in cases:
        try:
            check(case)
        except AssertionError as e:
            failures.append(f"- {case!r}: {str(e)[:400]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def concurrently(fns):
    """Runs the callables at the same time (one thread each); returns their results in order."""
    with ThreadPoolExecutor(len(fns)) as ex:
        return list(ex.map(lambda f: f(), fns))


def eventually(fn, what, timeout=10.0):
    """Polls fn() until it returns a truthy value (asynchronous steps: relay, outbox, replica)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@functools.lru_cache(maxsize=None)
def openapi(svc):
    """The OpenAPI document a service serves at /api/<svc>/openapi.json."""
    return get(f"/api/{svc}/openapi.json").expect(200).json()


def documented_statuses(svc, path, method):
    op = openapi(svc).get("paths", {}).get(path, {}).get(method.lower(), {})
    return set(op.get("responses", {}))


# ---------------------------------------------------------------- formats


def is_uuid(s):
    try:
        return str(uuid.UUID(s)) == s.lower()
    except (ValueError, AttributeError, TypeError):
        return False


# RFC 3339 in UTC (the contract's timestamps are UTC strings).
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def is_rfc3339(s):
    return isinstance(s, str) and bool(RFC3339.match(s))


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def rfc3339(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_ms(dt):
    dt = dt.astimezone(datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def fresh_time(shipment):
    """An occurred_at newer than everything a fresh shipment holds (its creation included)."""
    return rfc3339_ms(max(datetime.datetime.now(datetime.timezone.utc),
                          parse_time(shipment["updated_at"]) + datetime.timedelta(seconds=1)))


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token):
    """(header, claims, signing input, signature) of a compact JWS."""
    h, c, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(c)), f"{h}.{c}", b64url_decode(s)


def unknown_key_signer():
    """A signer with a fresh Ed25519 key that no service trusts."""
    seed = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    return Signer(f"bb-unknown:{seed}")


# ---------------------------------------------------------------- users


def unique_email(prefix="user"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}@blackbox.test"


def register(role="buyer", email=None, password=PASSWORD, display_name=None, **extra):
    """POST /api/auth/register; returns (email, response)."""
    email = email or unique_email(role)
    body = {"email": email, "password": password,
            "display_name": display_name or f"{role} {email[:8]}"}
    if role is not None:
        body["role"] = role
    body.update(extra)
    return email, post("/api/auth/register", body)


_failed_logins = []


def login_response(email, password=PASSWORD):
    r = post("/api/auth/login", {"email": email, "password": password})
    if r.status == 401:
        _failed_logins.append(email)
    return r


def failed_logins():
    """How many logins of this session were answered 401 (wrong password or unknown email).
    Every black-box request comes from one client address, and the user service allows that
    address 50 failed logins per 5 minutes (components/user/README.md): test_zz_address_limit.py
    uses the rest of that budget, so the other tests must leave room (it checks)."""
    return len(_failed_logins)


def login(email, password=PASSWORD):
    return login_response(email, password).expect(200).json()


def refresh(refresh_token):
    return post("/api/auth/refresh", {"refresh_token": refresh_token})


class User:
    def __init__(self, email, session, password=PASSWORD):
        self.email = email
        self.password = password
        self.session = session
        self.token = session["access_token"]
        self.refresh_token = session["refresh_token"]
        self.id = session["user"]["id"]
        self.role = session["user"]["role"]
        self.at = time.monotonic()

    def __repr__(self):
        return f"User({self.role} {self.email})"


_admin = {}


def admin_user():
    """The bootstrap admin (ADMIN_EMAIL in admin_emails), logged in once per ~10 minutes."""
    u = _admin.get("user")
    if u and time.monotonic() - u.at < 600:
        return u
    _, r = register("buyer", email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    assert r.status in (201, 409), f"admin registration: {r.status} {r.body[:300]!r}"
    s = login_response(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert s.status == 200, (
        f"cannot log in as {ADMIN_EMAIL} ({s.status} {s.body[:200]!r}): start the marketplace "
        f"with SPIN_VARIABLE_ADMIN_EMAILS={ADMIN_EMAIL} on a fresh user database, or set "
        "ADMIN_EMAIL/ADMIN_PASSWORD"
    )
    u = User(ADMIN_EMAIL, s.json(), ADMIN_PASSWORD)
    assert u.role == "admin", (
        f"{ADMIN_EMAIL} is not an admin: start the marketplace with "
        f"SPIN_VARIABLE_ADMIN_EMAILS={ADMIN_EMAIL}"
    )
    _admin["user"] = u
    return u


def set_role(user_id, role):
    return put(f"/api/users/{user_id}/role", {"role": role}, token=admin_user().token)


def new_user(role="buyer", password=PASSWORD):
    """A fresh, logged-in account of any of the four roles (carriers and admins are made
    through PUT /api/users/{id}/role by the bootstrap admin)."""
    email, r = register(role if role in ("buyer", "seller") else "buyer", password=password)
    r.expect(201)
    if role not in ("buyer", "seller"):
        set_role(r.json()["id"], role).expect(200)
    u = User(email, login(email, password), password)
    assert u.role == role, (u.role, role)
    return u


@pytest.fixture
def buyer():
    return new_user("buyer")


@pytest.fixture
def other_buyer():
    return new_user("buyer")


@pytest.fixture
def seller():
    return new_user("seller")


@pytest.fixture
def other_seller():
    return new_user("seller")


@pytest.fixture(scope="session")
def shared_seller():
    """A seller for tests that do not care whose products are whose (each still makes its
    own products with made-up words)."""
    return new_user("seller")


@pytest.fixture(scope="session")
def carrier():
    """Carriers may act on every shipment, so one per run is enough."""
    return new_user("carrier")


@pytest.fixture
def admin():
    return admin_user()


# ---------------------------------------------------------------- service tokens


@functools.lru_cache(maxsize=None)
def _minter():
    paths = [p for p in os.environ.get("BLACKBOX_ENV", "").split(":") if p]
    if not paths:
        return None
    env = {}
    for p in paths:
        env.update(read_env(p))
    return Minter(env)


@pytest.fixture
def mint():
    """Mints service tokens (and access tokens) from the app's own keys (BLACKBOX_ENV)."""
    m = _minter()
    if m is None:
        pytest.skip("BLACKBOX_ENV is unset: no signing keys to mint service tokens with "
                    "(tests/blackbox/run.sh --single/--scaled sets it)")
    return m


# ---------------------------------------------------------------- catalog


def word():
    """A made-up word no stemmer changes, to find exactly our products by full text."""
    return "zq" + "".join(random.choice("bcdfghjkmnpvwxz") for _ in range(8))


def product_body(**over):
    body = {
        "title": f"Blackbox {word()} lamp",
        "description": "A sturdy reading lamp with a brass arm and a linen shade.",
        "category": "home",
        "price_cents": 2599,
        "currency": "EUR",
        "stock": 10,
        "attributes": {"color": "brass", "watts": 40, "dimmable": True},
    }
    body.update(over)
    return body


def create_product(seller, **over):
    """POST /api/products (expects 201); returns the product."""
    return post("/api/products", product_body(**over), token=seller.token).expect(201).json()


def product(pid, token=None):
    return get(f"/api/products/{pid}", token=token).expect(200).json()


def stock_of(pid):
    return product(pid)["stock"]


def search(token=None, **params):
    """GET /api/products with query params (expects 200); returns the page."""
    return get("/api/products" + qs(**params), token=token).expect(200).json()


def ids(page_or_items):
    items = page_or_items["items"] if isinstance(page_or_items, dict) else page_or_items
    return [i["id"] for i in items]


def search_until(count, **params):
    """Search until it returns `count` items (search may read a lagging replica)."""
    return eventually(lambda: (lambda p: p if len(p["items"]) == count else None)(search(**params)),
                      f"{count} products for {params} in search (replica lag)", timeout=6)


def all_pages(path, token=None, limit=2, max_pages=50):
    """Follows next_cursor from `path` (with its own query) to the end; returns every item."""
    sep = "&" if "?" in path else "?"
    items, cursor = [], None
    for _ in range(max_pages):
        url = f"{path}{sep}limit={limit}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        page = get(url, token=token).expect(200).json()
        assert len(page["items"]) <= limit, page
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"more than {max_pages} pages at {path}")


# ---------------------------------------------------------------- orders


def order_body(items, address=ADDRESS):
    return {"items": items, "shipping_address": address}


def place_order(buyer, items, key=None, address=ADDRESS):
    """POST /api/orders; returns (key, body, response)."""
    key = f"bb-{uuid.uuid4()}" if key is None else key
    body = order_body(items, address)
    return key, body, post("/api/orders", body, token=buyer.token, headers={"Idempotency-Key": key})


def line(p, quantity=1):
    return {"product_id": p["id"], "quantity": quantity}


def new_order(buyer, seller, quantity=1, **product_over):
    """A product of `seller` and a confirmed order of `buyer` for it: (product, order)."""
    p = create_product(seller, **product_over)
    _, _, r = place_order(buyer, [line(p, quantity)])
    return p, r.expect(201).json()


def order_of(user, order_id):
    return get(f"/api/orders/{order_id}", token=user.token).expect(200).json()


def wait_order_status(user, order_id, status, timeout=10):
    last = {}

    def check():
        last["o"] = order_of(user, order_id)
        return last["o"]["status"] == status

    try:
        eventually(check, f"order {order_id} status {status}", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"order never became {status!r}: {last.get('o')}")
    return last["o"]


# ---------------------------------------------------------------- shipments


def shipments_of(user, order_id):
    r = get(f"/api/deliveries?order_id={urllib.parse.quote(order_id)}", token=user.token)
    return r.expect(200).json()["items"]


def wait_shipment(user, order_id, timeout=10):
    """The order's shipment, once the order service has asked for it (outbox relay)."""
    return eventually(lambda: (shipments_of(user, order_id) or [None])[0],
                      f"the shipment of order {order_id}", timeout=timeout)


def new_shipment(buyer, seller):
    """(order, shipment) for a fresh one-line order of `buyer`."""
    _, order = new_order(buyer, seller)
    return order, wait_shipment(buyer, order["id"])


def event(shipment_id, status, token, event_id=None, occurred_at=None, location="Hub A",
          note=None, **extra):
    """POST /api/deliveries/{id}/events; returns the response."""
    body = {"event_id": event_id or str(uuid.uuid4()), "status": status}
    if occurred_at is not None:
        body["occurred_at"] = occurred_at
    if location is not None:
        body["location"] = location
    if note is not None:
        body["note"] = note
    body.update(extra)
    return post(f"/api/deliveries/{shipment_id}/events", body, token=token)


def read_shipment(user, shipment_id):
    """GET /api/deliveries/{id} (expects 200); returns the shipment."""
    return get(f"/api/deliveries/{shipment_id}", token=user.token).expect(200).json()


def cancel_shipment(mint, shipment_id):
    """POST /internal/deliveries/{id}/cancel as the order service (v1.1); returns the response."""
    return post(f"/internal/deliveries/{shipment_id}/cancel", token=mint.service("order", "delivery"))


# Event sequences that bring a fresh (pending) shipment to each non-terminal status.
PATH_TO = {
    "pending": [],
    "picked_up": ["picked_up"],
    "in_transit": ["picked_up", "in_transit"],
    "out_for_delivery": ["picked_up", "in_transit", "out_for_delivery"],
    "failed_attempt": ["picked_up", "in_transit", "out_for_delivery", "failed_attempt"],
    "delivered": ["picked_up", "in_transit", "out_for_delivery", "delivered"],
    "returned": ["returned"],
}


def drive(shipment_id, statuses, token):
    """Posts the events in order (each must be 201); returns the last shipment."""
    s = None
    for st in statuses:
        s = event(shipment_id, st, token).expect(201).json()
        assert s["status"] == st, (st, s["status"])
    return s

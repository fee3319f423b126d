"""Black-box contract tests: real HTTP against a running marketplace (../shared/API.md).

    BASE_URL=http://127.0.0.1:3000 python3 -m pytest tests/blackbox
    (or `make blackbox BASE_URL=...`, `make blackbox-scaled`)

The marketplace under test must name ADMIN_EMAIL (default admin@marketplace.test) in its
`admin_emails` variable: the tests make a carrier through the admin API. Every test makes
users and products of its own (unique emails), so the suite can run against a marketplace
that already holds data, and more than once.
"""

import json
import os
import time
import urllib.error
import urllib.request
import uuid

import pytest

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:3000").rstrip("/")
ADMIN_EMAIL = os.environ.get("ADMIN_EMAIL", "admin@marketplace.test")
ADMIN_PASSWORD = os.environ.get("ADMIN_PASSWORD", "blackbox admin password 1")
PASSWORD = "correct horse battery staple"
TIMEOUT = float(os.environ.get("BLACKBOX_TIMEOUT", "30"))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:  # pragma: no cover - shows the body on failure
            raise AssertionError(f"body is not JSON ({e}): {self.body[:500]!r}")

    def expect(self, status):
        assert self.status == status, (
            f"expected {status}, got {self.status}; body: {self.body[:1000]!r}"
        )
        return self

    def expect_problem(self, status):
        self.expect(status)
        ctype = (self.header("content-type") or "").split(";")[0].strip()
        assert ctype == "application/problem+json", f"problem content type: {ctype!r}"
        doc = self.json()
        assert doc.get("status") == status, f"problem status field: {doc}"
        assert isinstance(doc.get("type"), str) and isinstance(doc.get("title"), str), doc
        return doc


def request(method, path, body=None, token=None, headers=None, raw=None):
    """One HTTP request; never raises on an HTTP status."""
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
    req = urllib.request.Request(BASE_URL + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def get(path, token=None, headers=None):
    return request("GET", path, token=token, headers=headers)


def post(path, body=None, token=None, headers=None):
    return request("POST", path, body=body, token=token, headers=headers)


def unique_email(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}@blackbox.test"


def register(role="buyer", email=None, password=PASSWORD):
    email = email or unique_email(role)
    r = post(
        "/api/auth/register",
        {"email": email, "password": password, "display_name": f"{role} {email[:8]}", "role": role},
    )
    return email, r


def login(email, password=PASSWORD):
    r = post("/api/auth/login", {"email": email, "password": password}).expect(200)
    return r.json()


class User:
    def __init__(self, email, session):
        self.email = email
        self.session = session
        self.token = session["access_token"]
        self.id = session["user"]["id"]


def new_user(role="buyer"):
    email, r = register(role)
    r.expect(201)
    return User(email, login(email))


@pytest.fixture
def buyer():
    return new_user("buyer")


@pytest.fixture
def seller():
    return new_user("seller")


@pytest.fixture(scope="session")
def admin():
    _, r = register("buyer", email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    assert r.status in (201, 409), f"admin registration: {r.status} {r.body[:300]!r}"
    s = post("/api/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert s.status == 200, (
        f"cannot log in as {ADMIN_EMAIL} ({s.status}): start the marketplace with "
        f"SPIN_VARIABLE_ADMIN_EMAILS={ADMIN_EMAIL} on a fresh user database, or set "
        "ADMIN_EMAIL/ADMIN_PASSWORD"
    )
    u = User(ADMIN_EMAIL, s.json())
    assert u.session["user"]["role"] == "admin", (
        f"{ADMIN_EMAIL} is not an admin: start the marketplace with "
        f"SPIN_VARIABLE_ADMIN_EMAILS={ADMIN_EMAIL}"
    )
    return u


@pytest.fixture
def carrier(admin):
    email, r = register("buyer")
    r.expect(201)
    uid = r.json()["id"]
    r = request("PUT", f"/api/users/{uid}/role", {"role": "carrier"}, token=admin.token).expect(200)
    assert r.json()["role"] == "carrier"
    return User(email, login(email))


def eventually(fn, what, timeout=10.0):
    """Polls fn() until it returns a truthy value (asynchronous steps: relay, outbox)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")

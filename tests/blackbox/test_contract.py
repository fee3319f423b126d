"""The contract (../shared/API.md) over real HTTP: health, accounts, catalog, orders,
shipments and carrier events, end to end through whatever serves BASE_URL."""

import random
import string
import uuid

import pytest

from conftest import (
    PASSWORD,
    eventually,
    get,
    login,
    new_user,
    post,
    register,
    request,
)

SERVICES = ["users", "products", "orders", "deliveries"]
ADDRESS = {
    "name": "Ada Buyer",
    "line1": "1 Test Street",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def word():
    """A made-up word no stemmer changes, to find exactly our product by full text."""
    return "zq" + "".join(random.choice("bcdfghjklmnpvwxz") for _ in range(8))


def create_product(seller, **over):
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
    r = post("/api/products", body, token=seller.token).expect(201)
    return body, r.json()


def place_order(buyer, items, key=None):
    key = key or f"bb-{uuid.uuid4()}"
    body = {"items": items, "shipping_address": ADDRESS}
    return key, body, post("/api/orders", body, token=buyer.token, headers={"Idempotency-Key": key})


def shipment_of(buyer, order_id):
    r = get(f"/api/deliveries?order_id={order_id}", token=buyer.token).expect(200)
    items = r.json()["items"]
    return items[0] if items else None


# ---------------------------------------------------------------- health


@pytest.mark.parametrize("svc", SERVICES)
def test_every_service_is_healthy_ready_and_documented(svc):
    r = get(f"/api/{svc}/healthz").expect(200)
    r = get(f"/api/{svc}/readyz").expect(200)
    doc = get(f"/api/{svc}/openapi.json").expect(200).json()
    assert str(doc.get("openapi", "")).startswith("3.1"), doc.get("openapi")
    assert doc.get("paths"), "OpenAPI document without paths"


# ---------------------------------------------------------------- accounts


def test_register_login_and_me():
    email, r = register("buyer")
    r.expect(201)
    user = r.json()
    assert set(user) >= {"id", "email", "display_name", "role", "created_at"}, user
    assert user["email"] == email and user["role"] == "buyer"
    assert not any("password" in k for k in user), user
    uuid.UUID(user["id"])

    _, again = register("buyer", email=email.upper())
    again.expect_problem(409)

    bad = post("/api/auth/login", {"email": email, "password": "wrong password 123"})
    unknown = post("/api/auth/login", {"email": "nobody-" + email, "password": PASSWORD})
    d1, d2 = bad.expect_problem(401), unknown.expect_problem(401)
    assert d1.get("detail") == d2.get("detail"), "unknown email and wrong password must look alike"

    s = login(email)
    assert s["token_type"] == "Bearer" and s["expires_in"] > 0
    assert s["access_token"] and s["refresh_token"]
    assert s["user"]["id"] == user["id"]

    me = get("/api/users/me", token=s["access_token"]).expect(200).json()
    assert me["id"] == user["id"] and me["email"] == email
    anon = get("/api/users/me")
    anon.expect_problem(401)
    assert (anon.header("www-authenticate") or "").startswith("Bearer")


def test_refresh_rotates_and_reuse_is_refused():
    email, r = register("buyer")
    r.expect(201)
    s = login(email)
    r2 = post("/api/auth/refresh", {"refresh_token": s["refresh_token"]}).expect(200).json()
    assert r2["refresh_token"] != s["refresh_token"] and r2["access_token"]
    post("/api/auth/refresh", {"refresh_token": s["refresh_token"]}).expect_problem(401)
    # Reuse revoked the whole login: the rotated token is dead too.
    post("/api/auth/refresh", {"refresh_token": r2["refresh_token"]}).expect_problem(401)


# ---------------------------------------------------------------- catalog


def test_seller_creates_a_product_that_search_and_detail_return(seller, buyer):
    body, p = create_product(seller)
    for k in ("title", "description", "category", "price_cents", "currency", "stock", "attributes"):
        assert p[k] == body[k], (k, p[k], body[k])
    assert p["seller_id"] == seller.id and p["status"] == "active"
    assert set(p) >= {"id", "created_at", "updated_at"}

    d = get(f"/api/products/{p['id']}").expect(200).json()
    assert d == p or {k: d[k] for k in p} == p, (d, p)

    # Search reads the read replicas (when configured), which may lag the primary briefly.
    term = body["title"].split()[1]
    found = eventually(
        lambda: (lambda r: r if r["items"] else None)(get(f"/api/products?q={term}").expect(200).json()),
        "the new product in search results (replica lag)", timeout=5,
    )
    assert "next_cursor" in found
    assert [i["id"] for i in found["items"]] == [p["id"]], found
    # Tolerant of a small typo.
    typo = term[:-1] + ("a" if term[-1] != "a" else "e")
    assert p["id"] in [i["id"] for i in get(f"/api/products?q={typo}").expect(200).json()["items"]]
    # Filters.
    f = get(f"/api/products?q={term}&category=home&min_price=2599&max_price=2599&in_stock=true")
    assert [i["id"] for i in f.expect(200).json()["items"]] == [p["id"]]
    assert get(f"/api/products?q={term}&category=garden").expect(200).json()["items"] == []
    assert get(f"/api/products?q={term}&max_price=2598").expect(200).json()["items"] == []
    mine = get(f"/api/products?seller_id={seller.id}").expect(200).json()["items"]
    assert [i["id"] for i in mine] == [p["id"]]

    post("/api/products", body, token=buyer.token).expect_problem(403)
    post("/api/products", body).expect_problem(401)
    other = new_user("seller")
    request("PATCH", f"/api/products/{p['id']}", {"price_cents": 1}, token=other.token).expect_problem(403)
    get(f"/api/products/{uuid.uuid4()}").expect_problem(404)


def test_invalid_product_input_names_every_bad_field(seller):
    r = post(
        "/api/products",
        {"title": "", "description": "x", "category": "home", "price_cents": -1,
         "currency": "euro", "stock": 1},
        token=seller.token,
    )
    errors = r.expect_problem(422).get("errors", {})
    assert {"title", "price_cents", "currency"} <= set(errors), errors


def test_search_pages_with_a_cursor(seller):
    tag = word()
    ids = {create_product(seller, title=f"Paged {tag} item {i}")[1]["id"] for i in range(3)}
    eventually(lambda: len(get(f"/api/products?q={tag}").expect(200).json()["items"]) == 3,
               "three new products in search (replica lag)", timeout=5)
    page1 = get(f"/api/products?q={tag}&limit=2").expect(200).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = get(f"/api/products?q={tag}&limit=2&cursor={page1['next_cursor']}").expect(200).json()
    assert len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert {i["id"] for i in page1["items"] + page2["items"]} == ids


# ---------------------------------------------------------------- orders and deliveries


def test_order_placement_is_idempotent_and_reserves_stock(seller, buyer):
    _, p = create_product(seller, stock=5, price_cents=1250)
    items = [{"product_id": p["id"], "quantity": 2}]
    key, body, r = place_order(buyer, items)
    order = r.expect(201).json()
    assert order["status"] == "confirmed" and order["buyer_id"] == buyer.id
    assert order["total_cents"] == 2500 and order["currency"] == "EUR"
    assert order["items"][0]["title"] == p["title"]
    assert order["items"][0]["unit_price_cents"] == 1250 and order["items"][0]["quantity"] == 2
    assert order["shipping_address"]["city"] == ADDRESS["city"]

    replay = post("/api/orders", body, token=buyer.token, headers={"Idempotency-Key": key})
    assert replay.status == 201 and replay.json()["id"] == order["id"], replay.body[:300]
    other = {"items": [{"product_id": p["id"], "quantity": 1}], "shipping_address": ADDRESS}
    post("/api/orders", other, token=buyer.token, headers={"Idempotency-Key": key}).expect_problem(422)
    no_key = post("/api/orders", body, token=buyer.token)
    assert no_key.status in (400, 422), no_key.status
    no_key.expect_problem(no_key.status)

    assert get(f"/api/products/{p['id']}").expect(200).json()["stock"] == 3
    _, _, big = place_order(buyer, [{"product_id": p["id"], "quantity": 4}])
    big.expect_problem(409)
    assert get(f"/api/products/{p['id']}").expect(200).json()["stock"] == 3

    got = get(f"/api/orders/{order['id']}", token=buyer.token).expect(200).json()
    assert got["id"] == order["id"] and got["status"] == "confirmed"
    mine = get("/api/orders", token=buyer.token).expect(200).json()
    assert [o["id"] for o in mine["items"]] == [order["id"]]
    stranger = new_user("buyer")
    get(f"/api/orders/{order['id']}", token=stranger.token).expect_problem(404)
    place_order(seller, items)[2].expect_problem(403)


def test_shipment_follows_the_order_and_carrier_events_drive_its_status(seller, buyer, carrier):
    _, p = create_product(seller, stock=3)
    _, _, r = place_order(buyer, [{"product_id": p["id"], "quantity": 1}])
    order = r.expect(201).json()

    ship = eventually(lambda: shipment_of(buyer, order["id"]), "the order's shipment")
    assert ship["order_id"] == order["id"] and ship["buyer_id"] == buyer.id
    assert ship["status"] == "pending" and ship["tracking_number"]
    assert eventually(
        lambda: get(f"/api/orders/{order['id']}", token=buyer.token).json().get("shipment_id") == ship["id"],
        "order.shipment_id",
    )
    get(f"/api/deliveries/{ship['id']}", token=buyer.token).expect(200)
    get(f"/api/deliveries/{ship['id']}", token=new_user("buyer").token).expect_problem(404)

    def event(status, token=carrier.token, event_id=None):
        return post(
            f"/api/deliveries/{ship['id']}/events",
            {"event_id": event_id or str(uuid.uuid4()), "status": status, "location": "Hub A"},
            token=token,
        )

    post(f"/api/deliveries/{ship['id']}/events", {"event_id": "x", "status": "picked_up"},
         token=buyer.token).expect_problem(403)
    picked = str(uuid.uuid4())
    s = event("picked_up", event_id=picked).expect(201).json()
    assert s["status"] == "picked_up" and len(s["history"]) >= 1
    n = len(s["history"])
    again = event("picked_up", event_id=picked)
    assert again.status in (200, 201), again.status
    assert len(again.json()["history"]) == n, "a repeated event_id is recorded once"
    event("delivered").expect_problem(409)

    status = lambda: get(f"/api/orders/{order['id']}", token=buyer.token).expect(200).json()["status"]
    assert eventually(lambda: status() == "shipped", "order status shipped")
    post(f"/api/orders/{order['id']}/cancel", token=buyer.token).expect_problem(409)

    for st in ("in_transit", "in_transit", "out_for_delivery", "delivered"):
        assert event(st).expect(201).json()["status"] == st
    assert eventually(lambda: status() == "delivered", "order status delivered")

    t = get(f"/api/deliveries/track/{ship['tracking_number']}").expect(200).json()
    assert t["status"] == "delivered"
    statuses = [h["status"] for h in t["history"] if h["status"] != "pending"]
    assert statuses == ["picked_up", "in_transit", "in_transit", "out_for_delivery", "delivered"], t
    body = str(t)
    assert buyer.id not in body and "shipping_address" not in t and ADDRESS["line1"] not in body


def test_cancelling_a_confirmed_order_returns_its_stock(seller, buyer):
    _, p = create_product(seller, stock=4)
    _, _, r = place_order(buyer, [{"product_id": p["id"], "quantity": 3}])
    order = r.expect(201).json()
    assert get(f"/api/products/{p['id']}").json()["stock"] == 1
    c = post(f"/api/orders/{order['id']}/cancel", token=buyer.token).expect(200).json()
    assert c["status"] == "cancelled"
    assert eventually(lambda: get(f"/api/products/{p['id']}").json()["stock"] == 4, "stock released")

"""API.md "Order service — orders"."""

import datetime
import time
import uuid

from conftest import (
    ADDRESS,
    admin_user,
    concurrently,
    create_product,
    delete,
    drive,
    each,
    event,
    eventually,
    get,
    ids,
    is_rfc3339,
    line,
    new_order,
    new_user,
    now_utc,
    order_body,
    order_of,
    patch,
    place_order,
    post,
    read_shipment,
    rfc3339,
    shipments_of,
    stock_of,
    wait_order_status,
    wait_shipment,
)

ORDER_FIELDS = {"id", "buyer_id", "status", "items", "total_cents", "currency",
                "shipping_address", "shipment_id", "created_at", "updated_at"}


# ---------------------------------------------------------------- place


def test_a_buyer_places_an_order_201_confirmed_with_a_price_snapshot(shared_seller, buyer):
    p = create_product(shared_seller, stock=5, price_cents=1250)
    _, _, r = place_order(buyer, [line(p, 2)])
    o = r.expect(201).json()
    assert set(o) >= ORDER_FIELDS, o
    assert isinstance(o["id"], str) and o["id"]
    assert o["status"] == "confirmed" and o["buyer_id"] == buyer.id
    assert o["total_cents"] == 2500 and o["currency"] == "EUR"
    assert len(o["items"]) == 1
    item = o["items"][0]
    assert {k: item.get(k) for k in ("product_id", "title", "quantity", "unit_price_cents",
                                     "currency")} == {
        "product_id": p["id"], "title": p["title"], "quantity": 2, "unit_price_cents": 1250,
        "currency": "EUR"}, item
    assert {k: o["shipping_address"].get(k) for k in ADDRESS} == ADDRESS
    assert is_rfc3339(o["created_at"]) and is_rfc3339(o["updated_at"])
    assert stock_of(p["id"]) == 3


def test_an_order_totals_several_lines(shared_seller, buyer):
    a = create_product(shared_seller, price_cents=1000)
    b = create_product(shared_seller, price_cents=250)
    o = place_order(buyer, [line(a, 1), line(b, 3)])[2].expect(201).json()
    assert o["total_cents"] == 1750 and len(o["items"]) == 2


def test_an_order_keeps_the_price_it_was_placed_at(seller, buyer):
    p, o = new_order(buyer, seller, price_cents=1000)
    patch(f"/api/products/{p['id']}", {"price_cents": 5000}, token=seller.token).expect(200)
    assert order_of(buyer, o["id"])["items"][0]["unit_price_cents"] == 1000


def test_an_optional_address_line2_is_kept(shared_seller, buyer):
    p = create_product(shared_seller)
    addr = {**ADDRESS, "line2": "Flat 4"}
    o = place_order(buyer, [line(p)], address=addr)[2].expect(201).json()
    assert o["shipping_address"]["line2"] == "Flat 4"


def test_only_buyers_place_orders_others_403(shared_seller):
    p = create_product(shared_seller, stock=5)
    each(["seller", "carrier"],
         lambda role: place_order(new_user(role), [line(p)])[2].expect_problem(403))
    assert stock_of(p["id"]) == 5


# ---------------------------------------------------------------- Idempotency-Key


def test_placing_an_order_without_an_idempotency_key_is_refused(shared_seller, buyer):
    p = create_product(shared_seller, stock=5)
    r = post("/api/orders", order_body([line(p)]), token=buyer.token)
    r.expect_problem(400, 422)
    assert stock_of(p["id"]) == 5


def test_an_idempotency_key_outside_1_to_255_characters_is_refused(shared_seller, buyer):
    p = create_product(shared_seller, stock=5)
    each(["", "k" * 256], lambda key: place_order(buyer, [line(p)], key=key)[2]
         .expect_problem(400, 422))
    assert stock_of(p["id"]) == 5


def test_an_idempotency_key_of_255_characters_is_accepted(shared_seller, buyer):
    p = create_product(shared_seller)
    place_order(buyer, [line(p)], key="k" * 254 + uuid.uuid4().hex[:1])[2].expect(201)


def test_the_same_key_and_body_replays_the_first_response_and_reserves_once(shared_seller, buyer):
    p = create_product(shared_seller, stock=5)
    key, body, first = place_order(buyer, [line(p, 2)])
    first = first.expect(201).json()
    replay = post("/api/orders", body, token=buyer.token, headers={"Idempotency-Key": key})
    assert replay.expect(201).json() == first
    assert stock_of(p["id"]) == 3
    assert ids(get("/api/orders", token=buyer.token).expect(200).json()) == [first["id"]]


def test_the_same_key_with_another_body_is_422(shared_seller, buyer):
    p = create_product(shared_seller, stock=5)
    key, _, first = place_order(buyer, [line(p, 2)])
    first.expect(201)
    place_order(buyer, [line(p, 1)], key=key)[2].expect_problem(422)
    assert stock_of(p["id"]) == 3


def test_simultaneous_requests_with_one_key_place_one_order(shared_seller, buyer):
    p = create_product(shared_seller, stock=10)
    key = f"bb-{uuid.uuid4()}"
    results = concurrently([lambda: place_order(buyer, [line(p, 2)], key=key)[2]] * 6)
    placed = {r.json()["id"] for r in results if r.status == 201}
    assert len(placed) == 1, [(r.status, r.body[:100]) for r in results]
    for r in results:
        if r.status != 201:
            r.expect_problem(409)  # "a request with the same key is still being processed"
    assert stock_of(p["id"]) == 8
    assert ids(get("/api/orders", token=buyer.token).expect(200).json()) == list(placed)


# ---------------------------------------------------------------- stock, products, currency


def test_not_enough_stock_is_409_and_nothing_is_reserved(shared_seller, buyer):
    p = create_product(shared_seller, stock=3)
    place_order(buyer, [line(p, 4)])[2].expect_problem(409)
    assert stock_of(p["id"]) == 3


def test_a_short_stock_409_lists_every_short_product_with_requested_and_available(shared_seller,
                                                                                 buyer):
    """v1.1 "Short stock names the products"."""
    plenty = create_product(shared_seller, stock=10)
    one = create_product(shared_seller, stock=1)
    none = create_product(shared_seller, stock=0)
    r = place_order(buyer, [line(plenty, 2), line(one, 3), line(none, 1)])[2]
    doc = r.expect_problem(409)
    short = sorted((i["product_id"], i["requested"], i["available"]) for i in doc.get("short_items", []))
    assert short == sorted([(one["id"], 3, 1), (none["id"], 1, 0)]), doc


def test_one_short_line_fails_the_whole_order_409_and_reserves_nothing(shared_seller, buyer):
    plenty = create_product(shared_seller, stock=10)
    short = create_product(shared_seller, stock=1)
    place_order(buyer, [line(plenty, 2), line(short, 2)])[2].expect_problem(409)
    assert stock_of(plenty["id"]) == 10 and stock_of(short["id"]) == 1
    assert get("/api/orders", token=buyer.token).expect(200).json()["items"] == []


def test_simultaneous_buyers_never_oversell(shared_seller):
    p = create_product(shared_seller, stock=3)
    buyers = [new_user("buyer") for _ in range(8)]
    results = concurrently([lambda u=u: place_order(u, [line(p, 1)])[2] for u in buyers])
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 3 + [409] * 5, statuses
    assert stock_of(p["id"]) == 0


def test_an_unknown_product_is_422(buyer):
    place_order(buyer, [{"product_id": str(uuid.uuid4()), "quantity": 1}])[2].expect_problem(422)


def test_items_in_more_than_one_currency_are_422(shared_seller, buyer):
    eur = create_product(shared_seller, currency="EUR", stock=5)
    usd = create_product(shared_seller, currency="USD", stock=5)
    place_order(buyer, [line(eur), line(usd)])[2].expect_problem(422)
    assert stock_of(eur["id"]) == 5 and stock_of(usd["id"]) == 5


INVALID_ORDERS = [
    ("no items", lambda p: order_body([]), "items"),
    ("quantity 0", lambda p: order_body([line(p, 0)]), "quantity"),
    ("negative quantity", lambda p: order_body([line(p, -2)]), "quantity"),
    ("malformed product id", lambda p: order_body([{"product_id": "nope", "quantity": 1}]),
     "product_id"),
    ("no shipping address", lambda p: {"items": [line(p)]}, "shipping_address"),
    ("address without postal_code",
     lambda p: order_body([line(p)], {k: v for k, v in ADDRESS.items() if k != "postal_code"}),
     "postal_code"),
    ("address without city",
     lambda p: order_body([line(p)], {**ADDRESS, "city": ""}), "city"),
    ("unknown item field",
     lambda p: order_body([{**line(p), "discount": 5}]), "discount"),
]


def test_an_invalid_order_is_422_naming_the_bad_field(shared_seller, buyer):
    p = create_product(shared_seller, stock=5)

    def check(case):
        _, make, field = case
        post("/api/orders", make(p), token=buyer.token,
             headers={"Idempotency-Key": f"bb-{uuid.uuid4()}"}).expect_invalid(field)
    each(INVALID_ORDERS, check)
    assert stock_of(p["id"]) == 5


# ---------------------------------------------------------------- read


def test_a_buyer_reads_its_own_order(shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    got = order_of(buyer, o["id"])
    assert got["id"] == o["id"] and got["status"] == "confirmed" and got["items"] == o["items"]


def test_another_buyer_gets_404_for_an_order(shared_seller, buyer, other_buyer):
    _, o = new_order(buyer, shared_seller)
    get(f"/api/orders/{o['id']}", token=other_buyer.token).expect_problem(404)


def test_the_seller_of_the_product_may_not_read_the_order(seller, buyer):
    _, o = new_order(buyer, seller)
    get(f"/api/orders/{o['id']}", token=seller.token).expect_problem(403, 404)


def test_an_admin_reads_any_order(shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    assert order_of(admin_user(), o["id"])["buyer_id"] == buyer.id


def test_an_unknown_order_is_404(buyer):
    each(["o" + "0" * 34, "no-such-order", str(uuid.uuid4())],
         lambda oid: get(f"/api/orders/{oid}", token=buyer.token).expect_problem(404))


def test_get_orders_lists_the_callers_orders_newest_first_paginated(shared_seller, buyer, other_buyer):
    made = [new_order(buyer, shared_seller)[1]["id"] for _ in range(3)]
    new_order(other_buyer, shared_seller)
    first = get("/api/orders?limit=2", token=buyer.token).expect(200).json()
    assert ids(first) == [made[2], made[1]] and first["next_cursor"], first
    second = get(f"/api/orders?limit=2&cursor={first['next_cursor']}", token=buyer.token)
    second = second.expect(200).json()
    assert ids(second) == [made[0]] and second["next_cursor"] is None, second
    assert ids(get("/api/orders", token=buyer.token).expect(200).json()) == made[::-1]


def test_an_order_of_a_deleted_account_still_names_its_buyer(shared_seller):
    buyer = new_user("buyer")
    _, o = new_order(buyer, shared_seller)
    delete("/api/users/me", {"password": buyer.password}, token=buyer.token).expect(204)
    kept = order_of(admin_user(), o["id"])
    assert kept["buyer_id"] == buyer.id and kept["id"] == o["id"]


def test_a_non_buyer_may_not_list_orders_403(seller):
    get("/api/orders", token=seller.token).expect_problem(403)


# ---------------------------------------------------------------- cancel


def test_cancelling_a_confirmed_order_is_200_cancelled_and_returns_its_stock(shared_seller, buyer):
    p = create_product(shared_seller, stock=4)
    o = place_order(buyer, [line(p, 3)])[2].expect(201).json()
    assert stock_of(p["id"]) == 1
    c = post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect(200).json()
    assert c["status"] == "cancelled" and c["id"] == o["id"]
    assert order_of(buyer, o["id"])["status"] == "cancelled"
    eventually(lambda: stock_of(p["id"]) == 4, "the stock released")


def test_an_admin_cancels_any_order(shared_seller, buyer):
    p, o = new_order(buyer, shared_seller, stock=2)
    c = post(f"/api/orders/{o['id']}/cancel", token=admin_user().token).expect(200).json()
    assert c["status"] == "cancelled"
    eventually(lambda: stock_of(p["id"]) == 2, "the stock released")


def test_cancelling_another_buyers_or_an_unknown_order_gets_404(shared_seller, buyer, other_buyer):
    _, o = new_order(buyer, shared_seller)
    post(f"/api/orders/{o['id']}/cancel", token=other_buyer.token).expect_problem(404)
    assert order_of(buyer, o["id"])["status"] == "confirmed"
    post(f"/api/orders/o{'0' * 34}/cancel", token=buyer.token).expect_problem(404)


def test_cancelling_a_shipped_order_is_409_and_keeps_its_stock(shared_seller, buyer, carrier):
    p, o = new_order(buyer, shared_seller, stock=3)
    s = wait_shipment(buyer, o["id"])
    drive(s["id"], ["picked_up"], carrier.token)
    wait_order_status(buyer, o["id"], "shipped")
    post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect_problem(409)
    assert order_of(buyer, o["id"])["status"] == "shipped" and stock_of(p["id"]) == 2
    assert read_shipment(buyer, s["id"])["status"] == "picked_up"


# v1.1 "Cancellation stops the parcel".


def test_cancelling_an_order_cancels_its_pending_shipment(shared_seller, buyer, carrier):
    p, o = new_order(buyer, shared_seller, quantity=2, stock=5)
    s = wait_shipment(buyer, o["id"])
    assert s["status"] == "pending"
    c = post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect(200).json()
    assert c["status"] == "cancelled"
    # The parcel is stopped by the time the cancel is answered.
    assert read_shipment(buyer, s["id"])["status"] == "cancelled"
    assert order_of(buyer, o["id"])["status"] == "cancelled"
    eventually(lambda: stock_of(p["id"]) == 5, "the stock released")
    event(s["id"], "picked_up", carrier.token).expect_problem(409)


def test_cancelling_an_order_twice_is_200_and_releases_its_stock_once(shared_seller, buyer):
    # The contract leaves a repeated cancel open; the order service's OpenAPI: idempotent, 200.
    p, o = new_order(buyer, shared_seller, quantity=2, stock=5)
    wait_shipment(buyer, o["id"])
    post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect(200)
    eventually(lambda: stock_of(p["id"]) == 5, "the stock released")
    again = post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect(200).json()
    assert again["status"] == "cancelled"
    time.sleep(0.5)
    assert stock_of(p["id"]) == 5, "a repeated cancel released the stock again"


def test_an_order_cancelled_before_its_shipment_was_made_gets_no_parcel_on_its_way(shared_seller,
                                                                                   buyer, carrier):
    p, o = new_order(buyer, shared_seller, stock=2)
    post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect(200)
    eventually(lambda: stock_of(p["id"]) == 2, "the stock released")
    # Whenever the order's shipment is made, it is cancelled: a carrier cannot pick it up.
    shipments = eventually(lambda: (lambda got: got if got and all(
        x["status"] == "cancelled" for x in got) else None)(shipments_of(buyer, o["id"])),
        "the cancelled order's shipment, cancelled")
    each(shipments, lambda x: event(x["id"], "picked_up", carrier.token).expect_problem(409))
    assert order_of(buyer, o["id"])["status"] == "cancelled"


def test_a_cancel_right_after_the_pick_up_scan_is_409_and_changes_nothing(shared_seller, buyer,
                                                                         carrier):
    # Not waiting for the order to become shipped: the delivery service decides.
    p, o = new_order(buyer, shared_seller, quantity=2, stock=5)
    s = wait_shipment(buyer, o["id"])
    drive(s["id"], ["picked_up"], carrier.token)
    post(f"/api/orders/{o['id']}/cancel", token=buyer.token).expect_problem(409)
    wait_order_status(buyer, o["id"], "shipped")
    assert read_shipment(buyer, s["id"])["status"] == "picked_up"
    time.sleep(0.5)
    assert stock_of(p["id"]) == 3


def test_a_cancel_racing_a_pick_up_scan_ends_in_exactly_one_outcome(shared_seller, buyer, carrier):
    """Whichever the delivery service records first wins and the other gets 409: either the
    order is cancelled, its stock back and its shipment cancelled, or the parcel is picked up,
    the order shipped and its stock kept; never a mix. Several orders, each pair at once."""
    made = [new_order(buyer, shared_seller, quantity=2, stock=5) for _ in range(6)]
    ships = [wait_shipment(buyer, o["id"]) for _, o in made]
    calls = []
    for (_, o), s in zip(made, ships):
        calls += [lambda o=o: post(f"/api/orders/{o['id']}/cancel", token=buyer.token),
                  lambda s=s: event(s["id"], "picked_up", carrier.token)]
    results = concurrently(calls)
    cases = [(p, o, s, results[2 * i], results[2 * i + 1])
             for i, ((p, o), s) in enumerate(zip(made, ships))]

    def check(case):
        p, o, s, cancel, scan = case
        outcome = (cancel.status, scan.status)
        if outcome not in ((200, 409), (409, 201)):
            time.sleep(1)
            raise AssertionError(
                f"cancel {cancel.status} {cancel.body[:200]!r}, scan {scan.status} "
                f"{scan.body[:200]!r}; then order {order_of(buyer, o['id'])['status']}, shipment "
                f"{read_shipment(buyer, s['id'])['status']}, stock {stock_of(p['id'])} of 5")
        if cancel.status == 200:
            assert cancel.json()["status"] == "cancelled"
            assert read_shipment(buyer, s["id"])["status"] == "cancelled"
            assert order_of(buyer, o["id"])["status"] == "cancelled"
            eventually(lambda: stock_of(p["id"]) == 5, "the stock released")
        else:
            assert read_shipment(buyer, s["id"])["status"] == "picked_up"
            wait_order_status(buyer, o["id"], "shipped")
            assert stock_of(p["id"]) == 3, "a picked-up order's stock was released"
    each(cases, check)


# ---------------------------------------------------------------- internal delivery-status


def report(mint, order_id, status, occurred_at=None):
    return post(f"/internal/orders/{order_id}/delivery-status",
                {"status": status, "occurred_at": occurred_at or rfc3339(now_utc())},
                token=mint.service("delivery", "order"))


def test_a_delivery_status_report_moves_the_order_forward(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    assert report(mint, o["id"], "shipped").expect(200).json()["status"] == "shipped"
    assert order_of(buyer, o["id"])["status"] == "shipped"
    report(mint, o["id"], "delivered").expect(200)
    assert order_of(buyer, o["id"])["status"] == "delivered"


def test_a_repeated_delivery_status_report_is_idempotent(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    t = rfc3339(now_utc())
    a = report(mint, o["id"], "shipped", t).expect(200).json()
    b = report(mint, o["id"], "shipped", t).expect(200).json()
    assert a["status"] == b["status"] == "shipped"


def test_an_out_of_order_delivery_status_never_moves_the_order_backwards(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    now = now_utc()
    report(mint, o["id"], "delivered", rfc3339(now)).expect(200)
    report(mint, o["id"], "shipped", rfc3339(now - datetime.timedelta(hours=1))).expect(200)
    assert order_of(buyer, o["id"])["status"] == "delivered"


def test_a_returned_report_makes_the_order_returned(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    report(mint, o["id"], "shipped").expect(200)
    report(mint, o["id"], "returned").expect(200)
    assert order_of(buyer, o["id"])["status"] == "returned"


def test_a_delivery_status_for_an_unknown_order_is_404(mint):
    report(mint, "o" + "0" * 34, "shipped").expect_problem(404)


def test_a_delivery_status_outside_shipped_delivered_returned_is_422(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    report(mint, o["id"], "cancelled").expect_invalid("status")
    assert order_of(buyer, o["id"])["status"] == "confirmed"


# ---------------------------------------------------------------- the outbox relay's own identity


RELAY = "/internal/orders/outbox/relay"


def test_the_relay_route_accepts_only_the_relays_own_identity(mint):
    # The order and delivery services' keys (which reserve stock and create shipments) are
    # refused there: the CronJob holds only the relay's key.
    for caller in ("order", "delivery"):
        post(RELAY, {}, token=mint.service(caller, "order")).expect_problem(403)
    post(RELAY, {}, token=mint.service("relay", "delivery")).expect_problem(401)
    stats = post(RELAY, {}, token=mint.service("relay", "order")).expect(200).json()
    assert "shipments_requested" in stats, stats


def test_the_relay_identity_is_refused_on_the_delivery_status_route(mint, shared_seller, buyer):
    _, o = new_order(buyer, shared_seller)
    post(f"/internal/orders/{o['id']}/delivery-status",
         {"status": "shipped", "occurred_at": rfc3339(now_utc())},
         token=mint.service("relay", "order")).expect_problem(403)
    assert order_of(buyer, o["id"])["status"] == "confirmed"

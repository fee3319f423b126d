"""API.md "Delivery service — shipments and their history" (and the order status they drive)."""

import datetime
import time
import uuid

import pytest

from conftest import (
    ADDRESS,
    PATH_TO,
    admin_user,
    cancel_shipment,
    concurrently,
    drive,
    each,
    event,
    eventually,
    fresh_time,
    get,
    is_rfc3339,
    is_uuid,
    new_shipment,
    new_user,
    now_utc,
    order_of,
    parse_time,
    post,
    read_shipment,
    rfc3339_ms,
    wait_order_status,
)

SHIPMENT_FIELDS = {"id", "order_id", "buyer_id", "tracking_number", "status", "shipping_address",
                   "history", "created_at", "updated_at"}
EVENT_FIELDS = {"event_id", "status", "occurred_at", "recorded_at", "location", "note"}
NON_TERMINAL = ["pending", "picked_up", "in_transit", "out_for_delivery", "failed_attempt"]
CARRIER_EVENTS = ["picked_up", "in_transit", "out_for_delivery", "failed_attempt", "delivered",
                  "returned"]


@pytest.fixture(scope="module")
def seller_m():
    return new_user("seller")


@pytest.fixture(scope="module")
def buyer_m():
    """The buyer of the shipments whose owner does not matter to a test."""
    return new_user("buyer")


@pytest.fixture
def shipment(buyer_m, seller_m):
    """A fresh pending shipment: (order, shipment)."""
    return new_shipment(buyer_m, seller_m)


def events_of(s):
    return [h["status"] for h in s["history"] if h["status"] != "pending"]


# ---------------------------------------------------------------- creation


def test_an_order_gets_a_pending_shipment_with_its_address(seller_m, buyer):
    order, s = new_shipment(buyer, seller_m)
    assert set(s) >= SHIPMENT_FIELDS, s
    assert is_uuid(s["id"]) and s["status"] == "pending" and s["tracking_number"]
    assert s["order_id"] == order["id"] and s["buyer_id"] == buyer.id
    assert {k: s["shipping_address"].get(k) for k in ADDRESS} == ADDRESS
    assert isinstance(s["history"], list)
    assert is_rfc3339(s["created_at"]) and is_rfc3339(s["updated_at"])


def test_the_order_names_its_shipment(shipment, buyer_m):
    order, s = shipment
    eventually(lambda: order_of(buyer_m, order["id"]).get("shipment_id") == s["id"],
               "order.shipment_id")


def test_internal_create_is_201_pending_and_idempotent_per_order_id(mint):
    body = {"order_id": "o0" + uuid.uuid4().hex + "0", "buyer_id": str(uuid.uuid4()),
            "shipping_address": ADDRESS,
            "items": [{"product_id": str(uuid.uuid4()), "quantity": 1, "title": "Lamp"}]}
    token = mint.service("order", "delivery")
    first = post("/internal/deliveries", body, token=token).expect(201).json()
    assert first["status"] == "pending" and first["order_id"] == body["order_id"]
    again = post("/internal/deliveries", body, token=token).expect(201).json()
    assert again["id"] == first["id"]


def test_internal_create_with_invalid_input_is_422(mint):
    post("/internal/deliveries", {"order_id": "", "buyer_id": "nope"},
         token=mint.service("order", "delivery")).expect_problem(422)


# ---------------------------------------------------------------- reading


def test_a_shipment_is_readable_by_its_buyer_carriers_and_admins(shipment, buyer_m, carrier):
    _, s = shipment

    def check(who):
        token = {"buyer": buyer_m.token, "carrier": carrier.token, "admin": admin_user().token}[who]
        got = get(f"/api/deliveries/{s['id']}", token=token).expect(200).json()
        assert got["id"] == s["id"] and isinstance(got["history"], list), got
    each(["buyer", "carrier", "admin"], check)


def test_another_buyer_gets_404_for_a_shipment(shipment, other_buyer):
    _, s = shipment
    get(f"/api/deliveries/{s['id']}", token=other_buyer.token).expect_problem(404)


def test_the_seller_may_not_read_the_shipment(shipment, seller_m):
    _, s = shipment
    get(f"/api/deliveries/{s['id']}", token=seller_m.token).expect_problem(403, 404)


def test_an_unknown_shipment_is_404_also_for_events(carrier):
    get(f"/api/deliveries/{uuid.uuid4()}", token=carrier.token).expect_problem(404)
    event(str(uuid.uuid4()), "picked_up", carrier.token).expect_problem(404)


def test_shipments_are_listed_by_order_id_for_its_buyer_carriers_and_admins(shipment, buyer_m,
                                                                            carrier):
    order, s = shipment

    def check(who):
        user = {"buyer": buyer_m, "carrier": carrier, "admin": admin_user()}[who]
        page = get(f"/api/deliveries?order_id={order['id']}", token=user.token).expect(200).json()
        assert [i["id"] for i in page["items"]] == [s["id"]] and "next_cursor" in page, page
    each(["buyer", "carrier", "admin"], check)


def test_another_buyer_does_not_see_the_shipments_of_an_order(shipment, other_buyer):
    order, _ = shipment
    r = get(f"/api/deliveries?order_id={order['id']}", token=other_buyer.token)
    if r.status == 200:
        assert r.json()["items"] == [], r.json()
    else:
        r.expect_problem(404)


# ---------------------------------------------------------------- tracking


def test_tracking_shows_status_and_history_and_nothing_personal(shipment, buyer_m, carrier):
    order, s = shipment
    drive(s["id"], ["picked_up"], carrier.token)
    event(s["id"], "in_transit", carrier.token, location="Hub B",
          note="Ada asked to leave it with neighbour Smith").expect(201)
    r = get(f"/api/deliveries/track/{s['tracking_number']}").expect(200)
    t = r.json()
    assert t["tracking_number"] == s["tracking_number"] and t["status"] == "in_transit"
    assert [h["status"] for h in t["history"] if h["status"] != "pending"] == ["picked_up", "in_transit"]
    for h in t["history"]:
        assert set(h) <= {"status", "occurred_at", "location"}, f"tracking entry: {h}"
        assert is_rfc3339(h["occurred_at"])
    assert "Hub B" in [h["location"] for h in t["history"]]
    body = r.body.decode()
    for personal in (buyer_m.id, "buyer_id", "shipping_address", ADDRESS["name"], ADDRESS["line1"],
                     ADDRESS["postal_code"], "Smith", buyer_m.email):
        assert personal not in body, f"tracking view shows {personal!r}: {t}"


def test_tracking_an_unknown_number_is_404():
    get("/api/deliveries/track/MKNOSUCHPARCEL").expect_problem(404)


# ---------------------------------------------------------------- events: legal moves


def test_the_whole_legal_path_is_201_at_every_step(shipment, carrier):
    _, s = shipment
    path = ["picked_up", "in_transit", "in_transit", "out_for_delivery", "failed_attempt",
            "in_transit", "out_for_delivery", "failed_attempt", "out_for_delivery", "delivered"]
    last = drive(s["id"], path, carrier.token)
    assert events_of(last) == path
    assert events_of(get(f"/api/deliveries/{s['id']}", token=carrier.token).json()) == path


def test_in_transit_repeats_one_event_per_hub_scan(shipment, carrier):
    _, s = shipment
    drive(s["id"], ["picked_up"], carrier.token)
    for hub in ("Hub A", "Hub B", "Hub C"):
        last = event(s["id"], "in_transit", carrier.token, location=hub).expect(201).json()
    assert events_of(last) == ["picked_up", "in_transit", "in_transit", "in_transit"]
    assert [h["location"] for h in last["history"] if h["status"] == "in_transit"] == \
        ["Hub A", "Hub B", "Hub C"]


def test_failed_attempt_follows_out_for_delivery_and_leads_back_to_either(buyer_m, seller_m,
                                                                         carrier):
    def check(after):
        _, s = new_shipment(buyer_m, seller_m)
        drive(s["id"], PATH_TO["failed_attempt"] + [after], carrier.token)
    each(["in_transit", "out_for_delivery"], check)


def test_returned_may_follow_any_non_terminal_status(buyer_m, seller_m, carrier):
    def check(status):
        _, s = new_shipment(buyer_m, seller_m)
        drive(s["id"], PATH_TO[status] + ["returned"], carrier.token)
    each(NON_TERMINAL, check)


def test_an_admin_may_record_events(shipment):
    _, s = shipment
    drive(s["id"], ["picked_up"], admin_user().token)


def test_history_entries_carry_every_contract_field(shipment, carrier):
    _, s = shipment
    eid = str(uuid.uuid4())
    when = fresh_time(s)
    got = event(s["id"], "picked_up", carrier.token, event_id=eid, occurred_at=when,
                location="Depot 1", note="two boxes").expect(201).json()
    entry = [h for h in got["history"] if h["event_id"] == eid]
    assert len(entry) == 1, got["history"]
    h = entry[0]
    assert set(h) >= EVENT_FIELDS, h
    assert h["status"] == "picked_up" and h["location"] == "Depot 1" and h["note"] == "two boxes"
    assert parse_time(h["occurred_at"]) == parse_time(when)
    assert is_rfc3339(h["recorded_at"]), h
    assert got["status"] == "picked_up"


def test_occurred_at_defaults_to_the_time_of_recording(shipment, carrier):
    _, s = shipment
    got = event(s["id"], "picked_up", carrier.token).expect(201).json()
    h = [h for h in got["history"] if h["status"] == "picked_up"][0]
    assert abs((parse_time(h["occurred_at"]) - now_utc()).total_seconds()) < 120, h


# ---------------------------------------------------------------- events: illegal moves


ILLEGAL = {
    "pending": ["in_transit", "out_for_delivery", "delivered", "failed_attempt"],
    "picked_up": ["out_for_delivery", "delivered", "failed_attempt", "pending"],
    "in_transit": ["delivered", "failed_attempt", "picked_up"],
    "out_for_delivery": ["picked_up"],
    "failed_attempt": ["delivered", "failed_attempt"],
    "delivered": ["in_transit", "returned", "delivered"],
    "returned": ["picked_up", "delivered", "returned"],
}


def _refuses(sid, to, carrier):
    before = get(f"/api/deliveries/{sid}", token=carrier.token).expect(200).json()
    event(sid, to, carrier.token).expect_problem(409)
    after = get(f"/api/deliveries/{sid}", token=carrier.token).expect(200).json()
    assert after["status"] == before["status"] and len(after["history"]) == len(before["history"]), \
        f"a refused event changed the shipment: {before['status']} -> {after['status']}"


@pytest.mark.parametrize("frm", ["pending", "picked_up", "in_transit", "out_for_delivery",
                                 "failed_attempt"])
def test_an_illegal_transition_is_409_and_changes_nothing(buyer_m, seller_m, carrier, frm):
    _, s = new_shipment(buyer_m, seller_m)
    drive(s["id"], PATH_TO[frm], carrier.token)
    each(ILLEGAL[frm], lambda to: _refuses(s["id"], to, carrier))


@pytest.mark.parametrize("terminal", ["delivered", "returned"])
def test_delivered_and_returned_are_terminal(buyer_m, seller_m, carrier, terminal):
    _, s = new_shipment(buyer_m, seller_m)
    drive(s["id"], PATH_TO[terminal], carrier.token)
    each(ILLEGAL[terminal], lambda to: _refuses(s["id"], to, carrier))


INVALID_EVENTS = [
    ({"event_id": "e-1", "status": "teleported"}, "status"),
    ({"status": "picked_up"}, "event_id"),
    ({"event_id": "e-2"}, "status"),
    ({"event_id": "e-3", "status": "picked_up", "occurred_at": "yesterday"}, "occurred_at"),
]


def test_an_invalid_event_is_422_naming_the_field_and_records_nothing(shipment, carrier):
    _, s = shipment

    def check(case):
        body, field = case
        if "event_id" in body:
            body = {**body, "event_id": f"{body['event_id']}-{uuid.uuid4()}"}
        post(f"/api/deliveries/{s['id']}/events", body, token=carrier.token).expect_invalid(field)
    each(INVALID_EVENTS, check)
    got = get(f"/api/deliveries/{s['id']}", token=carrier.token).json()
    assert got["status"] == "pending" and events_of(got) == []


def test_only_carriers_and_admins_record_events_others_403(shipment, buyer_m, seller_m):
    _, s = shipment
    each([buyer_m, seller_m], lambda u: event(s["id"], "picked_up", u.token).expect_problem(403))
    assert get(f"/api/deliveries/{s['id']}", token=buyer_m.token).json()["status"] == "pending"


# ---------------------------------------------------------------- v1.1 cancelled


def test_internal_cancel_of_a_pending_shipment_is_200_cancelled_and_idempotent(mint, shipment,
                                                                            buyer_m):
    """v1.1 "Cancellation stops the parcel": `POST /internal/deliveries/{id}/cancel`."""
    _, s = shipment
    first = cancel_shipment(mint, s["id"]).expect(200).json()
    assert first["id"] == s["id"] and first["status"] == "cancelled", first
    again = cancel_shipment(mint, s["id"]).expect(200).json()
    assert again["status"] == "cancelled" and len(again["history"]) == len(first["history"]), \
        (first["history"], again["history"])
    got = read_shipment(buyer_m, s["id"])
    assert got["status"] == "cancelled" and len(got["history"]) == len(first["history"]), got


@pytest.mark.parametrize("frm", ["picked_up", "in_transit", "returned"])
def test_internal_cancel_once_the_shipment_left_pending_is_409_and_changes_nothing(mint, buyer_m,
                                                                                seller_m, carrier,
                                                                                frm):
    _, s = new_shipment(buyer_m, seller_m)
    drive(s["id"], PATH_TO[frm], carrier.token)
    before = read_shipment(carrier, s["id"])
    cancel_shipment(mint, s["id"]).expect_problem(409)
    after = read_shipment(carrier, s["id"])
    assert after["status"] == frm and len(after["history"]) == len(before["history"]), after


def test_internal_cancel_of_an_unknown_shipment_is_404(mint):
    cancel_shipment(mint, str(uuid.uuid4())).expect_problem(404)


def test_internal_cancel_is_for_the_order_service_only(mint, shipment, buyer_m):
    # No token, user and admin tokens, untrusted keys: test_conventions.py (INTERNAL).
    _, s = shipment
    for caller in ["delivery", "relay"]:
        post(f"/internal/deliveries/{s['id']}/cancel",
             token=mint.service(caller, "delivery")).expect_problem(403)
    assert read_shipment(buyer_m, s["id"])["status"] == "pending"


# ---------------------------------------------------------------- hardening


def test_the_relay_runs_only_with_the_relays_own_identity(mint):
    """Security: the relay CronJob holds a key of its own (`relay`), not a service's."""
    path = "/internal/deliveries/outbox/relay"
    body = post(path, token=mint.service("relay", "delivery")).expect(200).json()
    assert set(body) == {"attempted", "delivered", "pending_shipments"}, body
    for caller in ["delivery", "order"]:
        post(path, token=mint.service(caller, "delivery")).expect_problem(403)
    # …and the relay's identity creates no shipment.
    post("/internal/deliveries", {"order_id": f"o1-{uuid.uuid4()}", "buyer_id": str(uuid.uuid4()),
                                  "shipping_address": ADDRESS,
                                  "items": [{"product_id": str(uuid.uuid4()), "title": "Lamp",
                                             "quantity": 1}]},
         token=mint.service("relay", "delivery")).expect_problem(403)


def test_a_shipment_holds_at_most_200_events_then_409_and_repeats_stay_idempotent(shipment,
                                                                                    carrier):
    """Security: a carrier cannot inflate a shipment (and its public tracking page) forever."""
    _, s = shipment
    drive(s["id"], ["picked_up"], carrier.token)
    ids = [f"cap-{i}" for i in range(199)]
    for start in range(0, len(ids), 10):
        concurrently([lambda i=i: event(s["id"], "in_transit", carrier.token, event_id=i,
                                        location=i).expect(201)
                      for i in ids[start:start + 10]])
    over = event(s["id"], "in_transit", carrier.token).expect_problem(409)
    assert "200 events" in over["detail"], over
    event(s["id"], "in_transit", carrier.token, event_id="cap-3", location="cap-3").expect(201)
    tracked = get(f"/api/deliveries/track/{s['tracking_number']}").expect(200).json()
    assert len(tracked["history"]) == 200
    assert len(read_shipment(carrier, s["id"])["history"]) == 200


def test_unknown_query_parameters_are_400_on_every_delivery_route(shipment, carrier):
    _, s = shipment
    get(f"/api/deliveries/track/{s['tracking_number']}?lang=fr").expect_problem(400)
    get(f"/api/deliveries/{s['id']}?expand=1", token=carrier.token).expect_problem(400)
    get("/api/deliveries/healthz?verbose=1").expect_problem(400)


def test_cancelled_is_terminal_every_carrier_event_is_409(mint, shipment, carrier):
    _, s = shipment
    cancel_shipment(mint, s["id"]).expect(200)
    each(CARRIER_EVENTS, lambda to: _refuses(s["id"], to, carrier))
    assert read_shipment(carrier, s["id"])["status"] == "cancelled"


def test_tracking_shows_a_cancelled_shipment_as_cancelled(mint, shipment):
    _, s = shipment
    cancel_shipment(mint, s["id"]).expect(200)
    t = get(f"/api/deliveries/track/{s['tracking_number']}").expect(200).json()
    assert t["status"] == "cancelled", t
    assert [h["status"] for h in t["history"]][-1:] == ["cancelled"], t["history"]


# ---------------------------------------------------------------- idempotency, late events


def test_a_repeated_event_id_is_accepted_once(shipment, carrier):
    _, s = shipment
    eid = str(uuid.uuid4())
    when = fresh_time(s)
    first = event(s["id"], "picked_up", carrier.token, event_id=eid, occurred_at=when).expect(201).json()
    again = event(s["id"], "picked_up", carrier.token, event_id=eid, occurred_at=when)
    again.expect(200, 201)
    assert len(again.json()["history"]) == len(first["history"])
    got = get(f"/api/deliveries/{s['id']}", token=carrier.token).json()
    assert [h["event_id"] for h in got["history"]].count(eid) == 1
    assert got["status"] == "picked_up"


def test_simultaneous_repeats_of_one_event_id_are_recorded_once(shipment, carrier):
    _, s = shipment
    eid, when = str(uuid.uuid4()), fresh_time(s)
    results = concurrently([lambda: event(s["id"], "picked_up", carrier.token, event_id=eid,
                                          occurred_at=when)] * 6)
    assert all(r.status in (200, 201) for r in results), [(r.status, r.body[:100]) for r in results]
    got = get(f"/api/deliveries/{s['id']}", token=carrier.token).json()
    assert [h["event_id"] for h in got["history"]].count(eid) == 1, got["history"]


def test_simultaneous_hub_scans_all_land_exactly_once(shipment, carrier):
    _, s = shipment
    drive(s["id"], ["picked_up"], carrier.token)
    eids = [str(uuid.uuid4()) for _ in range(6)]
    results = concurrently([lambda e=e: event(s["id"], "in_transit", carrier.token, event_id=e)
                            for e in eids])
    assert all(r.status == 201 for r in results), [(r.status, r.body[:100]) for r in results]
    got = get(f"/api/deliveries/{s['id']}", token=carrier.token).json()
    assert sorted(h["event_id"] for h in got["history"] if h["status"] == "in_transit") == sorted(eids)


def test_a_late_event_is_recorded_in_occurred_at_order_but_never_moves_the_status_back(shipment,
                                                                                     carrier):
    _, s = shipment
    drive(s["id"], ["picked_up"], carrier.token)
    hub1 = event(s["id"], "in_transit", carrier.token, location="Hub 1").expect(201).json()
    time.sleep(1.2)
    out = event(s["id"], "out_for_delivery", carrier.token).expect(201).json()
    newest = parse_time([h for h in out["history"] if h["status"] == "out_for_delivery"][0]["occurred_at"])
    # A hub scan from before the parcel went out for delivery, reported late.
    late = event(s["id"], "in_transit", carrier.token, location="Hub 2",
                 occurred_at=rfc3339_ms(newest - datetime.timedelta(milliseconds=600)))
    late.expect(201)
    got = get(f"/api/deliveries/{s['id']}", token=carrier.token).expect(200).json()
    assert got["status"] == "out_for_delivery", got["status"]
    assert events_of(got) == ["picked_up", "in_transit", "in_transit", "out_for_delivery"], got["history"]
    assert [h["location"] for h in got["history"] if h["status"] == "in_transit"] == ["Hub 1", "Hub 2"]
    times = [parse_time(h["occurred_at"]) for h in got["history"]]
    assert times == sorted(times), [h["occurred_at"] for h in got["history"]]
    assert len(got["history"]) == len(hub1["history"]) + 2
    # The legal path goes on from the newest status.
    drive(s["id"], ["delivered"], carrier.token)


# ---------------------------------------------------------------- the order follows


def test_picked_up_makes_the_order_shipped(seller_m, buyer, carrier):
    order, s = new_shipment(buyer, seller_m)
    drive(s["id"], ["picked_up"], carrier.token)
    wait_order_status(buyer, order["id"], "shipped")


def test_delivered_makes_the_order_delivered(seller_m, buyer, carrier):
    order, s = new_shipment(buyer, seller_m)
    drive(s["id"], PATH_TO["delivered"], carrier.token)
    wait_order_status(buyer, order["id"], "delivered")


def test_returned_makes_the_order_returned(seller_m, buyer, carrier):
    order, s = new_shipment(buyer, seller_m)
    drive(s["id"], ["picked_up", "in_transit", "returned"], carrier.token)
    wait_order_status(buyer, order["id"], "returned")



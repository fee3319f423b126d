"""Consistency after a fault: the relays catch up, then what was acknowledged still holds and
stock, orders and shipments agree. Reads the databases directly (psql) and the HTTP API."""

import collections
import json
import time

from load import Client
from topology import ENV, PG_PORTS, log, psql

ORDER_DBS = [(PG_PORTS["order-pg-0"], "marketplace_order_0"),
             (PG_PORTS["order-pg-1"], "marketplace_order_1")]
PRODUCT_DB = (PG_PORTS["product-pg"], "marketplace_product")


def order_rows():
    """{order id: (status, buyer, shipment_id, {product: qty})} over every shard."""
    out = {}
    for port, db in ORDER_DBS:
        for oid, status, buyer, ship, pid, qty in psql(port, db, """
                select o.id, o.status, o.buyer_id, coalesce(o.shipment_id::text, ''),
                       i.product_id, i.quantity
                from orders o join order_items i on i.order_id = o.id"""):
            o = out.setdefault(oid, (status, buyer, ship or None, collections.Counter()))
            o[3][pid] += int(qty)
    return out


def undelivered_outbox():
    n = 0
    for port, db in ORDER_DBS:
        n += int(psql(port, db, "select count(*) from outbox where delivered_at is null")[0][0])
    return n


def pending_keys():
    """Seconds until the youngest pending attempt is 30 s old (the relay's abandonment age)."""
    worst = None
    for port, db in ORDER_DBS:
        rows = psql(port, db, """select extract(epoch from (max(updated_at) + interval '31 seconds'
                                        - now())) from idempotency_keys where state = 'pending'""")
        if rows and rows[0][0]:
            worst = max(worst or 0.0, float(rows[0][0]))
    return worst


def run_relays(world, deadline_s=150):
    """Runs both relays (as their CronJobs would) until nothing is left to do."""
    c = Client(world.hostport)
    deadline = time.monotonic() + deadline_s
    while True:
        s1, order_stats = c.request("POST", "/internal/orders/outbox/relay", {},
                                    token=world.mint.service("relay", "order"))
        s2, delivery_stats = c.request("POST", "/internal/deliveries/outbox/relay",
                                       token=world.mint.service("relay", "delivery"))
        outbox = undelivered_outbox()
        wait_keys = pending_keys()
        done = (s1 == 200 and s2 == 200 and outbox == 0 and wait_keys is None
                and delivery_stats.get("pending_shipments", 1) == 0)
        if done:
            return order_stats, delivery_stats
        if time.monotonic() > deadline:
            raise AssertionError(
                f"relays did not catch up: order relay {s1} {order_stats}, delivery relay {s2} "
                f"{delivery_stats}, undelivered outbox rows {outbox}, pending keys in {wait_keys}s")
        # Rows in backoff and abandoned attempts need time to pass, not more calls.
        time.sleep(min(5.0, max(1.0, wait_keys or 1.0)))


def check_stock(world):
    """Reserved stock == quantities of live orders, per product; every reservation belongs to a
    live order and every live order holds its reservation."""
    orders = order_rows()
    reservations = {}
    for rid, quantities, released in psql(*PRODUCT_DB, """
            select reservation_id, quantities::text, released_at is not null
            from reservations"""):
        q = collections.Counter()
        for line in json.loads(quantities):
            q[line["product_id"]] += int(line["quantity"])
        reservations[rid] = (q, released == "t")
    stock = {pid: int(s) for pid, s in psql(*PRODUCT_DB, "select id, stock from products")}
    problems = []
    live_qty = collections.Counter()
    for oid, (status, _, _, qty) in orders.items():
        res = reservations.get(oid)
        if status == "cancelled":
            if res and not res[1]:
                problems.append(f"cancelled order {oid} still holds its reservation")
            continue
        live_qty.update(qty)
        if not res:
            problems.append(f"live order {oid} ({status}) has no reservation")
        elif res[1]:
            problems.append(f"live order {oid} ({status}): its reservation was released")
        elif res[0] != qty:
            problems.append(f"order {oid}: reservation {dict(res[0])} != order lines {dict(qty)}")
    reserved = collections.Counter()
    for rid, (q, released) in reservations.items():
        if released:
            continue
        reserved.update(q)
        if rid not in orders or orders[rid][0] == "cancelled":
            problems.append(f"reservation {rid} is held for an order that "
                            f"{'does not exist' if rid not in orders else 'is cancelled'}")
    for pid, initial in world.initial_stock.items():
        if stock[pid] < 0:
            problems.append(f"product {pid}: negative stock {stock[pid]}")
        if initial - stock[pid] != reserved[pid] or reserved[pid] != live_qty[pid]:
            problems.append(f"product {pid}: initial {initial} - stock {stock[pid]} = "
                            f"{initial - stock[pid]}, reserved {reserved[pid]}, "
                            f"live orders {live_qty[pid]}")
    return orders, problems


def check(world, ledger):
    """Every check; returns a list of problems (empty = consistent)."""
    t0 = time.monotonic()
    order_stats, delivery_stats = run_relays(world)
    log(f"relays caught up in {time.monotonic() - t0:.1f}s (last runs: {order_stats}, {delivery_stats})")
    orders, problems = check_stock(world)
    problems += list(ledger.violations)
    c = Client(world.hostport)
    admin = world.admin_token()

    # Every acknowledged order exists, with its buyer and lines; acknowledged cancels hold.
    for oid, o in ledger.orders.items():
        row = orders.get(oid)
        if row is None:
            problems.append(f"acknowledged order {oid} is not in any order database")
            continue
        status, buyer, _, qty = row
        want = collections.Counter({i["product_id"]: i["quantity"] for i in o.items})
        if buyer != o.buyer or qty != want:
            problems.append(f"order {oid}: stored {buyer} {dict(qty)} != acknowledged "
                            f"{o.buyer} {dict(want)}")
        if oid in ledger.cancelled and status != "cancelled":
            problems.append(f"order {oid}: cancel acknowledged, status {status}")
        s, doc = c.request("GET", f"/api/orders/{oid}", token=world.token(o.buyer))
        if s != 200 or doc.get("status") != status:
            problems.append(f"GET order {oid}: {s} {doc}")

    # Every live order of this round has exactly one shipment, the one the order names, whose
    # status the order follows; a cancelled order has at most one. Cancellation stops the
    # parcel: a cancelled order's shipment is `cancelled` (never past `pending`), and no live
    # order's shipment is.
    shipments = {}
    for oid in ledger.orders:
        status, _, shipment_id, _ = orders.get(oid, (None, None, None, None))
        if status is None:
            continue
        s, doc = c.request("GET", f"/api/deliveries?order_id={oid}&limit=100", token=admin)
        if s != 200:
            problems.append(f"shipments of {oid}: {s} {doc}")
            continue
        items = doc["items"]
        if status == "cancelled":
            if len(items) > 1:
                problems.append(f"cancelled order {oid} has {len(items)} shipments")
            for i in items:
                if i["status"] != "cancelled":
                    problems.append(f"cancelled order {oid} (stock released): its shipment "
                                    f"{i['id']} is {i['status']}")
            continue
        if len(items) != 1 or items[0]["id"] != shipment_id:
            problems.append(f"order {oid} ({status}, shipment_id {shipment_id}): shipments "
                            f"{[i['id'] for i in items]}")
            continue
        shipments[items[0]["id"]] = items[0]
        ship = items[0]["status"]
        if ship == "cancelled":
            problems.append(f"live order {oid} ({status}): its shipment {items[0]['id']} is cancelled")
            continue
        expect = {"pending": "confirmed", "delivered": "delivered", "returned": "returned"}.get(
            ship, "shipped")
        if status != expect:
            problems.append(f"order {oid} is {status} but its shipment is {ship}")

    # Every acknowledged carrier event is in its shipment's history exactly once.
    by_shipment = collections.defaultdict(list)
    for sid, event_id, st in ledger.events:
        by_shipment[sid].append((event_id, st))
    for sid, events in by_shipment.items():
        s, doc = c.request("GET", f"/api/deliveries/{sid}", token=admin)
        if s != 200:
            problems.append(f"shipment {sid}: {s} {doc}")
            continue
        seen = collections.Counter(h.get("event_id") for h in doc["history"])
        for event_id, st in events:
            if seen[event_id] != 1:
                problems.append(f"shipment {sid}: acknowledged event {event_id} ({st}) is in its "
                                f"history {seen[event_id]} times")
    log(f"consistency: {len(ledger.orders)} acknowledged orders, {len(ledger.cancelled)} cancels, "
        f"{len(ledger.events)} events, {len(ledger.unacked_attempts)} unacknowledged attempts; "
        f"{len(problems)} problems")
    return problems

"""A steady, bounded mixed load and the ledger of what it was told (acknowledged = 2xx).

Threads: buyers placing orders (a client that retries a failed attempt with the same
Idempotency-Key, as the contract intends), a canceller, a carrier posting shipment events,
readers of product pages and searches. Every thread stops when the test says so or after
MAX_OPS operations, whichever comes first.
"""

import collections
import http.client
import json
import random
import threading
import time
import uuid
import zlib

MAX_OPS = 5000
TIMEOUT = 15
ADDRESS = {"name": "Soak Buyer", "line1": "1 Soak Street", "city": "Berlin",
           "postal_code": "10115", "country": "DE"}
NEXT_STATUS = {None: "picked_up", "pending": "picked_up", "picked_up": "in_transit",
               "in_transit": "out_for_delivery", "out_for_delivery": "delivered"}


class Client:
    """HTTP/1.1 with keep-alive to one host:port, one per thread."""

    def __init__(self, hostport):
        self.hostport = hostport
        self.conn = None

    def request(self, method, path, body=None, token=None, headers=None):
        """(status, parsed JSON or None); status 0 = no answer (connection or timeout)."""
        hdrs = {"accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        if token:
            hdrs["authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        for attempt in range(2):
            try:
                if self.conn is None:
                    host, port = self.hostport.split(":")
                    self.conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close(); self.conn = None
                try:
                    doc = json.loads(raw) if raw else None
                except ValueError:
                    doc = None
                return r.status, doc
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                # A kept-alive connection the server closed: retry once on a new one only if
                # nothing can have been processed (idempotent methods); otherwise no answer.
                self._reset()
                if attempt == 0 and method in ("GET",):
                    continue
                return 0, {"error": repr(e)}
            except (OSError, http.client.HTTPException) as e:
                self._reset()
                return 0, {"error": repr(e)}
        return 0, None

    def _reset(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        self.conn = None


class Order:
    def __init__(self, oid, buyer, items, key):
        self.id, self.buyer, self.items, self.key = oid, buyer, items, key
        self.cancel_candidate = zlib.crc32(oid.encode()) % 4 == 0
        self.shipment_id = None
        self.ship_status = None
        self.pending_event = None  # (event_id, status) sent without an answer yet


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "before"
        self.orders = {}                       # acknowledged orders (201)
        self.unacked_attempts = []             # (buyer, key) never acknowledged
        self.cancelled = set()                 # acknowledged cancels (200)
        self.events = []                       # acknowledged (shipment_id, event_id, status)
        self.counts = collections.Counter()    # (phase, op, status)
        self.violations = []                   # things that must never happen

    def count(self, op, status):
        with self.lock:
            self.counts[(self.phase, op, status)] += 1

    def violation(self, msg):
        with self.lock:
            self.violations.append(f"[{self.phase}] {msg}")

    def summary(self):
        out = collections.defaultdict(dict)
        for (phase, op, status), n in sorted(self.counts.items()):
            out[f"{phase}/{op}"][status] = n
        return dict(out)

    def statuses(self, phase, op):
        return {s: n for (p, o, s), n in self.counts.items() if p == phase and o == op}


class Load:
    def __init__(self, world, ledger, order_hostport=None, buyers=2, readers=2):
        self.w, self.ledger = world, ledger
        self.stop_event = threading.Event()
        self.order_hostport = order_hostport or world.hostport
        self.threads = (
            [threading.Thread(target=self._buyer, args=(i,), daemon=True) for i in range(buyers)]
            + [threading.Thread(target=self._reader, args=(i,), daemon=True) for i in range(readers)]
            + [threading.Thread(target=self._canceller, daemon=True),
               threading.Thread(target=self._carrier, daemon=True)]
        )

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=TIMEOUT * 4)
            assert not t.is_alive(), "a load thread did not stop"

    def _running(self, n):
        return not self.stop_event.is_set() and n < MAX_OPS

    def _track(self, status, op, what):
        self.ledger.count(op, status)
        if status == 500:
            self.ledger.violation(f"500 from {op}: {what}")

    # -- buyers: place orders (retrying with the same key), read their own orders back
    def _buyer(self, i):
        rnd = random.Random(i * 7919 + int(time.time()))
        c = Client(self.order_hostport)
        reads = Client(self.w.hostport)
        n = 0
        while self._running(n):
            n += 1
            buyer = rnd.choice(self.w.buyers)
            picks = rnd.sample(self.w.products, rnd.choice([1, 1, 2]))
            items = [{"product_id": p, "quantity": rnd.randint(1, 3)} for p in picks]
            key = f"soak-{uuid.uuid4()}"
            body = {"items": items, "shipping_address": ADDRESS}
            acked = None
            for attempt in range(3):
                status, doc = c.request("POST", "/api/orders", body, token=self.w.token(buyer),
                                        headers={"idempotency-key": key})
                self._track(status, "place", doc)
                if status == 201:
                    acked = doc
                    break
                if status in (409, 422) or (400 <= status < 500 and status != 429):
                    break
                time.sleep(0.3 * (attempt + 1))
            if acked:
                if acked.get("buyer_id") != buyer or acked.get("status") != "confirmed":
                    self.ledger.violation(f"201 order is not the buyer's confirmed order: {acked}")
                with self.ledger.lock:
                    self.ledger.orders[acked["id"]] = Order(acked["id"], buyer, items, key)
            elif status not in (409, 422):
                with self.ledger.lock:
                    self.ledger.unacked_attempts.append((buyer, key))
            if n % 3 == 0:
                with self.ledger.lock:
                    mine = [o for o in self.ledger.orders.values() if o.buyer == buyer]
                if mine:
                    o = rnd.choice(mine)
                    status, doc = reads.request("GET", f"/api/orders/{o.id}", token=self.w.token(buyer))
                    self._track(status, "get_order", doc)
                    if status == 404:
                        self.ledger.violation(f"acknowledged order {o.id} answered 404")
            time.sleep(0.05)

    # -- readers: product pages (key-value read model, PostgreSQL fallback) and searches
    def _reader(self, i):
        rnd = random.Random(i * 104729)
        c = Client(self.w.hostport)
        n = 0
        while self._running(n):
            n += 1
            if n % 2:
                p = rnd.choice(self.w.products)
                status, doc = c.request("GET", f"/api/products/{p}")
                self._track(status, "product", doc)
                if status == 404:
                    self.ledger.violation(f"product {p} answered 404")
            else:
                status, doc = c.request("GET", f"/api/products?category={self.w.category}&limit=10")
                self._track(status, "search", doc)
            time.sleep(0.05)

    # -- canceller: a quarter of the orders (by id) are cancelled by their buyer
    def _canceller(self):
        c = Client(self.w.hostport)
        n = 0
        tried = set()
        while self._running(n):
            n += 1
            with self.ledger.lock:
                todo = [o for o in self.ledger.orders.values()
                        if o.cancel_candidate and o.id not in tried]
            if not todo:
                time.sleep(0.2)
                continue
            o = todo[0]
            status, doc = c.request("POST", f"/api/orders/{o.id}/cancel", token=self.w.token(o.buyer))
            self._track(status, "cancel", doc)
            if status == 200:
                tried.add(o.id)
                with self.ledger.lock:
                    self.ledger.cancelled.add(o.id)
            elif status in (404,):
                self.ledger.violation(f"cancel of acknowledged order {o.id} answered 404")
                tried.add(o.id)
            elif 400 <= status < 500:
                tried.add(o.id)
            else:
                time.sleep(0.3)  # 0 / 5xx: try again later
            time.sleep(0.05)

    # -- carrier: moves the other orders' shipments along, one event at a time
    def _carrier(self):
        c = Client(self.w.hostport)
        n = 0
        while self._running(n):
            n += 1
            with self.ledger.lock:
                todo = [o for o in self.ledger.orders.values()
                        if not o.cancel_candidate and o.ship_status != "delivered"]
            if not todo:
                time.sleep(0.2)
                continue
            o = todo[n % len(todo)]
            if o.shipment_id is None:
                status, doc = c.request("GET", f"/api/deliveries?order_id={o.id}",
                                        token=self.w.carrier_token())
                self._track(status, "shipment_of", doc)
                if status == 200 and doc["items"]:
                    o.shipment_id = doc["items"][0]["id"]
                    o.ship_status = doc["items"][0]["status"]
                time.sleep(0.05)
                continue
            if o.pending_event is None:
                o.pending_event = (str(uuid.uuid4()), NEXT_STATUS[o.ship_status])
            event_id, st = o.pending_event
            status, doc = c.request("POST", f"/api/deliveries/{o.shipment_id}/events",
                                    {"event_id": event_id, "status": st, "location": "Soak hub"},
                                    token=self.w.carrier_token())
            self._track(status, "event", doc)
            if status in (200, 201):
                with self.ledger.lock:
                    self.ledger.events.append((o.shipment_id, event_id, st))
                o.ship_status = doc.get("status", st)
                o.pending_event = None
            elif status == 409 or (400 <= status < 500):
                # Not acknowledged; refresh what the shipment says and carry on from there.
                o.pending_event = None
                s2, d2 = c.request("GET", f"/api/deliveries/{o.shipment_id}",
                                   token=self.w.carrier_token())
                if s2 == 200:
                    o.ship_status = d2["status"]
            # 0 / 5xx: the same event_id is sent again next time (a repeat is accepted once)
            time.sleep(0.05)

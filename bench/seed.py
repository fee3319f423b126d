"""Seeds the scaled topology with a realistic marketplace, directly in SQL (COPY), in the
exact shapes the services read as their own (components/*/migrations):

- 1,000 sellers, 10,000 buyers, 20 carriers (users; one Argon2id hash of the bench password,
  computed once with the user service's parameters m=19456,t=2,p=1);
- 100,000 products over 50 categories, text drawn with Zipf(1) frequencies (the rank-frequency
  law of natural language) over real English words: the function words first (PostgreSQL's
  English stop-word list: the most frequent words of English text), then the words of
  /usr/share/dict/words in random order; titles and search terms skip function words;
  prices log-normal, UUID v7 ids spread over a year of creation times;
- the product read model in Redis, as the product service stores it after each create;
- 2 past orders per buyer (20,000 orders, 1-3 items each), each in the order database its
  buyer's virtual shard maps to (SHA-256 of the buyer id, 64 virtual shards, even ranges).

Going through the API would take far longer (an Argon2 hash per account, a request per
product); the services do not care how the rows got there.
"""

import csv
import hashlib
import io
import json
import math
import os
import random
import subprocess
import time
import uuid

PRODUCTS = int(os.environ.get("BENCH_PRODUCTS", "100000"))
SELLERS = int(os.environ.get("BENCH_SELLERS", "1000"))
BUYERS = int(os.environ.get("BENCH_BUYERS", "10000"))
CARRIERS = 20
ORDERS_PER_BUYER = 2
PASSWORD = "bench password 2026"
# Products every order scenario buys from: stock high enough for any run.
ORDER_PRODUCTS = 2000

CATEGORIES = [
    "books", "music", "movies", "games", "toys", "baby", "garden", "tools", "kitchen",
    "furniture", "lighting", "bedding", "bath", "decor", "appliances", "electronics",
    "computers", "phones", "cameras", "audio", "televisions", "wearables", "office",
    "stationery", "art", "crafts", "sewing", "party", "pets", "aquarium", "sports",
    "outdoors", "camping", "fishing", "cycling", "fitness", "running", "swimming", "winter",
    "automotive", "motorcycle", "industrial", "grocery", "beverages", "health", "beauty",
    "fragrance", "jewelry", "watches", "luggage",
]
COLORS = ["black", "white", "red", "blue", "green", "grey", "brown", "yellow", "pink", "navy"]


def uuid7(ms, rng):
    """A UUID v7 for the given Unix time in ms (what the services generate)."""
    rand = rng.getrandbits(74)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 62) << 64  # 12 bits rand_a
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def stopwords():
    """English function words, the most frequent words of any English text: PostgreSQL's own
    list (what the `english` text-search configuration drops), or a short fallback."""
    import glob
    for path in sorted(glob.glob("/usr/share/postgresql/*/tsearch_data/english.stop"), reverse=True):
        with open(path) as f:
            return [w.strip() for w in f if w.strip()]
    return "the of and to a in is it that for on was with as by at from or an be this".split()


def vocabulary(rng):
    """Ranks for a Zipf distribution: function words first (as in real English text), then
    the dictionary's words in random order."""
    stop = stopwords()
    words = []
    seen = set(stop)
    with open("/usr/share/dict/words", encoding="utf-8", errors="ignore") as f:
        for w in f:
            w = w.strip()
            if w.isascii() and w.isalpha() and w.islower() and 3 <= len(w) <= 12 and w not in seen:
                seen.add(w)
                words.append(w)
    rng.shuffle(words)
    return stop, stop + words


class Zipf:
    """Draws from `items` with probability proportional to 1/rank^s (rank = list order, or a
    random order when `shuffle`)."""

    def __init__(self, items, rng, s=1.0, shuffle=True, exclude=()):
        self.items = list(items)
        self.exclude = set(exclude)
        if shuffle:
            rng.shuffle(self.items)
        acc, self.cum = 0.0, []
        for r in range(1, len(self.items) + 1):
            acc += 1.0 / r**s
            self.cum.append(acc)

    def draw(self, rng, k):
        return rng.choices(self.items, cum_weights=self.cum, k=k)

    def draw_content(self, rng, k):
        """k draws that are not excluded (function words): titles and search terms."""
        out = []
        while len(out) < k:
            out += [w for w in self.draw(rng, 2 * (k - len(out)) + 8) if w not in self.exclude]
        return out[:k]


def psql_copy(url, table, columns, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(rows)
    subprocess.run(
        ["psql", url, "-qX", "-v", "ON_ERROR_STOP=1", "-c",
         f"\\copy {table} ({', '.join(columns)}) from stdin with (format csv)"],
        input=buf.getvalue().encode(), check=True,
    )


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def iso_ms(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def seed_read_model(env, docs):
    """Stores the product read model as the product service leaves it after creating each
    product through the API (components/product/src/kv.rs, domain.rs `Document`): key
    `product:v1:<id>` in label `products<fnv1a(id bytes) % 4>`, a primary-sourced document
    of the row's version. Labels 0/1 live on Redis A, 2/3 on Redis B (tools/scaled/up.sh)."""
    ports = [env["SCALED_REDIS_A"], env["SCALED_REDIS_A"], env["SCALED_REDIS_B"], env["SCALED_REDIS_B"]]
    streams = {p: [] for p in set(ports)}
    sizes = []
    for d in docs:
        label = fnv1a(uuid.UUID(d["product"]["id"]).bytes) % 4
        body = json.dumps(d, separators=(",", ":")).encode()
        sizes.append(len(body))
        streams[ports[label]].append(resp("SET", f"product:v1:{d['product']['id']}", body))
    for port, cmds in streams.items():
        p = subprocess.run(["redis-cli", "-p", port, "--pipe"], input=b"".join(cmds),
                           capture_output=True, check=True)
        if b"errors: 0" not in p.stdout:
            raise RuntimeError(f"redis --pipe: {p.stdout[-300:]!r}")
    return sum(sizes) // max(1, len(sizes))


def psql(url, sql):
    return subprocess.run(["psql", url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def ts(ms):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}+00"


def argon2_hash(password):
    from argon2 import PasswordHasher, Type

    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32,
                          salt_len=16, type=Type.ID).hash(password)


def seed(env, out_dir, seed_value=2026):
    rng = random.Random(seed_value)
    t0 = time.time()
    now_ms = int(time.time() * 1000)
    year_ms = 365 * 24 * 3600 * 1000
    stats = {}

    # ---------------------------------------------------------------- users
    pw_hash = argon2_hash(PASSWORD)
    users = []
    sellers, buyers, carriers = [], [], []
    for role, n, bucket in (("seller", SELLERS, sellers), ("buyer", BUYERS, buyers),
                            ("carrier", CARRIERS, carriers)):
        for i in range(n):
            ms = now_ms - rng.randrange(year_ms)
            uid = uuid7(ms, rng)
            email = f"{role}{i}@bench.test"
            bucket.append((str(uid), email))
            users.append((str(uid), email, email, f"{role.title()} {i}", role, pw_hash, ts(ms), ts(ms)))
    psql_copy(env["SPIN_VARIABLE_USER_DB_URL"], "users",
              ["id", "email", "email_normalized", "display_name", "role", "password_hash",
               "created_at", "updated_at"], users)
    stats["users"] = len(users)
    stats["sellers"], stats["buyers"], stats["carriers"] = len(sellers), len(buyers), len(carriers)

    # ---------------------------------------------------------------- products
    stop, vocab = vocabulary(rng)
    words = Zipf(vocab, rng, shuffle=False, exclude=stop)
    seller_pop = Zipf([s[0] for s in sellers], rng, s=0.8)
    cat_pop = Zipf(CATEGORIES, rng, s=0.7)
    title_lens = [rng.randint(2, 6) for _ in range(PRODUCTS)]
    desc_lens = [rng.randint(12, 60) for _ in range(PRODUCTS)]
    tpool = words.draw_content(rng, sum(title_lens) + PRODUCTS)
    dpool = words.draw(rng, sum(desc_lens))
    seller_ids = seller_pop.draw(rng, PRODUCTS)
    cats = cat_pop.draw(rng, PRODUCTS)
    rows, products = [], []
    pos = dpos = 0
    for i in range(PRODUCTS):
        tw = tpool[pos:pos + title_lens[i]]; pos += title_lens[i]
        brand = tpool[pos]; pos += 1
        dw = dpool[dpos:dpos + desc_lens[i]]; dpos += desc_lens[i]
        title = " ".join(tw).capitalize()
        description = " ".join(dw).capitalize() + "."
        ms = now_ms - year_ms + (year_ms * i) // PRODUCTS + rng.randrange(1000)
        pid = str(uuid7(ms, rng))
        price = max(99, min(500000, int(math.exp(rng.gauss(8.0, 1.2)))))
        stock = 0 if rng.random() < 0.1 else rng.randint(1, 500)
        status = "archived" if rng.random() < 0.02 else "active"
        attrs = {"color": rng.choice(COLORS), "weight_g": rng.randint(50, 20000), "brand": brand}
        rows.append((pid, seller_ids[i], title, description, cats[i], price, "EUR", stock,
                     json.dumps(attrs), status, 1, ts(ms), ts(ms), ms))
        products.append((pid, status, stock, price, cats[i]))
    # The products orders are placed on: active, priced, with stock for any run.
    active = [i for i, p in enumerate(products) if p[1] == "active"]
    order_idx = rng.sample(active, ORDER_PRODUCTS)
    for i in order_idx:
        r = list(rows[i]); r[7] = 100_000_000; rows[i] = tuple(r)
    product_url = env["SPIN_VARIABLE_PRODUCT_DB_URL"]
    for start in range(0, len(rows), 25000):
        psql_copy(product_url, "products",
                  ["id", "seller_id", "title", "description", "category", "price_cents",
                   "currency", "stock", "attributes", "status", "version", "created_at",
                   "updated_at"], [r[:13] for r in rows[start:start + 25000]])
    psql(product_url, "analyze products")
    stored = int(time.time() * 1000)
    docs = [{
        "version": 1, "source": "primary", "stored_at_ms": stored,
        "product": {
            "id": r[0], "seller_id": r[1], "title": r[2], "description": r[3], "category": r[4],
            "price_cents": r[5], "currency": r[6], "stock": r[7],
            "attributes": dict(sorted(json.loads(r[8]).items())), "status": r[9],
            "created_at": iso_ms(r[13]), "updated_at": iso_ms(r[13]),
        },
    } for r in rows]
    stats["kv_document_bytes_mean"] = seed_read_model(env, docs)
    stats["kv_documents"] = len(docs)
    stats["products"] = len(rows)
    stats["vocabulary"] = len(vocab)
    stats["function_words"] = len(stop)
    stats["categories"] = len(CATEGORIES)

    # ---------------------------------------------------------------- orders (history)
    order_urls = env["SPIN_VARIABLE_ORDER_DB_URLS"].split(",")
    per_db_orders = [[] for _ in order_urls]
    per_db_items = [[] for _ in order_urls]
    addr = {"name": "Bench Buyer", "line1": "1 Main Street", "city": "Lyon",
            "postal_code": "69001", "country": "FR"}
    for buyer_id, _ in buyers:
        digest = hashlib.sha256(uuid.UUID(buyer_id).bytes).digest()
        vshard = int.from_bytes(digest[:2], "big") % 64
        db = vshard * len(order_urls) // 64
        for _ in range(ORDERS_PER_BUYER):
            ms = now_ms - rng.randrange(year_ms)
            oid = f"o{vshard:02x}{uuid7(ms, rng).hex}"
            items = []
            total = 0
            for line in range(rng.randint(1, 3)):
                p = rows[rng.choice(active)]
                q = rng.randint(1, 3)
                total += p[5] * q
                items.append((oid, line, p[0], p[2], q, p[5], "EUR", ts(ms), ts(ms)))
            per_db_orders[db].append((oid, vshard, buyer_id, "delivered", "EUR", total,
                                      json.dumps(addr), oid, f"seed-{oid}", ts(ms), ts(ms)))
            per_db_items[db].extend(items)
    for db, url in enumerate(order_urls):
        psql_copy(url, "orders", ["id", "vshard", "buyer_id", "status", "currency",
                                  "total_cents", "shipping_address", "reservation_id",
                                  "idempotency_key", "created_at", "updated_at"], per_db_orders[db])
        psql_copy(url, "order_items", ["order_id", "line_no", "product_id", "title", "quantity",
                                       "unit_price_cents", "currency", "created_at",
                                       "updated_at"], per_db_items[db])
        psql(url, "analyze")
    stats["orders"] = sum(len(o) for o in per_db_orders)
    stats["orders_per_database"] = [len(o) for o in per_db_orders]
    stats["order_items"] = sum(len(i) for i in per_db_items)
    stats["seconds"] = round(time.time() - t0, 1)

    # What the load scripts need.
    hot_rng = random.Random(seed_value + 1)
    active_ids = [products[i][0] for i in active]
    return {
        "stats": stats,
        "password": PASSWORD,
        "buyers": buyers,
        "carriers": carriers,
        "sellers": sellers,
        "active_ids": active_ids,
        "order_products": [products[i][0] for i in order_idx],
        "words": words,
        "rng": hot_rng,
        "hot_ids": hot_rng.sample(active_ids, min(10000, len(active_ids))),
    }

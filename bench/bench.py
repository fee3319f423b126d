"""`make bench`: seeds the scaled topology, drives wrk through every scenario, measures the
ceilings of the parts each path sits on in the same run, and writes BENCHMARKS.md plus the
raw results (bench/results/*.json). Run by bench/run.sh, which starts and stops the topology.
"""

import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
import seed as seeding  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DURATION = int(os.environ.get("BENCH_DURATION", "15"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# Closed-loop connections per scenario: enough to saturate what bounds each path, no more
# (past saturation more connections only add queueing: search is bound by PostgreSQL's CPU,
# login by Argon2).
LOGIN_CONNS = int(os.environ.get("BENCH_LOGIN_CONNECTIONS", "8"))
SEARCH_CONNS = int(os.environ.get("BENCH_SEARCH_CONNECTIONS", "8"))
ORDER_CONNS = int(os.environ.get("BENCH_ORDER_CONNECTIONS", "16"))
DAY_CONNS = int(os.environ.get("BENCH_DAY_CONNECTIONS", "16"))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_env():
    out = subprocess.run([os.path.join(ROOT, "tools/scaled/up.sh"), "env"], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v.strip('"')
    return env


def http(method, url, body=None, token=None, headers=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    h = {"content-type": "application/json"} if body is not None else {}
    if token:
        h["authorization"] = f"Bearer {token}"
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---------------------------------------------------------------- search: HTTP and SQL

def search_statements(queries, replica_url):
    """The statements the product service sends for each query string, taken from the
    component's own SQL builder (components/product/examples/search_sql.rs), so the database
    ceiling runs exactly the service's SQL. A relevance-ranked text query is two statements
    and the service runs the second only when the first leaves the page short: the same
    decision is made here, against the seeded replica."""
    out = subprocess.run(
        ["cargo", "run", "-q", "-p", "marketplace-product", "--example", "search_sql"],
        cwd=ROOT, input="\n".join(queries) + "\n", capture_output=True, text=True, check=True,
    ).stdout
    result = []
    for line in out.splitlines():
        record = json.loads(line)
        run = []
        got = 0
        for sql in record["statements"]:
            if got >= record["fetch"]:
                break
            run.append(sql)
            got += int(seeding.psql(replica_url, f"select count(*) from ({sql}) page"))
        result.append(run)
    return result


def search_mix(words, rng, n):
    """A mix of what shoppers send: one or two words (Zipf), a typo, category browsing,
    price filters and sorts. Returns query strings of `GET /api/products`."""
    out = []
    cats = seeding.CATEGORIES
    for _ in range(n):
        r = rng.random()
        params = {}
        if r < 0.40:
            params["q"] = words.draw_content(rng, 1)[0]
        elif r < 0.55:
            params["q"] = " ".join(words.draw_content(rng, 2))
        elif r < 0.60:
            w = words.draw_content(rng, 1)[0]
            i = rng.randrange(1, len(w))
            params["q"] = w[:i] + w[i + 1:]  # a dropped letter
        elif r < 0.70:
            params["q"] = words.draw_content(rng, 1)[0]
            params["category"] = rng.choice(cats)
        elif r < 0.82:
            params["category"] = rng.choice(cats)
        elif r < 0.94:
            params["category"] = rng.choice(cats)
            lo = rng.choice([1000, 2000, 5000])
            params["min_price"] = lo
            params["max_price"] = lo * rng.choice([2, 4, 10])
            params["sort"] = rng.choice(["price_asc", "price_desc"])
        else:
            params["in_stock"] = "true"
            params["sort"] = "price_desc"
        out.append(urllib.parse.urlencode(params))
    return out


# ---------------------------------------------------------------- processes and sampling


class RssSampler:
    """Samples the resident memory of the app instances while a run goes on."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {p: 0 for p in pids}
        self.stop_flag = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop_flag.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kib(p))
            time.sleep(0.2)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_flag.set()
        self.t.join()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _ppids():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out.setdefault(int(_stat(d)[1]), []).append(int(d))
            except (OSError, IndexError):
                pass
    return out


def _pidfile(path):
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CpuAccount:
    """CPU time per part of the topology (app instances, haproxy, each PostgreSQL server with
    its backends, each Redis, the load generator, everything else on the machine), so each
    scenario can say where its time went, per request."""

    def __init__(self, env):
        run = env["RUN"]
        self.groups = {
            "app": [_pidfile(os.path.join(run, f"app-{i}.pid")) for i in (1, 2)],
            "haproxy": [_pidfile(os.path.join(run, "haproxy.pid"))],
            "redis": [_pidfile(os.path.join(run, "redis-a/redis.pid")),
                      _pidfile(os.path.join(run, "redis-b/redis.pid"))],
        }
        self.postmasters = {name: _pidfile(os.path.join(run, name, "postmaster.pid"))
                            for name in ("order-pg-0", "order-pg-1", "product-pg", "product-rep")}
        self.extra = {}

    def add(self, group, pids):
        self.groups.setdefault(group, []).extend(pids)

    def snapshot(self):
        snap = {}
        for g, pids in self.groups.items():
            t = 0
            for p in pids:
                try:
                    f = _stat(p)
                    t += int(f[11]) + int(f[12])
                except (OSError, TypeError, IndexError):
                    pass
            snap[g] = t
        children = _ppids()
        for name, pm in self.postmasters.items():
            t = 0
            try:
                f = _stat(pm)
                t = sum(int(x) for x in f[11:15])  # postmaster + reaped backends
            except (OSError, TypeError, IndexError):
                pass
            for c in children.get(pm, []):
                try:
                    f = _stat(c)
                    t += int(f[11]) + int(f[12])
                except (OSError, IndexError):
                    # Exited since the scan: its time is now in the postmaster's cutime.
                    t += 0
            snap["pg:" + name] = t
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        snap["_machine_busy"] = sum(cpu) - cpu[3] - cpu[4]
        ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
        ru_s = resource.getrusage(resource.RUSAGE_SELF)
        snap["load generator"] = (ru_c.ru_utime + ru_c.ru_stime) * CLK
        snap["_driver"] = (ru_s.ru_utime + ru_s.ru_stime) * CLK
        return snap

    @staticmethod
    def per_request(before, after, requests, seconds):
        d = {k: (after[k] - before.get(k, 0)) * 1000.0 / CLK for k in after}
        ours = sum(v for k, v in d.items() if not k.startswith("_"))
        d["other processes"] = max(0.0, d["_machine_busy"] - ours - d["_driver"])
        n = max(1, requests)
        per = {k: round(v / n, 3) for k, v in d.items()
               if not k.startswith("_") and v / n >= 0.0005}
        return {"ms_per_request": per,
                "machine_busy_cores": round(d["_machine_busy"] / 1000.0 / max(seconds, 0.001), 2)}


PG_SERVERS = (("order-pg-0", "SCALED_PG_ORDER_0"), ("order-pg-1", "SCALED_PG_ORDER_1"),
              ("product-pg", "SCALED_PG_PRODUCT"), ("product-rep", "SCALED_PG_REPLICA"))


def statements_reset(env):
    for _, key in PG_SERVERS:
        subprocess.run(["psql", f"postgres://postgres@127.0.0.1:{env[key]}/postgres", "-qtAX",
                        "-c", "select pg_stat_statements_reset()"], capture_output=True)


def statements_read(env, requests):
    """What PostgreSQL executed during a run, per request: calls and time by statement."""
    out = {}
    for name, key in PG_SERVERS:
        p = subprocess.run(
            ["psql", f"postgres://postgres@127.0.0.1:{env[key]}/postgres", "-qtAX", "-F", "\t", "-c",
             "select calls, round(total_exec_time::numeric, 3), "
             "regexp_replace(left(query, 90), '\\s+', ' ', 'g') from pg_stat_statements "
             "where query not like '%pg_stat_statements%' order by total_exec_time desc limit 8"],
            capture_output=True, text=True)
        rows = []
        for line in p.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                calls, total, q = int(parts[0]), float(parts[1]), parts[2]
                rows.append({"per_request": round(calls / max(1, requests), 3),
                             "mean_ms": round(total / max(1, calls), 3), "query": q})
        if rows:
            out[name] = rows
    return out


def write_lines(path, values):
    with open(path, "w") as f:
        f.write("\n".join(values) + "\n")


class Runner:
    def __init__(self, env, work):
        self.env = env
        self.work = work
        self.base = env["SCALED_BASE_URL"]
        self.app_pids = [int(open(os.path.join(env["RUN"], f"app-{i}.pid")).read())
                         for i in (1, 2)]
        self.results = {}
        self.cpu = CpuAccount(env)

    def wrk(self, name, url, script, data_lua, conns=CONNS, duration=DURATION, extra_env=None,
            record=True):
        out = os.path.join(self.work, f"{name}.json")
        env = dict(os.environ)
        env.update({"BENCH_DATA": data_lua, "BENCH_OUT": out,
                    "BENCH_LIB": os.path.join(ROOT, "bench/wrk/common.lua"),
                    "BENCH_THREADS": str(THREADS)})
        env.update(extra_env or {})
        cmd = ["wrk", f"-t{min(THREADS, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
               "-s", os.path.join(ROOT, "bench/wrk", script), url]
        log(f"{name}: wrk -c{conns} -d{duration}s {url}")
        if record:
            statements_reset(self.env)
        before = self.cpu.snapshot()
        with RssSampler(self.app_pids) as s:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        after = self.cpu.snapshot()
        if p.returncode != 0:
            raise RuntimeError(f"wrk failed: {p.stderr}\n{p.stdout}")
        with open(out) as f:
            r = json.load(f)
        secs = r["duration_us"] / 1e6
        non2xx = sum(n for code, n in r["statuses"].items() if not 200 <= int(code) < 300)
        e = r["errors"]
        res = {
            "connections": conns,
            "seconds": round(secs, 2),
            "requests": r["requests"],
            "rps": round(r["requests"] / secs, 1),
            "p50_ms": r["latency_us"]["p50"] / 1000,
            "p90_ms": r["latency_us"]["p90"] / 1000,
            "p95_ms": r["latency_us"]["p95"] / 1000,
            "p99_ms": r["latency_us"]["p99"] / 1000,
            "max_ms": r["latency_us"]["max"] / 1000,
            "mean_ms": round(r["latency_us"]["mean"] / 1000, 3),
            "errors": non2xx + e["connect"] + e["read"] + e["write"] + e["timeout"],
            "statuses": r["statuses"],
            "socket_errors": e,
            "app_rss_peak_kib": [s.peak[p] for p in self.app_pids],
            "cpu": CpuAccount.per_request(before, after, r["requests"], secs),
        }
        if record:
            res["statements"] = statements_read(self.env, r["requests"])
        log(f"  {res['rps']} req/s, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
            f"errors {res['errors']} {r['statuses']}")
        if record:
            self.results[name] = res
        return res


def data_file(work, name, lists, scalars=None):
    """A Lua data file for wrk: each list in a text file of its own, read with lines()."""
    lua = []
    for key, values in lists.items():
        path = os.path.join(work, f"{name}.{key}.txt")
        write_lines(path, values)
        lua.append(f'{key} = lines("{path}")')
    for key, value in (scalars or {}).items():
        lua.append(f"{key} = {json.dumps(value)}")
    path = os.path.join(work, f"{name}.lua")
    with open(path, "w") as f:
        f.write("\n".join(lua) + "\n")
    return path


# ---------------------------------------------------------------- the ceilings


def start_ceiling(env, work):
    """Two host instances serving the constant component, behind their own haproxy."""
    base = int(env.get("SCALED_PORT_BASE_NUM", "26500"))
    ports = [base + 41, base + 42]
    lb = base + 40
    run = env["RUN"]
    procs = []
    for i, port in enumerate(ports, 1):
        logf = open(os.path.join(run, f"ceiling-{i}.log"), "w")
        procs.append(subprocess.Popen(
            [env["HOST_BIN"], "up", "-f", os.path.join(ROOT, "bench/ceiling/spin.toml"),
             "--listen", f"127.0.0.1:{port}"], stdout=logf, stderr=logf,
            stdin=subprocess.DEVNULL))
    cfg = os.path.join(run, "ceiling-haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend ceiling
    bind 127.0.0.1:{lb}
    default_backend apps
backend apps
    balance roundrobin
""" + "".join(f"    server c{i} 127.0.0.1:{p}\n" for i, p in enumerate(ports, 1)))
    logf = open(os.path.join(run, "ceiling-haproxy.log"), "w")
    procs.append(subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=logf, stderr=logf,
                                  stdin=subprocess.DEVNULL))
    for port in ports + [lb]:
        for _ in range(600):
            try:
                if http("GET", f"http://127.0.0.1:{port}/c/state", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"ceiling app on {port} did not start")
    return procs, f"http://127.0.0.1:{lb}", f"http://127.0.0.1:{ports[0]}"


def pgbench_search(env, work, queries, clients, duration=DURATION):
    """The database ceiling: pgbench sending the very search statements to the replica."""
    files = []
    for i, statements in enumerate(queries):
        p = os.path.join(work, f"pgbench-{i}.sql")
        with open(p, "w") as f:
            f.write("".join(sql + ";\n" for sql in statements))
        files += ["-f", p]
    url = env["SPIN_VARIABLE_PRODUCT_DB_REPLICA_URLS"].split(",")[0]
    pgbench = shutil.which("pgbench") or seeding_pg_bin("pgbench")
    cmd = [pgbench, "-n", "-M", "extended", "-c", str(clients), "-j", str(THREADS),
           "-T", str(duration), "-r"] + files + [url]
    log(f"pgbench: the statements of {len(queries)} searches, -c {clients} -T {duration}, on the replica")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr + p.stdout)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", p.stdout).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", p.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", p.stdout)
    log(f"  {tps:.1f} tps, latency avg {lat} ms")
    return {"tps": round(tps, 1), "latency_avg_ms": lat, "clients": clients,
            "failed": int(failed.group(1)) if failed else 0, "searches": len(queries),
            "statements": sum(len(q) for q in queries)}


def seeding_pg_bin(name):
    for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        p = f"/usr/lib/postgresql/{d}/bin/{name}"
        if os.path.exists(p):
            return p
    raise RuntimeError(f"{name} not found")


def redis_ceiling(env, value_size):
    port = env["SCALED_REDIS_A"]
    n = int(os.environ.get("BENCH_REDIS_REQUESTS", "200000"))
    cmd = ["redis-benchmark", "-p", port, "-t", "get,set", "-d", str(value_size), "-n", str(n),
           "-c", str(CONNS), "--csv", "-r", "100000"]
    log(f"redis-benchmark GET/SET of {value_size}-byte values, -c {CONNS}")
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = {}
    for line in p.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells[0] in ("SET", "GET"):
            out[cells[0].lower()] = {"rps": float(cells[1]), "p50_ms": float(cells[5]),
                                     "p99_ms": float(cells[7])}
    log(f"  {out}")
    return {"value_bytes": value_size, **out}


def argon2_ceiling():
    from argon2 import PasswordHasher, Type

    ph = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
    h = ph.hash("bench password 2026")
    times = []
    for _ in range(10):
        t = time.perf_counter()
        ph.verify(h, "bench password 2026")
        times.append(time.perf_counter() - t)
    one = statistics.median(times)
    cores = os.cpu_count() or 1
    log(f"argon2id m=19456,t=2,p=1: {one * 1000:.1f} ms per hash (native)")
    return {"ms_per_hash": round(one * 1000, 2), "cores": cores,
            "logins_per_s": round(cores / one, 1)}


# ---------------------------------------------------------------- runtime costs


def wasm_memory_pages(path):
    """Initial linear memory of the core modules inside a component (memory section minimum)."""
    data = open(path, "rb").read()

    def leb(b, i):
        r = s = 0
        while True:
            x = b[i]; i += 1
            r |= (x & 0x7F) << s; s += 7
            if x < 0x80:
                return r, i

    def walk(b, component):
        pages = []
        i = 8
        while i < len(b):
            sid = b[i]; i += 1
            size, i = leb(b, i)
            body = b[i:i + size]
            if component and sid in (1, 4):  # core module, nested component
                pages += walk(body, sid == 4)
            elif not component and sid == 5:  # memory section
                n, j = leb(body, 0)
                for _ in range(n):
                    flags = body[j]; j += 1
                    mn, j = leb(body, j)
                    if flags & 1:
                        _, j = leb(body, j)
                    pages.append(mn)
            i += size
        return pages

    return walk(data, data[4:8] != b"\x01\x00\x00\x00")


def instantiation_costs(env, ceiling_direct):
    """Sequential requests to one instance's no-I/O endpoints: the host's per-request time
    (fresh instance from a pre-instantiated component, run, response) from its request log."""
    port = env["SCALED_APP_PORTS"].split()[0]
    logpath = os.path.join(env["RUN"], "app-1.log")
    out = {}
    n = 200
    for svc, path in (("user", "/api/users/healthz"), ("product", "/api/products/healthz"),
                      ("order", "/api/orders/healthz"), ("delivery", "/api/deliveries/healthz")):
        wall = []
        for _ in range(n):
            t = time.perf_counter()
            http("GET", f"http://127.0.0.1:{port}{path}")
            wall.append((time.perf_counter() - t) * 1000)
        time.sleep(0.3)
        durations = []
        with open(logpath, errors="ignore") as f:
            for line in f:
                m = re.match(rf"GET {re.escape(path)} 200 ([\d.]+)ms", line)
                if m:
                    durations.append(float(m.group(1)))
        durations = durations[-n:]
        out[svc] = {"host_ms_p50": round(statistics.median(durations), 3),
                    "host_ms_p90": round(sorted(durations)[int(len(durations) * 0.9)], 3),
                    "client_ms_p50": round(statistics.median(wall), 3)}
    wall = []
    for _ in range(n):
        t = time.perf_counter()
        http("GET", ceiling_direct + "/c/state")
        wall.append((time.perf_counter() - t) * 1000)
    out["constant"] = {"client_ms_p50": round(statistics.median(wall), 3)}
    return out


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "postgresql": sh("psql --version"),
        "redis": sh("redis-server --version | cut -d' ' -f1-3"),
        "haproxy": sh("haproxy -v | head -1 | cut -d' ' -f1-3"),
        "wrk": sh("wrk --version 2>&1 | head -1 | cut -d' ' -f1-2"),
        "host": "spin-test-host (wasmtime 48, pooling allocator), dev profile at opt-level 2 (the host and its dependencies)",
        "load_on_start": sh("cut -d' ' -f1-3 /proc/loadavg"),
    }


# ---------------------------------------------------------------- main


def main():
    t_start = time.time()
    env = load_env()
    env["RUN"] = os.environ["SCALED_RUN_DIR"]
    env["HOST_BIN"] = os.environ["HOST_BIN"]
    env["SCALED_PORT_BASE_NUM"] = os.environ.get("SCALED_PORT_BASE", "26500")
    work = os.path.join(env["RUN"], "bench")
    os.makedirs(work, exist_ok=True)
    results = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(),
               "settings": {"duration_s": DURATION, "connections": CONNS, "threads": THREADS,
                            "login_connections": LOGIN_CONNS, "search_connections": SEARCH_CONNS,
                            "order_connections": ORDER_CONNS, "day_connections": DAY_CONNS,
                            "app_instances": 2}}
    base = env["SCALED_BASE_URL"]

    log("seeding (COPY)")
    s = seeding.seed(env, work)
    results["seed"] = s["stats"]
    log(f"  {s['stats']}")
    # The replica must have the catalog before anything reads it.
    primary = env["SPIN_VARIABLE_PRODUCT_DB_URL"]
    replica = env["SPIN_VARIABLE_PRODUCT_DB_REPLICA_URLS"].split(",")[0]
    lsn = seeding.psql(primary, "select pg_current_wal_lsn()")
    for _ in range(600):
        if seeding.psql(replica, f"select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t":
            break
        time.sleep(0.1)
    results["seed"]["replica_rows"] = int(seeding.psql(replica, "select count(*) from products"))

    log("logging in buyers and carriers")
    def login(email):
        st, body = http("POST", base + "/api/auth/login", {"email": email, "password": s["password"]})
        if st != 200:
            raise RuntimeError(f"login {email}: {st} {body[:200]!r}")
        return json.loads(body)["access_token"]
    with ThreadPoolExecutor(4) as ex:
        buyer_tokens = list(ex.map(login, [e for _, e in s["buyers"][:64]]))
        carrier_tokens = list(ex.map(login, [e for _, e in s["carriers"][:4]]))

    rng = s["rng"]
    search_queries = search_mix(s["words"], rng, int(os.environ.get("BENCH_SEARCH_QUERIES", "120")))
    search_paths = ["/api/products?" + q for q in search_queries]
    queries = search_statements(search_queries, replica)
    results["search_statements_per_request"] = round(
        sum(len(q) for q in queries) / len(queries), 2)
    detail_paths = [f"/api/products/{i}" for i in s["hot_ids"]]
    search_lua = data_file(work, "search", {"paths": search_paths})
    detail_lua = data_file(work, "detail", {"paths": detail_paths})
    const_lua = data_file(work, "constant", {"paths": ["/c/state"]})
    address = json.dumps({"name": "Bench Buyer", "line1": "1 Main Street", "city": "Lyon",
                          "postal_code": "69001", "country": "FR"})

    run = Runner(env, work)

    def half(name, full, lua, conns):
        """About half of the measured maximum: `conns` connections with exponential think
        time, calibrated by a short run, so that together they offer half of `full`'s
        throughput (wrk is closed-loop: rate = conns / (think + latency))."""
        target = full["rps"] / 2
        think = max(0.0, conns * 1000.0 / target - full["p50_ms"] / 2)
        cal = run.wrk(name + "_calibration", base, "get.lua", lua, conns=conns, duration=5,
                      extra_env={"BENCH_DELAY_MS": f"{think:.3f}"}, record=False)
        think = max(0.0, conns * 1000.0 / target - cal["mean_ms"])
        r = run.wrk(name, base, "get.lua", lua, conns=conns,
                    extra_env={"BENCH_DELAY_MS": f"{think:.3f}"})
        r["target_rps"] = round(target, 1)
        r["think_ms"] = round(think, 2)

    procs, ceiling_lb, ceiling_direct = start_ceiling(env, work)
    run.cpu.add("ceiling app + its haproxy", [p.pid for p in procs])
    try:
        # Warm-up: the search statements (plans, buffers), product pages, the constant.
        run.wrk("warm_search", base, "get.lua", search_lua, conns=4, duration=5, record=False)
        run.wrk("warm_detail", base, "get.lua", detail_lua, conns=8, duration=3, record=False)
        run.wrk("warm_constant", ceiling_lb, "get.lua", const_lua, conns=8, duration=3, record=False)

        results["runtime"] = {"instantiation": instantiation_costs(env, ceiling_direct)}

        # Each ceiling runs right before the scenario it bounds, so that both see the same
        # machine (the cores are shared with whatever else runs).
        ceilings = {}
        results["ceilings"] = ceilings
        ceilings["runtime"] = run.wrk("ceiling_runtime", ceiling_lb, "get.lua", const_lua)
        ceilings["runtime_one_instance_direct"] = run.wrk(
            "ceiling_runtime_direct", ceiling_direct, "get.lua", const_lua)
        detail = run.wrk("detail", base, "get.lua", detail_lua)
        half("detail_half", detail, detail_lua, 16)
        ceilings["key_value"] = redis_ceiling(env, s["stats"]["kv_document_bytes_mean"])

        ceilings["database_search"] = pgbench_search(env, work, queries, SEARCH_CONNS)
        search = run.wrk("search", base, "get.lua", search_lua, conns=SEARCH_CONNS)
        half("search_half", search, search_lua, max(2, SEARCH_CONNS // 2))

        # Paired ratios: short ceiling and scenario runs back to back, alternating, so that
        # both halves of each ratio see the same machine; the median of the rounds is what
        # the targets are judged on (other work on the shared cores comes and goes).
        rounds = int(os.environ.get("BENCH_PAIRED_ROUNDS", "3"))
        paired = {"detail": [], "search": []}
        for i in range(rounds):
            c = run.wrk(f"pair{i}_constant", ceiling_lb, "get.lua", const_lua, duration=5, record=False)
            d = run.wrk(f"pair{i}_detail", base, "get.lua", detail_lua, duration=5, record=False)
            paired["detail"].append({"scenario_rps": d["rps"], "ceiling_rps": c["rps"],
                                     "ratio": round(d["rps"] / c["rps"], 3)})
            pg = pgbench_search(env, work, queries, SEARCH_CONNS, duration=5)
            q = run.wrk(f"pair{i}_search", base, "get.lua", search_lua, conns=SEARCH_CONNS,
                        duration=5, record=False)
            paired["search"].append({"scenario_rps": q["rps"], "ceiling_rps": pg["tps"],
                                     "ratio": round(q["rps"] / pg["tps"], 3)})
        results["paired_ratios"] = {
            k: {"rounds": v, "median": statistics.median(r["ratio"] for r in v)}
            for k, v in paired.items()}
        log(f"paired ratios: detail {results['paired_ratios']['detail']['median']}, "
            f"search {results['paired_ratios']['search']['median']}")

        writes = data_file(work, "writes", {
            "buyer_tokens": buyer_tokens, "carrier_tokens": carrier_tokens,
            "order_products": s["order_products"], "search_paths": search_paths,
            "detail_paths": detail_paths, "login_emails": [e for _, e in s["buyers"]],
        }, {"password": s["password"], "address_json": address})
        ceilings["argon2id"] = argon2_ceiling()
        run.wrk("login", base, "mixed.lua", writes, conns=LOGIN_CONNS,
                extra_env={"BENCH_MIX": "login"})

        t_orders = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time() - 1))
        run.wrk("order", base, "mixed.lua", writes, conns=ORDER_CONNS,
                extra_env={"BENCH_MIX": "order"})

        # Shipments of the orders just placed, picked up by a carrier: the delivery scenario
        # appends hub scans (`in_transit`, which may repeat) to them.
        shipments = []
        for url in env["SPIN_VARIABLE_ORDER_DB_URLS"].split(","):
            shipments += seeding.psql(url, f"select shipment_id from orders where shipment_id is "
                                           f"not null and created_at >= '{t_orders}' limit 250").split()
        log(f"picking up {len(shipments)} shipments")

        def pick_up(sid):
            st, _ = http("POST", f"{base}/api/deliveries/{sid}/events",
                         {"event_id": f"pickup-{sid}", "status": "picked_up", "location": "Depot"},
                         token=carrier_tokens[0])
            return sid if st in (200, 201) else None
        with ThreadPoolExecutor(4) as ex:
            picked = [x for x in ex.map(pick_up, shipments) if x]
        results["seed"]["shipments_picked_up"] = len(picked)
        if not picked:
            log("no shipment could be picked up: the delivery scenarios are skipped")
        else:
            writes = data_file(work, "writes", {
                "buyer_tokens": buyer_tokens, "carrier_tokens": carrier_tokens,
                "order_products": s["order_products"], "search_paths": search_paths,
                "detail_paths": detail_paths, "login_emails": [e for _, e in s["buyers"]],
                "shipments": picked,
            }, {"password": s["password"], "address_json": address})
            run.wrk("event", base, "mixed.lua", writes, extra_env={"BENCH_MIX": "event"})
        if picked:
            run.wrk("day", base, "mixed.lua", writes, conns=DAY_CONNS,
                    extra_env={"BENCH_MIX": "day"})
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    # Memory per instance: the growth of the host's resident memory under load, divided by
    # the requests in flight per process (each request is one instance).
    idle = [rss_kib(p) for p in run.app_pids]
    results["scenarios"] = run.results
    results["runtime"]["app_rss_idle_kib"] = idle
    results["runtime"]["wasm"] = {}
    for c in ("user", "product", "order", "delivery"):
        path = os.path.join(ROOT, f"target/wasm32-wasip2/release/marketplace_{c}.wasm")
        results["runtime"]["wasm"][c] = {"bytes": os.path.getsize(path),
                                         "initial_memory_pages": wasm_memory_pages(path)}
    probe = os.path.join(ROOT, "target/wasm32-wasip2/release/probe_component.wasm")
    results["runtime"]["wasm"]["constant (probe)"] = {
        "bytes": os.path.getsize(probe), "initial_memory_pages": wasm_memory_pages(probe)}
    results["duration_s"] = round(time.time() - t_start, 1)

    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    raw = os.path.join(ROOT, "bench/results", f"{stamp}.json")
    with open(raw, "w") as f:
        json.dump(results, f, indent=2)
    shutil.copy(raw, os.path.join(ROOT, "bench/results/latest.json"))
    import report
    report.write(results, os.path.join(ROOT, "BENCHMARKS.md"),
                 os.path.relpath(raw, ROOT))
    log(f"wrote BENCHMARKS.md and {os.path.relpath(raw, ROOT)} in {results['duration_s']} s")


if __name__ == "__main__":
    main()

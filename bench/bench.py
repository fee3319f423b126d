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

# The wrapper `marketplace_shared::pg::query` puts around every statement (Spin 4 never
# answers a query with no rows, components/shared/src/pg.rs); `unpadded` strips it, for the
# comparison ceiling of what the padding costs.
PAD = re.compile(r"^with __q as \((.*)\) select __m\.\* from \(values \(1\)\) as __pad\(__pad\) "
                 r"left join \(select true as __found, row_number\(\) over \(\) as __n, \* from __q\) "
                 r"as __m on true order by __m\.__n$", re.S)


def unpadded(sql):
    m = PAD.match(sql)
    return m.group(1) if m else None


def log_statements(path, start, end, dbname):
    """The statements one database received through the extended protocol between two offsets
    of its log (`log_statement = all`, prefix `%m [%p] %d `): text and parameter literals."""
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    entries = []
    for line in text.splitlines():
        m = LOG_ENTRY.match(line)
        if m:
            entries.append([m.group(3), m.group(4), m.group(5)])
        elif entries:
            entries[-1][2] += "\n" + line
    out = []
    for db, kind, body in entries:
        if db != dbname:
            continue
        if kind == "LOG":
            m = re.match(r"execute [^:]+: (.*)", body, re.S)
            out.append({"sql": m.group(1), "params": {}} if m else None)
        elif kind == "DETAIL" and out and out[-1] is not None and body.startswith("parameters: "):
            out[-1]["params"] = parse_params(body[len("parameters: "):])
    return [x for x in out if x is not None]


def inline_params(stmt):
    """A recorded statement with its parameters inlined as the literals they were (every
    placeholder of the product service's SQL carries its cast: `$1::text`, `$2::int8`)."""
    return re.sub(r"\$(\d+)", lambda m: stmt["params"].get(int(m.group(1)), m.group(0)),
                  stmt["sql"]).replace("\n", " ")


def statement_kinds(queries):
    """What the recorded statements are, per search: short statements as they are (`begin`,
    `set local …`, `commit`), the padded search statements as one kind."""
    kinds = {}
    for q in queries:
        for x in q:
            k = ("padded search statement (`with __q as (…) …`)" if unpadded(x) is not None
                 else f"`{x}`" if len(x) <= 60 else f"`{x[:57]}…`")
            kinds[k] = kinds.get(k, 0) + 1
    return {k: round(v / max(1, len(queries)), 2) for k, v in kinds.items()}


def record_search_statements(env, app, paths):
    """Sends each search of the scenario once through `app`, one at a time, with the replica
    logging every statement (`log_statement = all`), and returns per search the statements
    the product service sent for it, exactly as sent (padded by `marketplace_shared::pg::query`,
    one or two per search: the second only when the first left the page short), parameters
    inlined: the database ceiling then runs the component's own SQL, not a transcription."""
    key = "SCALED_PG_REPLICA"
    logf = os.path.join(env["RUN"], "product-rep", "server.log")
    _pg_admin(env, key, "alter system set log_statement = 'all'",
              "alter system set log_line_prefix = '%m [%p] %d '", "select pg_reload_conf()")
    time.sleep(0.5)
    marks, statuses = [], {}
    try:
        for path in paths:
            marks.append(os.path.getsize(logf))
            st, _ = http("GET", app.base + path)
            statuses[str(st)] = statuses.get(str(st), 0) + 1
        time.sleep(0.3)
        marks.append(os.path.getsize(logf))
    finally:
        _pg_admin(env, key, "alter system reset log_statement", "alter system reset log_line_prefix",
                  "select pg_reload_conf()")
    dbname = urllib.parse.urlparse(env["SPIN_VARIABLE_PRODUCT_DB_REPLICA_URLS"].split(",")[0]).path.lstrip("/")
    out = [[inline_params(x) for x in log_statements(logf, a, b, dbname)]
           for a, b in zip(marks, marks[1:])]
    log(f"recorded the search statements via {app.name}: {sum(len(q) for q in out)} statements "
        f"for {len(out)} searches (statuses {statuses})")
    if not any(out):
        raise RuntimeError(f"search recording via {app.name}: no statement in the replica's log "
                           f"(statuses {statuses})")
    if statuses != {"200": len(paths)} or not all(out):
        log(f"  warning: statuses {statuses}, {sum(1 for q in out if not q)} searches without "
            "statements (left out of the ceiling)")
    return [q for q in out if q]


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


# ---------------------------------------------------------------- the storefront's pages

HOME_API = "/api/products?sort=newest&limit=100"  # components/web/src/handlers/catalog.rs, home


def storefront_query(api_query):
    """The search form's query string for one `GET /api/products` query of the search mix
    (prices in major units, as a person types them), and the product service's query string
    the storefront then sends for it (components/web/src/domain/search.rs, `api_query`:
    fields in its order, prices back in cents, `limit=20`)."""
    a = dict(urllib.parse.parse_qsl(api_query))
    form = dict(a)
    for k in ("min_price", "max_price"):
        if k in form:
            cents = int(form[k])
            form[k] = str(cents // 100) if cents % 100 == 0 else f"{cents / 100:.2f}"
    if a.get("sort") == "relevance" and not a.get("q"):
        a.pop("sort")  # the form drops a relevance sort without words
    sent = [(k, a[k]) for k in ("q", "category", "min_price", "max_price", "in_stock", "sort")
            if a.get(k)] + [("limit", "20")]
    return urllib.parse.urlencode(form), urllib.parse.urlencode(sent)


def storefront_pages(search_queries, hot_ids):
    """The three pages measured, each with the API call it wraps."""
    pairs = [storefront_query(q) for q in search_queries]
    half_search = max(2, SEARCH_CONNS // 2)
    return [
        {"key": "home", "page": "GET /", "api": f"GET {HOME_API}",
         "page_paths": ["/"], "api_paths": [HOME_API],
         "conns": SEARCH_CONNS, "half_conns": half_search},
        {"key": "search", "page": "GET /search?q=…", "api": "GET /api/products?q=…",
         "page_paths": ["/search?" + f for f, _ in pairs],
         "api_paths": ["/api/products?" + a for _, a in pairs],
         "conns": SEARCH_CONNS, "half_conns": half_search},
        {"key": "product", "page": "GET /products/{id}", "api": "GET /api/products/{id}",
         "page_paths": [f"/products/{i}" for i in hot_ids],
         "api_paths": [f"/api/products/{i}" for i in hot_ids],
         "conns": CONNS, "half_conns": 16},
    ]


def session_cookie(app, product_page):
    """A visitor's session cookie (`mp_session=…`): the product page hands out a form (add to
    cart), so its first visit stores a session. The pages are measured as a returning
    browser loads them, cookie sent (one session per wrk thread)."""
    try:
        with urllib.request.urlopen(app.base + product_page, timeout=30) as r:
            for c in r.headers.get_all("set-cookie") or []:
                if c.startswith("mp_session="):
                    return c.split(";", 1)[0]
    except (urllib.error.URLError, OSError) as e:
        log(f"session cookie via {app.name}: {e}")
    log(f"no session cookie from {app.name}{product_page}: the pages run without one")
    return None


def page_check(app, path, cookie):
    """One request of the page before it is measured: its status, type and size."""
    req = urllib.request.Request(app.base + path, headers={"cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            out = {"status": r.status, "content_type": r.headers.get("content-type"),
                   "bytes": len(body)}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "content_type": e.headers.get("content-type"),
               "bytes": len(e.read())}
    log(f"{app.name} {path}: {out}")
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
            children = _ppids()
            for p in self.pids:
                # The serving process and its children (`spin up` forks `spin trigger http`).
                rss = sum(rss_kib(c) for c in _with_descendants([p], children))
                self.peak[p] = max(self.peak[p], rss)
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


def _with_descendants(pids, children=None):
    children = _ppids() if children is None else children
    out, todo = [], [p for p in pids if p]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
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
        children = _ppids()
        for g, pids in self.groups.items():
            t = 0
            # `spin up` serves from a child process (`spin trigger http`): count descendants.
            for p in _with_descendants(pids, children):
                try:
                    f = _stat(p)
                    t += int(f[11]) + int(f[12])
                except (OSError, TypeError, IndexError):
                    pass
            snap[g] = t
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



class AppSet:
    """Two app instances of one runtime behind one haproxy: the topology's own (real Spin, from
    tools/scaled/up.sh) or the project's test host, started here beside it on the same
    databases, Redis servers, keys and runtime config."""

    def __init__(self, name, base_url, pids, direct_port, log_path=None, procs=()):
        self.name = name
        self.base = base_url
        self.pids = pids
        self.direct_port = direct_port
        self.log_path = log_path
        self.procs = list(procs)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def haproxy_cfg(path, name, listen_port, ports):
    with open(path, "w") as f:
        f.write(f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend {name}
    bind 127.0.0.1:{listen_port}
    default_backend apps
backend apps
    balance roundrobin
""" + "".join(f"    server c{i} 127.0.0.1:{p}\n" for i, p in enumerate(ports, 1)))


def wait_ok(url, seconds):
    for _ in range(seconds * 10):
        try:
            if http("GET", url, timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def serve_args(runtime, manifest, port, run, tag, runtime_config=None):
    """`up` arguments both runtimes take; Spin also gets a log directory in the run dir (it
    would otherwise write `.spin/logs` beside the manifest)."""
    args = [runtime, "up", "-f", manifest, "--listen", f"127.0.0.1:{port}"]
    if runtime_config:
        args += ["--runtime-config-file", runtime_config]
    if not runtime.endswith("spin-test-host"):
        args += ["--log-dir", os.path.join(run, f"logs-{tag}"),
                 "--state-dir", os.path.join(run, f"state-{tag}")]
    return args


def start_host_set(env, work):
    """The test host's two instances (ports base+23/24) and their haproxy (base+35)."""
    base = int(env["SCALED_PORT_BASE_NUM"])
    ports, lb = [base + 23, base + 24], base + 35
    run = env["RUN"]
    child_env = dict(os.environ)
    child_env.update({k: v for k, v in env.items() if k.startswith("SPIN_VARIABLE_")})
    procs = []
    for i, port in enumerate(ports, 1):
        logf = open(os.path.join(run, f"host-{i}.log"), "w")
        procs.append(subprocess.Popen(
            serve_args(env["HOST_BIN"], os.path.join(ROOT, "spin.toml"), port, run, f"host-{i}",
                       os.path.join(run, "runtime-config.toml")),
            env=child_env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL))
    cfg = os.path.join(run, "host-haproxy.cfg")
    haproxy_cfg(cfg, "host", lb, ports)
    logf = open(os.path.join(run, "host-haproxy.log"), "w")
    procs.append(subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=logf, stderr=logf,
                                  stdin=subprocess.DEVNULL))
    t = time.time()
    for port in ports + [lb]:
        if not wait_ok(f"http://127.0.0.1:{port}/api/users/healthz", 120):
            for p in procs:
                p.kill()
            raise RuntimeError(f"test host on {port} did not start")
    log(f"test host: 2 instances on {ports}, haproxy on {lb} ({time.time() - t:.1f} s to serve)")
    return AppSet("host", f"http://127.0.0.1:{lb}", [p.pid for p in procs[:2]], ports[0],
                  os.path.join(run, "host-1.log"), procs)


def start_ceiling(env, runtime, tag, offset):
    """Two instances of `runtime` serving the constant component, behind their own haproxy
    (ports base+offset+1/+2, haproxy base+offset)."""
    base = int(env["SCALED_PORT_BASE_NUM"])
    ports = [base + offset + 1, base + offset + 2]
    lb = base + offset
    run = env["RUN"]
    # The default key-value store (Spin opens it for every app) in the run dir, not beside
    # the manifest.
    rc = os.path.join(run, "ceiling-runtime-config.toml")
    with open(rc, "w") as f:
        f.write(f'[key_value_store.default]\ntype = "spin"\npath = "{run}/ceiling-kv.db"\n')
    procs = []
    t = time.time()
    for i, port in enumerate(ports, 1):
        logf = open(os.path.join(run, f"ceiling-{tag}-{i}.log"), "w")
        procs.append(subprocess.Popen(
            serve_args(runtime, os.path.join(ROOT, "bench/ceiling/spin.toml"), port, run,
                       f"ceiling-{tag}-{i}", rc),
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL))
    cfg = os.path.join(run, f"ceiling-{tag}-haproxy.cfg")
    haproxy_cfg(cfg, "ceiling", lb, ports)
    logf = open(os.path.join(run, f"ceiling-{tag}-haproxy.log"), "w")
    procs.append(subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=logf, stderr=logf,
                                  stdin=subprocess.DEVNULL))
    for port in ports + [lb]:
        if not wait_ok(f"http://127.0.0.1:{port}/c/state", 120):
            for p in procs:
                p.kill()
            raise RuntimeError(f"{tag} ceiling app on {port} did not start")
    log(f"{tag} ceiling: constant component on {ports}, haproxy on {lb} "
        f"({time.time() - t:.1f} s to serve)")
    return procs, f"http://127.0.0.1:{lb}", f"http://127.0.0.1:{ports[0]}"


class Runner:
    def __init__(self, env, work):
        self.env = env
        self.work = work
        self.results = {}
        self.cpu = CpuAccount(env)

    def wrk(self, name, url, script, data_lua, conns=CONNS, duration=DURATION, extra_env=None,
            record=True, rt=None, app=None):
        """One wrk run; recorded under results[rt][name] when `record`."""
        tag = f"{rt}_{name}" if rt else name
        out = os.path.join(self.work, f"{tag}.json")
        env = dict(os.environ)
        env.update({"BENCH_DATA": data_lua, "BENCH_OUT": out,
                    "BENCH_LIB": os.path.join(ROOT, "bench/wrk/common.lua"),
                    "BENCH_THREADS": str(THREADS)})
        env.update(extra_env or {})
        cmd = ["wrk", f"-t{min(THREADS, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
               "-s", os.path.join(ROOT, "bench/wrk", script), url]
        log(f"{tag}: wrk -c{conns} -d{duration}s {url}")
        if record:
            statements_reset(self.env)
        pids = app.pids if app else []
        before = self.cpu.snapshot()
        with RssSampler(pids) as s:
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
            "runtime": rt,
            "connections": conns,
            "seconds": round(secs, 2),
            "requests": r["requests"],
            "bytes_per_request": round(r["bytes"] / max(1, r["requests"])),
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
            "app_rss_peak_kib": [s.peak[p] for p in pids],
            "cpu": CpuAccount.per_request(before, after, r["requests"], secs),
        }
        if record:
            res["statements"] = statements_read(self.env, r["requests"])
        log(f"  {res['rps']} req/s, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
            f"errors {res['errors']} {r['statuses']}")
        if record:
            self.results.setdefault(rt or "-", {})[name] = res
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




def pgbench_search(env, work, queries, clients, duration=DURATION, tag="search", what="searches"):
    """The database ceiling: pgbench sending the very search statements to the replica (one
    script per search: its recorded statements, as the service sent them)."""
    files = []
    for i, statements in enumerate(queries):
        p = os.path.join(work, f"pgbench-{tag}-{i}.sql")
        with open(p, "w") as f:
            f.write("".join(sql + ";\n" for sql in statements))
        files += ["-f", p]
    url = env["SPIN_VARIABLE_PRODUCT_DB_REPLICA_URLS"].split(",")[0]
    pgbench = shutil.which("pgbench") or seeding_pg_bin("pgbench")
    cmd = [pgbench, "-n", "-M", "extended", "-c", str(clients), "-j", str(THREADS),
           "-T", str(duration), "-r"] + files + [url]
    log(f"pgbench: the statements of {len(queries)} {what}, -c {clients} -T {duration}, on the replica")
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




# ---------------------------------------------------------------- order placement: its SQL

ORDER_DBS = (("order-pg-0", "SCALED_PG_ORDER_0", "marketplace_order_0"),
             ("order-pg-1", "SCALED_PG_ORDER_1", "marketplace_order_1"),
             ("product-pg", "SCALED_PG_PRODUCT", "marketplace_product"))
LOG_ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \S+ \[(\d+)\] (\S*) ?(LOG|DETAIL):  (.*)$")


def _pg_admin(env, key, *sql):
    url = f"postgres://postgres@127.0.0.1:{env[key]}/postgres?sslmode=disable"
    cmd = ["psql", url, "-qtAX", "-v", "ON_ERROR_STOP=1"]
    for q in sql:
        cmd += ["-c", q]
    subprocess.run(cmd, check=True, capture_output=True)


def record_order_statements(env, app, buyer_tokens, buyer_dbs, products, address, n=48):
    """Places `n` orders one at a time through `app` with PostgreSQL logging every statement,
    and returns, per order, the statements each database received from the order and product
    components, in order, with their parameter values: the SQL of one order placement, taken
    from the running code (components/order/src/store.rs, service.rs, relay.rs;
    components/product/src/store.rs), not rewritten by hand."""
    run = env["RUN"]
    offsets = {}
    for name, key, _ in ORDER_DBS:
        logf = os.path.join(run, name, "server.log")
        offsets[name] = os.path.getsize(logf)
        _pg_admin(env, key, "alter system set log_statement = 'all'",
                  "alter system set log_line_prefix = '%m [%p] %d '", "select pg_reload_conf()")
    time.sleep(0.5)
    rng = random.Random(7)
    placed = []
    try:
        by_db = {0: [], 1: []}
        for tok, db in zip(buyer_tokens, buyer_dbs):
            by_db.setdefault(db, []).append(tok)
        for i in range(n):
            tokens = by_db[i % 2] or buyer_tokens
            items = [{"product_id": p, "quantity": rng.randint(1, 2)}
                     for p in rng.sample(products, rng.randint(1, 2))]
            st, body = http("POST", app.base + "/api/orders",
                            {"items": items, "shipping_address": json.loads(address)},
                            token=rng.choice(tokens),
                            headers={"Idempotency-Key": f"record-{app.name}-{i}-{time.time()}"})
            if st == 201:
                placed.append(json.loads(body))
    finally:
        time.sleep(0.5)
        for name, key, _ in ORDER_DBS:
            _pg_admin(env, key, "alter system reset log_statement",
                      "alter system reset log_line_prefix", "select pg_reload_conf()")
    streams = {}
    for name, _, dbname in ORDER_DBS:
        entries = []
        with open(os.path.join(run, name, "server.log"), errors="replace") as f:
            f.seek(offsets[name])
            for line in f:
                m = LOG_ENTRY.match(line.rstrip("\n"))
                if m:
                    entries.append([m.group(3), m.group(4), m.group(5), m.group(1)])
                elif entries:
                    entries[-1][2] += "\n" + line.rstrip("\n")
        stmts = []
        for db, kind, text, stamp in entries:
            if db != dbname:
                continue
            if kind == "LOG":
                m = re.match(r"execute [^:]+: (.*)", text, re.S)
                stmts.append({"sql": m.group(1), "params": {}, "db": name,
                              "t": time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
                              + float("0" + stamp[19:])} if m else None)
            elif kind == "DETAIL" and stmts and stmts[-1] is not None \
                    and text.startswith("parameters: "):
                stmts[-1]["params"] = parse_params(text[len("parameters: "):])
        streams[name] = [s for s in stmts if s is not None]
    # One order = from its idempotency-key claim to the next (shards); from `begin` to
    # `commit` (product: one transaction per reservation).
    orders = {"order-pg-0": [], "order-pg-1": [], "product-pg": []}
    for name in ("order-pg-0", "order-pg-1"):
        for s in streams[name]:
            if s["sql"].startswith("insert into idempotency_keys"):
                orders[name].append([])
            if orders[name]:
                orders[name][-1].append(s)
    cur = None
    for s in streams["product-pg"]:
        if s["sql"] == "begin":
            cur = []
        if cur is not None:
            cur.append(s)
            if s["sql"] == "commit":
                if any(x["sql"].startswith("insert into reservations") for x in cur):
                    orders["product-pg"].append(cur)
                cur = None
    return orders, placed


def order_timeline(recorded):
    """Where one order's time goes, seen from the databases: each recorded order's statements
    on its shard and on the product primary, merged in time; for each step, the mean time
    since the previous statement arrived (the previous statement's execution and round trip
    plus whatever the components did in between: Wasm work, calls to the other services).
    PostgreSQL's log stamps have millisecond resolution, hence means over all orders."""
    product = sorted(recorded["product-pg"], key=lambda o: o[0]["t"])
    steps = {}
    totals = []
    for name in ("order-pg-0", "order-pg-1"):
        for o in recorded[name]:
            t0, t1 = o[0]["t"], o[-1]["t"]
            p = next((x for x in product if t0 <= x[0]["t"] <= t1), [])
            merged = sorted(o + p, key=lambda x: x["t"])
            totals.append((t1 - t0) * 1000)
            prev = None
            seen = {}
            for x in merged:
                label = ("product: " if x["db"] == "product-pg" else "shard: ") + \
                    re.sub(r"\s+", " ", x["sql"])[:70]
                seen[label] = seen.get(label, 0) + 1
                if seen[label] > 1:
                    label += f" (#{seen[label]})"
                if prev is not None:
                    steps.setdefault(label, []).append((x["t"] - prev) * 1000)
                prev = x["t"]
    out = [{"step": k, "mean_ms_since_previous": round(statistics.mean(v), 2), "n": len(v)}
           for k, v in steps.items()]
    order = {k: i for i, k in enumerate(steps)}
    out.sort(key=lambda r: order[r["step"]])
    return {"orders": len(totals), "mean_ms_first_to_last_statement":
            round(statistics.mean(totals), 2) if totals else None, "steps": out}


def parse_params(text):
    """`$1 = 'a', $2 = NULL, …` (values quoted as SQL literals, quotes doubled)."""
    out = {}
    i = 0
    while i < len(text):
        m = re.compile(r"\s*,?\s*\$(\d+) = ").match(text, i)
        if not m:
            break
        i = m.end()
        if text.startswith("NULL", i):
            out[int(m.group(1))] = "NULL"
            i += 4
            continue
        assert text[i] == "'", text[i:i + 40]
        j = i + 1
        while True:
            k = text.index("'", j)
            if text.startswith("''", k):
                j = k + 2
                continue
            break
        out[int(m.group(1))] = text[i:k + 1]
        i = k + 1
    return out


def order_script(stmts):
    """A pgbench script of one recorded order's statements on one database: parameter values
    inlined as the literals they were, except what must be new per order (the order id, which
    is also the reservation id, and the idempotency key: from a random :n) and the id of the
    outbox row this script inserted (read back with \\gset from the relay's claim)."""
    order_id = key = None
    for s in stmts:
        if s["sql"].startswith("insert into idempotency_keys"):
            key, order_id = s["params"].get(3), s["params"].get(5)
        if s["sql"].startswith("insert into reservations"):
            order_id = s["params"].get(1)
    lines = ["\\set n random(1, 999999999999999)"]
    for s in stmts:
        params = dict(s["params"])
        for k, v in params.items():
            if order_id and v == order_id:
                params[k] = f"('{order_id.strip(chr(39))[:3]}' || md5(:n::text))"
            elif key and v == key:
                params[k] = "('bench-' || :n::text)"
        sql = s["sql"]
        if sql.startswith("update outbox set delivered_at") or sql.startswith("update outbox set attempts"):
            params[1] = ":ob_id"
        sql = re.sub(r"\$(\d+)", lambda m: params.get(int(m.group(1)), m.group(0)), sql)
        lines.append(sql.replace("\n", " ") + ";")
        if "from outbox" in s["sql"] and "for update skip locked" in s["sql"]:
            lines.append("\\gset ob_")
    return "\n".join(lines) + "\n"


def pgbench(url, files, clients, duration):
    # Simple protocol: pgbench then substitutes only the variables it has (:n, :ob_id); in
    # extended mode it would take every `:word` for one, also inside the statements' string
    # literals (`'…HH24:MI:SS…'`, times in JSON values).
    cmd = [shutil.which("pgbench") or seeding_pg_bin("pgbench"), "-n", "-M", "simple",
           "-c", str(clients), "-j", str(min(THREADS, clients)), "-T", str(duration)]
    for f in files:
        cmd += ["-f", f]
    return subprocess.Popen(cmd + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pgbench_result(p):
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(err + out)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {"tps": round(tps, 1), "latency_avg_ms": lat,
            "failed": int(failed.group(1)) if failed else 0}


def pgbench_order(env, work, recorded, clients, duration=DURATION):
    """The database ceiling of order placement: pgbench sending the recorded statements of
    an order placement to the same databases. The order shards run together (buyers split
    over them), then the product primary; an order needs both, one after the other, on the
    same cores, so the ceiling is 1 / (1/shards + 1/product) orders per second."""
    files = {}
    for name in ("order-pg-0", "order-pg-1", "product-pg"):
        files[name] = []
        for i, stmts in enumerate(recorded[name]):
            path = os.path.join(work, f"pgbench-order-{name}-{i}.sql")
            with open(path, "w") as f:
                f.write(order_script(stmts))
            files[name].append(path)
        if not files[name]:
            raise RuntimeError(f"no order statements recorded on {name}")
    urls = {name: f"postgres://postgres@127.0.0.1:{env[key]}/{db}?sslmode=disable"
            for name, key, db in ORDER_DBS}
    log(f"pgbench: order placement statements, shards ({len(files['order-pg-0'])} + "
        f"{len(files['order-pg-1'])} scripts, {clients // 2} clients each), -T {duration}")
    ps = [pgbench(urls[n], files[n], max(1, clients // 2), duration)
          for n in ("order-pg-0", "order-pg-1")]
    shards = [pgbench_result(p) for p in ps]
    log(f"pgbench: order placement statements, product primary ({len(files['product-pg'])} "
        f"scripts, {clients} clients), -T {duration}")
    product = pgbench_result(pgbench(urls["product-pg"], files["product-pg"], clients, duration))
    shards_tps = sum(x["tps"] for x in shards)
    ceiling = 1 / (1 / shards_tps + 1 / product["tps"])
    per_order = {n: round(statistics.mean(len(o) for o in recorded[n]), 2) for n in recorded}
    log(f"  shards {shards_tps:.1f}/s, product {product['tps']:.1f}/s -> {ceiling:.1f} orders/s")
    return {"tps": round(ceiling, 1), "clients": clients, "shards": shards,
            "shards_tps": round(shards_tps, 1), "product": product,
            "statements_per_order": per_order,
            "latency_sum_ms": round(statistics.mean(x["latency_avg_ms"] for x in shards)
                                    + product["latency_avg_ms"], 3),
            "example": {n: order_script(recorded[n][0]) for n in recorded},
            "failed": sum(x["failed"] for x in shards) + product["failed"]}


# ---------------------------------------------------------------- runtime costs


def instantiation_costs(app, ceiling_direct):
    """Sequential requests to one instance's no-I/O endpoints: the round trip, and for the test
    host its own per-request time (fresh instance, run, response) from its request log."""
    port = app.direct_port
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
        if app.log_path and os.path.exists(app.log_path):
            with open(app.log_path, errors="ignore") as f:
                for line in f:
                    m = re.match(rf"GET {re.escape(path)} 200 ([\d.]+)ms", line)
                    if m:
                        durations.append(float(m.group(1)))
        durations = durations[-n:]
        out[svc] = {"client_ms_p50": round(statistics.median(wall), 3)}
        if durations:
            out[svc].update({"host_ms_p50": round(statistics.median(durations), 3),
                             "host_ms_p90": round(sorted(durations)[int(len(durations) * 0.9)], 3)})
    wall = []
    for _ in range(n):
        t = time.perf_counter()
        http("GET", ceiling_direct + "/c/state")
        wall.append((time.perf_counter() - t) * 1000)
    out["constant"] = {"client_ms_p50": round(statistics.median(wall), 3)}
    return out


def measure_start(runtime, env, tag, port, extra=()):
    """Seconds from starting the whole app (spin.toml) to its first answer, on `runtime`."""
    run = env["RUN"]
    child_env = dict(os.environ)
    child_env.update({k: v for k, v in env.items() if k.startswith("SPIN_VARIABLE_")})
    logp = os.path.join(run, f"start-{tag}.log")
    with open(logp, "w") as logf:
        t = time.time()
        p = subprocess.Popen(serve_args(runtime, os.path.join(ROOT, "spin.toml"), port, run,
                                        f"start-{tag}", os.path.join(run, "runtime-config.toml"))
                             + list(extra),
                             env=child_env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        ok = wait_ok(f"http://127.0.0.1:{port}/api/orders/healthz", 120)
        secs = time.time() - t
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    log(f"{tag}: the app answered {secs:.1f} s after start" if ok else f"{tag}: did not start")
    return round(secs, 2) if ok else None


def machine(env):
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
        "spin": sh(f"'{env['RUNTIME']}' --version"),
        "host": "spin-test-host (wasmtime 48, pooling allocator), dev profile at opt-level 2 (the host and its dependencies)",
        "load_on_start": sh("cut -d' ' -f1-3 /proc/loadavg"),
    }


# ---------------------------------------------------------------- main


def main():
    t_start = time.time()
    env = load_env()
    env["RUN"] = os.environ["SCALED_RUN_DIR"]
    env["RUNTIME"] = os.environ["RUNTIME"]
    env["HOST_BIN"] = os.environ.get("HOST_BIN", "")
    env["SCALED_PORT_BASE_NUM"] = os.environ.get("SCALED_PORT_BASE", "26500")
    # The topology's instances run on real Spin unless USE_TEST_HOST=1 (tools/dev/runtime.sh);
    # the test host then runs beside them (BENCH_HOST=0: not).
    primary_rt = "host" if os.environ.get("USE_TEST_HOST") else "spin"
    with_host = primary_rt == "spin" and os.environ.get("BENCH_HOST", "1") != "0"
    if with_host and not os.access(env["HOST_BIN"] or "/nonexistent", os.X_OK):
        log(f"no test host at {env['HOST_BIN']!r}: measuring Spin only (make host builds it)")
        with_host = False
    work = os.path.join(env["RUN"], "bench")
    os.makedirs(work, exist_ok=True)
    only = [x for x in os.environ.get("BENCH_SCENARIOS", "").split(",") if x]

    def want(name):  # development runs: BENCH_SCENARIOS=order,event (default: all)
        return not only or name in only
    results = {"format": 2, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(env),
               "settings": {"duration_s": DURATION, "connections": CONNS, "threads": THREADS,
                            "login_connections": LOGIN_CONNS, "search_connections": SEARCH_CONNS,
                            "order_connections": ORDER_CONNS, "day_connections": DAY_CONNS,
                            "app_instances": 2}}

    base_port = int(env["SCALED_PORT_BASE_NUM"])
    results["primary"] = primary_rt
    # Start-up: Spin compiles the components unless its Wasmtime cache (~/.cache/wasmtime)
    # already holds them; measured with the cache and without it (--disable-cache).
    results["start_s"] = {primary_rt: measure_start(env["RUNTIME"], env, primary_rt, base_port + 25)}
    if primary_rt == "spin":
        results["start_s"]["spin, --disable-cache"] = measure_start(
            env["RUNTIME"], env, "spin-nocache", base_port + 25, ["--disable-cache"])
    if with_host:
        results["start_s"]["host"] = measure_start(env["HOST_BIN"], env, "host", base_port + 25)

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

    spin = AppSet(primary_rt, env["SCALED_BASE_URL"],
                  [_pidfile(os.path.join(env["RUN"], f"app-{i}.pid")) for i in (1, 2)],
                  int(env["SCALED_APP_PORTS"].split()[0]))
    apps = [spin]
    run = Runner(env, work)
    stop_list = []
    try:
        if with_host:
            host = start_host_set(env, work)
            stop_list.append(host)
            apps.append(host)
            run.cpu.add("app (host)", host.pids)
            run.cpu.add("haproxy (host)", [host.procs[-1].pid])
        base = spin.base

        log("logging in buyers and carriers")

        def login(email):
            st, body = http("POST", base + "/api/auth/login", {"email": email, "password": s["password"]})
            if st != 200:
                raise RuntimeError(f"login {email}: {st} {body[:200]!r}")
            return json.loads(body)["access_token"]
        with ThreadPoolExecutor(4) as ex:
            buyers64 = s["buyers"][:64]
            buyer_tokens = list(ex.map(login, [e for _, e in buyers64]))
            carrier_tokens = list(ex.map(login, [e for _, e in s["carriers"][:4]]))
        buyer_dbs = [seeding_vshard_db(uid) for uid, _ in buyers64]

        rng = s["rng"]
        search_queries = search_mix(s["words"], rng, int(os.environ.get("BENCH_SEARCH_QUERIES", "120")))
        search_paths = ["/api/products?" + q for q in search_queries]
        # The search ceiling's SQL, recorded from the replica's statement log while each
        # search of the mix is sent once (on each runtime: the same code must send the same
        # statements; the ceiling runs the primary runtime's recording).
        recorded_search = {a.name: record_search_statements(env, a, search_paths) for a in apps}
        queries = recorded_search[primary_rt]
        results["search_statements_per_request"] = round(
            sum(len(q) for q in queries) / len(queries), 2)
        results["search_recording"] = {
            "via": primary_rt, "searches": len(queries),
            "statements": sum(len(q) for q in queries),
            "padded": sum(1 for q in queries for x in q if unpadded(x) is not None),
            "kinds": statement_kinds(queries),
            "same_on": [n for n, q in recorded_search.items() if q == queries],
            "differs_on": [n for n, q in recorded_search.items() if q != queries],
            "example": queries[0]}
        detail_paths = [f"/api/products/{i}" for i in s["hot_ids"]]
        search_lua = data_file(work, "search", {"paths": search_paths})
        detail_lua = data_file(work, "detail", {"paths": detail_paths})
        const_lua = data_file(work, "constant", {"paths": ["/c/state"]})
        address = json.dumps({"name": "Bench Buyer", "line1": "1 Main Street", "city": "Lyon",
                              "postal_code": "69001", "country": "FR"})

        def half(app, name, full, lua, conns, script="get.lua"):
            """About half of the measured maximum: `conns` connections with exponential think
            time, calibrated by a short run, so that together they offer half of `full`'s
            throughput (wrk is closed-loop: rate = conns / (think + latency))."""
            target = full["rps"] / 2
            think = max(0.0, conns * 1000.0 / target - full["p50_ms"] / 2)
            cal = run.wrk(name + "_calibration", app.base, script, lua, conns=conns,
                          duration=min(5, DURATION), rt=app.name, app=app, record=False,
                          extra_env={"BENCH_DELAY_MS": f"{think:.3f}"})
            think = max(0.0, conns * 1000.0 / target - cal["mean_ms"])
            r = run.wrk(name, app.base, script, lua, conns=conns, rt=app.name, app=app,
                        extra_env={"BENCH_DELAY_MS": f"{think:.3f}"})
            r["target_rps"] = round(target, 1)
            r["think_ms"] = round(think, 2)
            return r

        ceilings = {}
        results["ceilings"] = ceilings
        runtimes = {}
        results["runtimes"] = runtimes
        offsets = {primary_rt: 40, "host": 43} if primary_rt == "spin" else {"host": 40}
        binaries = {primary_rt: env["RUNTIME"]}
        if with_host:
            binaries["host"] = env["HOST_BIN"]
        ceiling_urls = {}
        for app in apps:
            procs, lb, direct = start_ceiling(env, binaries[app.name], app.name, offsets[app.name])
            stop_list.append(AppSet(app.name + "-ceiling", lb, [], 0, procs=procs))
            run.cpu.add(f"ceiling app + its haproxy ({app.name})", [p.pid for p in procs])
            ceiling_urls[app.name] = (lb, direct)
            runtimes[app.name] = {"ceilings": {}}

        # Warm-up: the search statements (plans, buffers), product pages, the constant.
        for app in apps:
            run.wrk("warm_search", app.base, "get.lua", search_lua, conns=4, duration=min(5, DURATION),
                    record=False, rt=app.name, app=app)
            run.wrk("warm_detail", app.base, "get.lua", detail_lua, conns=8, duration=min(3, DURATION),
                    record=False, rt=app.name, app=app)
            run.wrk("warm_constant", ceiling_urls[app.name][0], "get.lua", const_lua, conns=8,
                    duration=min(3, DURATION), record=False, rt=app.name)
            runtimes[app.name]["instantiation"] = instantiation_costs(app, ceiling_urls[app.name][1])

        # Each ceiling runs right before the scenario it bounds, so that both see the same
        # machine (the cores are shared with whatever else runs).
        for app in apps:
            lb, direct = ceiling_urls[app.name]
            rc = runtimes[app.name]["ceilings"]
            rc["runtime"] = run.wrk("ceiling_runtime", lb, "get.lua", const_lua, rt=app.name)
            rc["runtime_one_instance_direct"] = run.wrk("ceiling_runtime_direct", direct, "get.lua",
                                                        const_lua, rt=app.name)
            if want("detail"):
                detail = run.wrk("detail", app.base, "get.lua", detail_lua, rt=app.name, app=app)
                half(app, "detail_half", detail, detail_lua, 16)
        ceilings["key_value"] = redis_ceiling(env, s["stats"]["kv_document_bytes_mean"])

        # What the padding costs the database: the same statements without the wrapper first
        # (a comparison only), then the ceiling itself right before the scenario it bounds.
        bare = [[unpadded(x) or x for x in q] for q in queries]
        if bare != queries:
            ceilings["database_search_unpadded"] = pgbench_search(
                env, work, bare, SEARCH_CONNS, tag="search-unpadded",
                what="searches without the padding wrapper")
        ceilings["database_search"] = pgbench_search(env, work, queries, SEARCH_CONNS)
        for app in apps if want("search") else []:
            search = run.wrk("search", app.base, "get.lua", search_lua, conns=SEARCH_CONNS,
                             rt=app.name, app=app)
            half(app, "search_half", search, search_lua, max(2, SEARCH_CONNS // 2))

        # The storefront's pages (components/web), each beside the API call it wraps, back
        # to back on the same runtime with the same connections: the home page (its one call,
        # the newest hundred products), the search results page (the search scenario's mix,
        # as the search form sends it), the product page (the detail scenario's ids).
        if want("pages"):
            page_defs = storefront_pages(search_queries, s["hot_ids"])
            for app in apps:
                cookies = [session_cookie(app, page_defs[-1]["page_paths"][0])
                           for _ in range(THREADS)]
                checks = runtimes[app.name].setdefault("page_checks", {})
                for p in page_defs:
                    page_lua = data_file(work, f"page_{p['key']}_{app.name}",
                                         {"paths": p["page_paths"],
                                          "cookies": [c for c in cookies if c]})
                    api_lua = data_file(work, f"page_{p['key']}_api", {"paths": p["api_paths"]})
                    checks[p["key"]] = page_check(app, p["page_paths"][0], cookies[0])
                    run.wrk(f"warm_page_{p['key']}", app.base, "pages.lua", page_lua, conns=4,
                            duration=min(3, DURATION), record=False, rt=app.name, app=app)
                    run.wrk(f"page_{p['key']}_api", app.base, "get.lua", api_lua,
                            conns=p["conns"], rt=app.name, app=app)
                    full = run.wrk(f"page_{p['key']}", app.base, "pages.lua", page_lua,
                                   conns=p["conns"], rt=app.name, app=app)
                    half(app, f"page_{p['key']}_half", full, page_lua, p["half_conns"],
                         script="pages.lua")
            results["pages"] = [{k: v for k, v in p.items() if not k.endswith("_paths")}
                                for p in page_defs]

        # Paired ratios on Spin (the targets): short ceiling and scenario runs back to back,
        # alternating, so that both halves of each ratio see the same machine; the median of
        # the rounds is what the targets are judged on.
        rounds = int(os.environ.get("BENCH_PAIRED_ROUNDS", "3")) if want("paired") else 0
        paired = {"detail": [], "search": []}
        pd = min(5, DURATION)
        for i in range(rounds):
            c = run.wrk(f"pair{i}_constant", ceiling_urls[primary_rt][0], "get.lua", const_lua,
                        duration=pd, record=False, rt=primary_rt)
            d = run.wrk(f"pair{i}_detail", spin.base, "get.lua", detail_lua, duration=pd,
                        record=False, rt=primary_rt, app=spin)
            paired["detail"].append({"scenario_rps": d["rps"], "ceiling_rps": c["rps"],
                                     "ratio": round(d["rps"] / c["rps"], 3)})
            pg = pgbench_search(env, work, queries, SEARCH_CONNS, duration=pd)
            q = run.wrk(f"pair{i}_search", spin.base, "get.lua", search_lua, conns=SEARCH_CONNS,
                        duration=pd, record=False, rt=primary_rt, app=spin)
            paired["search"].append({"scenario_rps": q["rps"], "ceiling_rps": pg["tps"],
                                     "ratio": round(q["rps"] / pg["tps"], 3)})
        if rounds:
            results["paired_ratios"] = {
                k: {"rounds": v, "median": statistics.median(r["ratio"] for r in v)}
                for k, v in paired.items()}
            log(f"paired ratios: detail {results['paired_ratios']['detail']['median']}, "
                f"search {results['paired_ratios']['search']['median']}")

        def writes_file(shipments=None):
            lists = {"buyer_tokens": buyer_tokens, "carrier_tokens": carrier_tokens,
                     "order_products": s["order_products"], "search_paths": search_paths,
                     "detail_paths": detail_paths, "login_emails": [e for _, e in s["buyers"]]}
            if shipments:
                lists["shipments"] = shipments
            return data_file(work, "writes", lists,
                             {"password": s["password"], "address_json": address})

        writes = writes_file()
        ceilings["argon2id"] = argon2_ceiling()
        for app in apps if want("login") else []:
            run.wrk("login", app.base, "mixed.lua", writes, conns=LOGIN_CONNS,
                    extra_env={"BENCH_MIX": "login"}, rt=app.name, app=app)

        # The SQL of one order placement, recorded from the running code (on each runtime,
        # for the time line of one order; the pgbench ceiling uses Spin's recording).
        recording = {}
        for app in apps:
            recorded, placed = record_order_statements(env, app, buyer_tokens, buyer_dbs,
                                                       s["order_products"], address)
            recording[app.name] = {
                "orders": len(placed),
                "with_shipment": sum(1 for o in placed if o.get("shipment_id")),
                "timeline": order_timeline(recorded)}
            if app is apps[0]:
                recorder, first = app, recorded
        recorded = first
        results["order_recording"] = recording
        ceilings["database_order"] = pgbench_order(env, work, recorded, ORDER_CONNS)
        ceilings["database_order"]["recorded_via"] = recorder.name

        t_orders = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time() - 1))
        for app in apps:
            run.wrk("order", app.base, "mixed.lua", writes, conns=ORDER_CONNS,
                    extra_env={"BENCH_MIX": "order"}, rt=app.name, app=app)

        # Order placement, part by part: the two internal calls it makes, each on its own, so
        # that the CPU per order can be split between the order component and its callees.
        if want("parts"):
            sys.path.insert(0, os.path.join(ROOT, "tests", "soak"))
            from tokens import Minter
            mint = Minter(env)
            prods = s["order_products"]
            parts = {
                "reserve": ("/internal/products/reservations", mint.service("order", "product", 3600),
                            {"reservation_id": "UNIQ", "items": [
                                {"product_id": prods[0], "quantity": 1},
                                {"product_id": prods[1], "quantity": 1}]}),
                "ship": ("/internal/deliveries", mint.service("order", "delivery", 3600),
                         {"order_id": "UNIQ", "buyer_id": buyers64[0][0],
                          "shipping_address": json.loads(address),
                          "items": [{"product_id": prods[0], "title": "Bench item", "quantity": 1}]}),
            }
            for app in apps:
                for part, (path, token, body) in parts.items():
                    r = run.wrk(f"part_{part}", app.base, "internal.lua", const_lua, conns=8,
                                duration=min(5, DURATION), rt=app.name, app=app,
                                extra_env={"BENCH_PATH": path, "BENCH_TOKEN": token,
                                           "BENCH_BODY": json.dumps(body)})
                    runtimes[app.name].setdefault("parts", {})[part] = r
                    run.results[app.name].pop(f"part_{part}", None)

        # Shipments of the orders just placed, picked up by a carrier: the delivery scenario
        # appends hub scans (`in_transit`, which may repeat) to them.
        shipments = []
        for url in env["SPIN_VARIABLE_ORDER_DB_URLS"].split(","):
            shipments += seeding.psql(url, f"select shipment_id from orders where shipment_id is "
                                           f"not null and created_at >= '{t_orders}' limit 250").split()
        log(f"picking up {len(shipments)} shipments")
        pickup = {}
        for app in reversed(apps):
            def pick_up(sid, app=app):
                st, _ = http("POST", f"{app.base}/api/deliveries/{sid}/events",
                             {"event_id": f"pickup-{sid}", "status": "picked_up", "location": "Depot"},
                             token=carrier_tokens[0])
                return (sid, st)
            with ThreadPoolExecutor(4) as ex:
                got = list(ex.map(pick_up, shipments))
            pickup[app.name] = {}
            for _, st in got:
                pickup[app.name][str(st)] = pickup[app.name].get(str(st), 0) + 1
            picked = [sid for sid, st in got if st in (200, 201)]
            if picked:
                pickup["via"] = app.name
                break
        results["seed"]["shipments_picked_up"] = len(picked) if shipments else 0
        results["pickup"] = pickup
        if not shipments or not picked:
            log("no shipment could be picked up: the event scenario is skipped, and the "
                "browsing day's event appends become detail reads")
            picked = []
        else:
            writes = writes_file(picked)
            for app in apps if want("event") else []:
                run.wrk("event", app.base, "mixed.lua", writes, extra_env={"BENCH_MIX": "event"},
                        rt=app.name, app=app)
        results["day_without_events"] = not picked
        for app in apps if want("day") else []:
            run.wrk("day", app.base, "mixed.lua", writes, conns=DAY_CONNS,
                    extra_env={"BENCH_MIX": "day"}, rt=app.name, app=app)

        # Memory per instance: the growth of the processes' resident memory under load,
        # divided by the requests in flight per process (each request is one instance).
        children = _ppids()
        for app in apps:
            runtimes[app.name]["app_rss_idle_kib"] = [
                sum(rss_kib(c) for c in _with_descendants([p], children)) for p in app.pids]
    finally:
        for a in stop_list:
            a.stop()

    for name, rs in run.results.items():
        if name in runtimes:
            runtimes[name]["scenarios"] = rs
    results["wasm"] = {}
    for c in ("user", "product", "order", "delivery", "web"):
        path = os.path.join(ROOT, f"target/wasm32-wasip2/release/marketplace_{c}.wasm")
        if not os.path.exists(path):
            continue
        results["wasm"][c] = {"bytes": os.path.getsize(path),
                              "initial_memory_pages": wasm_memory_pages(path)}
    probe = os.path.join(ROOT, "target/wasm32-wasip2/release/probe_component.wasm")
    results["wasm"]["constant (probe)"] = {
        "bytes": os.path.getsize(probe), "initial_memory_pages": wasm_memory_pages(probe)}
    results["duration_s"] = round(time.time() - t_start, 1)

    # Development runs can write elsewhere: BENCH_RESULTS (a directory, default bench/results)
    # and BENCH_REPORT (default BENCHMARKS.md).
    results_dir = os.path.abspath(os.environ.get("BENCH_RESULTS") or os.path.join(ROOT, "bench/results"))
    report_path = os.path.abspath(os.environ.get("BENCH_REPORT") or os.path.join(ROOT, "BENCHMARKS.md"))
    os.makedirs(results_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    raw = os.path.join(results_dir, f"{stamp}.json")
    with open(raw, "w") as f:
        json.dump(results, f, indent=2)
    shutil.copy(raw, os.path.join(results_dir, "latest.json"))
    import report
    report.write(results, report_path, os.path.relpath(raw, ROOT))
    log(f"wrote {os.path.relpath(report_path, ROOT)} and {os.path.relpath(raw, ROOT)} "
        f"in {results['duration_s']} s")


def seeding_vshard_db(buyer_id, databases=2):
    """Which order database holds a buyer (as bench/seed.py and the order service compute it)."""
    import hashlib
    import uuid as _uuid
    digest = hashlib.sha256(_uuid.UUID(buyer_id).bytes).digest()
    return (int.from_bytes(digest[:2], "big") % 64) * databases // 64


if __name__ == "__main__":
    main()

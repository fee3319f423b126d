"""Writes BENCHMARKS.md from one results document (bench/results/*.json, format 2: every
scenario on real Spin and on the project's test host).

    python3 bench/report.py bench/results/latest.json   # re-render without re-running
    python3 bench/report.py /tmp/dev/latest.json /tmp/dev/BENCHMARKS.md   # elsewhere
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SCENARIOS = [
    ("search", "product search (mixed queries and filters)", "database_search"),
    ("detail", "product detail (key-value read model)", "runtime"),
    ("order", "order placement (reserve stock, 2 shards, shipment)", "database_order"),
    ("event", "delivery event append (hub scan)", "runtime"),
    ("login", "login (Argon2id verify + tokens)", "argon2id"),
    ("day", "browsing day: 55% search, 35% detail, 5% orders, 4.5% events, 0.5% logins", "runtime"),
    ("search_half", "search at ~half its maximum throughput", "database_search"),
    ("detail_half", "detail at ~half its maximum throughput", "runtime"),
]
NAMES = {"spin": "Spin", "host": "test host"}
# The storefront's pages (components/web), each measured beside the API call it wraps.
PAGES = [
    ("home", "home page", "`GET /`"),
    ("search", "search results page", "`GET /search?q=…`"),
    ("product", "product page", "`GET /products/{id}`"),
]
PAGE_KEYS = [f"page_{k}{x}" for k, _, _ in PAGES for x in ("_api", "", "_half")]


def fmt(x, nd=1):
    return f"{x:,.{nd}f}"


def ceiling_rps(r, rt, key):
    c = r["ceilings"]
    if key == "runtime":
        x = r["runtimes"][rt]["ceilings"]["runtime"]["rps"]
        return x, f"constant component on {NAMES[rt]}, haproxy → 2 instances"
    if key == "database_search":
        return c["database_search"]["tps"], "pgbench, same search SQL, replica"
    if key == "database_order":
        return c["database_order"]["tps"], "pgbench, same order SQL, shards + product primary"
    if key == "argon2id":
        return c["argon2id"]["logins_per_s"], f"Argon2id hashes/s on {c['argon2id']['cores']} cores (native)"
    raise KeyError(key)


def app_ms(x, rt, primary):
    per = x["cpu"]["ms_per_request"]
    return per.get("app (host)" if rt == "host" and primary != "host" else "app", 0)


def page_checks(r, rt):
    """The storefront targets on one runtime: each page at least half the throughput of the
    API call it wraps (closed loop, same connections, back to back), p99 under 50 ms at about
    half of the page's maximum. (name, measured, met, short label) per target."""
    s = r["runtimes"].get(rt, {}).get("scenarios", {})
    defs = {p["key"]: p for p in r.get("pages", [])}
    out = []
    for key, label, _ in PAGES:
        page, api, half = s.get(f"page_{key}"), s.get(f"page_{key}_api"), s.get(f"page_{key}_half")
        wraps = f"`{defs[key]['api']}`" if key in defs else "the API call it wraps"
        if page and api and api["rps"]:
            v = page["rps"] / api["rps"]
            out.append((f"{label} ≥ 0.5 × {wraps}", f"{v:.2f} ({fmt(page['rps'])} of "
                        f"{fmt(api['rps'])} req/s)", v >= 0.5, "ratio"))
        if half:
            out.append((f"{label} p99 < 50 ms at ~half of max ({fmt(half['rps'])} of "
                        f"{fmt(half['target_rps'] * 2)} req/s)", f"{half['p99_ms']:.1f} ms",
                        half["p99_ms"] < 50, "p99"))
    return out


def pages_section(L, r, rts, scen, primary):
    defs = {p["key"]: p for p in r.get("pages", [])}
    L.append("## Storefront pages")
    L.append("")
    L.append("The `web` component's pages, each measured beside the API call it wraps, on the "
             "same runtime, with the same connections, right after it (closed loop, like the "
             "scenarios above): the home page beside its one call (the newest hundred "
             "products, from which it shows eight and the categories), the search results "
             "page beside `GET /api/products` for the same search (the search scenario's "
             "mix as the search form sends it: prices in major units, forwarded in cents with "
             "`limit=20`), the product page beside `GET /api/products/{id}` for the detail "
             "scenario's ids. A page request is one web instance, its call to the product "
             "service (`product.spin.internal`, a second instance), the session and cart "
             "reads in the `web-sessions` and `web-carts` labels, and the template rendered. "
             "The pages are loaded as a returning browser does, with a session cookie (one "
             "session per wrk thread, from a first product-page visit); the half-load run "
             "calibrates think time so the offered rate is about half of the page's maximum.")
    L.append("")
    head = "| page | wraps | conns | runtime | page req/s | API req/s | page / API | page p50 / p99 ms | API p50 / p99 ms | app CPU ms/req page / API | bytes page / API | errors page / API |"
    L.append(head)
    L.append("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label, path in PAGES:
        for rt in rts:
            page, api = scen[rt].get(f"page_{key}"), scen[rt].get(f"page_{key}_api")
            if not page or not api:
                continue
            wraps = f"`{defs[key]['api']}`" if key in defs else ""
            L.append(f"| {label} ({path}) | {wraps} | {page['connections']} | {NAMES[rt]} | "
                     f"{fmt(page['rps'])} | {fmt(api['rps'])} | {page['rps'] / api['rps']:.2f} | "
                     f"{page['p50_ms']:.2f} / {page['p99_ms']:.2f} | "
                     f"{api['p50_ms']:.2f} / {api['p99_ms']:.2f} | "
                     f"{app_ms(page, rt, primary):.2f} / {app_ms(api, rt, primary):.2f} | "
                     f"{page.get('bytes_per_request', 0):,} / {api.get('bytes_per_request', 0):,} | "
                     f"{page['errors']} / {api['errors']} |")
    L.append("")
    L.append("At about half of each page's maximum:")
    L.append("")
    L.append("| page | runtime | conns | offered (target) req/s | reached req/s | p50 ms | p99 ms | errors |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, label, path in PAGES:
        for rt in rts:
            h = scen[rt].get(f"page_{key}_half")
            if h:
                L.append(f"| {label} ({path}) | {NAMES[rt]} | {h['connections']} | "
                         f"{fmt(h['target_rps'])} | {fmt(h['rps'])} | {h['p50_ms']:.2f} | "
                         f"{h['p99_ms']:.2f} | {h['errors']} |")
    L.append("")
    L.append("Targets (issue 15: each page at least half of the API call it wraps, p99 under "
             "50 ms at half load); judged on " + NAMES[primary] + ":")
    L.append("")
    L.append("| target | " + " | ".join(f"{NAMES[rt]} | met" for rt in rts) + " |")
    L.append("| --- | " + " | ".join("--- | ---" for _ in rts) + " |")
    rows = {}
    for rt in rts:
        for name, val, ok, kind in page_checks(r, rt):
            key = name.split(" (")[0] if kind == "p99" else name
            rows.setdefault(key, {})[rt] = (val if kind == "ratio" else
                                            f"{val} ({name.split('(', 1)[1].rstrip(')')})", ok)
    for name, per in rows.items():
        cells = []
        for rt in rts:
            v = per.get(rt)
            cells.append(f"{v[0]} | {'yes' if v[1] else '**no**'}" if v else "not run | ")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append("")


def write(r, path, raw_rel):
    c = r["ceilings"]
    m = r["machine"]
    rts = [rt for rt in ("spin", "host") if rt in r["runtimes"]]
    scen = {rt: r["runtimes"][rt].get("scenarios", {}) for rt in rts}
    primary = r.get("primary", rts[0])
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append("Generated by `make bench` (bench/bench.py) on "
             f"{r['started_at']}; raw results: `{raw_rel}` (and `bench/results/latest.json`). "
             "Re-render with `python3 bench/report.py bench/results/latest.json`.")
    L.append("")
    L.append("## Machine and setup")
    L.append("")
    L.append(f"- {m['cores']} cores ({m['cpu']}), {m['memory']} memory, {m['os']}, Linux {m['kernel']}")
    L.append(f"- {m['postgresql']}; {m['redis']}; {m['haproxy']}; load generator {m['wrk']}")
    if "spin" in rts:
        L.append(f"- **Spin**: `{m.get('spin', '?')}` (`spin up`, the real runtime: "
                 "tools/dev/runtime.sh), its two instances started by `tools/scaled/up.sh`")
    if "host" in rts:
        L.append(f"- **test host**: {m['host']}; two instances started beside Spin's on the same "
                 "databases, Redis servers, keys and runtime config, behind a haproxy of their own")
    st = r.get("start_s", {})
    if st:
        L.append("- start-up, `spin.toml` to its first answer: " + "; ".join(
            f"{k.replace('spin', 'Spin').replace('host', 'test host')} {v} s" for k, v in st.items()
            if v is not None) + " (Spin compiles the four components unless its Wasmtime cache, "
            "`~/.cache/wasmtime`, already holds them)")
    L.append(f"- load average when the run started: {m['load_on_start']}")
    L.append("- topology (`tools/scaled/up.sh`, docs/scaling.md): haproxy → 2 app instances; "
             "order shards on 2 PostgreSQL servers; product primary + streaming replica "
             "(searches read the replica); 2 Redis servers behind the key-value labels. "
             "Everything, load generator included, shares the same cores.")
    se = r["settings"]
    L.append(f"- each run: wrk (closed loop, 10 s timeout), up to {se['threads']} threads, "
             f"{se['duration_s']} s; connections per scenario in the table (enough to saturate "
             "what bounds the path; more only queue); each scenario runs on Spin, then at once "
             "on the test host")
    sd = r["seed"]
    L.append(f"- data: {sd['products']:,} products over {sd['categories']} categories "
             f"(text: Zipf(1) over {sd['vocabulary']:,} English words, the "
             f"{sd.get('function_words', 0)} function words at the top ranks), "
             f"{sd['users']:,} users ({sd.get('sellers', 0):,} sellers, {sd.get('buyers', 0):,} "
             f"buyers, {sd.get('carriers', 0)} carriers), "
             f"{sd['orders']:,} past orders ({' + '.join(str(x) for x in sd['orders_per_database'])} "
             f"per shard database), {sd.get('kv_documents', 0):,} product read-model documents "
             f"in Redis (mean {sd.get('kv_document_bytes_mean', 0)} bytes); seeded in {sd['seconds']} s "
             "(COPY and `redis-cli --pipe`)")
    L.append("")

    # ------------------------------------------------------------ scenarios, side by side
    L.append("## Scenarios: Spin beside the test host")
    L.append("")
    head = "| scenario | conns |"
    sep = "| --- | ---: |"
    for rt in rts:
        n = NAMES[rt]
        head += f" {n} req/s | {n} p50 ms | {n} p99 ms | {n} errors |"
        sep += " ---: | ---: | ---: | ---: |"
    L.append(head)
    L.append(sep)
    for key, label, _ in SCENARIOS:
        row = f"| {label} |"
        conns = next((scen[rt][key]["connections"] for rt in rts if key in scen[rt]), "")
        row += f" {conns} |"
        for rt in rts:
            x = scen[rt].get(key)
            if not x:
                row += " not run | | | |"
                continue
            row += (f" {fmt(x['rps'])} | {fmt(x['p50_ms'], 2)} | {fmt(x['p99_ms'], 2)} | "
                    f"{x['errors']} |")
        L.append(row)
    L.append("")
    L.append("Errors are non-2xx responses plus socket errors and timeouts; status counts per "
             "scenario are in the raw results. p95 and the mean are there too.")
    L.append("")
    L.append("Ratios to the ceilings (each runtime against its own runtime ceiling; the database "
             "and Argon2id ceilings are the same for both):")
    L.append("")
    head = "| scenario | ceiling |"
    sep = "| --- | --- |"
    for rt in rts:
        head += f" {NAMES[rt]}: ceiling | {NAMES[rt]}: ratio |"
        sep += " ---: | ---: |"
    L.append(head)
    L.append(sep)
    for key, label, ck in SCENARIOS:
        if not any(key in scen[rt] for rt in rts):
            continue
        _, cname = ceiling_rps(r, rts[0], ck)
        if ck == "runtime":
            cname = "constant component, haproxy → 2 instances"
        row = f"| {key} | {cname} |"
        for rt in rts:
            x = scen[rt].get(key)
            crps, _ = ceiling_rps(r, rt, ck)
            row += f" {fmt(crps)}/s | {x['rps'] / crps:.2f} |" if x and crps else " | |"
        L.append(row)
    L.append("")

    # ------------------------------------------------------------ ceilings
    L.append("## Ceilings (same run)")
    L.append("")
    L.append("| ceiling | throughput | latency |")
    L.append("| --- | ---: | --- |")
    for rt in rts:
        rc = r["runtimes"][rt]["ceilings"]
        rt_ = rc["runtime"]
        rd = rc["runtime_one_instance_direct"]
        L.append(f"| runtime ({NAMES[rt]}): constant component, haproxy → 2 instances, "
                 f"{rt_['connections']} connections | {fmt(rt_['rps'])} req/s | "
                 f"p50 {rt_['p50_ms']:.2f} ms, p99 {rt_['p99_ms']:.2f} ms |")
        L.append(f"| runtime ({NAMES[rt]}): constant component, 1 instance, no load balancer | "
                 f"{fmt(rd['rps'])} req/s | p50 {rd['p50_ms']:.2f} ms, p99 {rd['p99_ms']:.2f} ms |")
    db = c["database_search"]
    sr = r.get("search_recording")
    how = ("recorded from the replica's statement log, padded as the service sends them"
           if sr else "from the service's SQL builder")
    L.append(f"| database: pgbench, the {db['statements']} search statements of the search "
             f"scenario ({how}), {db['clients']} clients, replica | {fmt(db['tps'])} searches/s | "
             f"mean {db['latency_avg_ms']} ms |")
    dbu = c.get("database_search_unpadded")
    if dbu:
        L.append(f"| comparison: pgbench, the same {dbu['statements']} statements without the "
                 f"padding wrapper, {dbu['clients']} clients, replica | {fmt(dbu['tps'])} searches/s | "
                 f"mean {dbu['latency_avg_ms']} ms |")
    do = c.get("database_order")
    if do:
        spo = do["statements_per_order"]
        L.append(f"| database: pgbench, the statements of one order placement "
                 f"({spo.get('order-pg-0', 0):g} / {spo.get('order-pg-1', 0):g} on the order "
                 f"shard, {spo.get('product-pg', 0):g} on the product primary), "
                 f"{do['clients']} clients | {fmt(do['tps'])} orders/s | shards "
                 f"{fmt(do['shards_tps'])}/s, product primary {fmt(do['product']['tps'])}/s; "
                 f"latency {do['latency_sum_ms']} ms (sum of means) |")
    kv = c["key_value"]
    for op in ("get", "set"):
        if op in kv:
            L.append(f"| key-value: redis-benchmark {op.upper()} of {kv['value_bytes']}-byte values "
                     f"(mean read-model document) | {fmt(kv[op]['rps'])} ops/s | "
                     f"p50 {kv[op]['p50_ms']} ms, p99 {kv[op]['p99_ms']} ms |")
    a = c["argon2id"]
    L.append(f"| login: one Argon2id hash (m=19456, t=2, p=1), native | "
             f"{fmt(a['logins_per_s'])} hashes/s on {a['cores']} cores | {a['ms_per_hash']} ms each |")
    L.append("")
    if sr:
        the = {"spin": "Spin", "host": "the test host"}
        same = " and on ".join(the.get(n, n) for n in sr.get("same_on", []))
        differs = " and on ".join(the.get(n, n) for n in sr.get("differs_on", []))
        L.append("The search ceiling is pgbench sending, per search, the statements the product "
                 "service sent for it. They are recorded from the replica's log "
                 "(`log_statement = all`) while each of the scenario's "
                 f"{sr['searches']} searches went once through {NAMES.get(sr['via'], sr['via'])}, "
                 f"one at a time: {sr['statements']} statements, "
                 f"{r.get('search_statements_per_request', '?')} per search ("
                 + (", ".join(f"{v:g} × {k}" for k, v in sr["kinds"].items()) + "; "
                    if sr.get("kinds") else "")
                 + "a relevance-ranked text query sends its typo-only statement only when the "
                 "full-text matches leave the page short), parameter values inlined as logged, "
                 "each statement as sent: "
                 f"{sr['padded']} of {sr['statements']} wrapped by `marketplace_shared::pg::query` "
                 "(`with __q as (…) select __m.* from (values (1)) … left join (select true as "
                 "__found, row_number() over () as __n, * from __q) … order by __m.__n`: Spin 4 "
                 "never answers a query that returns no rows)"
                 + ((". Recorded on both runtimes: " + (f"the same statements on {same}" if same else "")
                     + (f"; different on {differs}" if differs else ""))
                    if len(sr.get("same_on", [])) + len(sr.get("differs_on", [])) > 1 else "")
                 + ". pgbench runs them in the extended protocol (one script per search, "
                 f"{db['clients']} clients)" + (", and, for comparison, once without the wrapper."
                                                 if dbu else "."))
        L.append("")
        ex = sr.get("example") or []
        if ex:
            L.append("One search, as recorded:")
            L.append("")
            L.append("```sql")
            for line in ex:
                L.append((line if len(line) <= 300 else line[:297] + "...") + ";")
            L.append("```")
            L.append("")
    if do:
        L.append("The order-placement ceiling is pgbench sending the statements one order "
                 "placement sends, in the same order and transactions, to the same databases. "
                 f"They are recorded from "
                 f"{r.get('order_recording', {}).get(do.get('recorded_via'), {}).get('orders', '?')} "
                 f"orders placed one at a time through {NAMES.get(do.get('recorded_via'), '?')} "
                 "with PostgreSQL logging every statement (`log_statement = all`), so they are the "
                 "code's own (order: components/order/src/store.rs, service.rs, relay.rs; "
                 "product: components/product/src/store.rs), not a transcription. Parameter "
                 "values are inlined as recorded, except the order id (= reservation id) and "
                 "the idempotency key, new per order, and the outbox row id, read back with "
                 "`\\gset` (simple protocol: one round trip per statement, where the services "
                 "send two). The shards run together (8 + 8 clients), then the product primary "
                 "(16 clients); an order needs both, one after the other, on the same cores: "
                 "ceiling = 1 / (1/shards + 1/product). One order, on its shard:")
        L.append("")
        L.append("```sql")
        ex = do.get("example", {}).get("order-pg-0", "")
        for line in ex.splitlines():
            L.append(line if len(line) <= 160 else line[:157] + "...")
        L.append("```")
        L.append("")
        L.append("and on the product primary:")
        L.append("")
        L.append("```sql")
        for line in do.get("example", {}).get("product-pg", "").splitlines():
            L.append(line if len(line) <= 160 else line[:157] + "...")
        L.append("```")
        L.append("")

    # ------------------------------------------------------------ targets
    L.append(f"## Targets (on {NAMES[primary]})")
    L.append("")
    checks = []
    pr = r.get("paired_ratios", {})
    s = scen[primary]
    rt_rps = r["runtimes"][primary]["ceilings"]["runtime"]["rps"]

    def ratio_check(key, label, single, floor):
        if key in pr:
            rounds = ", ".join(f"{x['ratio']:.2f}" for x in pr[key]["rounds"])
            v = pr[key]["median"]
            checks.append((label, f"{v:.3f} (median of paired {min(5, se['duration_s'])} s rounds: "
                                  f"{rounds}; single {se['duration_s']} s runs: {single:.2f})", v >= floor))
        else:
            checks.append((label, f"{single:.3f}", single >= floor))

    if "detail" in s:
        ratio_check("detail", "product detail ≥ 0.5 × runtime ceiling", s["detail"]["rps"] / rt_rps, 0.5)
    if "search" in s:
        ratio_check("search", "search ≥ 0.6 × database ceiling (same SQL)",
                    s["search"]["rps"] / db["tps"], 0.6)
    if "order" in s and do:
        v = s["order"]["rps"] / do["tps"]
        checks.append(("order placement ≥ 0.5 × database ceiling (same SQL)",
                       f"{v:.3f} ({fmt(s['order']['rps'])} of {fmt(do['tps'])} orders/s)", v >= 0.5))
    for rt in rts:
        errs = {k: scen[rt][k]["errors"] for k in [k for k, _, _ in SCENARIOS] + PAGE_KEYS
                if k in scen[rt]}
        bad = {k: v for k, v in errs.items() if v}
        checks.append((f"no errors in any scenario ({NAMES[rt]})", "none" if not bad else
                       ", ".join(f"{k}: {v}" for k, v in bad.items()), not bad))
    for k in ("search_half", "detail_half"):
        if k in s:
            x = s[k]
            checks.append((f"{k.split('_')[0]} p99 < 50 ms at ~half of max "
                           f"({fmt(x['rps'])} of {fmt(x['target_rps'] * 2)} req/s)",
                           f"{x['p99_ms']:.1f} ms", x["p99_ms"] < 50))
    checks += [(name, val, ok) for name, val, ok, _ in page_checks(r, primary)]
    L.append("| target | measured | met |")
    L.append("| --- | --- | --- |")
    for name, val, ok in checks:
        L.append(f"| {name} | {val} | {'yes' if ok else '**no**'} |")
    L.append("")

    # ------------------------------------------------------------ storefront pages
    if any(f"page_{k}" in scen[rt] for rt in rts for k, _, _ in PAGES):
        pages_section(L, r, rts, scen, primary)

    # ------------------------------------------------------------ where the time goes
    L.append("## Where the time goes")
    L.append("")
    L.append("CPU time per request of each part, from /proc during each run (ms of CPU per "
             "request; `app` = the two instances of the runtime under test, `spin up` with its "
             "`spin trigger http` child for Spin; `pg:` = a PostgreSQL server with its backends; "
             "`other processes` = everything else on the machine, i.e. noise), and how many of "
             "the 2 cores were busy:")
    L.append("")
    groups = ["app", "haproxy", "pg:product-rep", "pg:product-pg", "pg:order-pg-0",
              "pg:order-pg-1", "redis", "load generator", "other processes"]
    L.append("| scenario | runtime | " + " | ".join(groups) + " | busy cores |")
    L.append("| --- | --- | " + " | ".join("---:" for _ in groups) + " | ---: |")
    for key in [k for k, _, _ in SCENARIOS] + PAGE_KEYS:
        for rt in rts:
            x = scen[rt].get(key)
            if not x or "cpu" not in x:
                continue
            per = dict(x["cpu"]["ms_per_request"])
            if rt == "host" and primary != "host":
                per["app"] = per.get("app (host)", 0)
                per["haproxy"] = per.get("haproxy (host)", 0)
            cells = [f"{per[g]:.2f}" if per.get(g, 0) >= 0.005 else "" for g in groups]
            L.append(f"| {key} | {NAMES[rt]} | " + " | ".join(cells) +
                     f" | {x['cpu']['machine_busy_cores']} |")
    for rt in rts:
        rtc = r["runtimes"][rt]["ceilings"]["runtime"].get("cpu")
        if rtc:
            per = rtc["ms_per_request"]
            g = f"ceiling app + its haproxy ({rt})"
            L.append("")
            L.append(f"Runtime ceiling on {NAMES[rt]} (constant component): ceiling app + its "
                     f"haproxy {per.get(g, 0):.2f}, load generator {per.get('load generator', 0):.2f} "
                     f"ms per request; {rtc['machine_busy_cores']} cores busy.")
    L.append("")
    rec = r.get("order_recording", {})
    if rec:
        L.append("One order placement, step by step: orders placed one at a time while "
                 "PostgreSQL logged every statement; for each statement on the order shard and "
                 "the product primary, in time order, the mean ms since the previous one "
                 "arrived (that statement's execution and round trips plus whatever the "
                 "components did in between: Wasm work, the calls to the product and delivery "
                 "services). Log stamps have 1 ms resolution, hence means over all orders.")
        L.append("")
        names = [rt for rt in rts if rt in rec]
        L.append("| step | " + " | ".join(f"{NAMES[rt]} ms" for rt in names) + " |")
        L.append("| --- | " + " | ".join("---:" for _ in names) + " |")
        steps = {}
        for rt in names:
            for st in rec[rt]["timeline"]["steps"]:
                steps.setdefault(st["step"], {})[rt] = st["mean_ms_since_previous"]
        for step, v in steps.items():
            q = step.replace("|", "\\|")
            L.append(f"| `{q}` | " + " | ".join(f"{v[rt]:.2f}" if rt in v else "" for rt in names) + " |")
        L.append("| **first to last statement** | " + " | ".join(
            f"**{rec[rt]['timeline']['mean_ms_first_to_last_statement']}**" for rt in names) + " |")
        L.append("")
        L.append("Shipments created while recording: " + ", ".join(
            f"{NAMES[rt]} {rec[rt]['with_shipment']} of {rec[rt]['orders']}" for rt in names) + ".")
        L.append("")
    if any(r["runtimes"][rt].get("parts") for rt in rts):
        L.append("Order placement, part by part: the two internal calls an order makes, each "
                 "driven on its own (8 connections, a new order id per call), CPU ms per call:")
        L.append("")
        L.append("| call | runtime | req/s | statuses | app | redis | pg:product-pg | p50 ms |")
        L.append("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |")
        labels = {"reserve": "`POST /internal/products/reservations` (2 lines)",
                  "ship": "`POST /internal/deliveries` (create shipment)"}
        for part in ("reserve", "ship"):
            for rt in rts:
                x = r["runtimes"][rt].get("parts", {}).get(part)
                if not x:
                    continue
                per = dict(x["cpu"]["ms_per_request"])
                app = per.get("app (host)" if rt == "host" and primary != "host" else "app", 0)
                sts = ", ".join(f"{k}: {v}" for k, v in sorted(x["statuses"].items()))
                L.append(f"| {labels[part]} | {NAMES[rt]} | {fmt(x['rps'])} | {sts} | {app:.2f} | "
                         f"{per.get('redis', 0):.2f} | {per.get('pg:product-pg', 0):.2f} | "
                         f"{fmt(x['p50_ms'], 2)} |")
        for rt in rts:
            x = scen[rt].get("order")
            if x:
                per = dict(x["cpu"]["ms_per_request"])
                app = per.get("app (host)" if rt == "host" and primary != "host" else "app", 0)
                L.append(f"| whole order placement (scenario above) | {NAMES[rt]} | {fmt(x['rps'])} | "
                         f"{', '.join(f'{k}: {v}' for k, v in sorted(x['statuses'].items()))} | "
                         f"{app:.2f} | {per.get('redis', 0):.2f} | {per.get('pg:product-pg', 0):.2f} | "
                         f"{fmt(x['p50_ms'], 2)} |")
        L.append("")
    if r.get("day_without_events"):
        L.append("No shipment could be picked up (none was created), so the event scenario did "
                 "not run and the browsing day's 4.5 % of event appends were detail reads.")
        L.append("")
    L.append("Statements per request (pg_stat_statements during the run; top by time):")
    L.append("")
    L.append("| scenario | runtime | server | per request | mean ms | statement |")
    L.append("| --- | --- | --- | ---: | ---: | --- |")
    for key in ("search", "order", "login"):
        for rt in rts:
            stt = scen[rt].get(key, {}).get("statements", {})
            for server, rows in stt.items():
                for row in rows[:3]:
                    if row["per_request"] < 0.01:
                        continue
                    q = row["query"].replace("|", "\\|")
                    L.append(f"| {key} | {NAMES[rt]} | {server} | {row['per_request']} | "
                             f"{row['mean_ms']} | `{q}` |")
    L.append("")

    # ------------------------------------------------------------ cost of the runtime
    L.append("## Cost of the runtime")
    L.append("")
    L.append("Both runtimes give every request a fresh instance of a pre-linked component "
             "(pooling allocator). Sequential requests to one instance's no-I/O endpoint "
             "(`healthz`): the round trip on each runtime, and the test host's own time per "
             "request (instantiate, run, build the response) from its request log:")
    L.append("")
    head = "| component | .wasm size | initial linear memory |"
    sep = "| --- | ---: | ---: |"
    for rt in rts:
        head += f" {NAMES[rt]} round trip p50 |"
        sep += " ---: |"
    if "host" in rts:
        head += " test host: its time p50 / p90 |"
        sep += " ---: |"
    L.append(head)
    L.append(sep)
    for comp, w in r["wasm"].items():
        pages = w["initial_memory_pages"]
        mem = " + ".join(f"{p * 64} KiB" for p in pages) if pages else "?"
        k = "constant" if comp == "constant (probe)" else comp
        row = f"| {comp} | {w['bytes'] / 1024:,.0f} KiB | {mem} |"
        for rt in rts:
            i = r["runtimes"][rt].get("instantiation", {}).get(k, {})
            row += f" {i['client_ms_p50']} ms |" if "client_ms_p50" in i else " – |"
        if "host" in rts:
            i = r["runtimes"]["host"].get("instantiation", {}).get(k, {})
            row += (f" {i['host_ms_p50']} / {i['host_ms_p90']} ms |" if "host_ms_p50" in i else " – |")
        L.append(row)
    L.append("")
    for rt in rts:
        idle = r["runtimes"][rt].get("app_rss_idle_kib", [])
        rows = []
        for k in ("detail", "search", "day", "login"):
            x = scen[rt].get(k)
            if x and idle and x.get("app_rss_peak_kib"):
                peak = max(x["app_rss_peak_kib"])
                in_flight = x["connections"] / 2
                growth = max(0, peak - max(idle)) / 1024
                rows.append(f"{k} {peak / 1024:.0f} MiB with ~{in_flight:.0f} requests in flight "
                            f"per process (+{growth:.1f} MiB, ≤ {growth / in_flight:.2f} MiB per instance)")
        if idle:
            L.append(f"Memory on {NAMES[rt]}: app processes rest at "
                     f"{' and '.join(f'{x / 1024:.0f} MiB' for x in idle)} resident (compiled code, "
                     "pools, caches); their sampled peak during: " + "; ".join(rows) + ".")
            L.append("")
    notes = os.path.join(HERE, "ANALYSIS.md")
    if os.path.exists(notes):
        L.append(open(notes).read().rstrip())
        L.append("")
    L.append(f"_Whole `make bench` run: {r['duration_s']} s (after the build)._")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results/latest.json")
    with open(src) as f:
        res = json.load(f)
    # A second argument writes elsewhere (development runs): report.py RESULTS.json OUT.md
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "BENCHMARKS.md")
    write(res, out, os.path.relpath(src, os.path.join(HERE, "..")))

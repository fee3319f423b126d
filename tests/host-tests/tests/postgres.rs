//! `spin:postgres/postgres@4.0.0` against a real PostgreSQL
//! (`MARKETPLACE_TEST_PG`, e.g.
//! `postgres://postgres@127.0.0.1:15432/postgres?sslmode=disable`).
#[path = "../../host/tests/common/mod.rs"]
mod common;

use common::*;
use serde_json::{Value, json};
use spin_test_host::App;

fn port_of(url: &str) -> u16 {
    let cfg: tokio_postgres::Config = url.parse().unwrap();
    cfg.get_ports().first().copied().unwrap_or(5432)
}

async fn run(app: &App, path: &str, address: &str, statements: Value) -> Value {
    let (status, v) = post_json(
        app,
        path,
        &json!({ "address": address, "statements": statements }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

fn q(sql: &str, params: Value) -> Value {
    json!({ "op": "query", "sql": sql, "params": params })
}

fn x(sql: &str, params: Value) -> Value {
    json!({ "op": "execute", "sql": sql, "params": params })
}

#[tokio::test]
async fn round_trips_the_types_components_use() {
    let db = TestDb::create("types").await;
    let (_dir, app) = probe_app(opts()).await;
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            x(
                "CREATE TABLE t (id uuid PRIMARY KEY, name text, n4 int4, n8 int8, flag bool,
                doc jsonb, created timestamp, price numeric(12,2), tags text[], ts timestamptz,
                day date, nothing text, small int2, f8 float8, raw bytea)",
                json!([])
            ),
            x(
                "INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
                json!([
                    { "type": "uuid", "value": "5f0e4c52-9a44-4c5e-9b61-0d3c1a2b3c4d" },
                    { "type": "str", "value": "Zoë" },
                    { "type": "int32", "value": -42 },
                    { "type": "int64", "value": 9_000_000_000i64 },
                    { "type": "bool", "value": true },
                    { "type": "jsonb", "value": { "a": [1, 2], "b": "c" } },
                    { "type": "datetime", "value": [2024, 2, 29, 13, 45, 6, 123_456_000] },
                    { "type": "decimal", "value": "1234.50" },
                    { "type": "array-str", "value": ["x", "y z"] },
                    { "type": "timestamp", "value": 1_700_000_000 },
                    { "type": "date", "value": [2024, 12, 31] },
                    { "type": "null" },
                    { "type": "int16", "value": 7 },
                    { "type": "float64", "value": 2.5 },
                    { "type": "binary", "value": "bytes" },
                ])
            ),
            q(
                "SELECT id, name, n4, n8, flag, doc, created, price, tags, ts::timestamp AS ts_utc,
                day, nothing, small, f8, raw, extract(epoch from ts)::int8 AS epoch FROM t",
                json!([])
            ),
        ]),
    )
    .await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[1], json!({ "count": 1 }), "{v}");
    let row = &results[2]["rows"][0];
    assert_eq!(
        row[0],
        json!({ "uuid": "5f0e4c52-9a44-4c5e-9b61-0d3c1a2b3c4d" })
    );
    assert_eq!(row[1], json!({ "str": "Zoë" }));
    assert_eq!(row[2], json!({ "int32": -42 }));
    assert_eq!(row[3], json!({ "int64": 9_000_000_000i64 }));
    assert_eq!(row[4], json!({ "bool": true }));
    assert_eq!(row[5], json!({ "jsonb": { "a": [1, 2], "b": "c" } }));
    assert_eq!(
        row[6],
        json!({ "datetime": [2024, 2, 29, 13, 45, 6, 123_456_000] })
    );
    assert_eq!(row[7], json!({ "decimal": "1234.50" }));
    assert_eq!(row[8], json!({ "array-str": ["x", "y z"] }));
    assert_eq!(row[10], json!({ "date": [2024, 12, 31] }));
    assert_eq!(row[11], json!({ "null": true }));
    assert_eq!(row[12], json!({ "int16": 7 }));
    assert_eq!(row[13], json!({ "float64": 2.5 }));
    assert_eq!(row[14], json!({ "binary": "bytes" }));
    assert_eq!(row[15], json!({ "int64": 1_700_000_000i64 }));
    let cols: Vec<&str> = results[2]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("DbDataType::")
        })
        .collect();
    assert_eq!(
        &cols[..9],
        [
            "Uuid", "Str", "Int32", "Int64", "Boolean", "Jsonb", "Datetime", "Decimal", "ArrayStr"
        ]
    );
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn timestamptz_columns_behave_like_spin() {
    // Spin decodes TIMESTAMP and TIMESTAMPTZ with chrono::NaiveDateTime, whose
    // FromSql accepts only TIMESTAMP: selecting a timestamptz column fails with
    // a query-failed text error ("cannot convert ... timestamptz"), and `datetime` parameters cannot be bound to
    // timestamptz (use `timestamp` (epoch seconds) or cast in SQL).
    let db = TestDb::create("tstz").await;
    let (_dir, app) = probe_app(opts()).await;
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            x("CREATE TABLE e (at timestamptz NOT NULL)", json!([])),
            x(
                "INSERT INTO e VALUES ($1)",
                json!([{ "type": "timestamp", "value": 86400 }])
            ),
            q("SELECT at FROM e", json!([])),
            q("SELECT at AT TIME ZONE 'UTC' AS at FROM e", json!([])),
            x(
                "INSERT INTO e VALUES ($1)",
                json!([{ "type": "datetime", "value": [2024, 1, 1, 0, 0, 0, 0] }])
            ),
            x(
                "INSERT INTO e VALUES ($1::timestamp)",
                json!([{ "type": "datetime", "value": [2024, 1, 1, 0, 0, 0, 0] }])
            ),
        ]),
    )
    .await;
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[1], json!({ "count": 1 }), "{v}");
    assert_eq!(r[2]["error"]["kind"], "query-failed", "{v}");
    assert!(
        r[2]["error"]["text"]
            .as_str()
            .unwrap()
            .contains("timestamptz"),
        "{v}"
    );
    assert_eq!(
        r[3]["rows"][0][0],
        json!({ "datetime": [1970, 1, 2, 0, 0, 0, 0] }),
        "{v}"
    );
    assert_eq!(r[4]["error"]["kind"], "query-failed", "{v}");
    assert!(
        r[4]["error"]["text"]
            .as_str()
            .unwrap()
            .contains("WrongType"),
        "{v}"
    );
    assert_eq!(r[5], json!({ "count": 1 }), "{v}");
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn unique_violation_maps_to_db_error_with_code_and_constraint() {
    let db = TestDb::create("uniq").await;
    let (_dir, app) = probe_app(opts()).await;
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            x(
                "CREATE TABLE users (email text CONSTRAINT users_email_key UNIQUE)",
                json!([])
            ),
            x(
                "INSERT INTO users VALUES ($1)",
                json!([{ "type": "str", "value": "a@b.c" }])
            ),
            x(
                "INSERT INTO users VALUES ($1)",
                json!([{ "type": "str", "value": "a@b.c" }])
            ),
            q("SELECT nope FROM users", json!([])),
        ]),
    )
    .await;
    let e = &v["results"][2]["error"];
    assert_eq!(e["kind"], "db-error", "{v}");
    assert_eq!(e["code"], "23505");
    assert_eq!(e["severity"], "ERROR");
    assert_eq!(e["extras"]["constraint"], "users_email_key");
    assert_eq!(e["extras"]["table"], "users");
    assert!(
        e["detail"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    let e = &v["results"][3]["error"];
    assert_eq!(e["code"], "42703", "{v}");
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn bad_parameters_are_reported_like_spin() {
    let db = TestDb::create("badp").await;
    let (_dir, app) = probe_app(opts()).await;
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            q(
                "SELECT $1::uuid",
                json!([{ "type": "uuid", "value": "not-a-uuid" }])
            ),
            x(
                "SELECT $1::uuid",
                json!([{ "type": "uuid", "value": "not-a-uuid" }])
            ),
            q(
                "SELECT $1::int4",
                json!([{ "type": "str", "value": "text-for-int" }])
            ),
        ]),
    )
    .await;
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["error"]["kind"], "bad-parameter", "{v}");
    assert_eq!(r[1]["error"]["kind"], "value-conversion-failed", "{v}");
    assert_eq!(r[2]["error"]["kind"], "query-failed", "{v}");
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn transactions_run_on_one_connection() {
    let db = TestDb::create("tx").await;
    let (_dir, app) = probe_app(opts()).await;
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            x("CREATE TABLE c (n int4)", json!([])),
            q("SELECT pg_backend_pid()::int8", json!([])),
            x("BEGIN", json!([])),
            x("INSERT INTO c VALUES (1)", json!([])),
            x("ROLLBACK", json!([])),
            q("SELECT count(*) FROM c", json!([])),
            x("BEGIN", json!([])),
            x("INSERT INTO c VALUES (2)", json!([])),
            q("SELECT pg_backend_pid()::int8", json!([])),
            x("COMMIT", json!([])),
            q("SELECT count(*) FROM c", json!([])),
        ]),
    )
    .await;
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[5]["rows"][0][0], json!({ "int64": 0 }), "{v}");
    assert_eq!(r[10]["rows"][0][0], json!({ "int64": 1 }), "{v}");
    assert_eq!(
        r[1]["rows"][0][0], r[8]["rows"][0][0],
        "statements ran on different connections"
    );
    drop(app);
    db.drop_db().await;
}

async fn idle_in_transaction(db: &TestDb) -> i64 {
    let admin = db.client().await;
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
            &[&db.name],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn a_transaction_left_open_stays_open_on_the_pooled_connection_as_in_spin() {
    let db = TestDb::create("leak").await;
    let (_dir, app) = probe_app(opts()).await;
    run(
        &app,
        "/pg",
        &db.url,
        json!([x("CREATE TABLE c (n int4)", json!([]))]),
    )
    .await;
    // Request 1 begins a transaction and never ends it.
    run(
        &app,
        "/pg",
        &db.url,
        json!([
            x("BEGIN", json!([])),
            x("INSERT INTO c VALUES (1)", json!([]))
        ]),
    )
    .await;
    // Spin gives the connection back to its pool as it is: the transaction stays open.
    assert_eq!(idle_in_transaction(&db).await, 1);
    // Request 2 gets that pooled connection and runs inside the old transaction: it sees the
    // uncommitted row, and its ROLLBACK ends it.
    let v = run(
        &app,
        "/pg",
        &db.url,
        json!([
            q("SELECT count(*) FROM c", json!([])),
            x("ROLLBACK", json!([])),
            q("SELECT count(*) FROM c", json!([]))
        ]),
    )
    .await;
    assert_eq!(v["results"][0]["rows"][0][0], json!({ "int64": 1 }), "{v}");
    assert_eq!(v["results"][2]["rows"][0][0], json!({ "int64": 0 }), "{v}");
    assert_eq!(idle_in_transaction(&db).await, 0);
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn connections_are_pooled_across_requests() {
    let db = TestDb::create("pool").await;
    let (_dir, app) = probe_app(opts()).await;
    let pid = |v: &Value| v["results"][0]["rows"][0][0]["int64"].as_i64().unwrap();
    let script = json!([q("SELECT pg_backend_pid()::int8", json!([]))]);
    let a = pid(&run(&app, "/pg", &db.url, script.clone()).await);
    let b = pid(&run(&app, "/pg", &db.url, script.clone()).await);
    assert_eq!(a, b, "second request did not reuse the pooled connection");
    assert_eq!(app.postgres_pool_count(), 1);
    // At most 16 address pools are kept (least recently used evicted).
    let sep = if db.url.contains('?') { '&' } else { '?' };
    for i in 0..18 {
        let addr = format!("{}{sep}application_name=pool{i}", db.url);
        run(&app, "/pg", &addr, script.clone()).await;
    }
    assert_eq!(app.postgres_pool_count(), 16);
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn allowed_outbound_hosts_is_enforced_for_postgres() {
    let db = TestDb::create("deny").await;
    let (_dir, app) = probe_app(opts()).await;
    let port = port_of(&db.url);
    // `api` has no allowed_outbound_hosts.
    let (_, v) = post_json(
        &app,
        "/api/pg",
        &json!({ "address": db.url, "statements": [] }),
    )
    .await;
    assert_eq!(v["open_error"]["kind"], "connection-failed", "{v}");
    assert_eq!(
        v["open_error"]["message"],
        format!("address postgres://127.0.0.1:{port} is not permitted")
    );
    // `probe` allows 127.0.0.1 and localhost only.
    let other = db
        .url
        .replace("127.0.0.1", "127.0.0.2")
        .replace("localhost", "127.0.0.2");
    let (_, v) = post_json(&app, "/pg", &json!({ "address": other, "statements": [] })).await;
    assert!(
        v["open_error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not permitted"),
        "{v}"
    );
    drop(app);
    db.drop_db().await;
}

#[tokio::test]
async fn tls_is_required_unless_sslmode_disable() {
    // The test server either has no TLS or a certificate the host does not
    // trust (self-signed): with sslmode=require the connection must fail, as
    // in Spin; with sslmode=disable it works.
    let db = TestDb::create("tls").await;
    let (_dir, app) = probe_app(opts()).await;
    let require = db.url.replace("sslmode=disable", "sslmode=require");
    let require = if require.contains("sslmode=") {
        require
    } else if require.contains('?') {
        format!("{require}&sslmode=require")
    } else {
        format!("{require}?sslmode=require")
    };
    let (_, v) = post_json(
        &app,
        "/pg",
        &json!({ "address": require, "statements": [] }),
    )
    .await;
    assert_eq!(v["open_error"]["kind"], "connection-failed", "{v}");
    // When the server offers TLS (with a certificate webpki does not trust,
    // e.g. Debian's self-signed snakeoil), the default `sslmode=prefer` fails
    // too: TLS is negotiated and verification fails, as with Spin.
    let admin = db.client().await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl == "on" {
        let msg = v["open_error"]["message"].as_str().unwrap().to_string();
        assert!(msg.to_lowercase().contains("certificate"), "{msg}");
        let prefer = require.replace("sslmode=require", "sslmode=prefer");
        let (_, v) = post_json(&app, "/pg", &json!({ "address": prefer, "statements": [] })).await;
        assert_eq!(v["open_error"]["kind"], "connection-failed", "{v}");
        let default_mode = prefer
            .replace("?sslmode=prefer&", "?")
            .replace("?sslmode=prefer", "")
            .replace("&sslmode=prefer", "");
        let (_, v) = post_json(
            &app,
            "/pg",
            &json!({ "address": default_mode, "statements": [] }),
        )
        .await;
        assert_eq!(v["open_error"]["kind"], "connection-failed", "{v}");
    }
    let ok = run(
        &app,
        "/pg",
        &db.url,
        json!([q("SELECT 1::int4", json!([]))]),
    )
    .await;
    assert_eq!(ok["results"][0]["rows"][0][0], json!({ "int32": 1 }));
    drop(app);
    db.drop_db().await;
}

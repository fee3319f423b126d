//! PostgreSQL: the system of record (`spin_sdk::pg4`).
//!
//! Writes and stock changes run on the primary, each multi-statement change inside
//! `begin` … `commit` on one connection. Reads that may be slightly stale (search, browse,
//! detail refill) try the configured replicas first and fall back to the primary.

use chrono::{DateTime, Utc};
use marketplace_shared::{pg, time};
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{NewProduct, Product, ProductPatch, Source, Status};
use crate::error::{Error, Result};
use crate::sql::{self, Param};

/// Opens a connection (pooled by the host per address).
pub fn open(url: &str) -> Result<Connection> {
    Connection::open(url).map_err(Error::from)
}

/// Runs `read` on a replica, else on the primary; says which answered.
///
/// Replicas are tried in a rotating order so that load spreads over them; any failure of a
/// replica (down, not answering, recovering) moves on to the next one and finally to the
/// primary, so a dead replica costs latency, never an error.
pub fn with_read<T>(
    config: &Config,
    read: impl Fn(&Connection) -> Result<T>,
) -> Result<(T, Source)> {
    let n = config.replica_urls.len();
    if n > 0 {
        let start = usize::from(Uuid::new_v4().as_bytes()[0]) % n;
        for i in 0..n {
            let url = &config.replica_urls[(start + i) % n];
            match open(url).and_then(|c| read(&c)) {
                Ok(v) => return Ok((v, Source::Replica)),
                Err(Error::Client(p)) => return Err(Error::Client(p)),
                Err(e) => eprintln!("product: replica {i} failed, trying the next: {e:?}"),
            }
        }
    }
    let conn = open(&config.db_url)?;
    Ok((read(&conn)?, Source::Primary))
}

fn to_param(p: Param) -> ParameterValue {
    match p {
        Param::Text(s) => ParameterValue::Str(s),
        Param::Uuid(s) => ParameterValue::Uuid(s),
        Param::Int(i) => ParameterValue::Int64(i),
        Param::Real(r) => ParameterValue::Floating32(r),
    }
}

fn uuid(id: Uuid) -> ParameterValue {
    ParameterValue::Uuid(id.to_string())
}

fn get<T: Decode>(columns: &[String], row: &[DbValue], name: &str) -> Result<T> {
    let i = columns
        .iter()
        .position(|c| c == name)
        .ok_or_else(|| Error::Internal(format!("no column {name}")))?;
    let v = row
        .get(i)
        .ok_or_else(|| Error::Internal(format!("short row at {name}")))?;
    T::decode(v).map_err(|e| Error::Internal(format!("column {name}: {e}")))
}

fn timestamp(micros: i64) -> Result<String> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(time::format)
        .ok_or_else(|| Error::Internal(format!("timestamp out of range: {micros}")))
}

/// A product row with its version and its creation time in µs (the newest-first key).
#[derive(Debug, Clone)]
pub struct Row {
    pub product: Product,
    pub version: i64,
    pub created_us: i64,
    /// The relevance score, when the query computed one.
    pub score: Option<f32>,
}

fn rows(set: &RowSet) -> Result<Vec<Row>> {
    let columns: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
    let has_score = columns.iter().any(|c| c == "score");
    set.rows
        .iter()
        .map(|r| {
            let status: String = get(&columns, r, "status")?;
            let attributes: serde_json::Value = get(&columns, r, "attributes")?;
            let created_us: i64 = get(&columns, r, "created_us")?;
            let updated_us: i64 = get(&columns, r, "updated_us")?;
            Ok(Row {
                product: Product {
                    id: get(&columns, r, "id")?,
                    seller_id: get(&columns, r, "seller_id")?,
                    title: get(&columns, r, "title")?,
                    description: get(&columns, r, "description")?,
                    category: get(&columns, r, "category")?,
                    price_cents: get(&columns, r, "price_cents")?,
                    currency: get(&columns, r, "currency")?,
                    stock: get(&columns, r, "stock")?,
                    attributes: match attributes {
                        serde_json::Value::Object(m) => m,
                        _ => serde_json::Map::new(),
                    },
                    status: Status::parse(&status)
                        .ok_or_else(|| Error::Internal(format!("status {status}")))?,
                    created_at: timestamp(created_us)?,
                    updated_at: timestamp(updated_us)?,
                },
                version: get(&columns, r, "version")?,
                created_us,
                score: if has_score {
                    Some(get(&columns, r, "score")?)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// One product by id, whatever its status.
pub fn product(conn: &Connection, id: Uuid) -> Result<Option<Row>> {
    let set = pg::query(conn, sql::SELECT_PRODUCT, &[uuid(id)])?;
    Ok(rows(&set)?.into_iter().next())
}

/// One page of a search: the statements of [`sql::search`] in order, until `spec.fetch`
/// rows are in hand.
pub fn search(conn: &Connection, spec: &sql::SearchSpec) -> Result<Vec<Row>> {
    let wanted = usize::try_from(spec.fetch).unwrap_or(usize::MAX);
    let mut page = Vec::new();
    for statement in sql::search(spec) {
        if page.len() >= wanted {
            break;
        }
        let params: Vec<ParameterValue> = statement.params.into_iter().map(to_param).collect();
        page.extend(rows(&pg::query(conn, &statement.sql, &params)?)?);
    }
    page.truncate(wanted);
    Ok(page)
}

fn jsonb(value: &impl serde::Serialize) -> Result<ParameterValue> {
    serde_json::to_vec(value)
        .map(ParameterValue::Jsonb)
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Inserts a new product (one statement: atomic by itself).
pub fn insert(conn: &Connection, id: Uuid, seller_id: Uuid, p: &NewProduct) -> Result<Row> {
    let statement = format!(
        "insert into products (id, seller_id, title, description, category, price_cents, \
         currency, stock, attributes) values ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, \
         $6::int8, $7::text, $8::int8, $9::jsonb) returning {}",
        sql::PRODUCT_COLUMNS
    );
    let set = pg::query(
        conn,
        &statement,
        &[
            uuid(id),
            uuid(seller_id),
            ParameterValue::Str(p.title.clone()),
            ParameterValue::Str(p.description.clone()),
            ParameterValue::Str(p.category.clone()),
            ParameterValue::Int64(p.price_cents),
            ParameterValue::Str(p.currency.clone()),
            ParameterValue::Int64(p.stock),
            jsonb(&p.attributes)?,
        ],
    )?;
    rows(&set)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("insert returned no row".into()))
}

/// A transaction on one connection: `begin` now, `commit` explicitly; dropped without a
/// commit, it is rolled back.
pub struct Tx<'a> {
    conn: &'a Connection,
    done: bool,
}

impl<'a> Tx<'a> {
    pub fn begin(conn: &'a Connection) -> Result<Self> {
        conn.execute("begin", &[])?;
        Ok(Self { conn, done: false })
    }

    pub fn conn(&self) -> &Connection {
        self.conn
    }

    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute("commit", &[])?;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: the host also rolls back a connection returned mid-transaction.
            let _ = self.conn.execute("rollback", &[]);
        }
    }
}

/// The product row, locked for the rest of the transaction.
pub fn product_for_update(tx: &Tx<'_>, id: Uuid) -> Result<Option<Row>> {
    let set = pg::query(
        tx.conn(),
        &format!("{} for update", sql::SELECT_PRODUCT),
        &[uuid(id)],
    )?;
    Ok(rows(&set)?.into_iter().next())
}

/// Applies a validated patch (only the fields it carries) and bumps the version.
pub fn update(tx: &Tx<'_>, id: Uuid, patch: &ProductPatch) -> Result<Row> {
    let mut sets = Vec::new();
    let mut params = vec![uuid(id)];
    let mut set = |column: &str, cast: &str, value: ParameterValue| {
        params.push(value);
        sets.push(format!("{column} = ${}::{cast}", params.len()));
    };
    if let Some(v) = &patch.title {
        set("title", "text", ParameterValue::Str(v.clone()));
    }
    if let Some(v) = &patch.description {
        set("description", "text", ParameterValue::Str(v.clone()));
    }
    if let Some(v) = &patch.category {
        set("category", "text", ParameterValue::Str(v.clone()));
    }
    if let Some(v) = patch.price_cents {
        set("price_cents", "int8", ParameterValue::Int64(v));
    }
    if let Some(v) = &patch.currency {
        set("currency", "text", ParameterValue::Str(v.clone()));
    }
    if let Some(v) = patch.stock {
        set("stock", "int8", ParameterValue::Int64(v));
    }
    if let Some(v) = &patch.attributes {
        set("attributes", "jsonb", jsonb(v)?);
    }
    let statement = format!(
        "update products set {}, version = version + 1, updated_at = now() \
         where id = $1::uuid returning {}",
        sets.join(", "),
        sql::PRODUCT_COLUMNS
    );
    rows(&pg::query(tx.conn(), &statement, &params)?)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("update returned no row".into()))
}

/// Archives a product (it stays, for the orders that refer to it).
pub fn archive(tx: &Tx<'_>, id: Uuid) -> Result<Row> {
    let statement = format!(
        "update products set status = 'archived', version = version + 1, updated_at = now() \
         where id = $1::uuid returning {}",
        sql::PRODUCT_COLUMNS
    );
    rows(&pg::query(tx.conn(), &statement, &[uuid(id)])?)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("archive returned no row".into()))
}

fn id_array(ids: &[Uuid]) -> ParameterValue {
    ParameterValue::ArrayStr(ids.iter().map(|id| Some(id.to_string())).collect())
}

/// Locks the rows of `ids` in id order (the one order every stock change uses, so two
/// transactions never wait on each other in a cycle) and returns them.
pub fn lock_products(tx: &Tx<'_>, ids: &[Uuid]) -> Result<Vec<Row>> {
    let statement = format!(
        "select {} from products where id = any($1::text[]::uuid[]) order by id for update",
        sql::PRODUCT_COLUMNS
    );
    rows(&pg::query(tx.conn(), &statement, &[id_array(ids)])?)
}

/// Adds `deltas` (negative to take) to the stock of locked rows; returns the new rows.
pub fn add_stock(tx: &Tx<'_>, deltas: &[(Uuid, i64)]) -> Result<Vec<Row>> {
    let ids: Vec<Uuid> = deltas.iter().map(|(id, _)| *id).collect();
    let amounts: Vec<Option<i64>> = deltas.iter().map(|(_, d)| Some(*d)).collect();
    let statement = format!(
        "update products set stock = stock + d.delta, version = version + 1, updated_at = now() \
         from unnest($1::text[]::uuid[], $2::int8[]) as d(pid, delta) where id = d.pid returning {}",
        sql::PRODUCT_COLUMNS
    );
    rows(&pg::query(
        tx.conn(),
        &statement,
        &[id_array(&ids), ParameterValue::ArrayInt64(amounts)],
    )?)
}

/// Claims `reservation_id`: true when this request is the first to use it. A concurrent
/// request with the same id waits here until the first one commits or rolls back.
pub fn claim_reservation(tx: &Tx<'_>, reservation_id: &str) -> Result<bool> {
    let n = tx.conn().execute(
        "insert into reservations (reservation_id) values ($1::text) on conflict do nothing",
        &[ParameterValue::Str(reservation_id.to_string())],
    )?;
    Ok(n == 1)
}

/// The stored answer of an earlier reservation.
pub fn reservation_response(tx: &Tx<'_>, reservation_id: &str) -> Result<serde_json::Value> {
    let set = pg::query(
        tx.conn(),
        "select response from reservations where reservation_id = $1::text",
        &[ParameterValue::Str(reservation_id.to_string())],
    )?;
    let columns: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
    let row = set
        .rows
        .first()
        .ok_or_else(|| Error::Internal("claimed reservation vanished".into()))?;
    get(&columns, row, "response")
}

/// Records the answer and the quantities of a new reservation.
pub fn record_reservation(
    tx: &Tx<'_>,
    reservation_id: &str,
    response: &serde_json::Value,
    quantities: &[(Uuid, i64)],
) -> Result<()> {
    let quantities: Vec<serde_json::Value> = quantities
        .iter()
        .map(|(id, q)| serde_json::json!({"product_id": id, "quantity": q}))
        .collect();
    tx.conn().execute(
        "update reservations set response = $2::jsonb, quantities = $3::jsonb, \
         updated_at = now() where reservation_id = $1::text",
        &[
            ParameterValue::Str(reservation_id.to_string()),
            jsonb(response)?,
            jsonb(&quantities)?,
        ],
    )?;
    Ok(())
}

/// Marks a reservation released; returns what it had reserved, or `None` when it is
/// unknown or already released (release is idempotent: stock comes back once).
pub fn release_reservation(tx: &Tx<'_>, reservation_id: &str) -> Result<Option<Vec<(Uuid, i64)>>> {
    let set = pg::query(
        tx.conn(),
        "update reservations set released_at = now(), updated_at = now() \
         where reservation_id = $1::text and released_at is null returning quantities",
        &[ParameterValue::Str(reservation_id.to_string())],
    )?;
    let columns: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
    let Some(row) = set.rows.first() else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Line {
        product_id: Uuid,
        quantity: i64,
    }
    let value: serde_json::Value = get(&columns, row, "quantities")?;
    let lines: Vec<Line> =
        serde_json::from_value(value).map_err(|e| Error::Internal(e.to_string()))?;
    let mut lines: Vec<(Uuid, i64)> = lines
        .into_iter()
        .map(|l| (l.product_id, l.quantity))
        .collect();
    lines.sort();
    Ok(Some(lines))
}

/// `select 1` on the primary (readiness).
pub fn ping(url: &str) -> Result<()> {
    pg::query(&open(url)?, "select 1", &[])?;
    Ok(())
}

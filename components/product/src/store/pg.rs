//! The product and reservation statements (`spin_sdk::pg4`), typed in and out. Functions
//! taking a connection inside `pg::transaction` say so; the others are one statement each.

use chrono::{DateTime, Utc};
use marketplace_shared::pg::query;
use marketplace_shared::time;
use marketplace_shared::wit::Reservation;
use spin_sdk::pg4::{Column, Connection, DbValue, Decode, ParameterValue, RowSet};
use uuid::Uuid;

use super::sql::PRODUCT_COLUMNS;
use crate::domain::reservation::ReservationLine;
use crate::domain::{NewProduct, Product, ProductPatch, ReservationId};
use crate::error::{Error, Result};

fn uuid(id: Uuid) -> ParameterValue {
    ParameterValue::Uuid(id.to_string())
}

fn get<T: Decode>(columns: &[Column], row: &[DbValue], name: &str) -> Result<T> {
    let v = columns
        .iter()
        .position(|c| c.name == name)
        .and_then(|i| row.get(i))
        .ok_or_else(|| Error::Internal(format!("no column {name}")))?;
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

pub(super) fn rows(set: &RowSet) -> Result<Vec<Row>> {
    let columns = &set.columns;
    let has_score = columns.iter().any(|c| c.name == "score");
    set.rows
        .iter()
        .map(|r| {
            let status: String = get(columns, r, "status")?;
            let attributes: serde_json::Value = get(columns, r, "attributes")?;
            let created_us: i64 = get(columns, r, "created_us")?;
            let updated_us: i64 = get(columns, r, "updated_us")?;
            Ok(Row {
                product: Product {
                    id: get(columns, r, "id")?,
                    seller_id: get(columns, r, "seller_id")?,
                    title: get(columns, r, "title")?,
                    description: get(columns, r, "description")?,
                    category: get(columns, r, "category")?,
                    price_cents: get(columns, r, "price_cents")?,
                    currency: get(columns, r, "currency")?,
                    stock: get(columns, r, "stock")?,
                    attributes: serde_json::from_value(attributes).unwrap_or_default(),
                    status: serde_json::from_value(status.clone().into())
                        .map_err(|_| Error::Internal(format!("status {status}")))?,
                    created_at: timestamp(created_us)?,
                    updated_at: timestamp(updated_us)?,
                },
                version: get(columns, r, "version")?,
                created_us,
                score: has_score.then(|| get(columns, r, "score")).transpose()?,
            })
        })
        .collect()
}

/// The one row `statement` returns (`what` names it in the error when there is none).
fn one(conn: &Connection, statement: &str, params: &[ParameterValue], what: &str) -> Result<Row> {
    rows(&query(conn, statement, params)?)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal(format!("{what} returned no row")))
}

/// One product by id, whatever its status; `for update`: locked for the rest of the
/// transaction.
pub fn product(conn: &Connection, id: Uuid, for_update: bool) -> Result<Option<Row>> {
    let lock = if for_update { " for update" } else { "" };
    let statement = format!("select {PRODUCT_COLUMNS} from products where id = $1::uuid{lock}");
    let set = query(conn, &statement, &[uuid(id)])?;
    Ok(rows(&set)?.into_iter().next())
}

fn jsonb(value: &impl serde::Serialize) -> Result<ParameterValue> {
    serde_json::to_vec(value)
        .map(ParameterValue::Jsonb)
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The columns `patch` sets, each with its cast and value.
fn assignments(patch: &ProductPatch) -> Result<Vec<(&'static str, &'static str, ParameterValue)>> {
    let text =
        |column, v: &Option<String>| v.clone().map(|v| (column, "text", ParameterValue::Str(v)));
    let int = |column, v: Option<i64>| v.map(|v| (column, "int8", ParameterValue::Int64(v)));
    let attributes = patch.attributes.as_ref().map(jsonb).transpose()?;
    let fields = [
        text("title", &patch.title),
        text("description", &patch.description),
        text("category", &patch.category),
        int("price_cents", patch.price_cents),
        text("currency", &patch.currency),
        int("stock", patch.stock),
        attributes.map(|v| ("attributes", "jsonb", v)),
    ];
    Ok(fields.into_iter().flatten().collect())
}

/// Inserts a new product (one statement: atomic by itself).
pub fn insert(conn: &Connection, id: Uuid, seller_id: Uuid, new: &NewProduct) -> Result<Row> {
    let mut params = vec![uuid(id), uuid(seller_id)];
    let mut columns = vec!["id", "seller_id"];
    let mut values = vec!["$1::uuid".to_string(), "$2::uuid".to_string()];
    for (column, cast, value) in assignments(new.fields())? {
        params.push(value);
        columns.push(column);
        values.push(format!("${}::{cast}", params.len()));
    }
    let statement = format!(
        "insert into products ({}) values ({}) returning {PRODUCT_COLUMNS}",
        columns.join(", "),
        values.join(", "),
    );
    one(conn, &statement, &params, "insert")
}

/// Applies a validated patch (only the fields it carries) and bumps the version.
pub fn update(conn: &Connection, id: Uuid, patch: &ProductPatch) -> Result<Row> {
    let mut params = vec![uuid(id)];
    let mut sets = Vec::new();
    for (column, cast, value) in assignments(patch)? {
        params.push(value);
        sets.push(format!("{column} = ${}::{cast}", params.len()));
    }
    let statement = format!(
        "update products set {}, version = version + 1, updated_at = now() \
         where id = $1::uuid returning {PRODUCT_COLUMNS}",
        sets.join(", "),
    );
    one(conn, &statement, &params, "update")
}

/// Archives a product (it stays, for the orders that refer to it).
pub fn archive(conn: &Connection, id: Uuid) -> Result<Row> {
    let statement = format!(
        "update products set status = 'archived', version = version + 1, updated_at = now() \
         where id = $1::uuid returning {PRODUCT_COLUMNS}"
    );
    one(conn, &statement, &[uuid(id)], "archive")
}

fn id_array(lines: &[ReservationLine]) -> ParameterValue {
    ParameterValue::ArrayStr(
        lines
            .iter()
            .map(|l| Some(l.product_id.to_string()))
            .collect(),
    )
}

/// Locks the products of `lines` in id order (the one order every stock change uses, so two
/// transactions never wait on each other in a cycle) and returns them.
pub fn lock_products(conn: &Connection, lines: &[ReservationLine]) -> Result<Vec<Row>> {
    let statement = format!(
        "select {PRODUCT_COLUMNS} from products where id = any($1::text[]::uuid[]) \
         order by id for update"
    );
    rows(&query(conn, &statement, &[id_array(lines)])?)
}

/// Adds `sign` times the quantity of each of `lines` (-1 takes, 1 gives back) to the stock
/// of the locked rows; returns the new rows.
pub fn add_stock(conn: &Connection, lines: &[ReservationLine], sign: i64) -> Result<Vec<Row>> {
    let amounts: Vec<Option<i64>> = lines.iter().map(|l| Some(sign * l.quantity)).collect();
    let statement = format!(
        "update products set stock = stock + d.delta, version = version + 1, updated_at = now() \
         from unnest($1::text[]::uuid[], $2::int8[]) as d(pid, delta) where id = d.pid \
         returning {PRODUCT_COLUMNS}"
    );
    rows(&query(
        conn,
        &statement,
        &[id_array(lines), ParameterValue::ArrayInt64(amounts)],
    )?)
}

fn reservation_id(id: &ReservationId) -> ParameterValue {
    ParameterValue::Str(id.as_str().to_string())
}

/// Runs `statement` on reservation `id`; decodes its jsonb `column` of the first row, if any.
fn reservation_json<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    statement: &str,
    id: &ReservationId,
    column: &str,
) -> Result<Option<T>> {
    let set = query(conn, statement, &[reservation_id(id)])?;
    let Some(row) = set.rows.first() else {
        return Ok(None);
    };
    let value: serde_json::Value = get(&set.columns, row, column)?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| Error::Internal(format!("{column}: {e}")))
}

/// Claims `id` (in a transaction): true when this request is the first to use it. A
/// concurrent request with the same id waits here until the first one commits or rolls back.
pub fn claim_reservation(conn: &Connection, id: &ReservationId) -> Result<bool> {
    let n = conn.execute(
        "insert into reservations (reservation_id) values ($1::text) on conflict do nothing",
        &[reservation_id(id)],
    )?;
    Ok(n == 1)
}

/// The stored answer of an earlier reservation.
pub fn reservation_response(conn: &Connection, id: &ReservationId) -> Result<Reservation> {
    let statement = "select response from reservations where reservation_id = $1::text";
    reservation_json(conn, statement, id, "response")?
        .ok_or_else(|| Error::Internal("claimed reservation vanished".into()))
}

/// Records the answer and the per-product quantities of a new reservation.
pub fn record_reservation(
    conn: &Connection,
    id: &ReservationId,
    response: &Reservation,
    totals: &[ReservationLine],
) -> Result<()> {
    conn.execute(
        "update reservations set response = $2::jsonb, quantities = $3::jsonb, \
         updated_at = now() where reservation_id = $1::text",
        &[reservation_id(id), jsonb(response)?, jsonb(&totals)?],
    )?;
    Ok(())
}

/// Marks a reservation released; returns what it had reserved in product id order, or
/// `None` when it is unknown or already released (release is idempotent: stock comes back once).
pub fn release_reservation(
    conn: &Connection,
    id: &ReservationId,
) -> Result<Option<Vec<ReservationLine>>> {
    let statement = "update reservations set released_at = now(), updated_at = now() \
        where reservation_id = $1::text and released_at is null returning quantities";
    let totals = reservation_json::<Vec<ReservationLine>>(conn, statement, id, "quantities")?;
    Ok(totals.map(|mut totals| {
        totals.sort_by_key(|t| t.product_id);
        totals
    }))
}

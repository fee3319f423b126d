//! The product and reservation statements (`spin_sdk::pg4`), typed in and out. Functions
//! taking a connection inside `pg::transaction` say so; the others are one statement each.

use chrono::{DateTime, Utc};
use marketplace_shared::pg::query;
use marketplace_shared::time;
use marketplace_shared::wit::Reservation;
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};
use uuid::Uuid;

use super::sql::PRODUCT_COLUMNS;
use crate::domain::{NewProduct, Product, ProductPatch, ReservationId};
use crate::error::{Error, Result};

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

pub(super) fn rows(set: &RowSet) -> Result<Vec<Row>> {
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
                    status: serde_json::from_value(status.clone().into())
                        .map_err(|_| Error::Internal(format!("status {status}")))?,
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

/// Inserts a new product (one statement: atomic by itself).
pub fn insert(conn: &Connection, id: Uuid, seller_id: Uuid, p: &NewProduct) -> Result<Row> {
    let statement = format!(
        "insert into products (id, seller_id, title, description, category, price_cents, \
         currency, stock, attributes) values ($1::uuid, $2::uuid, $3::text, $4::text, $5::text, \
         $6::int8, $7::text, $8::int8, $9::jsonb) returning {PRODUCT_COLUMNS}"
    );
    let text = |s: &String| ParameterValue::Str(s.clone());
    let params = [
        uuid(id),
        uuid(seller_id),
        text(&p.title),
        text(&p.description),
        text(&p.category),
        ParameterValue::Int64(p.price_cents),
        text(&p.currency),
        ParameterValue::Int64(p.stock),
        jsonb(&p.attributes)?,
    ];
    one(conn, &statement, &params, "insert")
}

/// Applies a validated patch (only the fields it carries) and bumps the version.
pub fn update(conn: &Connection, id: Uuid, patch: &ProductPatch) -> Result<Row> {
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
    let mut params = vec![uuid(id)];
    let mut sets = Vec::new();
    for (column, cast, value) in fields.into_iter().flatten() {
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

fn id_array(ids: &[Uuid]) -> ParameterValue {
    ParameterValue::ArrayStr(ids.iter().map(|id| Some(id.to_string())).collect())
}

/// Locks the rows of `ids` in id order (the one order every stock change uses, so two
/// transactions never wait on each other in a cycle) and returns them.
pub fn lock_products(conn: &Connection, ids: &[Uuid]) -> Result<Vec<Row>> {
    let statement = format!(
        "select {PRODUCT_COLUMNS} from products where id = any($1::text[]::uuid[]) \
         order by id for update"
    );
    rows(&query(conn, &statement, &[id_array(ids)])?)
}

/// Adds `deltas` (negative to take) to the stock of locked rows; returns the new rows.
pub fn add_stock(conn: &Connection, deltas: &[(Uuid, i64)]) -> Result<Vec<Row>> {
    let ids: Vec<Uuid> = deltas.iter().map(|(id, _)| *id).collect();
    let amounts: Vec<Option<i64>> = deltas.iter().map(|(_, d)| Some(*d)).collect();
    let statement = format!(
        "update products set stock = stock + d.delta, version = version + 1, updated_at = now() \
         from unnest($1::text[]::uuid[], $2::int8[]) as d(pid, delta) where id = d.pid \
         returning {PRODUCT_COLUMNS}"
    );
    rows(&query(
        conn,
        &statement,
        &[id_array(&ids), ParameterValue::ArrayInt64(amounts)],
    )?)
}

fn reservation_id(id: &ReservationId) -> ParameterValue {
    ParameterValue::Str(id.as_str().to_string())
}

/// Decodes the one jsonb column of the first row, if there is a row.
fn first_json<T: serde::de::DeserializeOwned>(set: &RowSet, column: &str) -> Result<Option<T>> {
    let columns: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
    let Some(row) = set.rows.first() else {
        return Ok(None);
    };
    let value: serde_json::Value = get(&columns, row, column)?;
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
    let set = query(
        conn,
        "select response from reservations where reservation_id = $1::text",
        &[reservation_id(id)],
    )?;
    first_json(&set, "response")?
        .ok_or_else(|| Error::Internal("claimed reservation vanished".into()))
}

/// One product's quantity of a reservation, as `reservations.quantities` holds it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Quantity {
    product_id: Uuid,
    quantity: i64,
}

/// Records the answer and the per-product quantities of a new reservation.
pub fn record_reservation(
    conn: &Connection,
    id: &ReservationId,
    response: &Reservation,
    quantities: &[(Uuid, i64)],
) -> Result<()> {
    let quantities: Vec<Quantity> = quantities
        .iter()
        .map(|&(product_id, quantity)| Quantity {
            product_id,
            quantity,
        })
        .collect();
    conn.execute(
        "update reservations set response = $2::jsonb, quantities = $3::jsonb, \
         updated_at = now() where reservation_id = $1::text",
        &[reservation_id(id), jsonb(response)?, jsonb(&quantities)?],
    )?;
    Ok(())
}

/// Marks a reservation released; returns what it had reserved in product id order, or
/// `None` when it is unknown or already released (release is idempotent: stock comes back once).
pub fn release_reservation(
    conn: &Connection,
    id: &ReservationId,
) -> Result<Option<Vec<(Uuid, i64)>>> {
    let set = query(
        conn,
        "update reservations set released_at = now(), updated_at = now() \
         where reservation_id = $1::text and released_at is null returning quantities",
        &[reservation_id(id)],
    )?;
    Ok(
        first_json::<Vec<Quantity>>(&set, "quantities")?.map(|lines| {
            let mut lines: Vec<(Uuid, i64)> = lines
                .into_iter()
                .map(|l| (l.product_id, l.quantity))
                .collect();
            lines.sort();
            lines
        }),
    )
}

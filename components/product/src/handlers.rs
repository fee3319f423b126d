//! Thin handlers, one per route: read the input, authorize, call the domain and the store,
//! shape the answer. No SQL and no business rules here.

use marketplace_shared::http::{self, header};
use marketplace_shared::pg::transaction;
use marketplace_shared::query::Query;
use marketplace_shared::tokens::Principal;
use marketplace_shared::{Problem, Role, page};
use spin_sdk::http::{Request, Response};
use spin_sdk::pg4::Connection;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{
    Access, Actor, Document, Product, ProductInput, ReservationId, ReservationRequest, Search,
    Source, Status,
};
use crate::error::{Error, Result};
use crate::store::{self, Row, kv, pg};

const OPENAPI: &str = include_str!("../openapi.json");

pub fn openapi() -> Response {
    http::bytes(200, "application/json", OPENAPI.as_bytes().to_vec(), &[])
}

fn document(row: &Row, source: Source) -> Document {
    Document {
        version: row.version,
        source,
        stored_at_ms: marketplace_shared::time::now().timestamp_millis(),
        product: row.product.clone(),
    }
}

fn user(p: &Principal) -> Actor {
    Actor::User {
        id: p.user_id,
        admin: p.is_admin(),
    }
}

/// The caller: anonymous without a token; a presented token must be valid (401 otherwise),
/// as on every route, so a client with a broken token is told so instead of silently
/// browsing as a stranger.
fn actor(config: &Config, req: &Request) -> Result<Actor> {
    let Some(authorization) = header(req, "authorization") else {
        return Ok(Actor::Anonymous);
    };
    Ok(user(&config.verifier()?.authenticate(Some(authorization))?))
}

/// The signed-in seller or admin who may write products (401 / 403 otherwise).
fn writer(config: &Config, req: &Request) -> Result<(Uuid, Actor)> {
    let p = config
        .verifier()?
        .authenticate(header(req, "authorization"))?;
    match p.role {
        Role::Seller | Role::Admin => Ok((p.user_id, user(&p))),
        _ => Err(Problem::forbidden("only sellers and admins manage products").into()),
    }
}

/// Only the order service reserves and releases stock.
fn order_service(config: &Config, req: &Request) -> Result<()> {
    config
        .verifier()?
        .authenticate_service(header(req, "authorization"), &["order"])?;
    Ok(())
}

fn after_writes(rows: &[Row]) {
    for row in rows {
        kv::after_write(&document(row, Source::Primary));
    }
}

/// `GET /api/products/readyz`: the primary and every key-value label.
pub fn readyz(config: &Config) -> Result<Response> {
    if let Err(e) = store::ping(&config.db_url) {
        eprintln!("product: readiness: database: {e:?}");
        return Err(Problem::service_unavailable("postgres (product database)").into());
    }
    if let Err(e) = kv::ping() {
        eprintln!("product: readiness: key-value: {e}");
        return Err(Problem::service_unavailable("product read model (key-value store)").into());
    }
    Ok(http::json(200, &serde_json::json!({"status": "ready"})))
}

/// `GET /api/products/{id}`: the read model first, the database (replica, then primary)
/// when the document is missing or is a replica copy past its freshness window.
pub fn detail(req: &Request, config: &Config, id: Uuid) -> Result<Response> {
    let actor = actor(config, req)?;
    let cached = kv::get(&id).unwrap_or_else(|e| {
        eprintln!("product: read model unavailable, reading the database: {e}");
        None
    });
    let now_ms = marketplace_shared::time::now().timestamp_millis();
    let product = match cached {
        Some(doc) if doc.is_fresh(now_ms) => doc.product,
        _ => {
            let (row, source) = store::with_read(config, None, |c| pg::product(c, id, false))?;
            let row = row.ok_or(Error::Access(Access::Unknown))?;
            if let Err(e) = kv::put(&document(&row, source)) {
                eprintln!("product: read model refill failed for {id}: {e}");
            }
            row.product
        }
    };
    if !product.visible_to(&actor) {
        return Err(Error::Access(Access::Unknown));
    }
    Ok(http::json(200, &product))
}

/// `POST /api/products`.
pub fn create(req: &Request, config: &Config) -> Result<Response> {
    let (seller_id, _) = writer(config, req)?;
    let new = ProductInput::into_new(http::parse_body(req)?)?;
    let conn = Connection::open(&config.db_url)?;
    let row = pg::insert(&conn, Uuid::now_v7(), seller_id, &new)?;
    after_writes(std::slice::from_ref(&row));
    let mut resp = http::json(201, &row.product);
    resp.set_header("location", format!("/api/products/{}", row.product.id));
    Ok(resp)
}

/// Locks product `id` and checks that `actor` may change it (`archive`: or archive it).
fn locked_for(conn: &Connection, id: Uuid, actor: &Actor, archive: bool) -> Result<Row> {
    let row = pg::product(conn, id, true)?.ok_or(Error::Access(Access::Unknown))?;
    row.product.changeable_by(actor, archive)?;
    Ok(row)
}

/// `PATCH /api/products/{id}`.
pub fn patch(req: &Request, config: &Config, id: Uuid) -> Result<Response> {
    let (_, actor) = writer(config, req)?;
    let patch = ProductInput::into_patch(http::parse_body(req)?)?;
    let conn = Connection::open(&config.db_url)?;
    let row = transaction(&conn, |c| {
        locked_for(c, id, &actor, false)?;
        pg::update(c, id, &patch)
    })?;
    after_writes(std::slice::from_ref(&row));
    Ok(http::json(200, &row.product))
}

/// `DELETE /api/products/{id}`: archives (idempotent).
pub fn archive(req: &Request, config: &Config, id: Uuid) -> Result<Response> {
    let (_, actor) = writer(config, req)?;
    let conn = Connection::open(&config.db_url)?;
    let row = transaction(&conn, |c| {
        let current = locked_for(c, id, &actor, true)?;
        match current.product.status {
            Status::Archived => Ok(current),
            Status::Active => pg::archive(c, id),
        }
    })?;
    after_writes(std::slice::from_ref(&row));
    Ok(http::empty(204))
}

/// `GET /api/products`: search and browse, on a replica when one answers. Anyone may
/// search; a presented token is verified (401 when invalid), an absent one costs nothing.
pub fn search(req: &Request, config: &Config, query: &Query) -> Result<Response> {
    let search = Search::parse(query)?;
    actor(config, req)?;
    let (mut rows, _) = store::with_read(config, Some(config.search_timeout_ms), |c| {
        store::search(c, &search)
    })?;
    let more = rows.len() > search.limit as usize;
    rows.truncate(search.limit as usize);
    let last = rows.last().filter(|_| more);
    let next_cursor = last.map(|r| page::encode_cursor(&store::cursor_after(search.sort, r)));
    let items: Vec<Product> = rows.into_iter().map(|r| r.product).collect();
    Ok(http::json(200, &page::Page { items, next_cursor }))
}

/// `POST /internal/products/reservations`: all-or-nothing, idempotent per reservation id.
/// One transaction: claim the id (a repeat replays the first answer), lock the products in
/// id order, let the domain check the lines, take the stock, record the answer.
pub fn reserve(req: &Request, config: &Config) -> Result<Response> {
    order_service(config, req)?;
    let request = ReservationRequest::parse(http::parse_body(req)?)?;
    let id = &request.reservation_id;
    let conn = Connection::open(&config.db_url)?;
    let (reservation, updated) = transaction(&conn, |c| {
        if !pg::claim_reservation(c, id)? {
            return Ok((pg::reservation_response(c, id)?, Vec::new()));
        }
        let totals = request.totals();
        let locked: Vec<Product> = pg::lock_products(c, &totals)?
            .into_iter()
            .map(|r| r.product)
            .collect();
        let reservation = request.cover(&locked)?;
        let updated = pg::add_stock(c, &totals, -1)?;
        pg::record_reservation(c, id, &reservation, &totals)?;
        Ok::<_, Error>((reservation, updated))
    })?;
    after_writes(&updated);
    Ok(http::json(201, &reservation))
}

/// `DELETE /internal/products/reservations/{reservation_id}`: gives the stock back, once.
pub fn release(req: &Request, config: &Config, raw: Option<&str>) -> Result<Response> {
    order_service(config, req)?;
    let id = raw
        .and_then(ReservationId::parse)
        .ok_or_else(|| Problem::not_found("no such reservation"))?;
    let conn = Connection::open(&config.db_url)?;
    let updated = transaction(&conn, |c| {
        let Some(totals) = pg::release_reservation(c, &id)? else {
            return Ok(Vec::new());
        };
        pg::lock_products(c, &totals)?;
        pg::add_stock(c, &totals, 1)
    })?;
    after_writes(&updated);
    Ok(http::empty(204))
}

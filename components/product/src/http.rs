//! Thin handlers and the one route table (matches `spin.toml` and the contract).

use marketplace_shared::response::{self, header};
use marketplace_shared::wit::{Reservation, ReservedItem};
use marketplace_shared::{FieldErrors, Problem, Role, ShortItem, page};
use spin_sdk::http::{Method, Request, Response};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::{
    self, Actor, Cursor, Document, Product, ProductInput, Search, Sort, Source, Status,
};
use crate::error::{Error, Result};
use crate::{kv, store};

/// The OpenAPI 3.1 document of this service.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Dispatches a request; every outcome is a response (never a trap, never a 500 for input).
pub fn route(req: Request) -> Response {
    let path = response::path(&req).to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method().clone();
    let result = match segments.as_slice() {
        ["api", "products"] => match method {
            Method::Get => search(&req),
            Method::Post => create(&req),
            _ => Err(not_allowed(&["GET", "POST"])),
        },
        ["api", "products", "healthz"] => get_only(&method, || {
            Ok(response::json(200, &serde_json::json!({"status": "ok"})))
        }),
        ["api", "products", "readyz"] => get_only(&method, readyz),
        ["api", "products", "openapi.json"] => get_only(&method, || {
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(OPENAPI)
                .build())
        }),
        ["api", "products", id] => match method {
            Method::Get => detail(&req, id),
            Method::Patch => patch(&req, id),
            Method::Delete => archive(&req, id),
            _ => Err(not_allowed(&["GET", "PATCH", "DELETE"])),
        },
        ["internal", "products", "reservations"] => match method {
            Method::Post => reserve(&req),
            _ => Err(not_allowed(&["POST"])),
        },
        ["internal", "products", "reservations", id] => match method {
            Method::Delete => release(&req, id),
            _ => Err(not_allowed(&["DELETE"])),
        },
        _ => Err(Problem::not_found("no such resource").into()),
    };
    result.unwrap_or_else(|e| e.into_problem().into())
}

fn not_allowed(allowed: &[&str]) -> Error {
    Problem::method_not_allowed(allowed).into()
}

fn get_only(method: &Method, f: impl FnOnce() -> Result<Response>) -> Result<Response> {
    match method {
        Method::Get => f(),
        _ => Err(not_allowed(&["GET"])),
    }
}

fn now_ms() -> i64 {
    marketplace_shared::time::now().timestamp_millis()
}

fn actor(config: &Config, req: &Request) -> Result<Actor> {
    let Some(authorization) = header(req, "authorization") else {
        return Ok(Actor::Anonymous);
    };
    Ok(
        match config
            .verifier()?
            .authenticate_optional(Some(authorization))?
        {
            None => Actor::Anonymous,
            Some(p) => Actor::User {
                id: p.user_id,
                admin: p.is_admin(),
                seller: p.role == Role::Seller,
            },
        },
    )
}

/// The signed-in seller or admin who may write products (401 / 403 otherwise).
fn writer(config: &Config, req: &Request) -> Result<Actor> {
    let p = config
        .verifier()?
        .authenticate(header(req, "authorization"))?;
    match p.role {
        Role::Seller | Role::Admin => Ok(Actor::User {
            id: p.user_id,
            admin: p.is_admin(),
            seller: p.role == Role::Seller,
        }),
        _ => Err(Problem::forbidden("only sellers and admins manage products").into()),
    }
}

fn product_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| Problem::not_found("no such product").into())
}

fn document(row: &store::Row, source: Source) -> Document {
    Document {
        version: row.version,
        source,
        stored_at_ms: now_ms(),
        product: row.product.clone(),
    }
}

fn product_response(status: u16, product: &Product) -> Response {
    response::json(status, product)
}

fn readyz() -> Result<Response> {
    let config = Config::load()?;
    if let Err(e) = store::ping(&config.db_url) {
        eprintln!("product: readiness: database: {e:?}");
        return Err(Problem::service_unavailable("postgres (product database)").into());
    }
    if let Err(e) = kv::ping() {
        eprintln!("product: readiness: key-value: {e}");
        return Err(Problem::service_unavailable("product read model (key-value store)").into());
    }
    Ok(response::json(200, &serde_json::json!({"status": "ready"})))
}

/// `GET /api/products/{id}`: the read model first, the database (replica, then primary)
/// when the document is missing or is a replica copy past its freshness window.
fn detail(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    let actor = actor(&config, req)?;
    let id = product_id(raw_id)?;
    let cached = kv::get(&id).unwrap_or_else(|e| {
        eprintln!("product: read model unavailable, reading the database: {e}");
        None
    });
    let product = match cached {
        Some(doc) if doc.is_fresh(now_ms()) => doc.product,
        _ => {
            let (row, source) = store::with_read(&config, |c| store::product(c, id))?;
            let Some(row) = row else {
                return Err(Problem::not_found("no such product").into());
            };
            if let Err(e) = kv::put(&document(&row, source)) {
                eprintln!("product: read model refill failed for {id}: {e}");
            }
            row.product
        }
    };
    if !domain::visible_to(&product, &actor) {
        return Err(Problem::not_found("no such product").into());
    }
    Ok(product_response(200, &product))
}

/// `POST /api/products`.
fn create(req: &Request) -> Result<Response> {
    let config = Config::load()?;
    let Actor::User { id: seller_id, .. } = writer(&config, req)? else {
        return Err(Problem::forbidden("only sellers and admins manage products").into());
    };
    let input: ProductInput = response::parse_body(req)?;
    let new = input.into_new()?;
    let conn = store::open(&config.db_url)?;
    let row = store::insert(&conn, Uuid::now_v7(), seller_id, &new)?;
    kv::after_write(&document(&row, Source::Primary));
    let mut resp = product_response(201, &row.product);
    resp.set_header("location", format!("/api/products/{}", row.product.id));
    Ok(resp)
}

/// Locks a product for a change by `actor`: 404 when it does not exist or the caller may
/// not know it does (archived), 403 when it is someone else's.
fn owned_for_update(tx: &store::Tx<'_>, id: Uuid, actor: &Actor) -> Result<store::Row> {
    let row = store::product_for_update(tx, id)?
        .filter(|r| domain::visible_to(&r.product, actor))
        .ok_or_else(|| Error::from(Problem::not_found("no such product")))?;
    if !actor.owns_or_admin(row.product.seller_id) {
        return Err(Problem::forbidden("this product belongs to another seller").into());
    }
    Ok(row)
}

/// `PATCH /api/products/{id}`.
fn patch(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    let actor = writer(&config, req)?;
    let id = product_id(raw_id)?;
    let input: ProductInput = response::parse_body(req)?;
    let patch = input.into_patch()?;
    let conn = store::open(&config.db_url)?;
    let tx = store::Tx::begin(&conn)?;
    let current = owned_for_update(&tx, id, &actor)?;
    if current.product.status == Status::Archived {
        return Err(Problem::conflict("archived products cannot be changed").into());
    }
    let row = store::update(&tx, id, &patch)?;
    tx.commit()?;
    kv::after_write(&document(&row, Source::Primary));
    Ok(product_response(200, &row.product))
}

/// `DELETE /api/products/{id}`: archives (idempotent).
fn archive(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    let actor = writer(&config, req)?;
    let id = product_id(raw_id)?;
    let conn = store::open(&config.db_url)?;
    let tx = store::Tx::begin(&conn)?;
    let current = owned_for_update(&tx, id, &actor)?;
    let row = if current.product.status == Status::Archived {
        current
    } else {
        store::archive(&tx, id)?
    };
    tx.commit()?;
    kv::after_write(&document(&row, Source::Primary));
    Ok(response::empty(204))
}

fn cursor_after(sort: Sort, row: &store::Row) -> Cursor {
    let id = row.product.id;
    match sort {
        Sort::Newest => Cursor::Newest {
            t: row.created_us,
            id,
        },
        Sort::PriceAsc => Cursor::PriceAsc {
            p: row.product.price_cents,
            id,
        },
        Sort::PriceDesc => Cursor::PriceDesc {
            p: row.product.price_cents,
            id,
        },
        Sort::Relevance => Cursor::Relevance {
            r: row.score.unwrap_or(0.0),
            id,
        },
    }
}

/// `GET /api/products`: search and browse, on a replica when one answers.
fn search(req: &Request) -> Result<Response> {
    let search = Search::parse(req.query())?;
    let config = Config::load()?;
    // Anyone may search, but a token that is presented must be valid (401 otherwise), as on
    // every route: a client with a broken or expired token is told so instead of silently
    // browsing as a stranger. Verified only when the header is there.
    actor(&config, req)?;
    let spec = search.spec();
    let (mut rows, _) = store::with_read(&config, |c| store::search(c, &spec))?;
    let limit = search.limit as usize;
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last()
            .map(|r| page::encode_cursor(&cursor_after(search.sort, r)))
    } else {
        None
    };
    let items: Vec<Product> = rows.into_iter().map(|r| r.product).collect();
    Ok(response::json(200, &page::Page { items, next_cursor }))
}

/// `POST /internal/products/reservations`: all-or-nothing, idempotent per reservation id.
fn reserve(req: &Request) -> Result<Response> {
    let config = Config::load()?;
    config
        .verifier()?
        .authenticate_service(header(req, "authorization"), &["order"])?;
    let body: marketplace_shared::wit::ReservationRequest = response::parse_body(req)?;
    let request = domain::parse_reservation(body)?;
    let totals = request.totals();
    let ids: Vec<Uuid> = totals.iter().map(|(id, _)| *id).collect();

    let conn = store::open(&config.db_url)?;
    let tx = store::Tx::begin(&conn)?;
    if !store::claim_reservation(&tx, &request.reservation_id)? {
        // A repeat: the first answer, and nothing more reserved.
        let replay = store::reservation_response(&tx, &request.reservation_id)?;
        tx.commit()?;
        return Ok(response::json(201, &replay));
    }
    let locked = store::lock_products(&tx, &ids)?;
    let find = |id: &Uuid| locked.iter().find(|r| r.product.id == *id);

    let mut errors = FieldErrors::new();
    for (i, line) in request.lines.iter().enumerate() {
        match find(&line.product_id) {
            Some(r) if r.product.status == Status::Active => {}
            _ => errors.add(
                format!("items[{i}].product_id"),
                "unknown or archived product",
            ),
        }
    }
    errors.into_result()?;
    let short: Vec<ShortItem> = totals
        .iter()
        .filter_map(|(id, qty)| {
            let available = find(id).map_or(0, |r| r.product.stock);
            (available < *qty).then(|| ShortItem {
                product_id: id.to_string(),
                requested: *qty,
                available,
            })
        })
        .collect();
    if !short.is_empty() {
        return Err(Problem::insufficient_stock(short).into());
    }

    let mut items = Vec::with_capacity(request.lines.len());
    for line in &request.lines {
        let Some(r) = find(&line.product_id) else {
            return Err(Error::Internal("locked product vanished".into()));
        };
        items.push(ReservedItem {
            product_id: line.product_id.to_string(),
            quantity: u32::try_from(line.quantity).unwrap_or(u32::MAX),
            unit_price_cents: r.product.price_cents,
            currency: r.product.currency.clone(),
            title: r.product.title.clone(),
            seller_id: Some(r.product.seller_id.to_string()),
        });
    }
    let reservation = Reservation {
        reservation_id: request.reservation_id.clone(),
        items,
    };
    let body = serde_json::to_value(&reservation).map_err(|e| Error::Internal(e.to_string()))?;
    let takes: Vec<(Uuid, i64)> = totals.iter().map(|(id, q)| (*id, -q)).collect();
    let updated = store::add_stock(&tx, &takes)?;
    store::record_reservation(&tx, &request.reservation_id, &body, &totals)?;
    tx.commit()?;
    for row in &updated {
        kv::after_write(&document(row, Source::Primary));
    }
    Ok(response::json(201, &body))
}

/// Percent-decodes a path segment (`None` when it is not valid UTF-8 after decoding).
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i] == b'%' {
            return None;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `DELETE /internal/products/reservations/{reservation_id}`: gives the stock back, once.
fn release(req: &Request, raw_id: &str) -> Result<Response> {
    let config = Config::load()?;
    config
        .verifier()?
        .authenticate_service(header(req, "authorization"), &["order"])?;
    let Some(reservation_id) =
        percent_decode(raw_id).and_then(|s| domain::parse_reservation_id(&s))
    else {
        return Err(Problem::not_found("no such reservation").into());
    };
    let conn = store::open(&config.db_url)?;
    let tx = store::Tx::begin(&conn)?;
    let Some(quantities) = store::release_reservation(&tx, &reservation_id)? else {
        tx.commit()?;
        return Ok(response::empty(204));
    };
    let ids: Vec<Uuid> = quantities.iter().map(|(id, _)| *id).collect();
    store::lock_products(&tx, &ids)?;
    let updated = store::add_stock(&tx, &quantities)?;
    tx.commit()?;
    for row in &updated {
        kv::after_write(&document(row, Source::Primary));
    }
    Ok(response::empty(204))
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(super::percent_decode("ord%2D1").as_deref(), Some("ord-1"));
        assert_eq!(super::percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(super::percent_decode("bad%zz"), None);
        assert_eq!(super::percent_decode("cut%2"), None);
    }
}

//! The order operations: placing (reserve → store → ship, exactly once), reading, listing,
//! cancelling and applying delivery updates. Handlers in `routes.rs` call these.

use std::time::Duration;

use marketplace_shared::tokens::Principal;
use marketplace_shared::{FieldErrors, OrderStatus, Problem};
use uuid::Uuid;

use crate::clients::{self, ReserveError, ShipmentCancel};
use crate::config::Config;
use crate::domain::order::{
    self, CancelOutcome, DeliveryStatus, IdempotencyKey, NewOrder, PricingError, Transition,
};
use crate::domain::outbox::{self, CancelIntent, Kind, Release};
use crate::domain::sales::{self, Sale, SalesQuery};
use crate::domain::shard::{OrderId, VShard};
use crate::error::Error;
use crate::relay;
use crate::store::{Db, OrderView};

/// The answer to `POST /api/orders`: first-time or replayed.
pub struct Placed {
    pub status: u16,
    pub body: serde_json::Value,
    pub replayed: bool,
}

fn to_json(order: &OrderView) -> Result<serde_json::Value, Error> {
    serde_json::to_value(order).map_err(|e| Error::Internal(format!("order json: {e}")))
}

/// How many times a request re-reads a key another request is working on, 100 ms apart,
/// before answering 409 (the other request is between its claim and its lock: milliseconds).
const KEY_WAIT_ROUNDS: u32 = 50;

/// Places an order exactly once per (buyer, idempotency key).
///
/// 1. The key row is inserted `pending` with a fresh order id and committed, so a crash from
///    here on leaves a trace the relay cleans up (it releases reservation `order id`).
/// 2. The row is locked for the rest of the attempt: a concurrent request with the same key
///    waits on the lock and then replays the stored response.
/// 3. Stock is reserved with reservation id = order id (idempotent at the product service).
/// 4. Order, lines, history, `create_shipment` outbox row and the stored response commit in
///    one transaction; then the relay runs for this order.
///
/// Any failure after step 3 releases the reservation, or queues the release in the outbox in
/// the same transaction that forgets the key.
pub async fn place(
    cfg: &Config,
    buyer: Uuid,
    key: &IdempotencyKey,
    new: &NewOrder,
) -> Result<Placed, Error> {
    let vshard = VShard::of_buyer(buyer);
    let db = Db::for_vshard(cfg, vshard)?;
    let hash = new.fingerprint();
    let mut waits = 0;
    for _ in 0..KEY_WAIT_ROUNDS * 2 {
        let candidate = OrderId::generate(vshard);
        db.claim_key(buyer, key.as_str(), &hash, &candidate)?;
        db.begin()?;
        let row = match db.lock_key(buyer, key.as_str()) {
            Ok(row) => row,
            Err(e) => {
                db.rollback();
                return Err(e);
            }
        };
        let Some(row) = row else {
            // The attempt holding the key gave up and forgot it: claim it again.
            db.rollback();
            continue;
        };
        if row.request_hash != hash {
            db.rollback();
            return Err(Problem::unprocessable(
                "this Idempotency-Key was already used with a different request body",
            )
            .into());
        }
        if row.completed {
            db.rollback();
            let body = row.response_body.unwrap_or_default();
            return Ok(Placed {
                status: row.response_status.map_or(201, |s| s as u16),
                body,
                replayed: true,
            });
        }
        let mine = row.order_id == candidate.to_string();
        let abandoned = row.age_secs >= outbox::ABANDONED_AFTER_SECS;
        if !mine && !abandoned {
            // Another request claimed the key and has not locked it yet: wait for it.
            db.rollback();
            waits += 1;
            if waits > KEY_WAIT_ROUNDS {
                return Err(Problem::conflict(
                    "a request with this Idempotency-Key is still being processed; retry later",
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        // We own the attempt (ours, or an abandoned one we take over with its order id, so
        // whatever it reserved is reused, not doubled).
        let Some(order_id) = OrderId::parse(&row.order_id) else {
            db.rollback();
            return Err(Error::Internal("stored order id unreadable".into()));
        };
        if !mine && let Err(e) = db.touch_key(buyer, key.as_str()) {
            db.rollback();
            return Err(e);
        }
        return attempt(cfg, &db, buyer, key, new, order_id).await;
    }
    Err(Problem::conflict(
        "a request with this Idempotency-Key is still being processed; retry later",
    )
    .into())
}

/// Steps 3 and 4 of [`place`], inside the transaction holding the key row.
async fn attempt(
    cfg: &Config,
    db: &Db,
    buyer: Uuid,
    key: &IdempotencyKey,
    new: &NewOrder,
    order_id: OrderId,
) -> Result<Placed, Error> {
    let oid = order_id.to_string();
    let reservation = match clients::reserve(cfg, &oid, &new.items).await {
        Ok(r) => r,
        Err(ReserveError::Conflict(detail, short_items)) => {
            forget(cfg, db, buyer, key, None).await?;
            let problem = if !short_items.is_empty() {
                Problem::insufficient_stock(short_items)
            } else if detail.is_empty() {
                Problem::conflict("not enough stock")
            } else {
                Problem::conflict(detail)
            };
            return Err(problem.into());
        }
        Err(ReserveError::Invalid(detail, errors)) => {
            forget(cfg, db, buyer, key, None).await?;
            let errors = errors.unwrap_or_else(|| {
                let mut e = FieldErrors::new();
                e.add(
                    "items",
                    if detail.is_empty() {
                        "unknown or archived product".to_string()
                    } else {
                        detail
                    },
                );
                e
            });
            return Err(Problem::validation(errors).into());
        }
        Err(ReserveError::Unavailable(cause)) => {
            // The reservation may exist (lost answer): release it, or queue the release.
            forget(cfg, db, buyer, key, Some(&order_id)).await?;
            return Err(Error::Unavailable {
                dependency: "product-service".into(),
                cause,
            });
        }
    };
    let priced = match order::price(&new.items, &reservation.items) {
        Ok(p) => p,
        Err(e) => {
            forget(cfg, db, buyer, key, Some(&order_id)).await?;
            return Err(match e {
                PricingError::MixedCurrencies(c) => Problem::invalid_field(
                    "items",
                    format!(
                        "all items must be priced in one currency (found {})",
                        c.join(", ")
                    ),
                )
                .into(),
                PricingError::TotalTooLarge => {
                    Problem::invalid_field("items", "the order total is too large").into()
                }
                PricingError::Mismatch(m) => Error::Unavailable {
                    dependency: "product-service".into(),
                    cause: format!("reservation does not match the request: {m}"),
                },
            });
        }
    };
    let stored = (|| {
        db.insert_order(
            &order_id,
            buyer,
            key.as_str(),
            &priced,
            &new.shipping_address,
        )?;
        let order = db
            .load_order(&order_id)?
            .ok_or_else(|| Error::Internal("order vanished".into()))?;
        let body = to_json(&order)?;
        db.complete_key(buyer, key.as_str(), 201, &body)?;
        Ok::<_, Error>(body)
    })();
    let body = match stored.and_then(|body| db.commit().map(|()| body)) {
        Ok(body) => body,
        Err(e) => {
            db.rollback();
            // The key row is still `pending` (committed at claim time): release now; if even
            // that fails, the relay's sweep releases it once the row is abandoned.
            if clients::release(cfg, &oid).await.is_ok() {
                let _ = db.delete_key(buyer, key.as_str());
            }
            return Err(e);
        }
    };
    let stats = relay::run_for_order(cfg, db, &oid).await;
    let body = if stats.shipments_requested > 0 {
        // Store what the client sees now (with its shipment id) as the response to replay.
        match db.load_order(&order_id).and_then(|o| match o {
            Some(o) => to_json(&o),
            None => Err(Error::Internal("order vanished".into())),
        }) {
            Ok(latest) => {
                let _ = db.complete_key(buyer, key.as_str(), 201, &latest);
                latest
            }
            Err(_) => body,
        }
    } else {
        body
    };
    Ok(Placed {
        status: 201,
        body,
        replayed: false,
    })
}

/// Ends an attempt that produced no order: forgets the key (so it can be used again) and, if
/// a reservation may exist, releases it now or, failing that, queues its release in the same
/// transaction that forgets the key.
async fn forget(
    cfg: &Config,
    db: &Db,
    buyer: Uuid,
    key: &IdempotencyKey,
    reservation: Option<&OrderId>,
) -> Result<(), Error> {
    let released = match reservation {
        Some(id) => match clients::release(cfg, &id.to_string()).await {
            Ok(()) => true,
            Err(e) => {
                eprintln!("order: releasing {id} failed, queued for the relay: {e}");
                false
            }
        },
        None => true,
    };
    let result = (|| {
        if let (Some(id), false) = (reservation, released) {
            let payload = serde_json::to_value(Release {
                reservation_id: id.to_string(),
            })
            .map_err(|e| Error::Internal(e.to_string()))?;
            db.enqueue(id, Kind::ReleaseReservation, &payload)?;
        }
        db.delete_key(buyer, key.as_str())?;
        db.commit()
    })();
    if result.is_err() {
        db.rollback();
    }
    result
}

/// Whether `who` may see and act on an order of `buyer` (others get 404: they may not know
/// it exists).
fn may_access(who: &Principal, buyer: Uuid) -> bool {
    who.user_id == buyer || who.is_admin()
}

fn not_found() -> Error {
    Problem::not_found("no such order").into()
}

/// `GET /api/orders/{id}`: one shard, found from the id alone.
pub fn get(cfg: &Config, who: &Principal, id: &str) -> Result<OrderView, Error> {
    let id = OrderId::parse(id).ok_or_else(not_found)?;
    let db = Db::for_vshard(cfg, id.vshard())?;
    match db.load_order(&id)? {
        Some(o) if may_access(who, o.buyer_id) => Ok(o),
        _ => Err(not_found()),
    }
}

/// `GET /api/orders`: the caller's shard only, newest first.
pub fn list(
    cfg: &Config,
    buyer: Uuid,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<OrderView>, Option<String>), Error> {
    let after = match cursor {
        Some(c) => {
            let id: String = marketplace_shared::page::decode_cursor(c)?;
            let id = OrderId::parse(&id)
                .filter(|id| id.vshard() == VShard::of_buyer(buyer))
                .ok_or_else(|| Problem::bad_request("invalid cursor"))?;
            Some(id.to_string())
        }
        None => None,
    };
    let db = Db::for_vshard(cfg, VShard::of_buyer(buyer))?;
    let mut items = db.list_orders(buyer, after.as_deref(), limit + 1)?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|o| marketplace_shared::page::encode_cursor(&o.id))
    } else {
        None
    };
    Ok((items, next))
}

/// `GET /api/orders/sales`: a seller's lines on every database, merged into one page
/// (`domain::sales`). Every database answers at most `limit + 1` lines after the cursor, so a
/// page costs a bounded amount of work per database; one that does not answer makes the whole
/// page a 503 naming it (a page without it would skip its lines for good).
pub fn sales(cfg: &Config, q: &SalesQuery) -> Result<(Vec<Sale>, Option<String>), Error> {
    let mut pages = Vec::with_capacity(cfg.db_urls.len());
    for index in 0..cfg.db_urls.len() {
        pages.push(Db::open(cfg, index)?.sales_page(q, q.limit + 1)?);
    }
    Ok(sales::merge(pages, q.limit))
}

/// How many times a cancel starts over after the intent it waited for was resolved by someone
/// else (a relay or a concurrent cancel of the same order).
const CANCEL_ROUNDS: u32 = 3;

/// `POST /api/orders/{id}/cancel` (API v1.1, "Cancellation stops the parcel"): the shipment is
/// cancelled first, then the order, then its stock is released. Never a cancelled order whose
/// parcel is on its way, and never a cancelled shipment under a live order once settled:
///
/// 1. **Intent** (under the order's row lock): only a `confirmed` order goes on (cancelled:
///    200 as it is; shipped, delivered, returned: 409). A `cancel_shipment` outbox row is
///    written (or the order's unresolved one reused), not due for `CANCEL_LEASE_SECS`, and
///    committed: from here on a crash leaves a trace.
/// 2. **Ask** (in a transaction holding the intent's row lock, so no relay resolves it under
///    us): the delivery service cancels the shipment, created first if the order has none yet
///    (idempotent per order id, so a shipment whose creation answer was lost is found, never
///    left pending behind a cancelled order).
/// 3. **Settle**, in that same transaction, by the answer:
///    - cancelled → order `cancelled`, history, `release_reservation` row, intent done;
///      commit; the release is relayed at once → 200;
///    - 409 (picked up first) → the intent is deleted, nothing changed → 409;
///    - no definite answer (unreachable, timeout, 5xx) → the intent is made due, nothing else
///      changes → 503. The relay then resolves it from the shipment's status: cancelled (the
///      answer was lost) → step 3's first branch; anything else → dropped.
///
/// A crash after step 2 leaves the intent locked by nobody; once its lease is over the relay
/// resolves it the same way.
pub async fn cancel(cfg: &Config, who: &Principal, id: &str) -> Result<OrderView, Error> {
    let id = OrderId::parse(id).ok_or_else(not_found)?;
    let db = Db::for_vshard(cfg, id.vshard())?;
    let oid = id.to_string();
    for _ in 0..CANCEL_ROUNDS {
        let (intent, order) = match claim_cancel(&db, who, &id)? {
            Claimed::AlreadyCancelled => {
                // Idempotent; a release that failed before is retried.
                relay::run_for_order(cfg, &db, &oid).await;
                return db.load_order(&id)?.ok_or_else(not_found);
            }
            Claimed::Intent(intent, order) => (intent, order),
        };
        if let Some(order) = attempt_cancel(cfg, &db, &id, intent, &order).await? {
            return Ok(order);
        }
    }
    Err(Problem::conflict("a cancel of this order is still being processed; retry later").into())
}

/// What step 1 of [`cancel`] found.
enum Claimed {
    AlreadyCancelled,
    /// The intent's outbox row id, and the order as it was under the lock.
    Intent(i64, Box<OrderView>),
}

/// Step 1 of [`cancel`]: one short transaction under the order's row lock.
fn claim_cancel(db: &Db, who: &Principal, id: &OrderId) -> Result<Claimed, Error> {
    db.begin()?;
    let result = (|| {
        let Some((buyer, status)) = db.lock_order(id)? else {
            return Err(not_found());
        };
        if !may_access(who, buyer) {
            return Err(not_found());
        }
        match order::on_cancel(status) {
            CancelOutcome::AlreadyCancelled => Ok(Claimed::AlreadyCancelled),
            CancelOutcome::TooLate => Err(Problem::conflict(format!(
                "the order is {status} and can no longer be cancelled"
            ))
            .into()),
            CancelOutcome::Cancel => {
                let intent = match db.pending_cancel(&id.to_string())? {
                    Some(intent) => intent,
                    None => {
                        let actor = if who.user_id == buyer {
                            "buyer"
                        } else {
                            "admin"
                        };
                        let payload = serde_json::to_value(CancelIntent {
                            actor: actor.to_string(),
                            by: who.user_id,
                        })
                        .map_err(|e| Error::Internal(e.to_string()))?;
                        db.enqueue_in(
                            id,
                            Kind::CancelShipment,
                            &payload,
                            outbox::CANCEL_LEASE_SECS,
                        )?
                    }
                };
                let order = db.load_order(id)?.ok_or_else(not_found)?;
                Ok(Claimed::Intent(intent, Box::new(order)))
            }
        }
    })();
    match result.and_then(|c| db.commit().map(|()| c)) {
        Ok(c) => Ok(c),
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

/// How step 3 of [`cancel`] settled.
enum Settled {
    Cancelled,
    TooLate,
    Unknown(String),
}

/// Steps 2 and 3 of [`cancel`]. `Ok(None)`: the intent was resolved by someone else while we
/// waited for its lock; look again.
async fn attempt_cancel(
    cfg: &Config,
    db: &Db,
    id: &OrderId,
    intent: i64,
    order: &OrderView,
) -> Result<Option<OrderView>, Error> {
    db.begin()?;
    let row = match db.lock_outbox_row(intent) {
        Ok(Some(row)) => row,
        Ok(None) => {
            db.rollback();
            return Ok(None);
        }
        Err(e) => {
            db.rollback();
            return Err(e);
        }
    };
    let answer = match cancel_shipment_of(cfg, order).await {
        Ok(answer) => answer,
        Err(e) => {
            db.rollback();
            return Err(e);
        }
    };
    let settled = (|| match answer {
        Ok((shipment, ShipmentCancel::Cancelled)) => {
            let intent: CancelIntent = serde_json::from_value(row.payload.clone())
                .map_err(|e| Error::Internal(format!("outbox row {} payload: {e}", row.id)))?;
            apply_cancel(db, id, &intent, shipment, false)?;
            db.outbox_done(row.id)?;
            db.commit().map(|()| Settled::Cancelled)
        }
        Ok((_, ShipmentCancel::TooLate(_))) => {
            db.delete_outbox_row(row.id)?;
            db.commit().map(|()| Settled::TooLate)
        }
        Err(cause) => {
            db.outbox_failed(&row, &cause)?;
            db.commit().map(|()| Settled::Unknown(cause))
        }
    })();
    match settled {
        Err(e) => {
            db.rollback();
            Err(e)
        }
        Ok(Settled::Cancelled) => {
            relay::run_for_order(cfg, db, &id.to_string()).await;
            db.load_order(id)?.ok_or_else(not_found).map(Some)
        }
        Ok(Settled::TooLate) => Err(Problem::conflict(
            "the order's shipment has already been picked up; the order can no longer be cancelled",
        )
        .into()),
        Ok(Settled::Unknown(cause)) => Err(Error::Unavailable {
            dependency: "delivery-service".into(),
            cause,
        }),
    }
}

/// Asks the delivery service to cancel the order's shipment (the shipment is looked up, or
/// created, first when the order does not know it yet). Inner `Err`: no definite answer.
async fn cancel_shipment_of(
    cfg: &Config,
    order: &OrderView,
) -> Result<Result<(Uuid, ShipmentCancel), String>, Error> {
    let shipment = match order.shipment_id {
        Some(shipment) => shipment,
        None => match clients::ensure_shipment(cfg, &relay::shipment_request(order)?).await {
            Ok(s) => s.id,
            Err(e) => return Ok(Err(e)),
        },
    };
    Ok(clients::cancel_shipment(cfg, shipment)
        .await
        .map(|answer| (shipment, answer)))
}

/// The order's side of a cancel whose shipment is `cancelled` (inside a transaction; the
/// request's step 3, or the relay finishing an unresolved cancel): under the order's row lock,
/// a `confirmed` order becomes `cancelled` with its history entry and its `release_reservation`
/// row; an order cancelled meanwhile is left as it is. The shipment id is recorded if the order
/// did not know it. Returns whether the order was cancelled now.
pub(crate) fn apply_cancel(
    db: &Db,
    id: &OrderId,
    intent: &CancelIntent,
    shipment: Uuid,
    by_relay: bool,
) -> Result<bool, Error> {
    let oid = id.to_string();
    let Some((_, status)) = db.lock_order(id)? else {
        return Err(Error::Internal(format!("order {oid} vanished")));
    };
    let actor = if by_relay {
        "relay"
    } else {
        intent.actor.as_str()
    };
    relay::record_shipment(db, &oid, shipment, None, actor)?;
    match order::on_cancel(status) {
        CancelOutcome::Cancel => {
            db.set_status(id, OrderStatus::Cancelled)?;
            let mut detail = serde_json::json!({ "by": intent.by, "shipment_id": shipment });
            if by_relay {
                detail["finished_by"] = "relay".into();
            }
            db.history(
                &oid,
                "cancelled",
                Some(status),
                OrderStatus::Cancelled,
                &intent.actor,
                &detail,
                None,
            )?;
            let payload = serde_json::to_value(Release {
                reservation_id: oid.clone(),
            })
            .map_err(|e| Error::Internal(e.to_string()))?;
            db.enqueue(id, Kind::ReleaseReservation, &payload)?;
            Ok(true)
        }
        CancelOutcome::AlreadyCancelled => Ok(false),
        CancelOutcome::TooLate => {
            // Cannot happen: a cancelled shipment was never picked up, so nothing reported it
            // shipped. Logged, and the order left as it is.
            eprintln!("order: {oid} is {status} but its shipment {shipment} is cancelled");
            Ok(false)
        }
    }
}

/// `POST /internal/orders/{id}/delivery-status`: forward-only, idempotent.
pub fn delivery_update(
    cfg: &Config,
    id: &str,
    status: DeliveryStatus,
    occurred_at: chrono::DateTime<chrono::Utc>,
) -> Result<OrderView, Error> {
    let id = OrderId::parse(id).ok_or_else(not_found)?;
    let db = Db::for_vshard(cfg, id.vshard())?;
    db.begin()?;
    let result = (|| {
        let Some((_, current)) = db.lock_order(&id)? else {
            return Err(not_found());
        };
        match order::on_delivery_update(current, status) {
            Transition::Move(next) => {
                db.set_status(&id, next)?;
                db.history(
                    &id.to_string(),
                    next.as_str(),
                    Some(current),
                    next,
                    "delivery",
                    &serde_json::json!({}),
                    Some(occurred_at),
                )?;
            }
            Transition::Ignore => {}
        }
        Ok(())
    })();
    match result.and_then(|()| db.commit()) {
        Ok(()) => {}
        Err(e) => {
            db.rollback();
            return Err(e);
        }
    }
    db.load_order(&id)?.ok_or_else(not_found)
}

/// `GET /api/orders/readyz`: every physical database answers.
pub fn ready(cfg: &Config) -> Result<(), Error> {
    for index in 0..cfg.db_urls.len() {
        Db::open(cfg, index)?.ping()?;
    }
    Ok(())
}

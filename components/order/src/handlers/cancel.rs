//! Cancelling an order (API v1.1, "Cancellation stops the parcel"): shipment first, then the
//! order, then its stock, so that once settled no cancelled order has a parcel on its way and
//! no live order a cancelled shipment.
//!
//! 1. **Intent**, under the order's row lock (only a `confirmed` order goes on): a
//!    `cancel_shipment` row (or the unresolved one), not due for `CANCEL_LEASE_SECS`, is
//!    committed, so that from here on a crash leaves a trace.
//! 2. **Ask**, holding the intent's row lock (no relay resolves it under us): the delivery
//!    service cancels the shipment, created first if the order has none (idempotent per order
//!    id: a shipment whose creation answer was lost is found, not left pending).
//! 3. **Settle** in that transaction: cancelled → order `cancelled`, history, release row,
//!    intent done → 200 (the release relayed at once); 409 (picked up first) → intent deleted
//!    → 409; no definite answer → intent made due → 503. The relay resolves an intent left due,
//!    or whose lease is over after a crash, from the shipment's status (`relay`).

use marketplace_shared::tokens::Principal;
use uuid::Uuid;

use crate::clients::{self, ShipmentCancel};
use crate::config::Config;
use crate::domain::order::{self, CancelOutcome, Order};
use crate::domain::outbox::CancelIntent;
use crate::domain::shard::OrderId;
use crate::error::Error;
use crate::relay;
use crate::store::{Db, Job};

/// How many times a cancel starts over after the intent it waited for was resolved by someone
/// else (a relay or a concurrent cancel of the same order).
const CANCEL_ROUNDS: u32 = 3;

pub async fn cancel(cfg: &Config, who: &Principal, id: &OrderId) -> Result<Order, Error> {
    let db = Db::for_vshard(cfg, id.vshard())?;
    for _ in 0..CANCEL_ROUNDS {
        let Some((intent, order)) = claim(&db, who, id).await? else {
            // Already cancelled (idempotent); a release that failed before is retried.
            relay::run_for_order(cfg, &db, id).await;
            return db.load_order(id)?.ok_or(Error::NotFound);
        };
        if let Some(order) = attempt(cfg, &db, intent, &order).await? {
            return Ok(order);
        }
    }
    Err(Error::CancelBusy)
}

/// Step 1: one short transaction under the order's row lock. The intent's outbox row id and
/// the order as it was under the lock; `None` if the order is already cancelled.
async fn claim(db: &Db, who: &Principal, id: &OrderId) -> Result<Option<(i64, Order)>, Error> {
    db.transaction(async |db| {
        let order = db
            .lock_order(id)?
            .filter(|o| o.visible_to(who))
            .ok_or(Error::NotFound)?;
        match order::on_cancel(order.status) {
            CancelOutcome::AlreadyCancelled => Ok(None),
            CancelOutcome::TooLate => Err(Error::TooLate(Some(order.status))),
            CancelOutcome::Cancel => {
                let intent = match db.pending_cancel(id)? {
                    Some(intent) => intent,
                    None => {
                        let buyer = who.user_id == order.buyer_id;
                        let actor = if buyer { "buyer" } else { "admin" }.to_string();
                        let by = who.user_id;
                        db.enqueue_cancel(id, &CancelIntent { actor, by })?
                    }
                };
                Ok(Some((intent, order)))
            }
        }
    })
    .await
}

/// Steps 2 and 3 for the intent in outbox row `row`. `Ok(None)`: someone else resolved it
/// while we waited for its lock; look again. Inside the transaction, `Err` rolls back; a
/// refusal (the shipment was picked up, no definite answer) is answered once it commits.
async fn attempt(cfg: &Config, db: &Db, row: i64, order: &Order) -> Result<Option<Order>, Error> {
    let id = &order.id;
    let settled = db
        .transaction(async |db| {
            let Some(row) = db.lock_cancel_intent(row)? else {
                return Ok(None);
            };
            let Job::Cancel(intent) = &row.job else {
                let no_cancel = format!("outbox row {} is no cancel", row.id);
                return Err(Error::Internal(no_cancel));
            };
            Ok(Some(match cancel_shipment_of(cfg, order).await {
                Ok((shipment, ShipmentCancel::Cancelled)) => {
                    relay::apply_cancel(db, id, intent, shipment, false)?;
                    db.outbox_done(row.id)?;
                    Ok(())
                }
                Ok((_, ShipmentCancel::TooLate)) => {
                    db.delete_outbox_row(row.id)?;
                    Err(Error::TooLate(None))
                }
                Err(cause) => {
                    db.outbox_failed(&row, &cause)?;
                    Err(Error::unavailable("delivery-service", cause))
                }
            }))
        })
        .await?;
    match settled {
        None => Ok(None),
        Some(Ok(())) => {
            relay::run_for_order(cfg, db, id).await;
            db.load_order(id)?.ok_or(Error::NotFound).map(Some)
        }
        Some(Err(refusal)) => Err(refusal),
    }
}

/// Asks the delivery service to cancel the order's shipment (the shipment is looked up, or
/// created, first when the order does not know it yet). `Err`: no definite answer.
async fn cancel_shipment_of(cfg: &Config, order: &Order) -> Result<(Uuid, ShipmentCancel), String> {
    let shipment = match order.shipment_id {
        Some(shipment) => shipment,
        None => clients::ensure_shipment(cfg, order).await?.id,
    };
    let answer = clients::cancel_shipment(cfg, shipment).await?;
    Ok((shipment, answer))
}

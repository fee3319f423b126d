//! The outbox relay: delivers due outbox rows, cleans up abandoned create attempts, and deletes
//! delivered rows and completed idempotency keys past their retention.
//!
//! Rows are claimed `for update skip locked` in a transaction that stays open during the
//! calls, so two relays at once (the CronJob and an inline run, or two pods) never send a row
//! twice; one that dies leaves its rows for the next run. The callees are idempotent (per
//! order id, per reservation id), so a row sent again after a lost answer does no harm.
//! Rows leased to their request (`domain::outbox`) are taken over when it failed or died; a
//! cancel intent is resolved from the shipment's status, never by cancelling it.

use marketplace_shared::{OrderStatus, Problem, ShipmentStatus};
use serde::Serialize;
use uuid::Uuid;

use crate::clients::{self, ShipmentState};
use crate::config::Config;
use crate::domain::key::IdempotencyKey;
use crate::domain::order::{self, CancelOutcome, Order};
use crate::domain::outbox::{self, CancelIntent};
use crate::domain::shard::OrderId;
use crate::error::Error;
use crate::store::{Db, Done, Job, OutboxRow, Shipped};

/// What one relay run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub shipments_requested: u32,
    pub reservations_released: u32,
    pub abandoned_attempts_released: u32,
    /// Delivered outbox rows and completed idempotency keys past their retention, deleted.
    pub outbox_rows_purged: u64,
    pub idempotency_keys_purged: u64,
    /// Unresolved cancels whose shipment was cancelled: order cancelled, release queued.
    pub cancels_finished: u32,
    /// Unresolved cancels whose shipment was not cancelled: dropped, the order unchanged.
    pub cancels_dropped: u32,
    pub skipped: u32,
    pub failed: u32,
}

/// What became of one row: done (marked delivered), nothing to do, or failed (retried later).
enum Outcome {
    Done,
    Nothing,
    Failed(String),
}

/// Relays every shard. Returns the stats and the shards that could not be reached.
pub async fn run_all(cfg: &Config) -> (Stats, Vec<usize>) {
    let mut stats = Stats::default();
    let mut down = Vec::new();
    for index in 0..cfg.db_urls.len() {
        let result = async {
            let db = Db::open(cfg, index)?;
            sweep_abandoned(cfg, &db, &mut stats).await?;
            relay_shard(cfg, &db, None, &mut stats).await?;
            purge(&db, &mut stats)
        }
        .await;
        if let Err(e) = result {
            log_stop(&format!("relay of order-db-{index} stopped"), e);
            down.push(index);
        }
    }
    (stats, down)
}

/// Relays the due rows of one order right after the commit that created them. Best effort:
/// whatever fails stays in the outbox for the next run.
pub async fn run_for_order(cfg: &Config, db: &Db, order: &OrderId) {
    if let Err(e) = relay_shard(cfg, db, Some(order), &mut Stats::default()).await {
        log_stop(&format!("inline relay of {order} stopped"), e);
    }
}

/// Logs why work was left to the next run (`Problem::from` logs a server-side cause too).
fn log_stop(what: &str, e: Error) {
    eprintln!("order: {what}: {}", Problem::from(e).detail);
}

async fn relay_shard(
    cfg: &Config,
    db: &Db,
    order: Option<&OrderId>,
    stats: &mut Stats,
) -> Result<(), Error> {
    db.transaction(async |db| {
        for row in db.claim_outbox(order)? {
            match deliver(cfg, db, &row).await? {
                Outcome::Done => match row.job {
                    Job::CreateShipment(_) => stats.shipments_requested += 1,
                    Job::Release(_) => stats.reservations_released += 1,
                    _ => stats.cancels_finished += 1,
                },
                Outcome::Nothing => {
                    db.outbox_done(row.id)?;
                    match row.job {
                        Job::Cancel(_) => stats.cancels_dropped += 1,
                        _ => stats.skipped += 1,
                    }
                }
                Outcome::Failed(cause) => {
                    let (id, order) = (row.id, &row.order_id);
                    eprintln!("order: outbox row {id} for {order} failed: {cause}");
                    db.outbox_failed(&row, &cause)?;
                    stats.failed += 1;
                }
            }
        }
        Ok(())
    })
    .await
}

/// Makes the call an outbox row asks for. `Err`: the database failed (stop the run).
async fn deliver(cfg: &Config, db: &Db, row: &OutboxRow) -> Result<Outcome, Error> {
    match &row.job {
        // Gone, its shipment recorded already, or cancelled before it was requested: nothing.
        Job::CreateShipment(Some(order))
            if order.shipment_id.is_none() && order.status != OrderStatus::Cancelled =>
        {
            match clients::ensure_shipment(cfg, order).await {
                Ok(created) => {
                    let shipment = by_relay(&created, chrono::Utc::now());
                    db.record_shipment(&order.id, &shipment, Done::Row(row.id), None)?;
                    Ok(Outcome::Done)
                }
                Err(e) => Ok(Outcome::Failed(e)),
            }
        }
        Job::CreateShipment(_) => Ok(Outcome::Nothing),
        Job::Release(release) => match clients::release(cfg, &release.reservation_id).await {
            Ok(()) => {
                db.released(row, release)?;
                Ok(Outcome::Done)
            }
            Err(e) => Ok(Outcome::Failed(e)),
        },
        Job::Cancel(intent) => resolve_cancel(cfg, db, row, intent).await,
        Job::Unknown(kind) => Ok(Outcome::Failed(format!("unknown outbox kind {kind}"))),
    }
}

/// Asks for the shipment of an order just placed (its leased `create_shipment` row) and records
/// it in one statement that also marks the row delivered and stores the order with its
/// shipment as the key's replay. `None` if not recorded: the relay will (a failed call makes
/// the row due at once, anything else leaves it to the lease's end).
pub async fn ship_placed(
    cfg: &Config,
    db: &Db,
    key: &IdempotencyKey,
    order: &Order,
) -> Option<Order> {
    let created = match clients::ensure_shipment(cfg, order).await {
        Ok(created) => created,
        Err(cause) => {
            eprintln!("order: shipment of {} not requested: {cause}", order.id);
            if let Err(e) = db.placement_failed(&order.id, &cause) {
                log_stop(&format!("{} left to the relay", order.id), e);
            }
            return None;
        }
    };
    let now = chrono::Utc::now();
    let shipped = Order {
        shipment_id: Some(created.id),
        updated_at: marketplace_shared::time::format(now),
        ..order.clone()
    };
    let shipment = by_relay(&created, now);
    let recorded = db.record_shipment(&order.id, &shipment, Done::Placement, Some((key, &shipped)));
    let failed = |e| log_stop(&format!("shipment of {} not recorded", order.id), e);
    recorded.map_err(failed).ok().map(|()| shipped)
}

/// The relay's record of a shipment the delivery service answered, made at `at`.
fn by_relay(s: &ShipmentState, at: chrono::DateTime<chrono::Utc>) -> Shipped<'_> {
    Shipped {
        id: s.id,
        tracking_number: s.tracking_number.as_deref(),
        at,
        actor: "relay",
    }
}

/// Resolves an unresolved cancel from the shipment's status (module documentation). Dropped
/// also when the order is no longer `confirmed` (cancelled by a later request, or shipped).
async fn resolve_cancel(
    cfg: &Config,
    db: &Db,
    row: &OutboxRow,
    intent: &CancelIntent,
) -> Result<Outcome, Error> {
    let order = db.load_order(&row.order_id)?;
    let Some(order) = order.filter(|o| o.status == OrderStatus::Confirmed) else {
        return Ok(Outcome::Nothing);
    };
    // The idempotent create answers the shipment as it is (creating it if the live order had
    // none): a read that needs no new endpoint.
    let shipment = match clients::ensure_shipment(cfg, &order).await {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    if shipment.status == Some(ShipmentStatus::Cancelled) {
        // Terminal at the delivery service: it cannot change while we write.
        apply_cancel(db, &order.id, intent, shipment.id, true)?;
        db.outbox_done(row.id)?;
        return Ok(Outcome::Done);
    }
    // Not cancelled, and never will be by this intent: the order stays. Record the shipment
    // id the answer named, as the create row would have.
    if order.shipment_id.is_none() {
        let recorded = by_relay(&shipment, chrono::Utc::now());
        db.record_shipment(&order.id, &recorded, Done::Not, None)?;
    }
    Ok(Outcome::Nothing)
}

/// The order's side of a cancel whose shipment is `cancelled` (in the request's or the relay's
/// transaction): under the order's row lock a `confirmed` order becomes `cancelled` with its
/// history entry and `release_reservation` row, and the shipment id is recorded if unknown.
pub fn apply_cancel(
    db: &Db,
    id: &OrderId,
    intent: &CancelIntent,
    shipment: Uuid,
    by_relay: bool,
) -> Result<(), Error> {
    let Some(order) = db.lock_order(id)? else {
        return Err(Error::Internal(format!("order {id} vanished")));
    };
    if order.shipment_id.is_none() {
        let actor = if by_relay { "relay" } else { &intent.actor };
        let recorded = Shipped {
            id: shipment,
            tracking_number: None,
            at: chrono::Utc::now(),
            actor,
        };
        db.record_shipment(id, &recorded, Done::Not, None)?;
    }
    match order::on_cancel(order.status) {
        CancelOutcome::Cancel => {
            let mut detail = serde_json::json!({ "by": intent.by, "shipment_id": shipment });
            if by_relay {
                detail["finished_by"] = "relay".into();
            }
            db.transition(&order, OrderStatus::Cancelled, &intent.actor, &detail, None)?;
            db.enqueue_release(id)
        }
        CancelOutcome::AlreadyCancelled => Ok(()),
        // Cannot happen: a cancelled shipment was never picked up, so never reported shipped.
        CancelOutcome::TooLate => {
            let status = order.status;
            eprintln!("order: {id} is {status} but its shipment {shipment} is cancelled");
            Ok(())
        }
    }
}

/// Releases the reservations of create attempts that never finished (their key row is still
/// `pending`, unlocked, and old), then forgets the attempt so its key can be used again.
async fn sweep_abandoned(cfg: &Config, db: &Db, stats: &mut Stats) -> Result<(), Error> {
    db.transaction(async |db| {
        for a in db.claim_abandoned()? {
            match clients::release(cfg, &a.order_id).await {
                Ok(()) => {
                    db.delete_key(a.buyer_id, &a.key)?;
                    stats.abandoned_attempts_released += 1;
                }
                Err(e) => {
                    let id = a.order_id;
                    eprintln!("order: releasing abandoned attempt {id} failed: {e}");
                    stats.failed += 1;
                }
            }
        }
        Ok(())
    })
    .await
}

/// Deletes what is past its retention: one bounded statement (and transaction) per table.
fn purge(db: &Db, stats: &mut Stats) -> Result<(), Error> {
    stats.outbox_rows_purged +=
        db.purge_delivered_outbox(outbox::DELIVERED_ROW_RETENTION_DAYS, outbox::PURGE_BATCH)?;
    stats.idempotency_keys_purged +=
        db.purge_completed_keys(outbox::COMPLETED_KEY_RETENTION_DAYS, outbox::PURGE_BATCH)?;
    Ok(())
}

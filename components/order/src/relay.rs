//! The outbox relay: delivers due outbox rows, cleans up abandoned create attempts, and deletes
//! delivered rows and completed idempotency keys past their retention.
//!
//! Rows are claimed with `for update skip locked` inside a transaction that stays open while
//! the calls are made, so two relays running at once (the CronJob and the inline run after a
//! commit, or two CronJob pods) never send the same row twice; a relay that dies mid-way
//! leaves its rows unclaimed for the next run. The callees are idempotent (delivery per order
//! id, product per reservation id), so a row sent again after a lost answer does no harm.
//!
//! A `cancel_shipment` row is an unresolved cancel (see `service::cancel`): it is due only once
//! its request's lease has passed (the request died, or had no definite answer from the
//! delivery service), and the relay resolves it by looking at the shipment, never by
//! cancelling it: `cancelled` → the cancel is finished (order cancelled, release queued);
//! anything else → the intent is dropped and the order stays as it is.

use marketplace_shared::wit::{ShipmentItem, ShipmentRequest};
use marketplace_shared::{OrderStatus, ShipmentStatus};
use serde::Serialize;
use uuid::Uuid;

use crate::clients;
use crate::config::Config;
use crate::domain::outbox::{self, CancelIntent, Kind, Release};
use crate::domain::shard::OrderId;
use crate::error::Error;
use crate::service;
use crate::store::{Db, OrderView, OutboxRow};

/// What one relay run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub shipments_requested: u32,
    pub reservations_released: u32,
    pub abandoned_attempts_released: u32,
    /// Delivered outbox rows past their retention, deleted.
    pub outbox_rows_purged: u64,
    /// Completed idempotency keys past their retention, forgotten.
    pub idempotency_keys_purged: u64,
    /// Unresolved cancels whose shipment was cancelled: finished (order cancelled, release
    /// queued for the next run).
    pub cancels_finished: u32,
    /// Unresolved cancels whose shipment was not cancelled: dropped, the order unchanged.
    pub cancels_dropped: u32,
    pub skipped: u32,
    pub failed: u32,
}

/// Relays every shard. Returns the stats and the shards that could not be reached.
pub async fn run_all(cfg: &Config) -> (Stats, Vec<usize>) {
    let mut stats = Stats::default();
    let mut down = Vec::new();
    for index in 0..cfg.db_urls.len() {
        let result = match Db::open(cfg, index) {
            Ok(db) => match sweep_abandoned(cfg, &db, &mut stats).await {
                Ok(()) => match relay_shard(cfg, &db, None, &mut stats).await {
                    Ok(()) => purge(&db, &mut stats),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let p = e.into_problem();
            eprintln!("order: relay of order-db-{index} stopped: {}", p.detail);
            down.push(index);
        }
    }
    (stats, down)
}

/// Relays the due rows of one order right after the commit that created them. Best effort:
/// whatever fails stays in the outbox for the next run.
pub async fn run_for_order(cfg: &Config, db: &Db, order_id: &str) -> Stats {
    let mut stats = Stats::default();
    if let Err(e) = relay_shard(cfg, db, Some(order_id), &mut stats).await {
        let p = e.into_problem();
        eprintln!("order: inline relay of {order_id} stopped: {}", p.detail);
    }
    stats
}

async fn relay_shard(
    cfg: &Config,
    db: &Db,
    order_id: Option<&str>,
    stats: &mut Stats,
) -> Result<(), Error> {
    db.begin()?;
    let result = async {
        for row in db.claim_outbox(order_id)? {
            match deliver(cfg, db, &row).await? {
                Ok(Some(kind)) => {
                    db.outbox_done(row.id)?;
                    match kind {
                        Kind::CreateShipment => stats.shipments_requested += 1,
                        Kind::ReleaseReservation => stats.reservations_released += 1,
                        Kind::CancelShipment => stats.cancels_finished += 1,
                    }
                }
                Ok(None) if row.kind == Some(Kind::CancelShipment) => {
                    db.outbox_done(row.id)?;
                    stats.cancels_dropped += 1;
                }
                Ok(None) => {
                    db.outbox_done(row.id)?;
                    stats.skipped += 1;
                }
                Err(cause) => {
                    eprintln!(
                        "order: outbox row {} ({}) for {} failed: {cause}",
                        row.id,
                        row.kind.map_or("unknown", Kind::as_str),
                        row.order_id
                    );
                    db.outbox_failed(&row, &cause)?;
                    stats.failed += 1;
                }
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    match result {
        Ok(()) => db.commit(),
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

/// Makes the call an outbox row asks for. Outer error: the database failed (stop the run);
/// inner: the call failed (retry later); `Ok(None)`: nothing to do any more.
async fn deliver(
    cfg: &Config,
    db: &Db,
    row: &OutboxRow,
) -> Result<Result<Option<Kind>, String>, Error> {
    match row.kind {
        Some(Kind::CreateShipment) => {
            let Some(order) = db.shipment_source(&row.order_id)? else {
                return Ok(Ok(None));
            };
            let status = order.status();
            if order.shipment_id.is_some() || status == Some(OrderStatus::Cancelled) {
                // Cancelled before the shipment was requested: nothing to ship.
                return Ok(Ok(None));
            }
            let request = shipment_request(&order)?;
            match clients::create_shipment(cfg, &request).await {
                Ok(created) => {
                    let shipment = created.id;
                    if db.set_shipment(
                        &row.order_id,
                        shipment,
                        created.tracking_number.as_deref(),
                    )? {
                        let s = status.unwrap_or(OrderStatus::Confirmed);
                        db.history(
                            &row.order_id,
                            "shipment_requested",
                            Some(s),
                            s,
                            "relay",
                            &serde_json::json!({ "shipment_id": shipment }),
                            None,
                        )?;
                    }
                    Ok(Ok(Some(Kind::CreateShipment)))
                }
                Err(e) => Ok(Err(e)),
            }
        }
        Some(Kind::ReleaseReservation) => {
            let Ok(release) = serde_json::from_value::<Release>(row.payload.clone()) else {
                return Err(Error::Internal(format!("outbox row {} payload", row.id)));
            };
            match clients::release(cfg, &release.reservation_id).await {
                Ok(()) => {
                    if let Some(s) = db.status_of(&row.order_id)? {
                        db.history(
                            &row.order_id,
                            "stock_released",
                            Some(s),
                            s,
                            "relay",
                            &serde_json::json!({ "reservation_id": release.reservation_id }),
                            None,
                        )?;
                    }
                    Ok(Ok(Some(Kind::ReleaseReservation)))
                }
                Err(e) => Ok(Err(e)),
            }
        }
        Some(Kind::CancelShipment) => resolve_cancel(cfg, db, row).await,
        None => Ok(Err("unknown outbox kind".to_string())),
    }
}

/// The delivery service's shipment request for an order.
pub(crate) fn shipment_request(order: &OrderView) -> Result<ShipmentRequest, Error> {
    Ok(ShipmentRequest {
        order_id: order.id.clone(),
        buyer_id: order.buyer_id.to_string(),
        shipping_address: serde_json::from_value(order.shipping_address.clone())
            .map_err(|e| Error::Internal(format!("stored address: {e}")))?,
        items: order
            .items
            .iter()
            .map(|l| ShipmentItem {
                product_id: l.product_id.to_string(),
                title: l.title.clone(),
                quantity: l.quantity,
            })
            .collect(),
    })
}

/// Resolves an unresolved cancel from the shipment's status (module documentation).
/// `Ok(Some)`: finished; `Ok(None)`: dropped (also when the order is no longer `confirmed`:
/// cancelled by a later request, or shipped); inner `Err`: no answer, retried later.
async fn resolve_cancel(
    cfg: &Config,
    db: &Db,
    row: &OutboxRow,
) -> Result<Result<Option<Kind>, String>, Error> {
    let Some(id) = OrderId::parse(&row.order_id) else {
        return Ok(Ok(None));
    };
    let Some(order) = db.load_order(&id)? else {
        return Ok(Ok(None));
    };
    if order.status() != Some(OrderStatus::Confirmed) {
        return Ok(Ok(None));
    }
    let intent: CancelIntent = serde_json::from_value(row.payload.clone())
        .map_err(|e| Error::Internal(format!("outbox row {} payload: {e}", row.id)))?;
    // The idempotent create answers the order's shipment as it is (and creates it if the
    // order had none, which a live order needs anyway): a read that needs no new endpoint.
    let shipment = match clients::ensure_shipment(cfg, &shipment_request(&order)?).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    if shipment.status == Some(ShipmentStatus::Cancelled) {
        // Terminal at the delivery service: it cannot change while we write.
        service::apply_cancel(db, &id, &intent, shipment.id, true)?;
        Ok(Ok(Some(Kind::CancelShipment)))
    } else {
        // Not cancelled, and it never will be by this intent (nobody sends it again): the
        // order stays as it is. Record the shipment id the answer named, as the create row
        // would have.
        if order.shipment_id.is_none() {
            record_shipment(
                db,
                &row.order_id,
                shipment.id,
                shipment.tracking_number.as_deref(),
                "relay",
            )?;
        }
        Ok(Ok(None))
    }
}

/// Stores the shipment id of an order that had none, with its history entry.
pub(crate) fn record_shipment(
    db: &Db,
    order_id: &str,
    shipment: Uuid,
    tracking_number: Option<&str>,
    actor: &str,
) -> Result<(), Error> {
    if db.set_shipment(order_id, shipment, tracking_number)? {
        let s = db.status_of(order_id)?.unwrap_or(OrderStatus::Confirmed);
        db.history(
            order_id,
            "shipment_requested",
            Some(s),
            s,
            actor,
            &serde_json::json!({ "shipment_id": shipment }),
            None,
        )?;
    }
    Ok(())
}

/// Releases the reservations of create attempts that never finished (their key row is still
/// `pending`, unlocked, and old), then forgets the attempt so its key can be used again.
async fn sweep_abandoned(cfg: &Config, db: &Db, stats: &mut Stats) -> Result<(), Error> {
    db.begin()?;
    let result = async {
        for a in db.claim_abandoned()? {
            match clients::release(cfg, &a.order_id).await {
                Ok(()) => {
                    db.delete_key(a.buyer_id, &a.key)?;
                    stats.abandoned_attempts_released += 1;
                }
                Err(e) => {
                    eprintln!(
                        "order: releasing abandoned attempt {} failed: {e}",
                        a.order_id
                    );
                    stats.failed += 1;
                }
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    match result {
        Ok(()) => db.commit(),
        Err(e) => {
            db.rollback();
            Err(e)
        }
    }
}

/// Deletes what is past its retention (see `domain::outbox`): one bounded statement per table,
/// each a transaction of its own.
fn purge(db: &Db, stats: &mut Stats) -> Result<(), Error> {
    stats.outbox_rows_purged +=
        db.purge_delivered_outbox(outbox::DELIVERED_ROW_RETENTION_DAYS, outbox::PURGE_BATCH)?;
    stats.idempotency_keys_purged +=
        db.purge_completed_keys(outbox::COMPLETED_KEY_RETENTION_DAYS, outbox::PURGE_BATCH)?;
    Ok(())
}

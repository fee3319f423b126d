//! `outbox`: calls to other services that must eventually happen (`domain::outbox`).

use spin_sdk::pg4::{DbValue, ParameterValue};
use uuid::Uuid;

use super::orders::{ORDER_COLUMNS, order_at};
use super::{Db, LOCK_TIMEOUT, get, get_json, get_order_id, id, json, text, vshard};
use crate::domain::order::Order;
use crate::domain::outbox::{self, CancelIntent, Release};
use crate::domain::shard::OrderId;
use crate::error::Error;

/// An outbox row claimed by a relay run (or locked by a cancel), its payload decoded.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub order_id: OrderId,
    pub job: Job,
    pub attempts: i32,
}

/// What a row asks for, by its kind (`domain::outbox`).
#[derive(Debug, Clone)]
pub enum Job {
    /// With the order to ship, read (share-locked) by the claim itself; `None` if it is gone.
    CreateShipment(Option<Box<Order>>),
    Release(Release),
    Cancel(CancelIntent),
    /// A kind this build does not know (a newer writer): retried later, never dropped.
    Unknown(String),
}

/// An abandoned create attempt: its key row and the reservation it may have made.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub buyer_id: Uuid,
    pub key: String,
    pub order_id: OrderId,
}

/// The columns [`row_at`] reads (of `outbox x`); then come the order's (`o`, NULL unless of a
/// `create_shipment` row).
const ROW_COLUMNS: &str = "x.id, x.order_id, x.kind, x.payload, x.attempts";

fn row_at(r: &[DbValue]) -> Result<OutboxRow, Error> {
    let id: i64 = get(r, 0)?;
    let kind: String = get(r, 2)?;
    let payload = |what| Error::Internal(format!("outbox row {id}: {what} payload"));
    let job = match kind.as_str() {
        "create_shipment" => Job::CreateShipment(order_at(r, 5)?.map(Box::new)),
        "release_reservation" => Job::Release(get_json(r, 3)?.ok_or_else(|| payload("release"))?),
        "cancel_shipment" => Job::Cancel(get_json(r, 3)?.ok_or_else(|| payload("cancel"))?),
        _ => Job::Unknown(kind),
    };
    Ok(OutboxRow {
        id,
        order_id: get_order_id(r, 1)?,
        job,
        attempts: get(r, 4)?,
    })
}

impl Db {
    /// Claims due rows (inside a transaction) so that no concurrent relay sends them too,
    /// and reads, share-locked, the order each `create_shipment` row ships: one statement.
    pub fn claim_outbox(&self, order: Option<&OrderId>) -> Result<Vec<OutboxRow>, Error> {
        let rows = self.query(
            &format!(
                "select {ROW_COLUMNS}, o.* from outbox x left join lateral \
                 (select {ORDER_COLUMNS} from orders o where o.id = x.order_id \
                 and x.kind = 'create_shipment' for share of o) o on true \
                 where x.delivered_at is null and x.next_attempt_at <= now() \
                 and ($1::text is null or x.order_id = $1) \
                 order by x.next_attempt_at, x.id limit $2 for update of x skip locked"
            ),
            &[
                order.map(OrderId::to_string).into(),
                ParameterValue::Int64(outbox::BATCH),
            ],
        )?;
        rows.rows.iter().map(|r| row_at(r)).collect()
    }

    /// Queues the release of the order's reservation (its id is the order's), due now.
    pub fn enqueue_release(&self, order: &OrderId) -> Result<(), Error> {
        let release = Release {
            reservation_id: *order,
        };
        self.execute(
            "insert into outbox (order_id, vshard, kind, payload) values ($1, $2, $3, $4)",
            &[
                id(order),
                vshard(order),
                text("release_reservation"),
                json(&release)?,
            ],
        )
    }

    /// Adds a `cancel_shipment` intent due in `CANCEL_LEASE_SECS`; its id.
    pub fn enqueue_cancel(&self, order: &OrderId, intent: &CancelIntent) -> Result<i64, Error> {
        let rows = self.query_always(
            "insert into outbox (order_id, vshard, kind, payload, next_attempt_at) \
             values ($1, $2, 'cancel_shipment', $3, now() + make_interval(secs => $4)) \
             returning id",
            &[
                id(order),
                vshard(order),
                json(intent)?,
                ParameterValue::Floating64(outbox::CANCEL_LEASE_SECS as f64),
            ],
        )?;
        let no_id = || Error::Internal("insert into outbox returned no id".into());
        get(rows.rows.first().ok_or_else(no_id)?, 0)
    }

    /// The undelivered `cancel_shipment` intent of an order, if any (not locked).
    pub fn pending_cancel(&self, order: &OrderId) -> Result<Option<i64>, Error> {
        let rows = self.query(
            "select id from outbox where order_id = $1 and delivered_at is null \
             and kind = 'cancel_shipment' order by id limit 1",
            &[id(order)],
        )?;
        rows.rows.first().map(|r| get(r, 0)).transpose()
    }

    /// Locks an undelivered `cancel_shipment` intent, waiting up to 20 s for whoever holds it
    /// (a relay, another request). `Ok(None)`: delivered or gone.
    pub fn lock_cancel_intent(&self, row: i64) -> Result<Option<OutboxRow>, Error> {
        let rows = self.query_locking(
            &format!(
                "select {ROW_COLUMNS}, {LOCK_TIMEOUT} from outbox x where x.id = $1 \
                 and x.kind = 'cancel_shipment' and x.delivered_at is null for update"
            ),
            &[ParameterValue::Int64(row)],
            Error::CancelBusy,
        )?;
        rows.rows.first().map(|r| row_at(r)).transpose()
    }

    /// Deletes an outbox row (an intent whose attempt changed nothing).
    pub fn delete_outbox_row(&self, row: i64) -> Result<(), Error> {
        self.execute("delete from outbox where id = $1", &[row.into()])
    }

    pub fn outbox_done(&self, row: i64) -> Result<(), Error> {
        self.execute(
            "update outbox set delivered_at = now(), attempts = attempts + 1, last_error = null, \
             updated_at = now() where id = $1",
            &[ParameterValue::Int64(row)],
        )
    }

    /// A release done: the row delivered and, if the order exists, its `stock_released`
    /// history entry (one statement).
    pub fn released(&self, row: &OutboxRow, release: &Release) -> Result<(), Error> {
        self.execute(
            "with h as (insert into order_history (order_id, event, from_status, to_status, \
             actor, detail, occurred_at) select o.id, 'stock_released', o.status, o.status, \
             'relay', jsonb_build_object('reservation_id', $3::text), now() \
             from orders o where o.id = $2) \
             update outbox set delivered_at = now(), attempts = attempts + 1, last_error = null, \
             updated_at = now() where id = $1",
            &[
                ParameterValue::Int64(row.id),
                id(&row.order_id),
                text(&release.reservation_id.to_string()),
            ],
        )
    }

    pub fn outbox_failed(&self, row: &OutboxRow, error: &str) -> Result<(), Error> {
        let attempts = row.attempts.saturating_add(1);
        let short: String = error.chars().take(500).collect();
        self.execute(
            "update outbox set attempts = $2, last_error = $3, \
             next_attempt_at = now() + make_interval(secs => $4), updated_at = now() \
             where id = $1",
            &[
                ParameterValue::Int64(row.id),
                ParameterValue::Int32(attempts),
                text(&short),
                ParameterValue::Floating64(outbox::backoff_secs(attempts) as f64),
            ],
        )
    }

    /// Deletes up to `batch` outbox rows delivered more than `days` ago; returns how many.
    pub fn purge_delivered_outbox(&self, days: i32, batch: i64) -> Result<u64, Error> {
        self.affected(
            "delete from outbox where id in (select id from outbox \
             where delivered_at < now() - make_interval(days => $1) order by delivered_at \
             limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )
    }

    /// Claims pending key rows untouched for a while and unheld (their request died, perhaps
    /// after reserving stock).
    pub fn claim_abandoned(&self) -> Result<Vec<Abandoned>, Error> {
        let rows = self.query(
            "select buyer_id, key, order_id from idempotency_keys \
             where state = 'pending' and updated_at < now() - make_interval(secs => $1) \
             order by updated_at limit $2 for update skip locked",
            &[
                ParameterValue::Floating64(outbox::ABANDONED_AFTER_SECS as f64),
                ParameterValue::Int64(outbox::BATCH),
            ],
        )?;
        rows.rows
            .iter()
            .map(|r| {
                Ok(Abandoned {
                    buyer_id: get(r, 0)?,
                    key: get(r, 1)?,
                    order_id: get_order_id(r, 2)?,
                })
            })
            .collect()
    }
}

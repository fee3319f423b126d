//! `orders`, `order_items` and `order_history`.

use marketplace_shared::OrderStatus;
use spin_sdk::pg4::{DbValue, ParameterValue};
use uuid::Uuid;

use super::{Db, at, get, get_json, get_order_id, get_status, id, json, text, vshard};
use crate::domain::key::IdempotencyKey;
use crate::domain::order::Order;
use crate::domain::outbox;
use crate::domain::shard::OrderId;
use crate::error::Error;

/// `timestamptz` → the contract's text form, in SQL (Spin cannot decode `timestamptz`).
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        )
    };
}
pub(super) use ts;

/// The columns [`order_at`] reads, of `orders o`.
pub(super) const ORDER_COLUMNS: &str = concat!(
    "o.id, o.buyer_id, o.status, o.total_cents, o.currency, o.shipping_address, o.shipment_id, ",
    ts!("o.created_at"),
    " as created_at, ",
    ts!("o.updated_at"),
    " as updated_at, (select coalesce(jsonb_agg(jsonb_build_object('product_id', i.product_id, \
     'title', i.title, 'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents, \
     'currency', i.currency) order by i.line_no), '[]'::jsonb) from order_items i \
     where i.order_id = o.id) as items"
);

/// The order in the ten [`ORDER_COLUMNS`] from column `c`; `None` if NULL (an outer join).
pub(super) fn order_at(r: &[DbValue], c: usize) -> Result<Option<Order>, Error> {
    if matches!(r.get(c), Some(DbValue::DbNull)) {
        return Ok(None);
    }
    let missing = |what: &str| Error::Internal(format!("order without {what}"));
    Ok(Some(Order {
        id: get_order_id(r, c)?,
        buyer_id: get(r, c + 1)?,
        status: get_status(r, c + 2)?,
        total_cents: get(r, c + 3)?,
        currency: get(r, c + 4)?,
        shipping_address: get_json(r, c + 5)?.ok_or_else(|| missing("address"))?,
        shipment_id: get(r, c + 6)?,
        created_at: get(r, c + 7)?,
        updated_at: get(r, c + 8)?,
        items: get_json(r, c + 9)?.ok_or_else(|| missing("items"))?,
    }))
}

/// Which outbox row a recorded shipment completes.
pub enum Done {
    Row(i64),
    /// The `create_shipment` row of the placement recording it.
    Placement,
    Not,
}

/// A shipment the delivery service named for an order: its id and tracking number, when it
/// was recorded (the order's `updated_at`), and who records it (for the history).
pub struct Shipped<'a> {
    pub id: Uuid,
    pub tracking_number: Option<&'a str>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: &'a str,
}

impl Db {
    /// Writes a placed order in ONE statement: the order, its lines, its first history entry,
    /// its `create_shipment` outbox row (leased to the placing request), and its key completed
    /// with `order` as the response to replay (inside the transaction holding the key row).
    pub fn insert_order(&self, order: &Order, key: &IdempotencyKey) -> Result<(), Error> {
        let lines = &order.items;
        let column = |f: &dyn Fn(&crate::domain::order::PricedLine) -> Option<String>| {
            ParameterValue::ArrayStr(lines.iter().map(f).collect())
        };
        self.execute(
            "with o as (insert into orders (id, vshard, buyer_id, status, currency, total_cents, \
             shipping_address, reservation_id, idempotency_key, created_at, updated_at) \
             values ($1, $2, $3, 'confirmed', $4, $5, $6, $1, $7, \
             $8::timestamp at time zone 'utc', $8::timestamp at time zone 'utc')), \
             i as (insert into order_items (order_id, line_no, product_id, title, quantity, \
             unit_price_cents, currency, seller_id, placed_at) \
             select $1, l.n - 1, l.product_id::uuid, l.title, l.quantity, l.unit_price_cents, \
             l.currency, l.seller_id::uuid, $8::timestamp at time zone 'utc' \
             from unnest($9::text[], $10::text[], $11::int4[], $12::int8[], $13::text[], \
             $14::text[]) with ordinality \
             as l(product_id, title, quantity, unit_price_cents, currency, seller_id, n)), \
             h as (insert into order_history (order_id, event, from_status, to_status, actor, \
             detail, occurred_at) values ($1, 'placed', null, 'confirmed', 'buyer', \
             jsonb_build_object('idempotency_key', $7::text), now())), \
             x as (insert into outbox (order_id, vshard, kind, payload, next_attempt_at) \
             values ($1, $2, 'create_shipment', '{}', now() + make_interval(secs => $16))) \
             update idempotency_keys set state = 'completed', response_status = 201, \
             response_body = $15, updated_at = now() where buyer_id = $3 and key = $7",
            &[
                id(&order.id),
                vshard(&order.id),
                order.buyer_id.into(),
                text(&order.currency),
                ParameterValue::Int64(order.total_cents),
                json(&order.shipping_address)?,
                text(key.as_str()),
                at(order.id.created_at()),
                column(&|l| Some(l.product_id.to_string())),
                column(&|l| Some(l.title.clone())),
                ParameterValue::ArrayInt32(lines.iter().map(|l| Some(l.quantity as i32)).collect()),
                ParameterValue::ArrayInt64(
                    lines.iter().map(|l| Some(l.unit_price_cents)).collect(),
                ),
                column(&|l| Some(l.currency.clone())),
                column(&|l| l.seller_id.map(|s| s.to_string())),
                json(order)?,
                ParameterValue::Floating64(outbox::PLACEMENT_LEASE_SECS as f64),
            ],
        )
    }

    /// One order by id (on this shard only).
    pub fn load_order(&self, order: &OrderId) -> Result<Option<Order>, Error> {
        self.one_order(order, "")
    }

    /// The order, row-locked for the rest of the transaction.
    pub fn lock_order(&self, order: &OrderId) -> Result<Option<Order>, Error> {
        self.one_order(order, " for update of o")
    }

    fn one_order(&self, order: &OrderId, lock: &str) -> Result<Option<Order>, Error> {
        let sql = format!("select {ORDER_COLUMNS} from orders o where o.id = $1{lock}");
        let rows = self.query(&sql, &[id(order)])?;
        rows.rows.first().map_or(Ok(None), |r| order_at(r, 0))
    }

    /// A page of a buyer's orders, newest first, after the order `after` (exclusive).
    pub fn list_orders(
        &self,
        buyer: Uuid,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, Error> {
        let rows = self.query(
            &format!(
                "select {ORDER_COLUMNS} from orders o where o.buyer_id = $1 \
                 and ($2::text is null or o.id < $2) order by o.id desc limit $3"
            ),
            &[
                buyer.into(),
                after.map(OrderId::to_string).into(),
                ParameterValue::Int64(i64::from(limit)),
            ],
        )?;
        rows.rows
            .iter()
            .filter_map(|r| order_at(r, 0).transpose())
            .collect()
    }

    /// Moves `order` (as locked) to `to` with its history entry (event named after `to`).
    pub fn transition(
        &self,
        order: &Order,
        to: OrderStatus,
        actor: &str,
        detail: &serde_json::Value,
        occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), Error> {
        self.execute(
            "with s as (update orders set status = $4, updated_at = now() where id = $1) \
             insert into order_history (order_id, event, from_status, to_status, actor, detail, \
             occurred_at) values ($1, $2, $3, $4, $5, $6, \
             coalesce($7::timestamp at time zone 'utc', now()))",
            &[
                id(&order.id),
                text(to.as_str()),
                text(order.status.as_str()),
                text(to.as_str()),
                text(actor),
                json(detail)?,
                occurred_at.map(|t| t.naive_utc()).into(),
            ],
        )
    }

    /// Records the shipment of an order that had none, with its `shipment_requested` history
    /// entry, in one statement that also marks the outbox row `done` delivered and, for the
    /// placing request, stores `replay` (the order with its shipment) as its key's response.
    pub fn record_shipment(
        &self,
        order: &OrderId,
        shipment: &Shipped<'_>,
        done: Done,
        replay: Option<(&IdempotencyKey, &Order)>,
    ) -> Result<(), Error> {
        self.execute(
            "with s as (update orders set shipment_id = $2, tracking_number = $3, \
             updated_at = $4::timestamp at time zone 'utc' \
             where id = $1 and shipment_id is null returning status), \
             h as (insert into order_history (order_id, event, from_status, to_status, actor, \
             detail, occurred_at) select $1, 'shipment_requested', s.status, s.status, $5, \
             jsonb_build_object('shipment_id', $2::uuid), now() from s), \
             k as (update idempotency_keys set response_body = $8, updated_at = now() \
             where buyer_id = $6 and key = $7 and exists (select from s)) \
             update outbox set delivered_at = now(), attempts = attempts + 1, last_error = null, \
             updated_at = now() where delivered_at is null \
             and (id = $9 or ($10 and order_id = $1 and kind = 'create_shipment'))",
            &[
                id(order),
                shipment.id.into(),
                shipment.tracking_number.map(str::to_string).into(),
                at(shipment.at),
                text(shipment.actor),
                replay.map(|(_, view)| view.buyer_id).into(),
                replay.map(|(key, _)| key.as_str().to_string()).into(),
                replay.map(|(_, view)| json(view)).transpose()?.into(),
                match done {
                    Done::Row(row) => Some(row),
                    _ => None,
                }
                .into(),
                ParameterValue::Boolean(matches!(done, Done::Placement)),
            ],
        )
    }

    /// A placing request's shipment call failed: its leased row is due at once for the relay.
    pub fn placement_failed(&self, order: &OrderId, error: &str) -> Result<(), Error> {
        let short: String = error.chars().take(500).collect();
        self.execute(
            "update outbox set attempts = attempts + 1, last_error = $2, next_attempt_at = now(), \
             updated_at = now() where order_id = $1 and kind = 'create_shipment' \
             and delivered_at is null",
            &[id(order), text(&short)],
        )
    }
}

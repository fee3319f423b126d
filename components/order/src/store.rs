//! PostgreSQL storage of one shard (`spin_sdk::pg4`): orders, their history, idempotency keys
//! and the outbox. Multi-statement writes run between `begin` and `commit` on one connection;
//! every error path ends its transaction explicitly (Spin's pool does not).

use marketplace_shared::{OrderStatus, pg};
use serde::Serialize;
use spin_sdk::pg4::{Connection, DbValue, Decode, ParameterValue, RowSet};
use uuid::Uuid;

use crate::config::Config;
use crate::domain::order::{Priced, PricedLine};
use crate::domain::outbox::{self, Kind};
use crate::domain::sales::{Sale, SalesQuery, ShipTo};
use crate::domain::shard::{OrderId, VShard};
use crate::error::Error;

/// An order as the contract shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub buyer_id: Uuid,
    pub status: String,
    pub items: Vec<PricedLine>,
    pub total_cents: i64,
    pub currency: String,
    pub shipping_address: serde_json::Value,
    pub shipment_id: Option<Uuid>,
    pub created_at: String,
    pub updated_at: String,
}

impl OrderView {
    pub fn status(&self) -> Option<OrderStatus> {
        OrderStatus::parse(&self.status)
    }
}

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

const ORDER_COLUMNS: &str = concat!(
    "o.id, o.buyer_id, o.status, o.total_cents, o.currency, o.shipping_address, o.shipment_id, ",
    ts!("o.created_at"),
    ", ",
    ts!("o.updated_at"),
    ", (select coalesce(jsonb_agg(jsonb_build_object('product_id', i.product_id, 'title', i.title, \
     'quantity', i.quantity, 'unit_price_cents', i.unit_price_cents, 'currency', i.currency) \
     order by i.line_no), '[]'::jsonb) from order_items i where i.order_id = o.id)"
);

/// A pending idempotency key as found under its row lock.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub request_hash: String,
    pub order_id: String,
    pub completed: bool,
    pub response_status: Option<i32>,
    pub response_body: Option<serde_json::Value>,
    /// Seconds since the row was last claimed.
    pub age_secs: i64,
}

/// An outbox row claimed by a relay run.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub order_id: String,
    pub kind: Option<Kind>,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

/// An abandoned create attempt: its key row and the reservation it may have made.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub buyer_id: Uuid,
    pub key: String,
    pub order_id: String,
}

/// One open connection to one physical order database.
pub struct Db {
    pub index: usize,
    conn: Connection,
}

fn get<T: Decode>(row: &[DbValue], i: usize) -> Result<T, Error> {
    let v = row
        .get(i)
        .ok_or_else(|| Error::Internal(format!("missing column {i}")))?;
    T::decode(v).map_err(|e| Error::Internal(format!("column {i}: {e}")))
}

fn text(s: &str) -> ParameterValue {
    ParameterValue::Str(s.to_string())
}

fn json<T: Serialize>(v: &T) -> Result<ParameterValue, Error> {
    spin_sdk::pg4::jsonb(v).map_err(|e| Error::Internal(format!("jsonb: {e}")))
}

/// An outbox row as `select id, order_id, kind, payload, attempts` returns it.
fn outbox_row(r: &[DbValue]) -> Result<OutboxRow, Error> {
    Ok(OutboxRow {
        id: get(r, 0)?,
        order_id: get(r, 1)?,
        kind: Kind::parse(&get::<String>(r, 2)?),
        payload: get(r, 3)?,
        attempts: get(r, 4)?,
    })
}

impl Db {
    /// Opens physical database `index`.
    pub fn open(cfg: &Config, index: usize) -> Result<Self, Error> {
        let url = cfg
            .db_urls
            .get(index)
            .ok_or_else(|| Error::Internal(format!("no database {index}")))?;
        let conn = Connection::open(url).map_err(|e| Error::db(index, e))?;
        Ok(Self { index, conn })
    }

    /// Opens the database that holds `vshard` (and only that one).
    pub fn for_vshard(cfg: &Config, vshard: VShard) -> Result<Self, Error> {
        Self::open(cfg, cfg.shards.database_of(vshard))
    }

    fn query(&self, sql: &str, params: &[ParameterValue]) -> Result<RowSet, Error> {
        pg::query(&self.conn, sql, params).map_err(|e| Error::db(self.index, e))
    }

    fn execute(&self, sql: &str, params: &[ParameterValue]) -> Result<u64, Error> {
        self.conn
            .execute(sql, params)
            .map_err(|e| Error::db(self.index, e))
    }

    pub fn ping(&self) -> Result<(), Error> {
        self.query("select 1", &[]).map(|_| ())
    }

    pub fn begin(&self) -> Result<(), Error> {
        self.execute("begin", &[]).map(|_| ())
    }

    pub fn commit(&self) -> Result<(), Error> {
        self.execute("commit", &[]).map(|_| ())
    }

    /// Ends the open transaction without its changes; errors are only logged (the
    /// connection is then broken and the host discards it).
    pub fn rollback(&self) {
        if let Err(e) = self.conn.execute("rollback", &[]) {
            eprintln!(
                "order: rollback on order-db-{} failed: {}",
                self.index,
                Error::db(self.index, e).into_problem().detail
            );
        }
    }

    // ------------------------------------------------------------- idempotency keys

    /// Inserts a `pending` key row for `order_id`; false when the key already exists.
    /// Autocommit: the row must be durable before any stock is reserved.
    pub fn claim_key(
        &self,
        buyer: Uuid,
        key: &str,
        request_hash: &str,
        order_id: &OrderId,
    ) -> Result<bool, Error> {
        let n = self.execute(
            "insert into idempotency_keys (buyer_id, vshard, key, request_hash, order_id, state) \
             values ($1, $2, $3, $4, $5, 'pending') on conflict (buyer_id, key) do nothing",
            &[
                buyer.into(),
                ParameterValue::Int16(order_id.vshard().get() as i16),
                text(key),
                text(request_hash),
                text(&order_id.to_string()),
            ],
        )?;
        Ok(n == 1)
    }

    /// Locks the key row (inside a transaction), waiting for whoever holds it.
    /// `Ok(None)`: no such row (any more). `Err(Client 409)`: the lock wait timed out.
    pub fn lock_key(&self, buyer: Uuid, key: &str) -> Result<Option<KeyRow>, Error> {
        self.execute("set local lock_timeout = '20s'", &[])?;
        let rows = pg::query(
            &self.conn,
            "select request_hash, order_id, state, response_status, response_body, \
                 extract(epoch from now() - updated_at)::bigint \
                 from idempotency_keys where buyer_id = $1 and key = $2 for update",
            &[buyer.into(), text(key)],
        )
        .map_err(|e| {
            if pg::sqlstate(&e).as_deref() == Some("55P03") {
                Error::Client(marketplace_shared::Problem::conflict(
                    "a request with this Idempotency-Key is still being processed; retry later",
                ))
            } else {
                Error::db(self.index, e)
            }
        })?;
        let Some(r) = rows.rows.first() else {
            return Ok(None);
        };
        Ok(Some(KeyRow {
            request_hash: get(r, 0)?,
            order_id: get(r, 1)?,
            completed: get::<String>(r, 2)? == "completed",
            response_status: get(r, 3)?,
            response_body: get(r, 4)?,
            age_secs: get(r, 5)?,
        }))
    }

    /// Marks a locked pending row as freshly claimed (taking over an abandoned attempt).
    pub fn touch_key(&self, buyer: Uuid, key: &str) -> Result<(), Error> {
        self.execute(
            "update idempotency_keys set updated_at = now() where buyer_id = $1 and key = $2",
            &[buyer.into(), text(key)],
        )
        .map(|_| ())
    }

    /// Forgets an attempt that produced no order, so the key can be used again.
    pub fn delete_key(&self, buyer: Uuid, key: &str) -> Result<(), Error> {
        self.execute(
            "delete from idempotency_keys where buyer_id = $1 and key = $2 and state = 'pending'",
            &[buyer.into(), text(key)],
        )
        .map(|_| ())
    }

    /// Stores the response to replay for this key.
    pub fn complete_key(
        &self,
        buyer: Uuid,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<(), Error> {
        self.execute(
            "update idempotency_keys set state = 'completed', response_status = $3, \
             response_body = $4, updated_at = now() where buyer_id = $1 and key = $2",
            &[
                buyer.into(),
                text(key),
                ParameterValue::Int32(i32::from(status)),
                json(body)?,
            ],
        )
        .map(|_| ())
    }

    // ------------------------------------------------------------- orders

    /// Inserts the order, its lines, its first history entry and its `create_shipment`
    /// outbox row (call inside a transaction).
    #[allow(clippy::too_many_arguments)]
    pub fn insert_order(
        &self,
        id: &OrderId,
        buyer: Uuid,
        key: &str,
        priced: &Priced,
        address: &marketplace_shared::ShippingAddress,
    ) -> Result<(), Error> {
        let created = chrono::DateTime::from_timestamp_millis(id.unix_millis())
            .unwrap_or_else(chrono::Utc::now)
            .naive_utc();
        let oid = id.to_string();
        self.execute(
            "insert into orders (id, vshard, buyer_id, status, currency, total_cents, \
             shipping_address, reservation_id, idempotency_key, created_at, updated_at) \
             values ($1, $2, $3, 'confirmed', $4, $5, $6, $1, $7, \
             $8::timestamp at time zone 'utc', $8::timestamp at time zone 'utc')",
            &[
                text(&oid),
                ParameterValue::Int16(id.vshard().get() as i16),
                buyer.into(),
                text(&priced.currency),
                ParameterValue::Int64(priced.total_cents),
                json(address)?,
                text(key),
                created.into(),
            ],
        )?;
        for (n, l) in priced.lines.iter().enumerate() {
            self.execute(
                "insert into order_items (order_id, line_no, product_id, title, quantity, \
                 unit_price_cents, currency, seller_id, placed_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamp at time zone 'utc')",
                &[
                    text(&oid),
                    ParameterValue::Int32(n as i32),
                    l.product_id.into(),
                    text(&l.title),
                    ParameterValue::Int32(l.quantity as i32),
                    ParameterValue::Int64(l.unit_price_cents),
                    text(&l.currency),
                    l.seller_id.into(),
                    created.into(),
                ],
            )?;
        }
        self.history(
            &oid,
            "placed",
            None,
            OrderStatus::Confirmed,
            "buyer",
            &serde_json::json!({ "idempotency_key": key }),
            None,
        )?;
        self.enqueue(id, Kind::CreateShipment, &serde_json::json!({}))
    }

    /// Records an event in the order's history; `occurred_at` defaults to now.
    #[allow(clippy::too_many_arguments)]
    pub fn history(
        &self,
        order_id: &str,
        event: &str,
        from: Option<OrderStatus>,
        to: OrderStatus,
        actor: &str,
        detail: &serde_json::Value,
        occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), Error> {
        let at = occurred_at.unwrap_or_else(chrono::Utc::now).naive_utc();
        self.execute(
            "insert into order_history (order_id, event, from_status, to_status, actor, detail, \
             occurred_at) values ($1, $2, $3, $4, $5, $6, $7::timestamp at time zone 'utc')",
            &[
                text(order_id),
                text(event),
                from.map(|s| s.as_str().to_string()).into(),
                text(to.as_str()),
                text(actor),
                json(detail)?,
                at.into(),
            ],
        )
        .map(|_| ())
    }

    /// Adds an outbox row, due now.
    pub fn enqueue(
        &self,
        order_id: &OrderId,
        kind: Kind,
        payload: &serde_json::Value,
    ) -> Result<(), Error> {
        self.execute(
            "insert into outbox (order_id, vshard, kind, payload) values ($1, $2, $3, $4)",
            &[
                text(&order_id.to_string()),
                ParameterValue::Int16(order_id.vshard().get() as i16),
                text(kind.as_str()),
                json(payload)?,
            ],
        )
        .map(|_| ())
    }

    /// Adds an outbox row due in `delay_secs` (the lease of a `cancel_shipment` intent); its id.
    pub fn enqueue_in(
        &self,
        order_id: &OrderId,
        kind: Kind,
        payload: &serde_json::Value,
        delay_secs: i64,
    ) -> Result<i64, Error> {
        let rows = self.query(
            "insert into outbox (order_id, vshard, kind, payload, next_attempt_at) \
             values ($1, $2, $3, $4, now() + make_interval(secs => $5)) returning id",
            &[
                text(&order_id.to_string()),
                ParameterValue::Int16(order_id.vshard().get() as i16),
                text(kind.as_str()),
                json(payload)?,
                ParameterValue::Floating64(delay_secs as f64),
            ],
        )?;
        let row = rows
            .rows
            .first()
            .ok_or_else(|| Error::Internal("insert into outbox returned no id".into()))?;
        get(row, 0)
    }

    /// The undelivered `cancel_shipment` intent of an order, if any (not locked).
    pub fn pending_cancel(&self, order_id: &str) -> Result<Option<i64>, Error> {
        let rows = self.query(
            "select id from outbox where order_id = $1 and delivered_at is null \
             and kind = 'cancel_shipment' order by id limit 1",
            &[text(order_id)],
        )?;
        rows.rows.first().map(|r| get(r, 0)).transpose()
    }

    /// Locks one undelivered outbox row (inside a transaction), waiting up to 20 s for whoever
    /// holds it (a relay resolving it, another request). `Ok(None)`: delivered or gone.
    pub fn lock_outbox_row(&self, id: i64) -> Result<Option<OutboxRow>, Error> {
        self.execute("set local lock_timeout = '20s'", &[])?;
        let rows = pg::query(
            &self.conn,
            "select id, order_id, kind, payload, attempts from outbox \
             where id = $1 and delivered_at is null for update",
            &[ParameterValue::Int64(id)],
        )
        .map_err(|e| {
            if pg::sqlstate(&e).as_deref() == Some("55P03") {
                Error::Client(marketplace_shared::Problem::conflict(
                    "a cancel of this order is still being processed; retry later",
                ))
            } else {
                Error::db(self.index, e)
            }
        })?;
        rows.rows.first().map(|r| outbox_row(r)).transpose()
    }

    /// Deletes an outbox row (an intent whose attempt changed nothing).
    pub fn delete_outbox_row(&self, id: i64) -> Result<(), Error> {
        self.execute(
            "delete from outbox where id = $1",
            &[ParameterValue::Int64(id)],
        )
        .map(|_| ())
    }

    fn order_from_row(r: &[DbValue]) -> Result<OrderView, Error> {
        let items: serde_json::Value = get(r, 9)?;
        Ok(OrderView {
            id: get(r, 0)?,
            buyer_id: get(r, 1)?,
            status: get(r, 2)?,
            total_cents: get(r, 3)?,
            currency: get(r, 4)?,
            shipping_address: get(r, 5)?,
            shipment_id: get(r, 6)?,
            created_at: get(r, 7)?,
            updated_at: get(r, 8)?,
            items: serde_json::from_value(items)
                .map_err(|e| Error::Internal(format!("order items: {e}")))?,
        })
    }

    /// One order by id (on this shard only).
    pub fn load_order(&self, id: &OrderId) -> Result<Option<OrderView>, Error> {
        let rows = self.query(
            &format!("select {ORDER_COLUMNS} from orders o where o.id = $1"),
            &[text(&id.to_string())],
        )?;
        rows.rows
            .first()
            .map(|r| Self::order_from_row(r))
            .transpose()
    }

    /// A page of a buyer's orders, newest first, after the order id `after` (exclusive).
    pub fn list_orders(
        &self,
        buyer: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OrderView>, Error> {
        let rows = match after {
            Some(after) => self.query(
                &format!(
                    "select {ORDER_COLUMNS} from orders o where o.buyer_id = $1 and o.id < $2 \
                     order by o.id desc limit $3"
                ),
                &[
                    buyer.into(),
                    text(after),
                    ParameterValue::Int64(i64::from(limit)),
                ],
            )?,
            None => self.query(
                &format!(
                    "select {ORDER_COLUMNS} from orders o where o.buyer_id = $1 \
                     order by o.id desc limit $2"
                ),
                &[buyer.into(), ParameterValue::Int64(i64::from(limit))],
            )?,
        };
        rows.rows.iter().map(|r| Self::order_from_row(r)).collect()
    }

    /// Locks an order row (inside a transaction): its buyer and status.
    pub fn lock_order(&self, id: &OrderId) -> Result<Option<(Uuid, OrderStatus)>, Error> {
        let rows = self.query(
            "select buyer_id, status from orders where id = $1 for update",
            &[text(&id.to_string())],
        )?;
        let Some(r) = rows.rows.first() else {
            return Ok(None);
        };
        let status: String = get(r, 1)?;
        let status = OrderStatus::parse(&status)
            .ok_or_else(|| Error::Internal(format!("unknown status {status}")))?;
        Ok(Some((get(r, 0)?, status)))
    }

    pub fn set_status(&self, id: &OrderId, status: OrderStatus) -> Result<(), Error> {
        self.execute(
            "update orders set status = $2, updated_at = now() where id = $1",
            &[text(&id.to_string()), text(status.as_str())],
        )
        .map(|_| ())
    }

    /// Records the shipment the delivery service created (and its tracking number, when the
    /// answer named it); false if a shipment was already known.
    pub fn set_shipment(
        &self,
        order_id: &str,
        shipment: Uuid,
        tracking_number: Option<&str>,
    ) -> Result<bool, Error> {
        let n = self.execute(
            "update orders set shipment_id = $2, tracking_number = $3, updated_at = now() \
             where id = $1 and shipment_id is null",
            &[
                text(order_id),
                shipment.into(),
                tracking_number.map(str::to_string).into(),
            ],
        )?;
        Ok(n == 1)
    }

    /// This database's part of a seller's sales page: at most `limit` lines after the
    /// cursor, in the list's total order (`domain::sales`). One range scan of
    /// `order_items_seller_sales_idx` (migration 0004) that stops after `limit` rows; the
    /// status filter is applied to the joined order, so a rare status reads further. Order
    /// ids compare bytewise (`collate "C"`, as the index does), the order the merge uses.
    pub fn sales_page(&self, q: &SalesQuery, limit: u32) -> Result<Vec<Sale>, Error> {
        let mut sql = String::from(concat!(
            "select i.order_id, i.line_no, ",
            ts!("i.placed_at"),
            ", i.product_id, i.title, i.quantity, i.unit_price_cents, i.currency, o.status, \
             o.shipment_id, o.tracking_number, o.shipping_address->>'city', \
             o.shipping_address->>'postal_code', o.shipping_address->>'country' \
             from order_items i join orders o on o.id = i.order_id \
             where i.seller_id = $1"
        ));
        let mut params: Vec<ParameterValue> = vec![q.seller.into()];
        if let Some(status) = q.status {
            params.push(text(status.as_str()));
            sql.push_str(&format!(" and o.status = ${}", params.len()));
        }
        if let Some(after) = &q.after {
            // Strictly after (placed_at, order_id, line_no) in (desc, desc, asc) order. The
            // first conjunct is the index's range bound; the rest only sorts out lines of the
            // cursor's own millisecond.
            params.push(text(&after.placed_at));
            let at = params.len();
            params.push(text(&after.order_id));
            let order = params.len();
            params.push(ParameterValue::Int32(after.line_no));
            let line = params.len();
            sql.push_str(&format!(
                " and i.placed_at <= ${at}::text::timestamptz \
                 and (i.placed_at < ${at}::text::timestamptz or i.order_id collate \"C\" < ${order} \
                 or (i.order_id = ${order} and i.line_no > ${line}))"
            ));
        }
        params.push(ParameterValue::Int64(i64::from(limit)));
        sql.push_str(&format!(
            " order by i.placed_at desc, i.order_id collate \"C\" desc, i.line_no limit ${}",
            params.len()
        ));
        let rows = self.query(&sql, &params)?;
        rows.rows
            .iter()
            .map(|r| {
                Ok(Sale {
                    order_id: get(r, 0)?,
                    line_no: get(r, 1)?,
                    placed_at: get(r, 2)?,
                    product_id: get(r, 3)?,
                    title: get(r, 4)?,
                    quantity: get(r, 5)?,
                    unit_price_cents: get(r, 6)?,
                    currency: get(r, 7)?,
                    order_status: get(r, 8)?,
                    shipment_id: get(r, 9)?,
                    tracking_number: get(r, 10)?,
                    ship_to: ShipTo {
                        city: get(r, 11)?,
                        postal_code: get(r, 12)?,
                        country: get(r, 13)?,
                    },
                })
            })
            .collect()
    }

    /// Status, buyer, address and lines of an order, share-locked (relay, in a transaction).
    pub fn shipment_source(&self, order_id: &str) -> Result<Option<OrderView>, Error> {
        let rows = self.query(
            &format!("select {ORDER_COLUMNS} from orders o where o.id = $1 for share of o"),
            &[text(order_id)],
        )?;
        rows.rows
            .first()
            .map(|r| Self::order_from_row(r))
            .transpose()
    }

    /// The order's current status, if it exists (for history rows the relay adds).
    pub fn status_of(&self, order_id: &str) -> Result<Option<OrderStatus>, Error> {
        let rows = self.query("select status from orders where id = $1", &[text(order_id)])?;
        match rows.rows.first() {
            Some(r) => Ok(OrderStatus::parse(&get::<String>(r, 0)?)),
            None => Ok(None),
        }
    }

    // ------------------------------------------------------------- outbox

    /// Claims due rows (inside a transaction) so that no concurrent relay sends them too.
    pub fn claim_outbox(&self, order_id: Option<&str>) -> Result<Vec<OutboxRow>, Error> {
        let rows = match order_id {
            Some(id) => self.query(
                "select id, order_id, kind, payload, attempts from outbox \
                 where delivered_at is null and order_id = $1 and next_attempt_at <= now() \
                 order by id limit $2 for update skip locked",
                &[text(id), ParameterValue::Int64(outbox::BATCH)],
            )?,
            None => self.query(
                "select id, order_id, kind, payload, attempts from outbox \
                 where delivered_at is null and next_attempt_at <= now() \
                 order by next_attempt_at, id limit $1 for update skip locked",
                &[ParameterValue::Int64(outbox::BATCH)],
            )?,
        };
        rows.rows.iter().map(|r| outbox_row(r)).collect()
    }

    pub fn outbox_done(&self, id: i64) -> Result<(), Error> {
        self.execute(
            "update outbox set delivered_at = now(), attempts = attempts + 1, last_error = null, \
             updated_at = now() where id = $1",
            &[ParameterValue::Int64(id)],
        )
        .map(|_| ())
    }

    /// Deletes up to `batch` outbox rows delivered more than `days` ago; returns how many.
    pub fn purge_delivered_outbox(&self, days: i32, batch: i64) -> Result<u64, Error> {
        self.execute(
            "delete from outbox where id in (select id from outbox \
             where delivered_at < now() - make_interval(days => $1) order by delivered_at \
             limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )
    }

    /// Forgets up to `batch` idempotency keys completed more than `days` ago; returns how
    /// many. Pending keys are the abandoned-attempt sweep's business, never deleted here.
    pub fn purge_completed_keys(&self, days: i32, batch: i64) -> Result<u64, Error> {
        self.execute(
            "delete from idempotency_keys where (buyer_id, key) in (select buyer_id, key \
             from idempotency_keys where state = 'completed' \
             and updated_at < now() - make_interval(days => $1) order by updated_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
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
        .map(|_| ())
    }

    /// Claims pending key rows nobody has touched for a while and nobody holds (their
    /// request crashed or timed out after, perhaps, reserving stock).
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
                    order_id: get(r, 2)?,
                })
            })
            .collect()
    }
}

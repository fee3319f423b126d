//! `idempotency_keys`: one row per (buyer, key), `pending` from the claim until the order
//! commits, then `completed` with the response to replay.

use spin_sdk::pg4::ParameterValue;
use uuid::Uuid;

use super::{Db, LOCK_TIMEOUT, get, get_order_id, text, vshard};
use crate::domain::key::{IdempotencyKey, KeyRecord};
use crate::domain::shard::OrderId;
use crate::error::Error;

impl Db {
    /// Inserts a `pending` key row for `order_id` unless the key exists. Autocommit: the row
    /// must be durable before any stock is reserved.
    pub fn claim_key(
        &self,
        buyer: Uuid,
        key: &IdempotencyKey,
        request_hash: &str,
        order_id: &OrderId,
    ) -> Result<(), Error> {
        self.execute(
            "insert into idempotency_keys (buyer_id, vshard, key, request_hash, order_id, state) \
             values ($1, $2, $3, $4, $5, 'pending') on conflict (buyer_id, key) do nothing",
            &[
                buyer.into(),
                vshard(order_id),
                text(key.as_str()),
                text(request_hash),
                text(&order_id.to_string()),
            ],
        )
    }

    /// Locks the key row (inside a transaction), waiting for whoever holds it.
    /// `Ok(None)`: no such row (any more). `Err(KeyBusy)`: the wait timed out.
    pub fn lock_key(&self, buyer: Uuid, key: &IdempotencyKey) -> Result<Option<KeyRecord>, Error> {
        let rows = self.query_locking(
            &format!(
                "select {LOCK_TIMEOUT} as lock_timeout, request_hash, order_id, \
                 state = 'completed' as completed, response_status, response_body::text \
                 as response_body, extract(epoch from now() - updated_at)::bigint as age \
                 from idempotency_keys where buyer_id = $1 and key = $2 for update"
            ),
            &[buyer.into(), text(key.as_str())],
            Error::KeyBusy,
        )?;
        let Some(r) = rows.rows.first() else {
            return Ok(None);
        };
        let response = if get(r, 3)? {
            let (status, body): (Option<i32>, Option<String>) = (get(r, 4)?, get(r, 5)?);
            let status = status.map_or(201, |s| s as u16);
            Some((status, body.unwrap_or_default().into_bytes()))
        } else {
            None
        };
        Ok(Some(KeyRecord {
            request_hash: get(r, 1)?,
            order_id: get_order_id(r, 2)?,
            response,
            age_secs: get(r, 6)?,
        }))
    }

    /// Marks a locked pending row as freshly claimed (taking over an abandoned attempt).
    pub fn touch_key(&self, buyer: Uuid, key: &IdempotencyKey) -> Result<(), Error> {
        self.execute(
            "update idempotency_keys set updated_at = now() where buyer_id = $1 and key = $2",
            &[buyer.into(), text(key.as_str())],
        )
    }

    /// Forgets an attempt that produced no order, so the key can be used again.
    pub fn delete_key(&self, buyer: Uuid, key: &str) -> Result<(), Error> {
        self.execute(
            "delete from idempotency_keys where buyer_id = $1 and key = $2 and state = 'pending'",
            &[buyer.into(), text(key)],
        )
    }

    /// Forgets up to `batch` idempotency keys completed more than `days` ago; returns how
    /// many. Pending keys are the abandoned-attempt sweep's business, never deleted here.
    pub fn purge_completed_keys(&self, days: i32, batch: i64) -> Result<u64, Error> {
        self.affected(
            "delete from idempotency_keys where (buyer_id, key) in (select buyer_id, key \
             from idempotency_keys where state = 'completed' \
             and updated_at < now() - make_interval(days => $1) order by updated_at limit $2)",
            &[ParameterValue::Int32(days), ParameterValue::Int64(batch)],
        )
    }
}

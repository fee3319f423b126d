//! The transactional outbox: calls to other services that must eventually happen, written in
//! the same transaction as the order change that requires them, and retried by the relay.
//! Its kinds: `create_shipment` (`POST {delivery}/internal/deliveries`, idempotent per order
//! id there), `release_reservation` (`DELETE {product}/internal/products/reservations/{id}`,
//! idempotent there) and `cancel_shipment`, a cancel's intent written before the delivery
//! service is asked, resolved by its request or, if that died or lost the answer, by the
//! relay (`handlers::cancel`).

use serde::{Deserialize, Serialize};

/// Payload of a `release_reservation` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub reservation_id: crate::domain::shard::OrderId,
}

/// Payload of a `cancel_shipment` row: who asked, for the order's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelIntent {
    /// `buyer` or `admin`.
    pub actor: String,
    /// The user id of the caller.
    pub by: uuid::Uuid,
}

/// How long a fresh `cancel_shipment` intent is not due: its request holds it while it calls
/// the delivery service; only an intent whose request died is the relay's. Far longer than
/// the commit-to-lock gap, shorter than a buyer would wait for a crashed cancel to settle.
pub const CANCEL_LEASE_SECS: i64 = 30;

/// How long a placement's `create_shipment` row is not due: the placing request asks for the
/// shipment itself right after its commit; the relay sends it only if that request failed
/// (the row is then due at once) or died. A slower request may send it twice, which the
/// idempotent delivery service answers with the same shipment.
pub const PLACEMENT_LEASE_SECS: i64 = 30;

/// Seconds to wait before the next attempt after `attempts` failed ones: the first retry is
/// immediate (the inline attempt failed; the next run is a minute away at most), then 2, 4,
/// 8 ... seconds, capped at five minutes so a long outage costs one attempt per row per five.
pub fn backoff_secs(attempts: i32) -> i64 {
    if attempts <= 1 {
        0
    } else {
        1i64 << (attempts - 1).min(9)
    }
    .min(300)
}

/// How long an idempotency key may stay `pending` with nobody holding its lock before the
/// relay treats the attempt as crashed and releases whatever it may have reserved.
pub const ABANDONED_AFTER_SECS: i64 = 30;

/// Rows one relay run claims per shard and queue.
pub const BATCH: i64 = 25;

/// Days a delivered outbox row is kept (to answer "was the shipment requested, and when").
pub const DELIVERED_ROW_RETENTION_DAYS: i32 = 7;

/// Days a completed `Idempotency-Key` replays its first answer before the relay forgets it
/// (the order stays): clients retry within minutes; a week covers one offline for days.
pub const COMPLETED_KEY_RETENTION_DAYS: i32 = 7;

/// Rows one purge statement deletes at most, so that a relay run never holds many locks or
/// runs a long statement.
pub const PURGE_BATCH: i64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_immediate_then_doubles_up_to_five_minutes() {
        for (attempts, secs) in [
            (0, 0),
            (1, 0),
            (2, 2),
            (3, 4),
            (9, 256),
            (10, 300),
            (1000, 300),
        ] {
            assert_eq!(backoff_secs(attempts), secs, "after {attempts} attempts");
        }
    }
}

//! The transactional outbox: calls to other services that must eventually happen, written in
//! the same transaction as the order change that requires them, and retried by the relay.

use serde::{Deserialize, Serialize};

/// What an outbox row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST {delivery}/internal/deliveries` for the order (idempotent per order id there).
    CreateShipment,
    /// `DELETE {product}/internal/products/reservations/{reservation_id}` (idempotent there).
    ReleaseReservation,
    /// A cancel whose outcome is not known yet (the intent written before the delivery service
    /// is asked to cancel the shipment). The request that wrote it resolves it; if it could
    /// not (crash, lost answer), the relay does, from the shipment's status: `cancelled` →
    /// the order is cancelled and its stock released; anything else → the intent is dropped.
    CancelShipment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::CreateShipment => "create_shipment",
            Kind::ReleaseReservation => "release_reservation",
            Kind::CancelShipment => "cancel_shipment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create_shipment" => Some(Kind::CreateShipment),
            "release_reservation" => Some(Kind::ReleaseReservation),
            "cancel_shipment" => Some(Kind::CancelShipment),
            _ => None,
        }
    }
}

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

/// How long a fresh `cancel_shipment` intent is not due: the request that wrote it is working
/// on it (and holds its row lock while it calls the delivery service); only an intent whose
/// request died is the relay's. Longer than the commit-to-lock gap by far, shorter than the
/// time a buyer would wait for a crashed cancel to settle.
pub const CANCEL_LEASE_SECS: i64 = 30;

/// How long a placement's `create_shipment` row is not due: the placing request asks for the
/// shipment itself right after its commit, without claiming the row in a transaction of its
/// own; the relay sends it only if that request failed (the row is then made due at once) or
/// died. A request slower than this may send it a second time, which the idempotent
/// delivery service answers with the same shipment.
pub const PLACEMENT_LEASE_SECS: i64 = 30;

/// Seconds to wait before the next attempt after `attempts` failed ones.
///
/// The first retry is immediate (the inline attempt right after the commit failed; the next
/// relay run, a minute later at most, tries again), then 2, 4, 8 ... seconds, capped at five
/// minutes so a long outage costs one attempt per row every five minutes.
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

/// Days a delivered outbox row is kept (to answer "was the shipment requested, and when")
/// before the relay deletes it.
pub const DELIVERED_ROW_RETENTION_DAYS: i32 = 7;

/// Days a completed `Idempotency-Key` is remembered: a retry with the same key within that
/// time replays the first answer; after it the relay forgets the key (the order itself stays).
/// Clients retry within minutes; a week covers a client that was offline for days.
pub const COMPLETED_KEY_RETENTION_DAYS: i32 = 7;

/// Rows one purge statement deletes at most, so that a relay run never holds many locks or
/// runs a long statement; a backlog shrinks by this much per shard and run.
pub const PURGE_BATCH: i64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_immediate_then_doubles_up_to_five_minutes() {
        assert_eq!(backoff_secs(0), 0);
        assert_eq!(backoff_secs(1), 0);
        assert_eq!(backoff_secs(2), 2);
        assert_eq!(backoff_secs(3), 4);
        assert_eq!(backoff_secs(9), 256);
        assert_eq!(backoff_secs(10), 300);
        assert_eq!(backoff_secs(1000), 300);
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            Kind::CreateShipment,
            Kind::ReleaseReservation,
            Kind::CancelShipment,
        ] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("drop_tables"), None);
    }
}

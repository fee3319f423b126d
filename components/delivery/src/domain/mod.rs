//! The delivery service's rules, with no I/O: the shipment state machine, event and shipment
//! validation, tracking numbers and shard routing. Unit-tested natively.

pub mod event;
pub mod shard;
pub mod shipment;
pub mod status;
pub mod tracking;

pub use event::{CANCEL_EVENT_ID, EventId, EventInput, MAX_EVENTS_PER_SHIPMENT, NewEvent};
pub use shipment::{NewShipment, OrderId};
pub use status::{Effect, OrderReport, Progress, TransitionError};
pub use tracking::TrackingNumber;

/// Whether `s` is 1 to `max` characters of `A-Z a-z 0-9 . _ : -`: safe in keys and in URL
/// paths without escaping.
pub fn is_id_text(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

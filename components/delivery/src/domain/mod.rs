//! The delivery service's rules, with no I/O: the shipment state machine, event and shipment
//! validation, tracking numbers and shard routing. Unit-tested natively.

pub mod event;
pub mod shard;
pub mod shipment;
pub mod status;
pub mod tracking;

pub use event::{CANCEL_EVENT_ID, EventInput, NewEvent};
pub use shipment::{NewShipment, OrderId, ShipmentInput};
pub use status::{Effect, Progress, TransitionError};
pub use tracking::TrackingNumber;

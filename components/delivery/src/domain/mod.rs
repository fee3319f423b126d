//! The delivery service's rules, with no I/O: the shipment state machine, event and shipment
//! validation, tracking numbers and shard routing. Unit-tested natively.

pub mod event;
pub mod shard;
pub mod shipment;
pub mod status;
pub mod tracking;

pub use event::{CANCEL_EVENT_ID, EventId, EventInput, MAX_EVENTS_PER_SHIPMENT, NewEvent};
pub use shipment::{Address, Item, NewShipment, OrderId, ShipmentInput};
pub use status::{Effect, OrderReport, Progress, TransitionError};
pub use tracking::TrackingNumber;

//! Shipments in the sharded key-value store.
//!
//! Keys (all `dlv:`-prefixed: on Redis a label is not a namespace, several labels and other
//! services may share one database):
//!
//! | key | label | value |
//! | --- | --- | --- |
//! | `dlv:s:{id}` | shard(id) | the shipment as created (immutable) |
//! | `dlv:s:{id}:state` | shard(id) | status, newest `occurred_at`, applied events (id, slot, public part), pending reports (CAS) |
//! | `dlv:s:{id}:seq` | shard(id) | event slot counter (increment) |
//! | `dlv:s:{id}:e:{n}` | shard(id) | one event body per slot, written once |
//! | `dlv:order:{order_id}` | shard(order_id) | shipment id (created with CAS-on-absent) |
//! | `dlv:track:{number}` | shard(number) | shipment id (created with CAS-on-absent) |
//! | `dlv:outbox:{i}:tail` / `:head` / `:slot:{m}` | i | relay queue of shipments with reports to send |
//!
//! Lookups read an index key, the shipment and its state, then its events, one key at a time
//! ([`wasi`]); nothing lists keys. A history holds at most [`MAX_EVENTS_PER_SHIPMENT`] events,
//! so every read is bounded; tracking ([`load_tracking`]) reads only the index and the state.
//!
//! Recording an event and cancelling: [`events`]. The relay queue: [`outbox`].

pub mod events;
pub mod kv;
pub mod outbox;
pub mod wasi;

use chrono::{DateTime, Utc};
use marketplace_shared::wit::ShipmentItem;
use marketplace_shared::{ShipmentStatus, ShippingAddress};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::domain::shard::{SHARDS, shard_of};
use crate::domain::status::status_serde;
use crate::domain::{
    EventId, MAX_EVENTS_PER_SHIPMENT, NewEvent, NewShipment, OrderId, OrderReport, Progress,
    TrackingNumber,
};
use crate::error::{Error, Result};
use kv::{Bucket, Shards};

pub use events::{Recorded, record_event};
pub use outbox::{Window, acknowledge, outbox_advance, outbox_window, requeue};

/// Compare-and-swap attempts before giving up with 503 (each waits a randomised moment).
pub const MAX_CAS_ATTEMPTS: u32 = 400;

/// The shipment as created (immutable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipmentRecord {
    pub id: Uuid,
    pub order_id: OrderId,
    pub buyer_id: Uuid,
    pub tracking_number: TrackingNumber,
    pub shipping_address: ShippingAddress,
    pub items: Vec<ShipmentItem>,
    pub created_at: DateTime<Utc>,
}

/// What the public tracking view shows of an event (kept in the state with its slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Public {
    #[serde(with = "status_serde")]
    pub status: ShipmentStatus,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl From<&NewEvent> for Public {
    fn from(e: &NewEvent) -> Self {
        Self {
            status: e.status,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            location: e.location.clone(),
        }
    }
}

/// An applied event: its id, the slot holding its body and its public part (`None` in states
/// written before entries carried it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub id: EventId,
    pub n: i64,
    #[serde(default, rename = "p", skip_serializing_if = "Option::is_none")]
    pub public: Option<Public>,
}

/// A status the order service has not yet acknowledged (the outbox row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub event_id: EventId,
    pub status: OrderReport,
    pub occurred_at: DateTime<Utc>,
}

/// The mutable part of a shipment, changed only by compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(flatten)]
    pub progress: Progress,
    pub updated_at: DateTime<Utc>,
    pub events: Vec<Applied>,
    pub reports: Vec<Report>,
}

impl State {
    fn applied(&self, event_id: &EventId) -> Option<i64> {
        self.events.iter().find(|a| a.id == *event_id).map(|a| a.n)
    }
}

/// A shipment with its state and full history (in `occurred_at` order).
#[derive(Debug, Clone)]
pub struct Shipment {
    pub record: ShipmentRecord,
    pub state: State,
    pub history: Vec<NewEvent>,
}

/// The public view of a shipment: its number, status and where it has been.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub number: TrackingNumber,
    pub status: ShipmentStatus,
    pub history: Vec<Public>,
}

fn record_key(id: Uuid) -> String {
    format!("dlv:s:{id}")
}
fn state_key(id: Uuid) -> String {
    format!("dlv:s:{id}:state")
}
fn seq_key(id: Uuid) -> String {
    format!("dlv:s:{id}:seq")
}
fn event_key(id: Uuid, n: i64) -> String {
    format!("dlv:s:{id}:e:{n}")
}
fn order_key(order_id: &OrderId) -> String {
    format!("dlv:order:{}", order_id.as_str())
}
fn track_key(number: &TrackingNumber) -> String {
    format!("dlv:track:{}", number.as_str())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain data types: serialisation cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{key}: {e}")))
}

fn read<B: Bucket, T: DeserializeOwned>(b: &B, key: &str) -> Result<Option<T>> {
    b.get(key)?.map(|v| decode(key, &v)).transpose()
}

fn shard_of_shipment(id: Uuid) -> usize {
    shard_of(&id.to_string())
}

/// Every label answers a read (readiness).
pub fn ready<S: Shards>(shards: &S) -> Result<()> {
    for i in 0..SHARDS {
        shards.shard(i)?.get("dlv:readyz")?;
    }
    Ok(())
}

fn event_body<B: Bucket>(b: &B, id: Uuid, n: i64) -> Result<NewEvent> {
    let key = event_key(id, n);
    read(b, &key)?.ok_or_else(|| Error::Corrupt(format!("{key}: missing")))
}

/// The shipment `id` with its history, or `None`.
pub fn load<S: Shards>(shards: &S, id: Uuid) -> Result<Option<Shipment>> {
    let b = shards.shard(shard_of_shipment(id))?;
    let (Some(record), Some(state)) = (
        read::<_, ShipmentRecord>(b, &record_key(id))?,
        read::<_, State>(b, &state_key(id))?,
    ) else {
        return Ok(None);
    };
    let mut history = state
        .events
        .iter()
        .map(|a| event_body(b, id, a.n))
        .collect::<Result<Vec<_>>>()?;
    // Stable: events at the same instant keep the order they were recorded in.
    history.sort_by_key(|e| (e.occurred_at, e.recorded_at));
    Ok(Some(Shipment {
        record,
        state,
        history,
    }))
}

fn index_lookup<S: Shards>(shards: &S, routing: &str, key: &str) -> Result<Option<Uuid>> {
    read(shards.shard(shard_of(routing))?, key)
}

/// The shipment of an order, or `None`.
pub fn load_by_order<S: Shards>(shards: &S, order_id: &OrderId) -> Result<Option<Shipment>> {
    let id = index_lookup(shards, order_id.as_str(), &order_key(order_id))?;
    id.map_or(Ok(None), |id| load(shards, id))
}

/// The public view of the shipment with this tracking number, or `None`: the index and the
/// state, plus one body read per entry of an older state (at most the cap).
pub fn load_tracking<S: Shards>(shards: &S, number: &TrackingNumber) -> Result<Option<Tracking>> {
    let Some(id) = index_lookup(shards, number.as_str(), &track_key(number))? else {
        return Ok(None);
    };
    let b = shards.shard(shard_of_shipment(id))?;
    let Some(state) = read::<_, State>(b, &state_key(id))? else {
        return Ok(None);
    };
    let mut history = state
        .events
        .iter()
        .take(MAX_EVENTS_PER_SHIPMENT)
        .map(|a| match &a.public {
            Some(p) => Ok(p.clone()),
            None => event_body(b, id, a.n).map(|e| Public::from(&e)),
        })
        .collect::<Result<Vec<_>>>()?;
    history.sort_by_key(|e| (e.occurred_at, e.recorded_at));
    Ok(Some(Tracking {
        number: number.clone(),
        status: state.progress.status,
        history,
    }))
}

/// Creates the shipment of an order, or returns the one it already has (idempotent per
/// `order_id`).
pub fn create<S: Shards>(shards: &S, new: &NewShipment, now: DateTime<Utc>) -> Result<Shipment> {
    if let Some(existing) = load_by_order(shards, &new.order_id)? {
        return same_order(existing, new);
    }
    let id = Uuid::now_v7();

    // 1. A unique tracking number: its index key is created only if absent.
    let number = claim_tracking_number(shards, id)?;

    let b = shards.shard(shard_of_shipment(id))?;
    let record = ShipmentRecord {
        id,
        order_id: new.order_id.clone(),
        buyer_id: new.buyer_id,
        tracking_number: number.clone(),
        shipping_address: new.shipping_address.clone(),
        items: new.items.clone(),
        created_at: now,
    };
    let state = State {
        progress: Progress::default(),
        updated_at: now,
        events: Vec::new(),
        reports: Vec::new(),
    };
    // 2. The shipment itself (unreachable until the order index points at it); 3. the commit
    //    point: the order index, created only if absent. A concurrent creator for the same
    //    order that got there first wins; ours is removed.
    let ob = shards.shard(shard_of(new.order_id.as_str()))?;
    let key = order_key(&new.order_id);
    let claimed = b
        .set(&record_key(id), &encode(&record))
        .and_then(|()| b.set(&state_key(id), &encode(&state)))
        .and_then(|()| ob.cas_read(&key))
        .and_then(|(cas, current)| match current {
            Some(_) => Ok(false),
            None => ob.cas_commit(&key, cas, &encode(&id)),
        });
    if matches!(claimed, Ok(true)) {
        return Ok(Shipment {
            record,
            state,
            history: Vec::new(),
        });
    }
    let _ = b.delete(&record_key(id));
    let _ = b.delete(&state_key(id));
    if let Ok(tb) = shards.shard(shard_of(number.as_str())) {
        let _ = tb.delete(&track_key(&number));
    }
    claimed?;
    let existing = load_by_order(shards, &new.order_id)?
        .ok_or_else(|| Error::Corrupt(format!("{key}: points at a missing shipment")))?;
    same_order(existing, new)
}

fn same_order(existing: Shipment, new: &NewShipment) -> Result<Shipment> {
    if existing.record.buyer_id == new.buyer_id {
        Ok(existing)
    } else {
        Err(Error::Conflict(
            "this order already has a shipment for another buyer".into(),
        ))
    }
}

fn claim_tracking_number<S: Shards>(shards: &S, id: Uuid) -> Result<TrackingNumber> {
    // 50 random bits: a collision is rare; a handful of draws makes failure astronomically so.
    for _ in 0..8 {
        let number = TrackingNumber::from_random(Uuid::new_v4().as_u128() as u64);
        let tb = shards.shard(shard_of(number.as_str()))?;
        let key = track_key(&number);
        let (cas, current) = tb.cas_read(&key)?;
        if current.is_none() && tb.cas_commit(&key, cas, &encode(&id))? {
            return Ok(number);
        }
    }
    Err(Error::Contention)
}

#[cfg(test)]
mod tests;

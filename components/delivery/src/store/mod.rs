//! Shipments in the sharded key-value store.
//!
//! Keys (all `dlv:`-prefixed: on Redis a label is not a namespace, several labels and other
//! services may share one database):
//!
//! | key | label | value |
//! | --- | --- | --- |
//! | `dlv:s:{id}` | shard(id) | the shipment as created (immutable) |
//! | `dlv:s:{id}:state` | shard(id) | status, newest `occurred_at`, applied event ids → slots, pending reports (CAS) |
//! | `dlv:s:{id}:seq` | shard(id) | event slot counter (increment) |
//! | `dlv:s:{id}:e:{n}` | shard(id) | one event body per slot, written once |
//! | `dlv:order:{order_id}` | shard(order_id) | shipment id (created with CAS-on-absent) |
//! | `dlv:track:{number}` | shard(number) | shipment id (created with CAS-on-absent) |
//! | `dlv:outbox:{i}:tail` / `:head` / `:slot:{m}` | i | relay queue of shipments with reports to send |
//!
//! Lookups read an index key, then the shipment and its state, then its events, one key at a
//! time (Spin's Redis store cannot serve `batch::get-many`). Nothing ever lists keys.
//!
//! **Recording an event** (see [`record_event`]): the body is written first into a fresh slot
//! (`increment` on the counter, so concurrent writers never share one), then the state key is
//! advanced with compare-and-swap, re-judging the state machine and checking the event id
//! against the ids already applied on every attempt. Every swap is read back
//! ([`kv::Bucket::cas_commit`]): Spin's Redis store reports success for a swap its `WATCH`
//! aborted, so only the slot number found in the state says whose write landed. The swap is
//! the commit point: the event id set, the status and the outbox entry change together or not
//! at all, so concurrent writers lose no event, retries of one `event_id` land once, and a
//! refused event leaves nothing reachable (its slot body is deleted). A body whose commit never
//! happened (crash) is never referenced by the state and so never shown.
//!
//! **Cancelling** ([`cancel`]) is recording one more event, [`NewEvent::cancellation`], by the
//! same protocol: a cancel and a `picked_up` scan racing on a pending shipment both swap the
//! same state key, the first swap that lands wins, and the other, re-judged against the new
//! state, is refused by the state machine (409). A repeated cancel is a duplicate of the
//! cancellation's fixed event id and changes nothing.

pub mod kv;
pub mod wasi;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::domain::shard::{SHARDS, shard_of};
use crate::domain::shipment::{Address, Item};
use crate::domain::status::{Effect, Progress, order_report};
use crate::domain::{NewEvent, NewShipment, OrderId, TrackingNumber};
use crate::error::{Error, Result};
use kv::{Bucket, Shards};

/// Compare-and-swap attempts before giving up with 503 (each waits a randomised moment).
pub const MAX_CAS_ATTEMPTS: u32 = 400;

/// The shipment as created (immutable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentRecord {
    pub id: Uuid,
    pub order_id: OrderId,
    pub buyer_id: Uuid,
    pub tracking_number: String,
    pub shipping_address: Address,
    pub items: Vec<Item>,
    pub created_at: DateTime<Utc>,
}

/// An applied event: its id and the slot holding its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub id: String,
    pub n: i64,
}

/// A status the order service has not yet acknowledged (the outbox row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub event_id: String,
    /// The order service's word: `shipped`, `delivered` or `returned`.
    pub status: String,
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
    fn applied(&self, event_id: &str) -> Option<i64> {
        self.events.iter().find(|a| a.id == event_id).map(|a| a.n)
    }
}

/// A shipment with its state and full history (in `occurred_at` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub record: ShipmentRecord,
    pub state: State,
    pub history: Vec<NewEvent>,
}

/// What [`record_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The event joined the history; `report` is the outbox entry it created, if any, and
    /// `slot` its relay queue slot.
    New {
        report: Option<Report>,
        slot: Option<i64>,
    },
    /// The same `event_id` was already recorded (a retry): nothing changed.
    Duplicate,
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
    format!("dlv:track:{number}")
}
fn outbox_key(shard: usize, what: &str) -> String {
    format!("dlv:outbox:{shard}:{what}")
}
fn slot_key(shard: usize, m: i64) -> String {
    outbox_key(shard, &format!("slot:{m}"))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own plain data types: serialisation cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{key}: {e}")))
}

fn shard_of_shipment(id: Uuid) -> usize {
    shard_of(&id.to_string())
}

/// The shipment `id` with its history, or `None`.
pub fn load<S: Shards>(shards: &S, id: Uuid) -> Result<Option<Shipment>> {
    let b = shards.shard(shard_of_shipment(id))?;
    let keys = [record_key(id), state_key(id)];
    let mut values = b.get_many(&keys)?.into_iter();
    let (Some(Some(record)), Some(Some(state))) = (values.next(), values.next()) else {
        return Ok(None);
    };
    let record: ShipmentRecord = decode(&keys[0], &record)?;
    let state: State = decode(&keys[1], &state)?;
    let event_keys: Vec<String> = state.events.iter().map(|a| event_key(id, a.n)).collect();
    let mut history = Vec::with_capacity(event_keys.len());
    for (key, value) in event_keys.iter().zip(b.get_many(&event_keys)?) {
        let value = value.ok_or_else(|| Error::Corrupt(format!("{key}: missing")))?;
        history.push(decode::<NewEvent>(key, &value)?);
    }
    // Stable: events at the same instant keep the order they were recorded in.
    history.sort_by_key(|e| (e.occurred_at, e.recorded_at));
    Ok(Some(Shipment {
        record,
        state,
        history,
    }))
}

fn index_lookup<S: Shards>(shards: &S, routing: &str, key: &str) -> Result<Option<Uuid>> {
    let b = shards.shard(shard_of(routing))?;
    match b.get(key)? {
        None => Ok(None),
        Some(v) => decode(key, &v).map(Some),
    }
}

/// The shipment of an order, or `None`.
pub fn load_by_order<S: Shards>(shards: &S, order_id: &OrderId) -> Result<Option<Shipment>> {
    match index_lookup(shards, order_id.as_str(), &order_key(order_id))? {
        Some(id) => load(shards, id),
        None => Ok(None),
    }
}

/// The shipment with this tracking number, or `None`.
pub fn load_by_tracking<S: Shards>(
    shards: &S,
    number: &TrackingNumber,
) -> Result<Option<Shipment>> {
    match index_lookup(shards, number.as_str(), &track_key(number))? {
        Some(id) => load(shards, id),
        None => Ok(None),
    }
}

/// Creates the shipment of an order, or returns the one it already has (idempotent per
/// `order_id`; `Ok((shipment, false))` on a repeat). `random` yields tracking-number entropy.
pub fn create<S: Shards>(
    shards: &S,
    new: &NewShipment,
    now: DateTime<Utc>,
    mut random: impl FnMut() -> u64,
) -> Result<(Shipment, bool)> {
    if let Some(existing) = load_by_order(shards, &new.order_id)? {
        return same_order(existing, new).map(|s| (s, false));
    }
    let id = Uuid::now_v7();

    // 1. A unique tracking number: its index key is created only if absent.
    let number = claim_tracking_number(shards, id, &mut random)?;

    // 2. The shipment itself (unreachable until the order index points at it).
    let b = shards.shard(shard_of_shipment(id))?;
    let record = ShipmentRecord {
        id,
        order_id: new.order_id.clone(),
        buyer_id: new.buyer_id,
        tracking_number: number.to_string(),
        shipping_address: new.shipping_address.clone(),
        items: new.items.clone(),
        created_at: now,
    };
    let state = State {
        progress: Progress::new(),
        updated_at: now,
        events: Vec::new(),
        reports: Vec::new(),
    };
    let cleanup = |shards: &S| {
        let _ = b.delete(&record_key(id));
        let _ = b.delete(&state_key(id));
        if let Ok(tb) = shards.shard(shard_of(number.as_str())) {
            let _ = tb.delete(&track_key(&number));
        }
    };
    let written = b
        .set(&record_key(id), &encode(&record))
        .and_then(|()| b.set(&state_key(id), &encode(&state)));
    if let Err(e) = written {
        cleanup(shards);
        return Err(e.into());
    }

    // 3. The commit point: the order index, created only if absent. A concurrent creator for
    //    the same order that got there first wins; ours is removed.
    let ob = shards.shard(shard_of(new.order_id.as_str()))?;
    let key = order_key(&new.order_id);
    let claimed = ob.cas_read(&key).and_then(|(cas, current)| match current {
        Some(_) => Ok(false),
        None => ob.cas_commit(&key, cas, &encode(&id)),
    });
    match claimed {
        Ok(true) => Ok((
            Shipment {
                record,
                state,
                history: Vec::new(),
            },
            true,
        )),
        Ok(false) => {
            cleanup(shards);
            let existing = load_by_order(shards, &new.order_id)?
                .ok_or_else(|| Error::Corrupt(format!("{key}: points at a missing shipment")))?;
            same_order(existing, new).map(|s| (s, false))
        }
        Err(e) => {
            cleanup(shards);
            Err(e.into())
        }
    }
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

fn claim_tracking_number<S: Shards>(
    shards: &S,
    id: Uuid,
    random: &mut impl FnMut() -> u64,
) -> Result<TrackingNumber> {
    // 50 random bits: a collision is rare; a handful of draws makes failure astronomically so.
    for _ in 0..8 {
        let number = TrackingNumber::from_random(random());
        let tb = shards.shard(shard_of(number.as_str()))?;
        let key = track_key(&number);
        let (cas, current) = tb.cas_read(&key)?;
        if current.is_none() && tb.cas_commit(&key, cas, &encode(&id))? {
            return Ok(number);
        }
    }
    Err(Error::Contention)
}

/// Records a carrier event on shipment `id` (see the module documentation for the protocol).
pub fn record_event<S: Shards>(shards: &S, id: Uuid, event: &NewEvent) -> Result<Recorded> {
    let shard = shard_of_shipment(id);
    let b = shards.shard(shard)?;
    let skey = state_key(id);

    // Cheap refusals first, before anything is written.
    let state: State = match b.get(&skey)? {
        Some(v) => decode(&skey, &v)?,
        None => return Err(Error::NotFound),
    };
    if let Some(n) = state.applied(&event.event_id) {
        return duplicate(b, id, n, event);
    }
    state
        .progress
        .decide(event.status, event.occurred_at)
        .map_err(Error::Transition)?;

    // The body, in a slot of its own.
    let n = b.increment(&seq_key(id), 1)?;
    let ekey = event_key(id, n);
    b.set(&ekey, &encode(event))?;
    let discard = |b: &S::B| {
        let _ = b.delete(&ekey);
    };

    // A relay queue entry before the commit, so that a committed report is always queued.
    let report_word = order_report(event.status);
    let slot = match report_word {
        Some(_) => match enqueue(b, shard, id) {
            Ok(m) => Some(m),
            Err(e) => {
                discard(b);
                return Err(e);
            }
        },
        None => None,
    };
    let unqueue = |b: &S::B| {
        if let Some(m) = slot {
            let _ = b.delete(&slot_key(shard, m));
        }
    };

    // The report of the latest attempt that swapped: if that swap turns out to have landed
    // (our slot is in the state) after its read-back missed it, this is what it recorded.
    let mut swapped_report: Option<Report> = None;
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let step = (|| -> Result<Option<Recorded>> {
            let (cas, current) = b.cas_read(&skey)?;
            let current: State = match current {
                Some(v) => decode(&skey, &v)?,
                None => return Err(Error::NotFound),
            };
            match current.applied(&event.event_id) {
                // Our own write, built upon by another writer before we read it back.
                Some(existing) if existing == n => {
                    return Ok(Some(Recorded::New {
                        report: swapped_report.clone(),
                        slot,
                    }));
                }
                Some(existing) => return duplicate(b, id, existing, event).map(Some),
                None => {}
            }
            let effect = current
                .progress
                .decide(event.status, event.occurred_at)
                .map_err(Error::Transition)?;
            let mut next = current.clone();
            next.progress = current
                .progress
                .apply(effect, event.status, event.occurred_at);
            next.updated_at = next.updated_at.max(event.recorded_at);
            next.events.push(Applied {
                id: event.event_id.clone(),
                n,
            });
            let report = match (effect, report_word) {
                (Effect::Advance, Some(word)) => Some(Report {
                    event_id: event.event_id.clone(),
                    status: word.to_string(),
                    occurred_at: event.occurred_at,
                }),
                _ => None,
            };
            if let Some(r) = &report {
                next.reports.push(r.clone());
            }
            swapped_report.clone_from(&report);
            if b.cas_commit(&skey, cas, &encode(&next))? {
                Ok(Some(Recorded::New { report, slot }))
            } else {
                Ok(None)
            }
        })();
        match step {
            Ok(Some(Recorded::New { report, slot })) => {
                if report.is_none() {
                    unqueue(b);
                }
                return Ok(Recorded::New {
                    slot: report.as_ref().and(slot),
                    report,
                });
            }
            Ok(Some(Recorded::Duplicate)) => {
                discard(b);
                unqueue(b);
                return Ok(Recorded::Duplicate);
            }
            Ok(None) => shards.pause(attempt),
            Err(e) => {
                discard(b);
                unqueue(b);
                return Err(e);
            }
        }
    }
    discard(b);
    unqueue(b);
    Err(Error::Contention)
}

/// Cancels shipment `id` at the order service's request: `pending → cancelled`, idempotent
/// (see the module documentation). `Err(Transition)` once the shipment has left `pending`.
pub fn cancel<S: Shards>(shards: &S, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    match record_event(shards, id, &NewEvent::cancellation(now))? {
        Recorded::New { .. } | Recorded::Duplicate => Ok(()),
    }
}

/// A retry of an applied event: accepted when it says the same thing, 409 otherwise.
fn duplicate<B: Bucket>(b: &B, id: Uuid, n: i64, event: &NewEvent) -> Result<Recorded> {
    let key = event_key(id, n);
    let stored: NewEvent = match b.get(&key)? {
        Some(v) => decode(&key, &v)?,
        None => return Err(Error::Corrupt(format!("{key}: missing"))),
    };
    if stored.same_event_as(event) {
        Ok(Recorded::Duplicate)
    } else {
        Err(Error::Conflict(format!(
            "event_id `{}` was already recorded with different content",
            event.event_id
        )))
    }
}

/// Appends shipment `id` to the relay queue of `shard`; returns its slot.
fn enqueue<B: Bucket>(b: &B, shard: usize, id: Uuid) -> Result<i64> {
    let m = b.increment(&outbox_key(shard, "tail"), 1)?;
    b.set(&slot_key(shard, m), &encode(&id))?;
    Ok(m)
}

/// Queues shipment `id` for the relay again (after a failed immediate report: the slot written
/// before the commit may already have been consumed by a relay that ran in between).
pub fn requeue<S: Shards>(shards: &S, id: Uuid) -> Result<i64> {
    let shard = shard_of_shipment(id);
    enqueue(shards.shard(shard)?, shard, id)
}

/// Removes the acknowledged report of `event_id` from shipment `id` (compare-and-swap), and
/// its queue slot when given.
pub fn acknowledge<S: Shards>(
    shards: &S,
    id: Uuid,
    event_id: &str,
    slot: Option<i64>,
) -> Result<()> {
    let shard = shard_of_shipment(id);
    let b = shards.shard(shard)?;
    let skey = state_key(id);
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let (cas, current) = b.cas_read(&skey)?;
        let Some(current) = current else {
            return Ok(());
        };
        let mut state: State = decode(&skey, &current)?;
        let before = state.reports.len();
        state.reports.retain(|r| r.event_id != event_id);
        if state.reports.len() == before || b.cas_commit(&skey, cas, &encode(&state))? {
            if let Some(m) = slot {
                b.delete(&slot_key(shard, m))?;
            }
            return Ok(());
        }
        shards.pause(attempt);
    }
    Err(Error::Contention)
}

/// A window of the relay queue of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub shard: usize,
    pub head: i64,
    pub end: i64,
    /// Distinct shipments named by the window's slots.
    pub shipments: Vec<Uuid>,
}

/// Reads up to `limit` queue slots of `shard` after its head.
pub fn outbox_window<S: Shards>(shards: &S, shard: usize, limit: i64) -> Result<Window> {
    let b = shards.shard(shard)?;
    let head_key = outbox_key(shard, "head");
    let head: i64 = match b.get(&head_key)? {
        Some(v) => decode(&head_key, &v)?,
        None => 0,
    };
    // `increment` by 0 reads the counter in the store's own encoding (Redis and SQLite differ).
    let tail = b.increment(&outbox_key(shard, "tail"), 0)?;
    let end = tail.min(head + limit);
    let keys: Vec<String> = (head + 1..=end).map(|m| slot_key(shard, m)).collect();
    let mut shipments = Vec::new();
    for (key, value) in keys.iter().zip(b.get_many(&keys)?) {
        if let Some(v) = value {
            let id: Uuid = decode(key, &v)?;
            if !shipments.contains(&id) {
                shipments.push(id);
            }
        }
    }
    Ok(Window {
        shard,
        head,
        end,
        shipments,
    })
}

/// Finishes a window: shipments in `still_pending` go back to the queue's tail, then the
/// head moves past the window (compare-and-swap: a concurrent relay's move wins) and the
/// window's slots are deleted.
pub fn outbox_advance<S: Shards>(
    shards: &S,
    window: &Window,
    still_pending: &[Uuid],
) -> Result<()> {
    let b = shards.shard(window.shard)?;
    for id in still_pending {
        enqueue(b, window.shard, *id)?;
    }
    let head_key = outbox_key(window.shard, "head");
    let (cas, current) = b.cas_read(&head_key)?;
    let current: i64 = match current {
        Some(v) => decode(&head_key, &v)?,
        None => 0,
    };
    if current == window.head && b.cas_commit(&head_key, cas, &encode(&window.end))? {
        for m in window.head + 1..=window.end {
            b.delete(&slot_key(window.shard, m))?;
        }
    }
    Ok(())
}

/// Every shard index, for the relay.
pub fn all_shards() -> std::ops::Range<usize> {
    0..SHARDS
}

#[cfg(test)]
mod tests;

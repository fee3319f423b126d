//! The relay queue: per label, a counter (`tail`), a position (`head`) and one slot per entry
//! naming a shipment with reports the order service has not acknowledged yet.

use uuid::Uuid;

use super::kv::{Bucket, Shards};
use super::{MAX_CAS_ATTEMPTS, State, decode, encode, read, shard_of_shipment, state_key};
use crate::domain::EventId;
use crate::error::{Error, Result};

fn outbox_key(shard: usize, what: &str) -> String {
    format!("dlv:outbox:{shard}:{what}")
}

pub(super) fn slot_key(shard: usize, m: i64) -> String {
    outbox_key(shard, &format!("slot:{m}"))
}

/// Appends shipment `id` to the relay queue of `shard`; returns its slot.
pub(super) fn enqueue<B: Bucket>(b: &B, shard: usize, id: Uuid) -> Result<i64> {
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
    event_id: &EventId,
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
        state.reports.retain(|r| r.event_id != *event_id);
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
    let head: i64 = read(b, &outbox_key(shard, "head"))?.unwrap_or(0);
    // `increment` by 0 reads the counter in the store's own encoding (Redis and SQLite differ).
    let tail = b.increment(&outbox_key(shard, "tail"), 0)?;
    let end = tail.min(head + limit);
    let mut shipments = Vec::new();
    for m in head + 1..=end {
        if let Some(id) = read::<_, Uuid>(b, &slot_key(shard, m))?
            && !shipments.contains(&id)
        {
            shipments.push(id);
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

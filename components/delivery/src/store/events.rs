//! Recording an event on a shipment, and cancelling one.
//!
//! **Recording** ([`record_event`]): the body is written first into a fresh slot (`increment`
//! on the counter, so concurrent writers never share one), then the state key is advanced with
//! compare-and-swap, re-judging the state machine, the history's cap and the event id against
//! the ids already applied on every attempt. Every swap is read back ([`Bucket::cas_commit`]):
//! Spin's Redis store reports success for a swap its `WATCH` aborted, so only the slot number
//! found in the state says whose write landed. The swap is the commit point: the event id set,
//! the status and the outbox entry change together or not at all, so concurrent writers lose no
//! event, retries of one `event_id` land once, and a refused event leaves nothing reachable
//! (its slot body is deleted). A body whose commit never happened (crash) is never referenced
//! by the state and so never shown.
//!
//! **Cancelling** ([`cancel`]) is recording one more event, [`NewEvent::cancellation`], by the
//! same protocol: a cancel and a `picked_up` scan racing on a pending shipment both swap the
//! same state key, the first swap that lands wins, and the other, re-judged against the new
//! state, is refused by the state machine (409). A repeated cancel is a duplicate of the
//! cancellation's fixed event id and changes nothing.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[cfg(test)]
use marketplace_shared::ShipmentStatus;

use super::kv::{Bucket, Shards};
use super::outbox::{enqueue, slot_key};
use super::{
    Applied, MAX_CAS_ATTEMPTS, Public, Report, State, decode, encode, event_key, read, seq_key,
    shard_of_shipment, state_key,
};
use crate::domain::NewEvent;
use crate::domain::event::has_room;
use crate::domain::status::{Effect, order_report};
use crate::error::{Error, Result};

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

/// How one compare-and-swap attempt ended.
enum Attempt {
    /// Our event is in the state, with the report it recorded.
    Landed(Option<Report>),
    /// Another attempt recorded this `event_id` meanwhile (with the same content).
    Duplicate,
    /// Another writer got in first: read again.
    Lost,
}

/// Whether `state` takes `event` (a duplicate of an applied one is decided before this).
fn judge(state: &State, event: &NewEvent) -> Result<Effect> {
    if !has_room(state.events.len()) {
        return Err(Error::HistoryFull);
    }
    state
        .progress
        .decide(event.status, event.occurred_at)
        .map_err(Error::Transition)
}

/// Records a carrier event on shipment `id` (see the module documentation for the protocol).
pub fn record_event<S: Shards>(shards: &S, id: Uuid, event: &NewEvent) -> Result<Recorded> {
    let shard = shard_of_shipment(id);
    let b = shards.shard(shard)?;
    let skey = state_key(id);

    // Cheap refusals first, before anything is written.
    let state: State = read(b, &skey)?.ok_or(Error::NotFound)?;
    if let Some(n) = state.applied(&event.event_id) {
        return duplicate(b, id, n, event);
    }
    judge(&state, event)?;

    // The body, in a slot of its own.
    let n = b.increment(&seq_key(id), 1)?;
    let ekey = event_key(id, n);
    b.set(&ekey, &encode(event))?;

    // A relay queue entry before the commit, so that a committed report is always queued.
    let report_status = order_report(event.status);
    let slot = match report_status.map(|_| enqueue(b, shard, id)).transpose() {
        Ok(slot) => slot,
        Err(e) => {
            let _ = b.delete(&ekey);
            return Err(e);
        }
    };
    // Undoes what this attempt wrote: the body (`keep_body`: it is committed) and the slot.
    let undo = |keep_body: bool, keep_slot: bool| {
        if !keep_body {
            let _ = b.delete(&ekey);
        }
        if let (Some(m), false) = (slot, keep_slot) {
            let _ = b.delete(&slot_key(shard, m));
        }
    };

    // The report of the latest attempt that swapped: if that swap turns out to have landed
    // (our slot is in the state) after its read-back missed it, this is what it recorded.
    let mut swapped_report: Option<Report> = None;
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let step = (|| -> Result<Attempt> {
            let (cas, current) = b.cas_read(&skey)?;
            let current: State = match current {
                Some(v) => decode(&skey, &v)?,
                None => return Err(Error::NotFound),
            };
            match current.applied(&event.event_id) {
                // Our own write, built upon by another writer before we read it back.
                Some(existing) if existing == n => {
                    return Ok(Attempt::Landed(swapped_report.clone()));
                }
                Some(existing) => {
                    return duplicate(b, id, existing, event).map(|_| Attempt::Duplicate);
                }
                None => {}
            }
            let effect = judge(&current, event)?;
            let mut next = current.clone();
            next.progress = current
                .progress
                .apply(effect, event.status, event.occurred_at);
            next.updated_at = next.updated_at.max(event.recorded_at);
            next.events.push(Applied {
                id: event.event_id.clone(),
                n,
                public: Some(Public::from(event)),
            });
            let report = match (effect, report_status) {
                (Effect::Advance, Some(status)) => Some(Report {
                    event_id: event.event_id.clone(),
                    status,
                    occurred_at: event.occurred_at,
                }),
                _ => None,
            };
            next.reports.extend(report.clone());
            swapped_report.clone_from(&report);
            Ok(if b.cas_commit(&skey, cas, &encode(&next))? {
                Attempt::Landed(report)
            } else {
                Attempt::Lost
            })
        })();
        match step {
            Ok(Attempt::Landed(report)) => {
                undo(true, report.is_some());
                return Ok(Recorded::New {
                    slot: report.as_ref().and(slot),
                    report,
                });
            }
            Ok(Attempt::Duplicate) => {
                undo(false, false);
                return Ok(Recorded::Duplicate);
            }
            Ok(Attempt::Lost) => shards.pause(attempt),
            Err(e) => {
                undo(false, false);
                return Err(e);
            }
        }
    }
    undo(false, false);
    Err(Error::Contention)
}

/// Cancels shipment `id` at the order service's request: `pending → cancelled`, idempotent
/// (see the module documentation). `Err(Transition)` once the shipment has left `pending`.
pub fn cancel<S: Shards>(shards: &S, id: Uuid, now: DateTime<Utc>) -> Result<()> {
    record_event(shards, id, &NewEvent::cancellation(now)).map(|_| ())
}

/// A retry of an applied event: accepted when it says the same thing, 409 otherwise.
fn duplicate<B: Bucket>(b: &B, id: Uuid, n: i64, event: &NewEvent) -> Result<Recorded> {
    let stored = super::event_body(b, id, n)?;
    if stored.same_event_as(event) {
        Ok(Recorded::Duplicate)
    } else {
        Err(Error::Conflict(format!(
            "event_id `{}` was already recorded with different content",
            event.event_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use chrono::Duration;

    use super::super::kv::memory::MemShards;
    use super::super::tests::{all_keys, created, event, now};
    use super::super::{load, load_tracking};
    use super::*;
    use crate::domain::MAX_EVENTS_PER_SHIPMENT;

    /// A shipment with a full history: a pickup and in-transit scans up to the cap.
    fn full(shards: &MemShards) -> Uuid {
        let id = created(shards).record.id;
        let t0 = now() - Duration::hours(10);
        for i in 0..MAX_EVENTS_PER_SHIPMENT {
            let status = if i == 0 { "picked_up" } else { "in_transit" };
            let at = Some(t0 + Duration::seconds(i as i64));
            record_event(shards, id, &event(&format!("e{i}"), status, at)).unwrap();
        }
        id
    }

    #[test]
    fn a_full_history_refuses_the_next_event_writes_nothing_and_still_takes_repeats() {
        let shards = MemShards::default();
        let id = full(&shards);
        let before = all_keys(&shards);

        let next = record_event(&shards, id, &event("one-more", "in_transit", None)).unwrap_err();
        // A late scan, a return and a cancel are refused just the same.
        let late = event("late", "in_transit", Some(now() - Duration::hours(20)));
        let late = record_event(&shards, id, &late).unwrap_err();
        let returned = record_event(&shards, id, &event("ret", "returned", None)).unwrap_err();
        let first = event("e0", "picked_up", None);
        let repeat = record_event(&shards, id, &first).unwrap();

        for e in [next, late, returned] {
            assert!(matches!(e, Error::HistoryFull), "{e:?}");
        }
        assert_eq!(repeat, Recorded::Duplicate);
        assert_eq!(all_keys(&shards), before, "nothing written");
        let s = load(&shards, id).unwrap().unwrap();
        assert_eq!(s.history.len(), MAX_EVENTS_PER_SHIPMENT);
    }

    #[test]
    fn tracking_reads_the_index_and_the_state_only_however_long_the_history() {
        let shards = MemShards::default();
        let id = full(&shards);
        let s = load(&shards, id).unwrap().unwrap();
        let gets = || -> usize {
            shards
                .buckets
                .iter()
                .map(|b| b.gets.load(Ordering::SeqCst))
                .sum()
        };

        let before = gets();
        let t = load_tracking(&shards, &s.record.tracking_number)
            .unwrap()
            .unwrap();

        assert_eq!(gets() - before, 2);
        assert_eq!(t.status, s.state.progress.status);
        let shown: Vec<_> = t
            .history
            .iter()
            .map(|e| (e.status, e.occurred_at))
            .collect();
        let full: Vec<_> = s
            .history
            .iter()
            .map(|e| (e.status, e.occurred_at))
            .collect();
        assert_eq!(shown, full);
    }

    #[test]
    fn tracking_reads_the_bodies_of_a_state_written_before_entries_carried_their_public_part() {
        let shards = MemShards::default();
        let s = created(&shards);
        let id = s.record.id;
        let t0 = now() - Duration::hours(1);
        let mut e2 = event("e2", "in_transit", Some(t0 + Duration::minutes(5)));
        e2.location = Some("Lyon hub".into());
        record_event(&shards, id, &event("e1", "picked_up", Some(t0))).unwrap();
        record_event(&shards, id, &e2).unwrap();
        // The older stored shape: applied entries as `{id, n}`.
        let b = shards.shard(shard_of_shipment(id)).unwrap();
        let mut state: State = read(b, &state_key(id)).unwrap().unwrap();
        state.events.iter_mut().for_each(|a| a.public = None);
        b.set(&state_key(id), &encode(&state)).unwrap();

        let t = load_tracking(&shards, &s.record.tracking_number)
            .unwrap()
            .unwrap();

        let shown: Vec<_> = t
            .history
            .iter()
            .map(|e| (e.status, e.location.clone()))
            .collect();
        assert_eq!(
            shown,
            [
                (ShipmentStatus::PickedUp, None),
                (ShipmentStatus::InTransit, Some("Lyon hub".to_string()))
            ]
        );
    }
}

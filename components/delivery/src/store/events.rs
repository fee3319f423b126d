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
//! **Cancelling** is recording one more event, [`NewEvent::cancellation`]: a cancel and a
//! `picked_up` scan racing on a pending shipment both swap the same state key, the first swap
//! that lands wins, and the other, re-judged against the new state, is refused (409). A
//! repeated cancel is a duplicate of the cancellation's fixed event id and changes nothing.

use uuid::Uuid;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The event joined the history, with the outbox entry it created, if any, and that
    /// entry's relay queue slot.
    New(Option<(Report, i64)>),
    /// The same `event_id` was already recorded (a retry): nothing changed.
    Duplicate,
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

    let n = b.increment(&seq_key(id), 1)?;
    let ekey = event_key(id, n);
    b.set(&ekey, &encode(event))?;

    // A relay queue entry before the commit, so that a committed report is always queued.
    let report_status = order_report(event.status);
    let slot = report_status
        .map(|_| enqueue(b, shard, id))
        .transpose()
        .inspect_err(|_| drop(b.delete(&ekey)))?;
    let landed = |report: Option<Report>| Recorded::New(report.zip(slot));
    // Undoes what this call wrote: the body (`keep_body`: it is committed) and the slot.
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
        // `None`: another writer got in first, read again.
        let step = (|| -> Result<Option<Recorded>> {
            let (cas, current) = b.cas_read(&skey)?;
            let current: State = decode(&skey, &current.ok_or(Error::NotFound)?)?;
            match current.applied(&event.event_id) {
                // Our own write, built upon by another writer before we read it back.
                Some(existing) if existing == n => return Ok(Some(landed(swapped_report.clone()))),
                Some(existing) => return duplicate(b, id, existing, event).map(Some),
                None => {}
            }
            let effect = judge(&current, event)?;
            let mut next = current;
            next.progress = next.progress.apply(effect, event.status, event.occurred_at);
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
            Ok(b.cas_commit(&skey, cas, &encode(&next))?
                .then(|| landed(report)))
        })();
        let Some(outcome) = step.transpose() else {
            shards.pause(attempt);
            continue;
        };
        match &outcome {
            Ok(Recorded::New(queued)) => undo(true, queued.is_some()),
            _ => undo(false, false),
        }
        return outcome;
    }
    undo(false, false);
    Err(Error::Contention)
}

/// A retry of an applied event: accepted when it says the same thing, 409 otherwise.
fn duplicate<B: Bucket>(b: &B, id: Uuid, n: i64, event: &NewEvent) -> Result<Recorded> {
    let stored = super::event_body(b, id, n)?;
    if stored.same_event_as(event) {
        Ok(Recorded::Duplicate)
    } else {
        Err(Error::Conflict(format!(
            "event_id `{}` was already recorded with different content",
            event.event_id.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use chrono::Duration;
    use marketplace_shared::ShipmentStatus;

    use super::super::kv::memory::MemShards;
    use super::super::load_tracking;
    use super::super::tests::*;
    use super::*;
    use crate::domain::MAX_EVENTS_PER_SHIPMENT;

    /// A shipment with a full history: a pickup and in-transit scans up to the cap.
    fn full() -> (MemShards, Uuid) {
        let (shards, id) = one_shipment();
        let mut statuses = vec!["in_transit"; MAX_EVENTS_PER_SHIPMENT];
        statuses[0] = "picked_up";
        let t0 = now() - Duration::hours(10);
        record_steps(&shards, id, t0, Duration::seconds(1), &statuses);
        (shards, id)
    }

    #[test]
    fn a_full_history_refuses_the_next_event_writes_nothing_and_still_takes_repeats() {
        let (shards, id) = full();
        // The next scan, a late scan, a return and a cancel are refused just the same.
        for e in [
            event("one-more", "in_transit", None),
            event("late", "in_transit", Some(now() - Duration::hours(20))),
            event("ret", "returned", None),
            NewEvent::cancellation(now()),
        ] {
            refused(&shards, id, &e, "HistoryFull");
        }
        repeated(&shards, id, &event("e0", "picked_up", None));
        assert_eq!(loaded(&shards, id).history.len(), MAX_EVENTS_PER_SHIPMENT);
    }

    #[test]
    fn tracking_reads_the_index_and_the_state_only_however_long_the_history() {
        let (shards, id) = full();
        let s = loaded(&shards, id);
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
        let shown = t.history.iter().map(|e| (e.status, e.occurred_at));
        let full = s.history.iter().map(|e| (e.status, e.occurred_at));
        assert_eq!(shown.collect::<Vec<_>>(), full.collect::<Vec<_>>());
    }

    #[test]
    fn tracking_reads_the_bodies_of_a_state_written_before_entries_carried_their_public_part() {
        let (shards, id) = one_shipment();
        let number = loaded(&shards, id).record.tracking_number;
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

        let t = load_tracking(&shards, &number).unwrap().unwrap();

        let shown: Vec<_> = t
            .history
            .iter()
            .map(|e| (e.status, e.location.as_deref()))
            .collect();
        let want = [
            (ShipmentStatus::PickedUp, None),
            (ShipmentStatus::InTransit, Some("Lyon hub")),
        ];
        assert_eq!(shown, want);
    }
}

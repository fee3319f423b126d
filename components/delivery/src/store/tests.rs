//! The storage protocol against an in-memory store with the real stores' atomicity, including
//! real threads racing on one shipment.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use chrono::Duration;
use marketplace_shared::ShipmentStatus;

use super::kv::memory::MemShards;
use super::*;
use crate::domain::EventInput;
use crate::domain::status::is_terminal;

pub(super) fn now() -> DateTime<Utc> {
    crate::domain::event::to_millis(Utc::now())
}

pub(super) fn event(id: &str, status: &str, occurred_at: Option<DateTime<Utc>>) -> NewEvent {
    EventInput {
        event_id: id.into(),
        status: status.into(),
        occurred_at: occurred_at.map(marketplace_shared::time::format),
        location: None,
        note: None,
    }
    .parse(Utc::now())
    .unwrap()
}

/// Creates the shipment of `order` for `buyer`.
fn create_for(shards: &MemShards, order: &str, buyer: Uuid) -> Result<Shipment> {
    let new = NewShipment::parse(
        &serde_json::from_value(serde_json::json!({
            "order_id": order, "buyer_id": buyer.to_string(),
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris",
                                  "postal_code": "75001", "country": "FR"},
            "items": [{"product_id": Uuid::now_v7().to_string(), "title": "Lamp", "quantity": 1}]
        }))
        .unwrap(),
    )
    .unwrap();
    create(shards, &new, now())
}

/// Records event `event_id` with `status`, happening now, on shipment `id`.
pub(super) fn scan(shards: &MemShards, id: Uuid, event_id: &str, status: &str) -> Result<Recorded> {
    record_event(shards, id, &event(event_id, status, None))
}

/// Records `e` on shipment `id`, which must refuse it with the error variant `want` and write
/// nothing.
pub(super) fn refused(shards: &MemShards, id: Uuid, e: &NewEvent, want: &str) {
    let before = all_keys(shards);
    let err = record_event(shards, id, e).unwrap_err();
    let what = e.event_id.as_str();
    assert!(format!("{err:?}").starts_with(want), "{what}: {err:?}");
    assert_eq!(all_keys(shards), before, "{what}: nothing written");
}

/// Records `e` again on shipment `id`: a duplicate, which writes nothing.
pub(super) fn repeated(shards: &MemShards, id: Uuid, e: &NewEvent) {
    let before = all_keys(shards);
    assert_eq!(record_event(shards, id, e).unwrap(), Recorded::Duplicate);
    assert_eq!(all_keys(shards), before, "nothing written");
}

/// A store holding one new shipment, and the shipment's id.
pub(super) fn one_shipment() -> (MemShards, Uuid) {
    let shards = MemShards::default();
    let s = create_for(&shards, "o-1", Uuid::now_v7()).unwrap();
    (shards, s.record.id)
}

/// The stored shipment `id`, which must exist.
pub(super) fn loaded(shards: &MemShards, id: Uuid) -> Shipment {
    load(shards, id).unwrap().unwrap()
}

/// Records `statuses` as events `e0`, `e1`, … that happened `step` apart from `t0`.
pub(super) fn record_steps(
    shards: &MemShards,
    id: Uuid,
    t0: DateTime<Utc>,
    step: Duration,
    statuses: &[&str],
) {
    for (i, status) in statuses.iter().enumerate() {
        let at = Some(t0 + step * i as i32);
        record_event(shards, id, &event(&format!("e{i}"), status, at)).unwrap();
    }
}

/// Runs `f(0)` … `f(n - 1)` on `n` threads at once; their results, in order.
fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let f = &f;
        let threads: Vec<_> = (0..n).map(|i| s.spawn(move || f(i))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// How many stored keys match `pred`.
fn count_keys(shards: &MemShards, pred: impl Fn(&str) -> bool) -> usize {
    all_keys(shards).iter().filter(|(k, _)| pred(k)).count()
}

pub(super) fn all_keys(shards: &MemShards) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = shards
        .buckets
        .iter()
        .flat_map(|b| b.map.lock().unwrap().clone())
        .collect();
    v.sort();
    v
}

#[test]
fn creating_twice_for_one_order_returns_the_first_shipment_and_another_buyer_is_refused() {
    let shards = MemShards::default();
    let buyer = Uuid::now_v7();
    let first = create_for(&shards, "o-1", buyer).unwrap();
    let before = all_keys(&shards);
    let again = create_for(&shards, "o-1", buyer).unwrap();
    assert_eq!(all_keys(&shards), before, "nothing more written");
    let json = |s: &Shipment| serde_json::to_value(&s.record).unwrap();
    assert_eq!(json(&first), json(&again));
    let number = &first.record.tracking_number;
    let tracked = load_tracking(&shards, number).unwrap().unwrap();
    assert_eq!(&tracked.number, number);
    assert_eq!(tracked.status, ShipmentStatus::Pending);
    let err = create_for(&shards, "o-1", Uuid::now_v7()).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

#[test]
fn concurrent_creations_for_one_order_leave_one_shipment_and_no_orphans() {
    let shards = MemShards::default();
    let buyer = Uuid::now_v7();
    let ids = race(8, |_| {
        create_for(&shards, "o-race", buyer).unwrap().record.id
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let records = count_keys(&shards, |k| {
        k.starts_with("dlv:s:") && !k.contains(":state")
    });
    let tracks = count_keys(&shards, |k| k.starts_with("dlv:track:"));
    assert_eq!((records, tracks), (1, 1));
}

const TO_THE_DOOR: [&str; 3] = ["picked_up", "in_transit", "out_for_delivery"];

#[test]
fn a_late_event_is_listed_in_occurrence_order_and_never_moves_the_status_back() {
    let (shards, id) = one_shipment();
    let t0 = now() - Duration::hours(3);
    record_steps(&shards, id, t0, Duration::minutes(30), &TO_THE_DOOR);
    // `late` happened between `e1` and `e2` and arrives last.
    let late = event("late", "in_transit", Some(t0 + Duration::minutes(45)));
    record_event(&shards, id, &late).unwrap();
    let s = loaded(&shards, id);
    let ids: Vec<_> = s.history.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e0", "e1", "late", "e2"]);
    assert_eq!(s.state.progress.status, ShipmentStatus::OutForDelivery);
}

#[test]
fn an_illegal_move_an_unknown_shipment_or_a_reused_event_id_is_refused_and_writes_nothing() {
    let (shards, id) = one_shipment();
    refused(&shards, id, &event("e1", "delivered", None), "Transition");
    for e in [
        event("e1", "picked_up", None),
        NewEvent::cancellation(now()),
    ] {
        refused(&shards, Uuid::now_v7(), &e, "NotFound");
    }
    // A repeated event id lands once; a different body under it is refused.
    let first = scan(&shards, id, "e1", "picked_up").unwrap();
    assert!(matches!(first, Recorded::New(_)), "{first:?}");
    repeated(&shards, id, &event("e1", "picked_up", None));
    refused(&shards, id, &event("e1", "returned", None), "Conflict");
    assert_eq!(loaded(&shards, id).history.len(), 1);
    // A picked-up shipment cannot be cancelled.
    refused(&shards, id, &NewEvent::cancellation(now()), "Transition");
}

#[test]
fn many_threads_scanning_one_shipment_all_land_exactly_once() {
    let (shards, id) = one_shipment();
    scan(&shards, id, "pickup", "picked_up").unwrap();
    race(16, |t| {
        for i in 0..10 {
            let e = event(&format!("scan-{t}-{i}"), "in_transit", None);
            // Every scan is sent twice, as a retrying carrier would.
            record_event(&shards, id, &e).unwrap();
            record_event(&shards, id, &e).unwrap();
        }
    });
    let s = loaded(&shards, id);
    assert_eq!(s.history.len(), 161);
    let ids: BTreeSet<_> = s.history.iter().map(|e| &e.event_id).collect();
    assert_eq!(ids.len(), 161);
    assert_eq!(s.state.progress.status, ShipmentStatus::InTransit);
    // Losing attempts removed their bodies: exactly one body per event.
    assert_eq!(count_keys(&shards, |k| k.contains(":e:")), 161);
}

#[test]
fn racing_terminal_events_let_exactly_one_win() {
    let (shards, id) = one_shipment();
    let t0 = now() - Duration::hours(1);
    record_steps(&shards, id, t0, Duration::minutes(1), &TO_THE_DOOR);
    let ends = ["delivered", "returned", "failed_attempt", "delivered"];
    let results = race(ends.len(), |i| {
        record_event(&shards, id, &event(&format!("end{i}"), ends[i], None))
    });
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    let s = loaded(&shards, id);
    // Whatever won, the recorded sequence is legal step by step.
    let mut p = Progress::default();
    for e in &s.history {
        let effect = p.decide(e.status, e.occurred_at).unwrap();
        p = p.apply(effect, e.status, e.occurred_at);
    }
    assert_eq!(p.status, s.state.progress.status);
    let terminal = s.history.iter().filter(|e| is_terminal(e.status));
    assert_eq!(terminal.count(), 1);
}

#[test]
fn a_pending_shipment_is_cancelled_once_and_nothing_is_recorded_after() {
    let (shards, id) = one_shipment();
    record_event(&shards, id, &NewEvent::cancellation(now())).unwrap();
    // Idempotent: a repeat changes nothing at all.
    let again = NewEvent::cancellation(now() + Duration::seconds(5));
    repeated(&shards, id, &again);
    let s = loaded(&shards, id);
    assert_eq!(s.state.progress.status, ShipmentStatus::Cancelled);
    assert_eq!(s.history.len(), 1);
    let cancel_id = s.history[0].event_id.as_str();
    assert_eq!(cancel_id, crate::domain::CANCEL_EVENT_ID);
    assert!(s.state.reports.is_empty(), "the order service is not told");
    // Neither a scan nor a late scan lands on it.
    for e in [
        event("e1", "picked_up", None),
        event("e2", "in_transit", Some(now() - Duration::hours(2))),
        event("e3", "returned", None),
    ] {
        refused(&shards, id, &e, "Transition");
    }
}

#[test]
fn a_cancel_racing_a_pickup_lets_exactly_one_win() {
    for round in 0..50 {
        let (shards, id) = one_shipment();
        let (cancelled, picked) = std::thread::scope(|s| {
            let shards = &shards;
            let c = s.spawn(move || record_event(shards, id, &NewEvent::cancellation(now())));
            let p = s.spawn(move || scan(shards, id, "pickup", "picked_up"));
            (c.join().unwrap(), p.join().unwrap())
        });
        let s = loaded(&shards, id);
        let (want, loser) = match (cancelled, picked) {
            (Ok(_), Err(loser)) => (ShipmentStatus::Cancelled, loser),
            (Err(loser), Ok(_)) => (ShipmentStatus::PickedUp, loser),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert!(matches!(loser, Error::Transition(_)), "{loser:?}");
        assert_eq!(s.state.progress.status, want);
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.history[0].status, want);
        // The loser's body is gone: one event body in the store.
        assert_eq!(count_keys(&shards, |k| k.contains(":e:")), 1);
    }
}

#[test]
fn a_pickup_creates_a_report_that_is_queued_and_acknowledged_and_a_scan_creates_none() {
    let (shards, id) = one_shipment();
    let Recorded::New(Some((report, slot))) = scan(&shards, id, "e1", "picked_up").unwrap() else {
        panic!("no report queued")
    };
    assert_eq!(report.status, crate::domain::OrderReport::Shipped);
    // An in-transit scan creates none.
    assert_eq!(
        scan(&shards, id, "e2", "in_transit").unwrap(),
        Recorded::New(None)
    );
    let queued = || outbox_window(&shards, shard_of_shipment(id), 100).unwrap();
    assert_eq!(queued().shipments, vec![id]);
    acknowledge(&shards, id, &report.event_id, Some(slot)).unwrap();
    assert!(loaded(&shards, id).state.reports.is_empty());
    assert!(queued().shipments.is_empty());
}

#[test]
fn the_relay_queue_moves_on_and_keeps_what_is_still_pending() {
    let (shards, id) = one_shipment();
    scan(&shards, id, "e1", "picked_up").unwrap();
    let window = || outbox_window(&shards, shard_of_shipment(id), 100).unwrap();
    let w = window();
    outbox_advance(&shards, &w, &[id]).unwrap();
    let w2 = window();
    assert_eq!(w2.head, w.end);
    assert_eq!(w2.shipments, vec![id]);
    outbox_advance(&shards, &w2, &[]).unwrap();
    assert!(window().shipments.is_empty());
    assert_eq!(count_keys(&shards, |k| k.contains(":slot:")), 0);
}

#[test]
fn a_store_failure_surfaces_as_a_store_error() {
    let (shards, id) = one_shipment();
    for b in &shards.buckets {
        b.broken.store(true, Ordering::SeqCst);
    }
    let err = scan(&shards, id, "e1", "picked_up").unwrap_err();
    assert!(matches!(err, Error::Store { .. }));
}

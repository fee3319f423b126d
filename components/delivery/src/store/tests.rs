//! The storage protocol against an in-memory store with the real stores' atomicity, including
//! real threads racing on one shipment.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Duration;
use marketplace_shared::ShipmentStatus;

use super::kv::memory::MemShards;
use super::*;
use crate::domain::{EventInput, ShipmentInput};

pub(super) fn now() -> DateTime<Utc> {
    crate::domain::event::to_millis(Utc::now())
}

pub(super) fn random() -> impl FnMut() -> u64 {
    static SEED: AtomicU64 = AtomicU64::new(1);
    || {
        SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
}

pub(super) fn new_shipment(order: &str, buyer: Uuid) -> NewShipment {
    serde_json::from_value::<ShipmentInput>(serde_json::json!({
        "order_id": order, "buyer_id": buyer.to_string(),
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris",
                              "postal_code": "75001", "country": "FR"},
        "items": [{"product_id": Uuid::now_v7().to_string(), "title": "Lamp", "quantity": 1}]
    }))
    .unwrap()
    .parse()
    .unwrap()
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

fn create_for(shards: &MemShards, order: &str, buyer: Uuid) -> Result<(Shipment, bool)> {
    create(shards, &new_shipment(order, buyer), now(), random())
}

pub(super) fn created(shards: &MemShards) -> Shipment {
    create_for(shards, "o-1", Uuid::now_v7()).unwrap().0
}

/// How many stored keys match `pred`.
fn count_keys(shards: &MemShards, pred: impl Fn(&str) -> bool) -> usize {
    all_keys(shards).iter().filter(|(k, _)| pred(k)).count()
}

pub(super) fn all_keys(shards: &MemShards) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = shards
        .buckets
        .iter()
        .flat_map(|b| {
            b.map
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn creating_twice_for_one_order_returns_the_first_shipment() {
    let shards = MemShards::default();
    let buyer = Uuid::now_v7();
    let (first, was_new) = create_for(&shards, "o-1", buyer).unwrap();
    assert!(was_new);
    let (again, was_new) = create_for(&shards, "o-1", buyer).unwrap();
    assert!(!was_new);
    assert_eq!(first.record, again.record);
    let number = &first.record.tracking_number;
    let tracked = load_tracking(&shards, number).unwrap().unwrap();
    assert_eq!(
        (&tracked.number, tracked.status),
        (number, ShipmentStatus::Pending)
    );
}

#[test]
fn the_same_order_for_another_buyer_is_a_conflict() {
    let shards = MemShards::default();
    create_for(&shards, "o-1", Uuid::now_v7()).unwrap();
    let err = create_for(&shards, "o-1", Uuid::now_v7()).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
}

#[test]
fn concurrent_creations_for_one_order_leave_one_shipment_and_no_orphans() {
    let shards = MemShards::default();
    let buyer = Uuid::now_v7();
    let ids: Vec<Uuid> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| create_for(&shards, "o-race", buyer).unwrap().0.record.id))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let records = count_keys(&shards, |k| {
        k.starts_with("dlv:s:") && !k.contains(":state")
    });
    let tracks = count_keys(&shards, |k| k.starts_with("dlv:track:"));
    assert_eq!((records, tracks), (1, 1));
}

#[test]
fn events_advance_the_status_and_are_listed_in_occurrence_order() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let t0 = now() - Duration::hours(3);
    record_event(&shards, id, &event("e1", "picked_up", Some(t0))).unwrap();
    record_event(
        &shards,
        id,
        &event("e3", "in_transit", Some(t0 + Duration::hours(2))),
    )
    .unwrap();
    // Late: happened between the two, arrives last.
    record_event(
        &shards,
        id,
        &event("e2", "in_transit", Some(t0 + Duration::hours(1))),
    )
    .unwrap();
    let s = load(&shards, id).unwrap().unwrap();
    let ids: Vec<_> = s.history.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    assert_eq!(s.state.progress.status, ShipmentStatus::InTransit);
}

#[test]
fn a_late_event_never_moves_the_status_back() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let t0 = now() - Duration::hours(3);
    for (i, status) in ["picked_up", "in_transit", "out_for_delivery"]
        .iter()
        .enumerate()
    {
        let e = event(
            &format!("e{i}"),
            status,
            Some(t0 + Duration::minutes(i as i64 * 30)),
        );
        record_event(&shards, id, &e).unwrap();
    }
    let late = event("late", "in_transit", Some(t0 + Duration::minutes(45)));
    record_event(&shards, id, &late).unwrap();
    let s = load(&shards, id).unwrap().unwrap();
    assert_eq!(s.state.progress.status, ShipmentStatus::OutForDelivery);
    assert_eq!(s.history.len(), 4);
}

#[test]
fn an_illegal_transition_writes_nothing() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let before = all_keys(&shards);
    let err = record_event(&shards, id, &event("e1", "delivered", None)).unwrap_err();
    assert!(matches!(err, Error::Transition(_)), "{err:?}");
    assert_eq!(all_keys(&shards), before);
}

#[test]
fn an_event_for_an_unknown_shipment_is_not_found_and_writes_nothing() {
    let shards = MemShards::default();
    let err = record_event(&shards, Uuid::now_v7(), &event("e1", "picked_up", None)).unwrap_err();
    assert!(matches!(err, Error::NotFound));
    assert!(all_keys(&shards).is_empty());
}

#[test]
fn a_repeated_event_id_lands_once_and_a_different_body_under_it_is_refused() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let e = event("e1", "picked_up", None);
    assert!(matches!(
        record_event(&shards, id, &e).unwrap(),
        Recorded::New { .. }
    ));
    assert_eq!(record_event(&shards, id, &e).unwrap(), Recorded::Duplicate);
    let other = event("e1", "returned", None);
    assert!(matches!(
        record_event(&shards, id, &other).unwrap_err(),
        Error::Conflict(_)
    ));
    assert_eq!(load(&shards, id).unwrap().unwrap().history.len(), 1);
}

#[test]
fn many_threads_scanning_one_shipment_all_land_exactly_once() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    record_event(&shards, id, &event("pickup", "picked_up", None)).unwrap();
    std::thread::scope(|s| {
        for t in 0..16 {
            let shards = &shards;
            s.spawn(move || {
                for i in 0..10 {
                    let e = event(&format!("scan-{t}-{i}"), "in_transit", None);
                    // Every scan is sent twice, as a retrying carrier would.
                    record_event(shards, id, &e).unwrap();
                    record_event(shards, id, &e).unwrap();
                }
            });
        }
    });
    let s = load(&shards, id).unwrap().unwrap();
    assert_eq!(s.history.len(), 161);
    let mut ids: Vec<_> = s.history.iter().map(|e| e.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 161);
    assert_eq!(s.state.progress.status, ShipmentStatus::InTransit);
    // Losing attempts removed their bodies: exactly one body per event.
    let bodies = count_keys(&shards, |k| k.contains(":e:"));
    assert_eq!(bodies, 161);
}

#[test]
fn racing_terminal_events_let_exactly_one_win() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let t0 = now() - Duration::hours(1);
    for (i, status) in ["picked_up", "in_transit", "out_for_delivery"]
        .iter()
        .enumerate()
    {
        let e = event(
            &format!("e{i}"),
            status,
            Some(t0 + Duration::minutes(i as i64)),
        );
        record_event(&shards, id, &e).unwrap();
    }
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ["delivered", "returned", "failed_attempt", "delivered"]
            .iter()
            .enumerate()
            .map(|(i, status)| {
                let shards = &shards;
                s.spawn(move || record_event(shards, id, &event(&format!("end{i}"), status, None)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1);
    let s = load(&shards, id).unwrap().unwrap();
    // Whatever won, the recorded sequence is legal step by step.
    let mut p = Progress::new();
    for e in &s.history {
        let effect = p.decide(e.status, e.occurred_at).unwrap();
        p = p.apply(effect, e.status, e.occurred_at);
    }
    assert_eq!(p.status, s.state.progress.status);
    let terminal = s
        .history
        .iter()
        .filter(|e| {
            matches!(
                e.status,
                ShipmentStatus::Delivered | ShipmentStatus::Returned
            )
        })
        .count();
    assert_eq!(terminal, 1);
}

#[test]
fn a_pending_shipment_is_cancelled_once_and_nothing_is_recorded_after() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    cancel(&shards, id, now()).unwrap();
    let before = all_keys(&shards);
    // Idempotent: a repeat changes nothing at all.
    cancel(&shards, id, now() + Duration::seconds(5)).unwrap();
    assert_eq!(all_keys(&shards), before);
    let s = load(&shards, id).unwrap().unwrap();
    assert_eq!(s.state.progress.status, ShipmentStatus::Cancelled);
    assert_eq!(s.history.len(), 1);
    assert_eq!(
        s.history[0].event_id.as_str(),
        crate::domain::CANCEL_EVENT_ID
    );
    assert!(s.state.reports.is_empty(), "the order service is not told");
    // Neither a scan nor a late scan lands on it, and nothing is left behind.
    for e in [
        event("e1", "picked_up", None),
        event("e2", "in_transit", Some(now() - Duration::hours(2))),
        event("e3", "returned", None),
    ] {
        let err = record_event(&shards, id, &e).unwrap_err();
        assert!(matches!(err, Error::Transition(_)), "{err:?}");
    }
    assert_eq!(all_keys(&shards), before);
}

#[test]
fn a_picked_up_shipment_cannot_be_cancelled() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    record_event(&shards, id, &event("e1", "picked_up", None)).unwrap();
    let before = all_keys(&shards);
    let err = cancel(&shards, id, now()).unwrap_err();
    assert!(matches!(err, Error::Transition(_)), "{err:?}");
    assert_eq!(all_keys(&shards), before);
    assert!(matches!(
        cancel(&shards, Uuid::now_v7(), now()).unwrap_err(),
        Error::NotFound
    ));
}

#[test]
fn a_cancel_racing_a_pickup_lets_exactly_one_win() {
    for round in 0..50 {
        let shards = MemShards::default();
        let id = created(&shards).record.id;
        let (cancelled, picked) = std::thread::scope(|s| {
            let shards = &shards;
            let c = s.spawn(move || cancel(shards, id, now()));
            let p = s.spawn(move || record_event(shards, id, &event("pickup", "picked_up", None)));
            (c.join().unwrap(), p.join().unwrap())
        });
        let s = load(&shards, id).unwrap().unwrap();
        let (want, loser) = match (cancelled, picked) {
            (Ok(()), Err(loser)) => (ShipmentStatus::Cancelled, loser),
            (Err(loser), Ok(_)) => (ShipmentStatus::PickedUp, loser),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert!(matches!(loser, Error::Transition(_)), "{loser:?}");
        assert_eq!(s.state.progress.status, want);
        assert_eq!(s.history.len(), 1);
        assert_eq!(s.history[0].status, want);
        // The loser's body is gone: one event body in the store.
        let bodies = count_keys(&shards, |k| k.contains(":e:"));
        assert_eq!(bodies, 1);
    }
}

#[test]
fn a_pickup_creates_a_report_that_is_queued_and_acknowledged() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    let Recorded::New { report, slot } =
        record_event(&shards, id, &event("e1", "picked_up", None)).unwrap()
    else {
        panic!("not recorded")
    };
    let report = report.unwrap();
    assert_eq!(report.status, crate::domain::OrderReport::Shipped);
    let shard = shard_of_shipment(id);
    let w = outbox_window(&shards, shard, 100).unwrap();
    assert_eq!(w.shipments, vec![id]);
    acknowledge(&shards, id, &report.event_id, slot).unwrap();
    let s = load(&shards, id).unwrap().unwrap();
    assert!(s.state.reports.is_empty());
    assert!(
        outbox_window(&shards, shard, 100)
            .unwrap()
            .shipments
            .is_empty()
    );
}

#[test]
fn the_relay_queue_moves_on_and_keeps_what_is_still_pending() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    record_event(&shards, id, &event("e1", "picked_up", None)).unwrap();
    let shard = shard_of_shipment(id);
    let w = outbox_window(&shards, shard, 100).unwrap();
    outbox_advance(&shards, &w, &[id]).unwrap();
    let w2 = outbox_window(&shards, shard, 100).unwrap();
    assert_eq!(w2.head, w.end);
    assert_eq!(w2.shipments, vec![id]);
    outbox_advance(&shards, &w2, &[]).unwrap();
    let w3 = outbox_window(&shards, shard, 100).unwrap();
    assert!(w3.shipments.is_empty());
    assert_eq!(count_keys(&shards, |k| k.contains(":slot:")), 0);
}

#[test]
fn in_transit_scans_create_no_report() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    record_event(&shards, id, &event("e1", "picked_up", None)).unwrap();
    let r = record_event(&shards, id, &event("e2", "in_transit", None)).unwrap();
    assert_eq!(
        r,
        Recorded::New {
            report: None,
            slot: None
        }
    );
}

#[test]
fn a_store_failure_surfaces_as_a_store_error() {
    let shards = MemShards::default();
    let id = created(&shards).record.id;
    for b in &shards.buckets {
        b.broken.store(true, Ordering::SeqCst);
    }
    let err = record_event(&shards, id, &event("e1", "picked_up", None)).unwrap_err();
    assert!(matches!(err, Error::Store { .. }));
}

//! The shipment state machine of the contract, and how late events are treated.
//!
//! Legal moves: `pending → picked_up → in_transit → out_for_delivery → delivered`;
//! `in_transit` may repeat (each hub scan is one event); `failed_attempt` may follow
//! `out_for_delivery` and leads back to `in_transit` or `out_for_delivery`; `returned` may
//! follow any non-terminal status; `delivered` and `returned` are terminal.
//!
//! `cancelled` (API v1.1) is legal only from `pending` and is terminal; it is recorded like any
//! event (`store::events`). Nothing at all is recorded on a cancelled shipment, not even a
//! late scan: the parcel never left, so a scan of it is wrong.
//!
//! An event is *late* when it happened before the newest event already recorded. A late event
//! is kept in the history but never moves the status (so the status never goes backwards). A
//! late event may not be terminal or `pending`: a shipment cannot have moved on after being
//! delivered or returned, and nothing ever goes back to `pending`.

use chrono::{DateTime, Utc};
use marketplace_shared::ShipmentStatus;
use serde::{Deserialize, Serialize};

use ShipmentStatus as S;

pub fn is_terminal(status: ShipmentStatus) -> bool {
    matches!(status, S::Delivered | S::Returned | S::Cancelled)
}

/// Whether a carrier may report `status` (`cancelled` is the order service's alone, through
/// `POST /internal/deliveries/{id}/cancel`; `pending` is refused by the machine itself).
pub fn is_carrier_status(status: ShipmentStatus) -> bool {
    status != S::Cancelled
}

/// Whether an event with status `to` may follow the current status `from`.
pub fn can_move(from: ShipmentStatus, to: ShipmentStatus) -> bool {
    match (from, to) {
        (from, S::Returned) => !is_terminal(from),
        (S::Pending, S::PickedUp | S::Cancelled) => true,
        (S::PickedUp, S::InTransit) => true,
        (S::InTransit, S::InTransit | S::OutForDelivery) => true,
        (S::OutForDelivery, S::Delivered | S::FailedAttempt) => true,
        (S::FailedAttempt, S::InTransit | S::OutForDelivery) => true,
        _ => false,
    }
}

/// What the order service is told about a shipment (`POST /internal/orders/{id}/delivery-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderReport {
    Shipped,
    Delivered,
    Returned,
}

impl OrderReport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Returned => "returned",
        }
    }
}

/// The report a shipment status makes to the order service, if any
/// (`picked_up` → `shipped`; `delivered` and `returned` as they are).
pub fn order_report(status: ShipmentStatus) -> Option<OrderReport> {
    match status {
        S::PickedUp => Some(OrderReport::Shipped),
        S::Delivered => Some(OrderReport::Delivered),
        S::Returned => Some(OrderReport::Returned),
        _ => None,
    }
}

/// What the state machine needs to know about a shipment to judge a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(with = "status_serde")]
    pub status: ShipmentStatus,
    /// `occurred_at` of the newest event recorded so far (`None` before the first event).
    pub newest: Option<DateTime<Utc>>,
}

/// What recording an event does to the shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The event is the newest: the status becomes the event's status.
    Advance,
    /// The event arrived late: it joins the history, the status stays.
    RecordOnly,
}

/// Why an event cannot be recorded (409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionError {
    pub from: ShipmentStatus,
    pub to: ShipmentStatus,
    pub late: bool,
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { from, to, late } = self;
        if *from == S::Cancelled {
            write!(
                f,
                "the shipment was cancelled: no `{to}` event can be recorded on it"
            )
        } else if *to == S::Cancelled {
            write!(
                f,
                "the shipment is `{from}`: only a pending shipment can be cancelled"
            )
        } else if *late {
            write!(
                f,
                "a late `{to}` event cannot be recorded: only non-terminal scans may arrive late (current status `{from}`)"
            )
        } else {
            write!(f, "illegal transition from `{from}` to `{to}`")
        }
    }
}

/// A new shipment: `pending`, no event yet.
impl Default for Progress {
    fn default() -> Self {
        Self {
            status: S::Pending,
            newest: None,
        }
    }
}

impl Progress {
    /// Judges an event with `status` that happened `at`.
    pub fn decide(&self, status: S, at: DateTime<Utc>) -> Result<Effect, TransitionError> {
        let late = self.newest.is_some_and(|newest| at < newest);
        let effect = if self.status == S::Cancelled {
            // Also late scans: a cancelled parcel never left, so no scan of it can be true.
            None
        } else if late {
            (!is_terminal(status) && status != S::Pending).then_some(Effect::RecordOnly)
        } else {
            can_move(self.status, status).then_some(Effect::Advance)
        };
        effect.ok_or(TransitionError {
            from: self.status,
            to: status,
            late,
        })
    }

    /// The progress after an event with `effect`.
    pub fn apply(&self, effect: Effect, status: S, occurred_at: DateTime<Utc>) -> Self {
        match effect {
            Effect::Advance => Self {
                status,
                newest: Some(occurred_at),
            },
            Effect::RecordOnly => *self,
        }
    }
}

/// Serde of [`ShipmentStatus`] as the contract's `snake_case` word.
pub mod status_serde {
    use marketplace_shared::ShipmentStatus;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(status: &ShipmentStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(status.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ShipmentStatus, D::Error> {
        let raw = String::deserialize(d)?;
        ShipmentStatus::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status `{raw}`")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use Effect::{Advance, RecordOnly};

    fn noon() -> DateTime<Utc> {
        marketplace_shared::time::parse("2026-11-28T12:00:00Z").unwrap()
    }

    /// A shipment in `status` whose newest event happened at noon.
    fn at_noon(status: ShipmentStatus) -> Progress {
        Progress {
            status,
            newest: Some(noon()),
        }
    }

    #[test]
    fn the_happy_path_is_legal_step_by_step() {
        let path = [
            S::PickedUp,
            S::InTransit,
            S::InTransit,
            S::OutForDelivery,
            S::Delivered,
        ];
        let mut p = Progress::default();
        for (i, status) in path.into_iter().enumerate() {
            let t = noon() + Duration::minutes(i as i64);
            let effect = p.decide(status, t).unwrap();
            assert_eq!(effect, Advance);
            p = p.apply(effect, status, t);
        }
        assert_eq!(p.status, S::Delivered);
    }

    #[test]
    fn exactly_the_moves_of_the_contract_are_legal() {
        // One step forward, hub scans repeat, failed attempts lead back, returns follow any
        // non-terminal status, only a pending shipment is cancelled; nothing leaves a terminal one.
        let legal = [
            (S::Pending, S::PickedUp),
            (S::PickedUp, S::InTransit),
            (S::InTransit, S::InTransit),
            (S::InTransit, S::OutForDelivery),
            (S::OutForDelivery, S::Delivered),
            (S::OutForDelivery, S::FailedAttempt),
            (S::FailedAttempt, S::InTransit),
            (S::FailedAttempt, S::OutForDelivery),
            (S::Pending, S::Returned),
            (S::PickedUp, S::Returned),
            (S::InTransit, S::Returned),
            (S::OutForDelivery, S::Returned),
            (S::FailedAttempt, S::Returned),
            (S::Pending, S::Cancelled),
        ];
        for &from in ShipmentStatus::ALL {
            for &to in ShipmentStatus::ALL {
                let want = legal.contains(&(from, to));
                assert_eq!(can_move(from, to), want, "{from} -> {to}");
            }
        }
        assert!(is_terminal(S::Cancelled));
    }

    #[test]
    fn a_late_scan_joins_the_history_without_moving_the_status_and_ends_nothing() {
        let (early, later) = (noon() - Duration::hours(1), noon() + Duration::hours(1));
        // (status, event, when, the effect or whether the refusal is for lateness)
        let cases = [
            (S::OutForDelivery, S::InTransit, early, Ok(RecordOnly)),
            (S::Delivered, S::InTransit, early, Ok(RecordOnly)),
            // …but a new event after a terminal one is refused.
            (S::Delivered, S::InTransit, later, Err(false)),
            (S::InTransit, S::Delivered, early, Err(true)),
            (S::InTransit, S::Returned, early, Err(true)),
            (S::InTransit, S::Pending, early, Err(true)),
            // At the same instant as the newest is not late.
            (S::InTransit, S::OutForDelivery, noon(), Ok(Advance)),
        ];
        for (status, to, t, want) in cases {
            let p = at_noon(status);
            let got = p.decide(to, t);
            assert_eq!(got.map_err(|e| e.late), want, "{status} then {to} at {t}");
            if got == Ok(RecordOnly) {
                assert_eq!(p.apply(RecordOnly, to, t), p, "{status} then {to}");
            }
        }
    }

    #[test]
    fn only_a_pending_shipment_is_cancelled_and_nothing_is_recorded_after_not_even_late() {
        let p = Progress::default();
        assert_eq!(p.decide(S::Cancelled, noon()), Ok(Advance));
        assert_eq!(p.apply(Advance, S::Cancelled, noon()).status, S::Cancelled);
        let picked = p.apply(Advance, S::PickedUp, noon());
        let e = picked.decide(S::Cancelled, noon()).unwrap_err();
        assert!(e.to_string().contains("only a pending shipment"), "{e}");
        let cancelled = at_noon(S::Cancelled);
        for status in ShipmentStatus::ALL {
            for t in [noon() - Duration::hours(1), noon() + Duration::hours(1)] {
                let e = cancelled.decide(*status, t).unwrap_err();
                assert_eq!(e.from, S::Cancelled);
                assert!(e.to_string().contains("cancelled"), "{e}");
            }
        }
    }

    #[test]
    fn carriers_report_all_but_cancellations_and_three_statuses_reach_the_order_service() {
        assert!(!is_carrier_status(S::Cancelled));
        assert!(is_carrier_status(S::PickedUp));
        let reports = [
            (S::PickedUp, Some(OrderReport::Shipped)),
            (S::Delivered, Some(OrderReport::Delivered)),
            (S::Returned, Some(OrderReport::Returned)),
            (S::InTransit, None),
            (S::Cancelled, None),
        ];
        for (status, report) in reports {
            assert_eq!(order_report(status), report, "{status}");
            // Stored and sent as the order service's words.
            if let Some(r) = report {
                assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            }
        }
    }

    #[test]
    fn progress_round_trips_through_json_with_contract_words() {
        let p = at_noon(S::OutForDelivery);
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["status"], "out_for_delivery");
        assert_eq!(serde_json::from_value::<Progress>(json).unwrap(), p);
    }
}

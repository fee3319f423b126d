//! The shipment state machine of the contract, and how late events are treated.
//!
//! Legal moves: `pending → picked_up → in_transit → out_for_delivery → delivered`;
//! `in_transit` may repeat (each hub scan is one event); `failed_attempt` may follow
//! `out_for_delivery` and leads back to `in_transit` or `out_for_delivery`; `returned` may
//! follow any non-terminal status; `delivered` and `returned` are terminal.
//!
//! `cancelled` (API v1.1) is legal only from `pending` and is terminal. It is recorded like any
//! event (the same compare-and-swap append), so a cancel and a `picked_up` scan racing on one
//! shipment are decided by whichever the store records first. Nothing at all is recorded on a
//! cancelled shipment, not even a late scan: the parcel never left, so a scan of it is wrong.
//!
//! An event is *late* when it happened before the newest event already recorded. A late event
//! is kept in the history but never moves the status (so the status never goes backwards). A
//! late event may not be terminal or `pending`: a shipment cannot have moved on after being
//! delivered or returned, and nothing ever goes back to `pending`.

use chrono::{DateTime, Utc};
use marketplace_shared::ShipmentStatus;
use serde::{Deserialize, Serialize};

use ShipmentStatus as S;

/// True for `delivered`, `returned` and `cancelled`.
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
    /// The order service's word.
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
        if self.from == S::Cancelled {
            write!(
                f,
                "the shipment was cancelled: no `{}` event can be recorded on it",
                self.to
            )
        } else if self.to == S::Cancelled {
            write!(
                f,
                "the shipment is `{}`: only a pending shipment can be cancelled",
                self.from
            )
        } else if self.late {
            write!(
                f,
                "a late `{}` event cannot be recorded: only non-terminal scans may arrive late (current status `{}`)",
                self.to, self.from
            )
        } else {
            write!(
                f,
                "illegal transition from `{}` to `{}`",
                self.from, self.to
            )
        }
    }
}

impl Progress {
    /// A new shipment: `pending`, no event yet.
    pub fn new() -> Self {
        Self {
            status: S::Pending,
            newest: None,
        }
    }

    /// Judges an event with `status` that happened at `occurred_at`.
    pub fn decide(
        &self,
        status: ShipmentStatus,
        occurred_at: DateTime<Utc>,
    ) -> Result<Effect, TransitionError> {
        let late = self.newest.is_some_and(|newest| occurred_at < newest);
        if self.status == S::Cancelled {
            // Also late scans: a cancelled parcel never left, so no scan of it can be true.
            return Err(TransitionError {
                from: self.status,
                to: status,
                late,
            });
        }
        if late {
            if is_terminal(status) || status == S::Pending {
                return Err(TransitionError {
                    from: self.status,
                    to: status,
                    late: true,
                });
            }
            return Ok(Effect::RecordOnly);
        }
        if can_move(self.status, status) {
            Ok(Effect::Advance)
        } else {
            Err(TransitionError {
                from: self.status,
                to: status,
                late: false,
            })
        }
    }

    /// The progress after an event with `effect`.
    pub fn apply(
        &self,
        effect: Effect,
        status: ShipmentStatus,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        match effect {
            Effect::Advance => Self {
                status,
                newest: Some(occurred_at),
            },
            Effect::RecordOnly => *self,
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
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
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        marketplace_shared::time::parse(s).unwrap()
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
        let mut p = Progress::new();
        for (i, status) in path.into_iter().enumerate() {
            let t = at("2026-11-28T10:00:00Z") + chrono::Duration::minutes(i as i64);
            let effect = p.decide(status, t).unwrap();
            assert_eq!(effect, Effect::Advance);
            p = p.apply(effect, status, t);
        }
        assert_eq!(p.status, S::Delivered);
    }

    #[test]
    fn skipping_steps_and_leaving_terminal_states_is_illegal() {
        assert!(!can_move(S::Pending, S::InTransit));
        assert!(!can_move(S::Pending, S::Delivered));
        assert!(!can_move(S::PickedUp, S::PickedUp));
        assert!(!can_move(S::InTransit, S::Delivered));
        assert!(!can_move(S::Delivered, S::Returned));
        assert!(!can_move(S::Returned, S::InTransit));
        assert!(!can_move(S::PickedUp, S::Pending));
        assert!(!can_move(S::OutForDelivery, S::OutForDelivery));
    }

    #[test]
    fn failed_attempts_lead_back_to_transit_or_delivery_and_returns_follow_any_non_terminal() {
        assert!(can_move(S::OutForDelivery, S::FailedAttempt));
        assert!(can_move(S::FailedAttempt, S::InTransit));
        assert!(can_move(S::FailedAttempt, S::OutForDelivery));
        assert!(!can_move(S::FailedAttempt, S::Delivered));
        assert!(!can_move(S::InTransit, S::FailedAttempt));
        for from in [
            S::Pending,
            S::PickedUp,
            S::InTransit,
            S::OutForDelivery,
            S::FailedAttempt,
        ] {
            assert!(can_move(from, S::Returned), "{from} -> returned");
        }
    }

    #[test]
    fn a_late_scan_is_recorded_without_moving_the_status_back() {
        let p = Progress {
            status: S::OutForDelivery,
            newest: Some(at("2026-11-28T12:00:00Z")),
        };
        let effect = p.decide(S::InTransit, at("2026-11-28T09:00:00Z")).unwrap();
        assert_eq!(effect, Effect::RecordOnly);
        assert_eq!(p.apply(effect, S::InTransit, at("2026-11-28T09:00:00Z")), p);
    }

    #[test]
    fn a_late_scan_after_delivery_is_still_recorded() {
        let p = Progress {
            status: S::Delivered,
            newest: Some(at("2026-11-28T12:00:00Z")),
        };
        assert_eq!(
            p.decide(S::InTransit, at("2026-11-28T11:00:00Z")),
            Ok(Effect::RecordOnly)
        );
        // …but a new event after a terminal one is refused.
        assert!(p.decide(S::InTransit, at("2026-11-28T13:00:00Z")).is_err());
    }

    #[test]
    fn late_terminal_or_pending_events_are_refused() {
        let p = Progress {
            status: S::InTransit,
            newest: Some(at("2026-11-28T12:00:00Z")),
        };
        for status in [S::Delivered, S::Returned, S::Pending] {
            let e = p.decide(status, at("2026-11-28T11:00:00Z")).unwrap_err();
            assert!(e.late);
        }
    }

    #[test]
    fn an_event_at_the_same_instant_as_the_newest_is_not_late() {
        let t = at("2026-11-28T12:00:00Z");
        let p = Progress {
            status: S::InTransit,
            newest: Some(t),
        };
        assert_eq!(p.decide(S::OutForDelivery, t), Ok(Effect::Advance));
    }

    #[test]
    fn only_a_pending_shipment_can_be_cancelled_and_cancelled_is_terminal() {
        assert!(can_move(S::Pending, S::Cancelled));
        for from in [
            S::PickedUp,
            S::InTransit,
            S::OutForDelivery,
            S::FailedAttempt,
            S::Delivered,
            S::Returned,
            S::Cancelled,
        ] {
            assert!(!can_move(from, S::Cancelled), "{from} -> cancelled");
        }
        assert!(is_terminal(S::Cancelled));
        for to in ShipmentStatus::ALL {
            assert!(!can_move(S::Cancelled, *to), "cancelled -> {to}");
        }
        let p = Progress::new();
        let t = at("2026-11-28T12:00:00Z");
        assert_eq!(p.decide(S::Cancelled, t), Ok(Effect::Advance));
        let after = p.apply(Effect::Advance, S::Cancelled, t);
        assert_eq!(after.status, S::Cancelled);
        let picked = p.apply(Effect::Advance, S::PickedUp, t);
        let e = picked.decide(S::Cancelled, t).unwrap_err();
        assert!(e.to_string().contains("only a pending shipment"), "{e}");
    }

    #[test]
    fn no_event_is_recorded_on_a_cancelled_shipment_not_even_a_late_one() {
        let p = Progress {
            status: S::Cancelled,
            newest: Some(at("2026-11-28T12:00:00Z")),
        };
        for status in ShipmentStatus::ALL {
            for t in ["2026-11-28T11:00:00Z", "2026-11-28T13:00:00Z"] {
                let e = p.decide(*status, at(t)).unwrap_err();
                assert_eq!(e.from, S::Cancelled);
                assert!(e.to_string().contains("cancelled"), "{e}");
            }
        }
    }

    #[test]
    fn carriers_report_everything_but_cancellations() {
        assert!(!is_carrier_status(S::Cancelled));
        assert!(is_carrier_status(S::PickedUp));
        assert_eq!(order_report(S::Cancelled), None);
    }

    #[test]
    fn pickup_delivery_and_return_are_reported_to_the_order_service() {
        assert_eq!(order_report(S::PickedUp), Some(OrderReport::Shipped));
        assert_eq!(order_report(S::Delivered), Some(OrderReport::Delivered));
        assert_eq!(order_report(S::Returned), Some(OrderReport::Returned));
        assert_eq!(order_report(S::InTransit), None);
        // Stored and sent as the order service's words.
        for r in [
            OrderReport::Shipped,
            OrderReport::Delivered,
            OrderReport::Returned,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn progress_round_trips_through_json_with_contract_words() {
        let p = Progress {
            status: S::OutForDelivery,
            newest: Some(at("2026-11-28T12:00:00Z")),
        };
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(json["status"], "out_for_delivery");
        assert_eq!(serde_json::from_value::<Progress>(json).unwrap(), p);
    }
}

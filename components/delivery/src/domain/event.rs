//! Carrier events: the request body, parsed into a [`NewEvent`] that can only exist when valid.

use chrono::{DateTime, Duration, DurationRound, Utc};
use marketplace_shared::{FieldErrors, ShipmentStatus, time};
use serde::{Deserialize, Serialize};

use super::is_id_text;
use super::status::status_serde;

pub const EVENT_ID_MAX_CHARS: usize = 64;
pub const LOCATION_MAX_CHARS: usize = 200;
pub const NOTE_MAX_CHARS: usize = 1000;
/// How far ahead of our clock a carrier's clock may run.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// How old an event may be when it is first reported (late scans of a long journey included).
pub const MAX_EVENT_AGE: Duration = Duration::days(365);
/// Most events one shipment's history holds (a long journey has a few dozen scans). The next
/// distinct event is refused (409); a repeated `event_id` stays a duplicate. It bounds what a
/// shipment read, the public tracking page included, costs.
pub const MAX_EVENTS_PER_SHIPMENT: usize = 200;

/// Whether a history of `recorded` events has room for one more.
pub fn has_room(recorded: usize) -> bool {
    recorded < MAX_EVENTS_PER_SHIPMENT
}

/// An event id: 1 to 64 characters of `A-Z a-z 0-9 . _ : -` (UUIDs and carrier scan ids fit),
/// or the cancellation's own id ([`CANCEL_EVENT_ID`]). Stored ids are read back as they are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// A carrier's event id, if valid.
    pub fn parse(raw: &str) -> Option<Self> {
        is_id_text(raw, EVENT_ID_MAX_CHARS).then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `POST /api/deliveries/{id}/events` body, as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct EventInput {
    pub event_id: String,
    pub status: String,
    pub occurred_at: Option<String>,
    pub location: Option<String>,
    pub note: Option<String>,
}

/// A valid carrier event, ready to be recorded. Also its stored form and, serialized, the
/// contract's history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub event_id: EventId,
    #[serde(with = "status_serde")]
    pub status: ShipmentStatus,
    #[serde(serialize_with = "millis")]
    pub occurred_at: DateTime<Utc>,
    #[serde(serialize_with = "millis")]
    pub recorded_at: DateTime<Utc>,
    pub location: Option<String>,
    pub note: Option<String>,
    /// Whether the carrier gave `occurred_at` (a retry without it is the same event); only an
    /// incoming event's is read, so it is not stored.
    #[serde(skip)]
    pub occurred_at_given: bool,
}

/// A timestamp as the contract writes it ([`time::format`]).
fn millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&time::format(*t))
}

/// Millisecond precision: what the contract's timestamps carry, so that stored and shown agree.
pub fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::milliseconds(1)).unwrap_or(t)
}

/// Optional free text: trimmed, not empty, at most `max` characters, no control characters
/// (newlines and tabs allowed only when `multiline`).
fn text(raw: &Option<String>, max: usize, multiline: bool) -> Result<Option<String>, String> {
    let Some(s) = raw.as_deref().map(str::trim) else {
        return Ok(None);
    };
    if s.is_empty() {
        Err("must not be empty when given".into())
    } else if s.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else if s
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
    {
        Err("must not contain control characters".into())
    } else {
        Ok(Some(s.to_string()))
    }
}

impl EventInput {
    /// Validates every field at once (422 naming each bad one); `now` is the recording time.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<NewEvent, FieldErrors> {
        let now = to_millis(now);
        let mut errors = FieldErrors::new();
        let event_id = EventId::parse(&self.event_id)
            .ok_or("must be 1 to 64 characters of letters, digits, `.`, `_`, `:` or `-`")
            .map_err(|e| errors.add("event_id", e))
            .ok();
        let status = ShipmentStatus::parse(&self.status)
            .ok_or("must be one of picked_up, in_transit, out_for_delivery, failed_attempt, delivered, returned")
            .map_err(|e| errors.add("status", e))
            .ok();
        let occurred_at = match self.occurred_at.as_deref().map(time::parse) {
            None => Ok(now),
            Some(None) => Err("must be an RFC 3339 timestamp"),
            Some(Some(t)) if t > now + MAX_CLOCK_SKEW => Err("must not be in the future"),
            Some(Some(t)) if t < now - MAX_EVENT_AGE => {
                Err("must not be more than a year in the past")
            }
            Some(Some(t)) => Ok(to_millis(t)),
        };
        let occurred_at = occurred_at.map_err(|e| errors.add("occurred_at", e)).ok();
        let location = text(&self.location, LOCATION_MAX_CHARS, false)
            .map_err(|e| errors.add("location", e))
            .unwrap_or(None);
        let note = text(&self.note, NOTE_MAX_CHARS, true)
            .map_err(|e| errors.add("note", e))
            .unwrap_or(None);
        match (event_id, status, occurred_at) {
            (Some(event_id), Some(status), Some(occurred_at)) if errors.is_empty() => {
                Ok(NewEvent {
                    event_id,
                    status,
                    occurred_at,
                    recorded_at: now,
                    location,
                    note,
                    occurred_at_given: self.occurred_at.is_some(),
                })
            }
            _ => Err(errors),
        }
    }
}

/// The `event_id` of the history entry a cancellation records. `/` is outside the carriers'
/// alphabet ([`EventId::parse`]), so no scan can ever share it: a repeated cancel is a
/// duplicate of this entry (idempotent) and nothing else is.
pub const CANCEL_EVENT_ID: &str = "order/cancel";

impl NewEvent {
    /// The history entry of `POST /internal/deliveries/{id}/cancel`: status `cancelled`, now.
    pub fn cancellation(now: DateTime<Utc>) -> NewEvent {
        let now = to_millis(now);
        NewEvent {
            event_id: EventId(CANCEL_EVENT_ID.to_string()),
            status: ShipmentStatus::Cancelled,
            occurred_at: now,
            recorded_at: now,
            location: None,
            note: Some("cancelled at the order service's request".to_string()),
            occurred_at_given: false,
        }
    }

    /// Whether a retry carrying `other` describes this same event (same status, place, note,
    /// and time when the retry states one).
    pub fn same_event_as(&self, other: &NewEvent) -> bool {
        self.event_id == other.event_id
            && self.status == other.status
            && self.location == other.location
            && self.note == other.note
            && (!other.occurred_at_given || self.occurred_at == other.occurred_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        marketplace_shared::time::parse("2026-11-28T12:00:00.123456Z").unwrap()
    }

    fn input(status: &str) -> EventInput {
        EventInput {
            event_id: "scan-1".into(),
            status: status.into(),
            occurred_at: None,
            location: None,
            note: None,
        }
    }

    #[test]
    fn a_minimal_event_happens_now_at_millisecond_precision() {
        let e = input("picked_up").parse(now()).unwrap();
        assert_eq!(e.status, ShipmentStatus::PickedUp);
        assert_eq!(e.occurred_at, e.recorded_at);
        assert!(!e.occurred_at_given);
        // Serialized, it is the contract's history entry.
        let entry = concat!(
            r#"{"event_id":"scan-1","status":"picked_up","occurred_at":"2026-11-28T12:00:00.123Z","#,
            r#""recorded_at":"2026-11-28T12:00:00.123Z","location":null,"note":null}"#
        );
        assert_eq!(serde_json::to_string(&e).unwrap(), entry);
    }

    #[test]
    fn unknown_status_malformed_id_future_time_and_long_texts_are_all_named() {
        let bad = EventInput {
            event_id: "has spaces/and slashes".into(),
            status: "lost_in_space".into(),
            occurred_at: Some("2026-11-28T13:00:00Z".into()),
            location: Some("x".repeat(LOCATION_MAX_CHARS + 1)),
            note: Some("y".repeat(NOTE_MAX_CHARS + 1)),
        };
        let errors = bad.parse(now()).unwrap_err();
        for field in ["event_id", "status", "occurred_at", "location", "note"] {
            assert!(errors.contains(field), "{field}: {errors:?}");
        }
    }

    #[test]
    fn a_slightly_fast_carrier_clock_is_tolerated_but_not_an_hour_nor_a_year_ago() {
        let mut i = input("in_transit");
        for (occurred_at, ok) in [
            ("2026-11-28T12:04:00Z", true),
            ("2026-11-28T13:00:00Z", false),
            ("not a time", false),
            ("2020-01-01T00:00:00Z", false),
        ] {
            i.occurred_at = Some(occurred_at.into());
            match i.parse(now()) {
                Ok(_) => assert!(ok, "{occurred_at}"),
                Err(e) => assert!(!ok && e.contains("occurred_at"), "{occurred_at}: {e:?}"),
            }
        }
    }

    #[test]
    fn texts_are_trimmed_and_control_characters_refused() {
        let mut i = input("in_transit");
        i.location = Some("  Lyon hub ".into());
        i.note = Some("left at\nthe door".into());
        let e = i.parse(now()).unwrap();
        assert_eq!(e.location.as_deref(), Some("Lyon hub"));
        for bad in ["Lyon\u{0}", "   "] {
            i.location = Some(bad.into());
            assert!(i.parse(now()).unwrap_err().contains("location"), "{bad:?}");
        }
    }

    #[test]
    fn event_ids_accept_uuids_and_scan_codes_only() {
        let long = "a".repeat(65);
        for (raw, ok) in [
            ("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b", true),
            ("HUB:LYS.2026_11", true),
            ("", false),
            (&long, false),
            ("a b", false),
            ("é", false),
            (CANCEL_EVENT_ID, false),
        ] {
            assert_eq!(EventId::parse(raw).is_some(), ok, "{raw}");
        }
    }

    #[test]
    fn a_retry_or_a_repeated_cancellation_is_the_same_event_unless_it_says_something_else() {
        let cancel = NewEvent::cancellation(now());
        assert_eq!(cancel.status, ShipmentStatus::Cancelled);
        let again = NewEvent::cancellation(now() + Duration::seconds(30));
        assert!(cancel.same_event_as(&again));
        let first = input("in_transit").parse(now()).unwrap();
        let retry = input("in_transit")
            .parse(now() + Duration::seconds(3))
            .unwrap();
        assert!(first.same_event_as(&retry));
        let other = input("out_for_delivery").parse(now()).unwrap();
        assert!(!first.same_event_as(&other));
        let mut timed = input("in_transit");
        timed.occurred_at = Some("2026-11-28T11:00:00Z".into());
        assert!(!first.same_event_as(&timed.parse(now()).unwrap()));
    }
}

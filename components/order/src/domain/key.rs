//! Idempotency keys: the header parsed into a valid key, and what a placement does with the
//! key row it finds under the row's lock. No I/O.

use crate::domain::outbox::ABANDONED_AFTER_SECS;
use crate::domain::shard::OrderId;

/// Longest idempotency key (contract: 1..255 characters).
pub const MAX_LEN: usize = 255;

/// How many times a request looks again at a key another request is working on, 100 ms apart,
/// before answering 409 (the other request is between its claim and its lock: milliseconds).
pub const WAIT_ROUNDS: u32 = 50;

/// A valid `Idempotency-Key` header value: 1..=255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a header is not a key (each a 400 naming the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Missing,
    Empty,
    TooLong,
    NotVisibleAscii,
}

impl KeyError {
    pub fn message(self) -> &'static str {
        match self {
            KeyError::Missing => "is required",
            KeyError::Empty => "must not be empty",
            KeyError::TooLong => "must be at most 255 characters",
            KeyError::NotVisibleAscii => "must contain only visible ASCII characters",
        }
    }
}

impl IdempotencyKey {
    pub fn parse(header: Option<&str>) -> Result<Self, KeyError> {
        let v = header.ok_or(KeyError::Missing)?;
        let visible = |b: u8| b.is_ascii_graphic() || b == b' ';
        match v {
            "" => Err(KeyError::Empty),
            _ if v.len() > MAX_LEN => Err(KeyError::TooLong),
            _ if !v.bytes().all(visible) => Err(KeyError::NotVisibleAscii),
            _ => Ok(Self(v.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key row as found under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub request_hash: String,
    /// The attempt's order id (also its reservation id).
    pub order_id: OrderId,
    /// The stored first answer (status, JSON body) once the attempt completed.
    pub response: Option<(u16, Vec<u8>)>,
    /// Seconds since the row was last claimed.
    pub age_secs: i64,
}

/// A key's first answer, as it was stored, to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub status: u16,
    pub body: Vec<u8>,
    pub order_id: OrderId,
}

/// What a placement does with the key row it locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The key is done: replay the first answer.
    Replay(Replay),
    /// The key was used with another request body (422).
    OtherBody,
    /// Go on with this order id: our own claim, or (`takeover`) an abandoned attempt whose
    /// order id is reused so that whatever it reserved is reused, not doubled.
    Proceed { order_id: OrderId, takeover: bool },
    /// Another request claimed the key and has not locked it yet: look again shortly.
    Wait,
}

/// Decides from the locked row, the order id this request claimed with, and its fingerprint.
pub fn decide(row: KeyRecord, candidate: &OrderId, request_hash: &str) -> Decision {
    if row.request_hash != request_hash {
        return Decision::OtherBody;
    }
    if let Some((status, body)) = row.response {
        let order_id = row.order_id;
        return Decision::Replay(Replay {
            status,
            body,
            order_id,
        });
    }
    let mine = row.order_id == *candidate;
    if mine || row.age_secs >= ABANDONED_AFTER_SECS {
        Decision::Proceed {
            order_id: row.order_id,
            takeover: !mine,
        }
    } else {
        Decision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::shard::VShard;

    #[test]
    fn idempotency_keys_are_checked() {
        let long = "k".repeat(256);
        for (header, expected) in [
            (None, KeyError::Missing),
            (Some(""), KeyError::Empty),
            (Some(long.as_str()), KeyError::TooLong),
            (Some("tab\there"), KeyError::NotVisibleAscii),
        ] {
            assert_eq!(IdempotencyKey::parse(header), Err(expected));
        }
        assert!(IdempotencyKey::parse(Some(&long[1..])).is_ok());
    }

    #[test]
    fn a_locked_key_is_replayed_refused_taken_over_or_waited_for() {
        let v = VShard::new(1).unwrap();
        let (ours, theirs) = (OrderId::generate(v), OrderId::generate(v));
        let row = |order_id, response, age_secs| KeyRecord {
            request_hash: "h".into(),
            order_id,
            response,
            age_secs,
        };
        let proceed = |order_id, takeover| Decision::Proceed { order_id, takeover };
        let stored = Some((201, b"{}".to_vec()));
        let replay = Decision::Replay(Replay {
            status: 201,
            body: b"{}".to_vec(),
            order_id: theirs,
        });
        let old = ABANDONED_AFTER_SECS;
        for (row, hash, expected) in [
            (row(ours, None, 0), "other", Decision::OtherBody),
            (row(theirs, stored, 0), "h", replay),
            (row(ours, None, 0), "h", proceed(ours, false)),
            (row(theirs, None, 1), "h", Decision::Wait),
            (row(theirs, None, old), "h", proceed(theirs, true)),
        ] {
            assert_eq!(decide(row, &ours, hash), expected);
        }
    }
}

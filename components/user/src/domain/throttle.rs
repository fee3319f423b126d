//! The login-failure windows, pure: who may try a password now, and how the windows are laid
//! out in the key-value store so that they stay bounded.
//!
//! Every password check counts in two sliding windows: [`ACCOUNTS`] (by normalised email, known
//! or not, so a 429 reveals nothing) and [`ADDRESSES`] (by client address). A short list of
//! failure times updated by compare-and-swap can say "5 within any 15 minutes", which an atomic
//! counter cannot (fixed buckets let 8 guesses straddle a boundary). A check *reserves* its slot
//! in both windows before any hashing, so N simultaneous wrong passwords count as N failures and
//! at most [`Limit::max`] of them reach Argon2; a success gives its slots back
//! (`domain::login::settle`). `store::Throttle` writes and reads back, looking for the slot's
//! random id; this module decides and encodes.
//!
//! **Bounded storage.** Subjects hash into [`Table::buckets`] keys per table, each holding at
//! most [`Table::entries`] subjects of at most [`Limit::max`] failures, and every write drops
//! what has left the window: at most `buckets` keys of [`Table::max_value_bytes`] per table,
//! however many emails or addresses are tried. A full key pushes out the subject that matters
//! least (fewest failures, then the stalest): pushing out one close to its lock takes `entries`
//! subjects with as many failures, which the per-address limit makes expensive.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most `max` failures within any `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: usize,
    pub window_secs: i64,
}

/// One kind of window and its layout in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Key prefix; keys are `<prefix>/<bucket number>`.
    pub prefix: &'static str,
    pub limit: Limit,
    /// Number of keys the table may use.
    pub buckets: u16,
    /// Subjects kept per key.
    pub entries: usize,
}

/// Per account: 5 failures within 15 minutes (unchanged from v1). 1024 keys of 16 accounts
/// each track 16 384 accounts with recent failures at once, in at most 2.5 MB.
pub const ACCOUNTS: Table = Table {
    prefix: "login-failures/account",
    limit: Limit {
        max: 5,
        window_secs: 15 * 60,
    },
    buckets: 1024,
    entries: 16,
};

/// Per client address (IPv4, or the /64 of an IPv6 address): 50 failures within 5 minutes.
/// People mistyping behind one NAT fail perhaps once in ten logins, so this admits about 100
/// logins a minute through one address; one client gets at most 10 accounts locked and 50
/// Argon2 checks (a few CPU-seconds) per 5 minutes out of it. 256 keys of 8 addresses, at most
/// 2.5 MB.
pub const ADDRESSES: Table = Table {
    prefix: "login-failures/address",
    limit: Limit {
        max: 50,
        window_secs: 5 * 60,
    },
    buckets: 256,
    entries: 8,
};

/// A subject (normalised email, canonical address) as a table sees it: which key holds it and
/// the tag it is stored under. No email or address appears in the store in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub key: String,
    pub tag: u64,
}

impl Table {
    pub fn subject(&self, name: &str) -> Subject {
        let digest = Sha256::digest(name.as_bytes());
        let bucket = u16::from_be_bytes([digest[0], digest[1]]) % self.buckets;
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[2..10]);
        Subject {
            key: format!("{}/{bucket}", self.prefix),
            tag: u64::from_be_bytes(tag),
        }
    }

    /// The largest value a key of this table can hold: a full key, every number at its widest
    /// (times are unix seconds, 10 digits until the year 2286).
    pub fn max_value_bytes(&self) -> usize {
        // `{"t":<u64>,"f":[…]}` and `[<at>,<u32>]` per failure, separators included.
        let failure = 1 + 10 + 1 + 10 + 1 + 1;
        let entry = 12 + 20 + self.limit.max * failure + 1;
        2 + self.entries * entry
    }
}

/// One counted attempt, `(at, id)`: when (unix seconds) and a random id, stored as `[at, id]`.
/// The id makes every writer's value its own, so that after a compare-and-swap the writer can
/// tell whether its slot is in the stored value (Spin's Redis store reports the same for a swap
/// it made and one it did not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure(pub i64, pub u32);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "t")]
    tag: u64,
    /// Oldest first.
    #[serde(rename = "f")]
    failures: Vec<Failure>,
}

/// The decoded value of one key: the recent failures of the subjects it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket(Vec<Entry>);

impl Bucket {
    /// Decodes the stored value; anything unreadable counts as no failures (the value is
    /// written only by this code, and failing open here is bounded by the next write).
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let mut entries: Vec<Entry> = bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        for e in &mut entries {
            e.failures.sort_unstable();
        }
        Self(entries)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    fn entry(&self, tag: u64) -> Option<&Entry> {
        self.0.iter().find(|e| e.tag == tag)
    }

    /// Failure times of `tag` still inside the window at `now`, oldest first.
    pub fn recent(&self, limit: Limit, tag: u64, now: i64) -> Vec<i64> {
        let failures = self.entry(tag).map_or(&[][..], |e| &e.failures);
        let times = failures.iter().map(|f| f.0);
        times.filter(|t| now - t < limit.window_secs).collect()
    }

    /// Whether the slot with this id of `tag` is stored.
    pub fn holds(&self, tag: u64, id: u32) -> bool {
        self.entry(tag)
            .is_some_and(|e| e.failures.iter().any(|f| f.1 == id))
    }

    /// Seconds until `tag` may try again, or `None` when it may try now.
    pub fn retry_after(&self, limit: Limit, tag: u64, now: i64) -> Option<u64> {
        let recent = self.recent(limit, tag, now);
        if recent.len() < limit.max {
            return None;
        }
        // The window reopens when the failure that made the count reach the limit, counted
        // from the newest, expires.
        let oldest_that_counts = recent[recent.len() - limit.max];
        Some((oldest_that_counts + limit.window_secs - now).max(1) as u64)
    }

    /// This bucket with one more slot for `tag`, or the `Retry-After` when its window is full.
    /// Stale failures of every subject go, and the bucket keeps at most `table.entries`
    /// subjects (see the module documentation for which one is pushed out).
    pub fn reserve(&self, table: &Table, tag: u64, slot: Failure) -> Result<Self, u64> {
        let now = slot.0;
        if let Some(retry_after) = self.retry_after(table.limit, tag, now) {
            return Err(retry_after);
        }
        let mut next = self.pruned(table.limit, now);
        match next.0.iter_mut().find(|e| e.tag == tag) {
            Some(e) if !e.failures.contains(&slot) => {
                e.failures.push(slot);
                e.failures.sort_unstable();
            }
            Some(_) => {}
            None => next.0.push(Entry {
                tag,
                failures: vec![slot],
            }),
        }
        let weight = |e: &Entry| (e.failures.len(), e.failures.last().map(|f| f.0));
        while next.0.len() > table.entries {
            let others = next.0.iter().enumerate().filter(|(_, e)| e.tag != tag);
            let Some((victim, _)) = others.min_by_key(|(_, e)| weight(e)) else {
                break;
            };
            next.0.remove(victim);
        }
        Ok(next)
    }

    /// This bucket without the slot `id` of `tag` (a check that did not happen or succeeded).
    pub fn release(&self, tag: u64, id: u32) -> Self {
        let mut next = self.clone();
        for e in &mut next.0 {
            if e.tag == tag {
                e.failures.retain(|f| f.1 != id);
            }
        }
        next.0.retain(|e| !e.failures.is_empty());
        next
    }

    /// This bucket without `tag` at all (a successful login forgets the account's failures).
    pub fn forget(&self, tag: u64) -> Self {
        Self(self.0.iter().filter(|e| e.tag != tag).cloned().collect())
    }

    /// Whether `tag` has an entry.
    pub fn has(&self, tag: u64) -> bool {
        self.entry(tag).is_some()
    }

    /// Without the failures that left the window and the subjects left with none.
    fn pruned(&self, limit: Limit, now: i64) -> Self {
        let mut next = self.clone();
        for e in &mut next.0 {
            e.failures.retain(|f| now - f.0 < limit.window_secs);
            // More than `max` can never matter (reservations stop at `max`).
            let excess = e.failures.len().saturating_sub(limit.max);
            e.failures.drain(..excess);
        }
        next.0.retain(|e| !e.failures.is_empty());
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;
    const LIMIT: Limit = ACCOUNTS.limit;
    const WINDOW: i64 = ACCOUNTS.limit.window_secs;

    /// `n` reservations of `tag`, `step` seconds apart from `start`.
    fn after(bucket: Bucket, tag: u64, n: usize, start: i64, step: i64) -> Bucket {
        (0..n).fold(bucket, |b, i| {
            b.reserve(&ACCOUNTS, tag, Failure(start + i as i64 * step, i as u32))
                .expect("open")
        })
    }

    #[test]
    fn the_fifth_failure_closes_logins_until_the_oldest_counted_one_leaves_the_window() {
        // (failures, seconds apart, checked this long after T0, its retry after)
        for (n, step, at, expected) in [
            (4, 10, 40, None),
            (5, 10, 40, Some(WINDOW as u64 - 40)),
            (5, 60, WINDOW - 1, Some(1)),
            (5, 60, WINDOW, None),
            // Failures spread over more than the window never lock.
            (10, WINDOW / 4, 10 * WINDOW / 4, None),
        ] {
            let b = after(Bucket::default(), 1, n, T0, step);
            assert_eq!(b.retry_after(LIMIT, 1, T0 + at), expected, "{n} {at}");
        }
    }

    #[test]
    fn a_full_window_refuses_the_sixth_reservation_with_its_retry_after() {
        let b = after(Bucket::default(), 1, 5, T0, 0);
        assert_eq!(
            b.reserve(&ACCOUNTS, 1, Failure(T0 + 60, 99)),
            Err(WINDOW as u64 - 60)
        );
        // Another subject of the same key is not affected.
        assert!(b.reserve(&ACCOUNTS, 2, Failure(T0 + 60, 99)).is_ok());
    }

    #[test]
    fn released_and_forgotten_slots_are_gone() {
        let b = after(Bucket::default(), 1, 3, T0, 1);
        let released = b.release(1, 1);
        assert_eq!(released.recent(LIMIT, 1, T0 + 3).len(), 2);
        assert!(!released.holds(1, 1) && released.holds(1, 0));
        assert!(!b.forget(1).has(1));
        assert!(b.release(1, 0).release(1, 1).release(1, 2).0.is_empty());
    }

    #[test]
    fn slots_in_the_same_second_stay_apart_by_their_ids_and_round_trip() {
        let one = Bucket::default().reserve(&ACCOUNTS, 1, Failure(T0, 7));
        let b = one.unwrap().reserve(&ACCOUNTS, 1, Failure(T0, 3)).unwrap();
        assert_eq!(b.recent(LIMIT, 1, T0).len(), 2);
        assert!(b.holds(1, 7) && b.holds(1, 3) && !b.holds(1, 5));
        assert_eq!(Bucket::decode(Some(&b.encode())), b);
        assert_eq!(Bucket::decode(Some(b"garbage")), Bucket::default());
        assert_eq!(Bucket::decode(None), Bucket::default());
    }

    #[test]
    fn a_write_drops_the_subjects_whose_failures_left_the_window() {
        let b = after(Bucket::default(), 1, 5, T0, 0);
        let later = b.reserve(&ACCOUNTS, 2, Failure(T0 + WINDOW, 1)).unwrap();
        assert!(!later.has(1), "stale entry kept: {later:?}");
        assert_eq!(later.0.len(), 1);
    }

    #[test]
    fn a_full_key_pushes_out_the_subject_with_the_fewest_failures_never_a_locked_one() {
        // Subject 1 is locked; then many subjects with one failure each arrive.
        let mut b = after(Bucket::default(), 1, 5, T0, 0);
        for tag in 2..100 {
            let at = T0 + tag as i64;
            b = b.reserve(&ACCOUNTS, tag, Failure(at, 0)).unwrap();
        }
        assert_eq!(b.0.len(), ACCOUNTS.entries);
        assert!(b.retry_after(LIMIT, 1, T0 + 100).is_some(), "the lock held");
        assert!(b.has(99), "the newest subject is kept");
    }

    #[test]
    fn any_number_of_subjects_stays_within_the_keys_and_bytes_of_each_table() {
        for table in [ACCOUNTS, ADDRESSES] {
            let keys: std::collections::HashSet<String> = (0..50_000)
                .map(|i| table.subject(&format!("{i}@example.test")).key)
                .collect();
            assert_eq!(keys.len(), table.buckets as usize, "{}", table.prefix);
            // One key receiving more subjects than it keeps, each with as many failures as
            // the limit allows, every number at its widest.
            let mut b = Bucket::default();
            for tag in u64::MAX - 3 * table.entries as u64..=u64::MAX {
                for n in 0..table.limit.max as u32 {
                    let widest = Failure(9_999_999_999, u32::MAX - n);
                    b = b.reserve(&table, tag, widest).unwrap();
                }
            }
            assert_eq!(b.0.len(), table.entries);
            let (bytes, max) = (b.encode().len(), table.max_value_bytes());
            assert!(bytes <= max, "{bytes}");
            assert!(bytes * 10 > max * 9, "a tight bound: {bytes}");
        }
    }

    #[test]
    fn keys_name_a_bucket_and_tags_tell_subjects_apart() {
        let a = ACCOUNTS.subject("ann@example.test");
        assert_eq!(a, ACCOUNTS.subject("ann@example.test"));
        assert_ne!(a.tag, ACCOUNTS.subject("bob@example.test").tag);
        let n: u16 = a.key.rsplit('/').next().unwrap().parse().unwrap();
        assert!(a.key.starts_with("login-failures/account/") && n < ACCOUNTS.buckets);
        let address = ADDRESSES.subject("192.0.2.1").key;
        assert!(address.starts_with("login-failures/address/"), "{address}");
    }
}

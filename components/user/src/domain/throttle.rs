//! The login-failure window: after [`MAX_FAILURES`] failed logins for one account within
//! [`WINDOW_SECS`], its logins answer 429 until the oldest of those failures leaves the window.
//!
//! The window is one key-value entry per account holding the times of its most recent
//! failures (at most [`MAX_FAILURES`]; older ones can never matter again). The component
//! updates it with `wasi:keyvalue` compare-and-swap and reads it back, looking for its own
//! failure's id, so concurrent failures on several instances are all counted (see
//! `store::LoginFailures`). This module is the pure part:
//! encoding, recording, and deciding.

use serde::{Deserialize, Serialize};

/// Failed logins tolerated within the window.
pub const MAX_FAILURES: usize = 5;
/// Length of the sliding window (15 minutes).
pub const WINDOW_SECS: i64 = 15 * 60;

/// One failed login: when (unix seconds) and a random id. The id makes every writer's value
/// its own, so that after a compare-and-swap the writer can tell whether its failure is in
/// the stored window (Spin's Redis store reports success for a swap it did not make; two
/// failures in the same second would otherwise write the very same bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Failure {
    pub at: i64,
    pub id: u64,
}

/// The recent failures (oldest first) of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWindow(Vec<Failure>);

impl FailureWindow {
    /// Decodes the stored value; anything unreadable counts as no failures (the value is
    /// written only by this code, and failing open here is bounded by the next write).
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Self::default();
        };
        let mut failures: Vec<Failure> = serde_json::from_slice(bytes).unwrap_or_default();
        failures.sort_unstable();
        Self(failures)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    /// Failure times still inside the window at `now`.
    pub fn recent(&self, now: i64) -> impl Iterator<Item = i64> + '_ {
        self.0
            .iter()
            .map(|f| f.at)
            .filter(move |t| now - t < WINDOW_SECS)
    }

    /// Whether the failure with this id is in the window.
    pub fn holds(&self, id: u64) -> bool {
        self.0.iter().any(|f| f.id == id)
    }

    /// Seconds until logins are accepted again, or `None` when they are accepted now.
    pub fn retry_after(&self, now: i64) -> Option<u64> {
        let recent: Vec<i64> = self.recent(now).collect();
        if recent.len() < MAX_FAILURES {
            return None;
        }
        // The window reopens when the failure that made the count reach the limit, counted
        // from the newest, expires.
        let oldest_that_counts = recent[recent.len() - MAX_FAILURES];
        Some((oldest_that_counts + WINDOW_SECS - now).max(1) as u64)
    }

    /// This window with one more failure, keeping only what can still matter.
    pub fn with_failure(&self, failure: Failure) -> Self {
        let now = failure.at;
        let mut failures: Vec<Failure> = self
            .0
            .iter()
            .copied()
            .filter(|f| now - f.at < WINDOW_SECS)
            .collect();
        failures.push(failure);
        failures.sort_unstable();
        let excess = failures.len().saturating_sub(MAX_FAILURES);
        failures.drain(..excess);
        Self(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn after(n: usize, start: i64, step: i64) -> FailureWindow {
        (0..n).fold(FailureWindow::default(), |w, i| {
            w.with_failure(Failure {
                at: start + i as i64 * step,
                id: i as u64,
            })
        })
    }

    #[test]
    fn four_failures_leave_logins_open_and_the_fifth_closes_them() {
        assert_eq!(after(4, T0, 10).retry_after(T0 + 40), None);
        let w = after(5, T0, 10);
        assert_eq!(w.retry_after(T0 + 40), Some(WINDOW_SECS as u64 - 40));
    }

    #[test]
    fn logins_reopen_when_the_oldest_counted_failure_leaves_the_window() {
        let w = after(5, T0, 60);
        assert!(w.retry_after(T0 + WINDOW_SECS - 1).is_some());
        assert_eq!(w.retry_after(T0 + WINDOW_SECS), None);
    }

    #[test]
    fn failures_spread_over_more_than_the_window_never_lock() {
        let w = after(10, T0, WINDOW_SECS / 4);
        assert_eq!(w.retry_after(T0 + 10 * WINDOW_SECS / 4), None);
    }

    #[test]
    fn the_stored_value_keeps_at_most_five_times_and_round_trips() {
        let w = after(12, T0, 1);
        let decoded = FailureWindow::decode(Some(&w.encode()));
        assert_eq!(decoded, w);
        assert_eq!(decoded.recent(T0 + 12).count(), MAX_FAILURES);
        assert_eq!(
            FailureWindow::decode(Some(b"garbage")),
            FailureWindow::default()
        );
        assert_eq!(FailureWindow::decode(None), FailureWindow::default());
    }

    #[test]
    fn failures_in_the_same_second_stay_apart_by_their_ids() {
        let w = FailureWindow::default()
            .with_failure(Failure { at: T0, id: 7 })
            .with_failure(Failure { at: T0, id: 3 });
        assert_eq!(w.recent(T0).count(), 2);
        assert!(w.holds(7) && w.holds(3) && !w.holds(5));
        let alone = FailureWindow::default().with_failure(Failure { at: T0, id: 3 });
        assert_ne!(
            alone.encode(),
            FailureWindow::default()
                .with_failure(Failure { at: T0, id: 7 })
                .encode()
        );
    }
}

//! The login-failure window: after [`MAX_FAILURES`] failed logins for one account within
//! [`WINDOW_SECS`], its logins answer 429 until the oldest of those failures leaves the window.
//!
//! The window is one key-value entry per account holding the times of its most recent
//! failures (at most [`MAX_FAILURES`]; older ones can never matter again). The component
//! updates it with `wasi:keyvalue` compare-and-swap, so concurrent failures on several
//! instances are all counted (see `store::LoginFailures`). This module is the pure part:
//! encoding, recording, and deciding.

/// Failed logins tolerated within the window.
pub const MAX_FAILURES: usize = 5;
/// Length of the sliding window (15 minutes).
pub const WINDOW_SECS: i64 = 15 * 60;

/// The recent failure times (unix seconds, oldest first) of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWindow(Vec<i64>);

impl FailureWindow {
    /// Decodes the stored value; anything unreadable counts as no failures (the value is
    /// written only by this code, and failing open here is bounded by the next write).
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        let Some(bytes) = bytes else {
            return Self::default();
        };
        let mut times: Vec<i64> = serde_json::from_slice(bytes).unwrap_or_default();
        times.sort_unstable();
        Self(times)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    /// Failures still inside the window at `now`.
    pub fn recent(&self, now: i64) -> impl Iterator<Item = i64> + '_ {
        self.0
            .iter()
            .copied()
            .filter(move |t| now - t < WINDOW_SECS)
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

    /// This window with one more failure at `now`, keeping only what can still matter.
    pub fn with_failure(&self, now: i64) -> Self {
        let mut times: Vec<i64> = self.recent(now).collect();
        times.push(now);
        times.sort_unstable();
        let excess = times.len().saturating_sub(MAX_FAILURES);
        times.drain(..excess);
        Self(times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn after(n: usize, start: i64, step: i64) -> FailureWindow {
        (0..n).fold(FailureWindow::default(), |w, i| {
            w.with_failure(start + i as i64 * step)
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
}

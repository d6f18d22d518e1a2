//! Per-relay flow control (SPEC §5 "Flow control"): how many historic
//! requests (REQ pages, `REQ {ids}` fetches, negentropy sessions) may be in
//! flight on one relay, and how that window reacts to a relay saying "too many".
//!
//! Why a window: real relays cap concurrent subscriptions (often 20) and
//! negentropy sessions (often a handful) and answer the excess with a NOTICE
//! or CLOSED. Sending everything at once floods them, gets requests refused
//! and — worse — queues our own NEG-OPEN behind hundreds of REQs until it
//! looks unanswered. The window keeps the relay busy without exceeding it;
//! a refusal halves it (at most once per [`CUT_INTERVAL`], so one burst of
//! refusals counts once) and the refused request is re-sent later.

use crate::time::Millis;

/// A burst of refusals answers one burst of requests: the window is cut at
/// most once per this interval.
pub const CUT_INTERVAL: core::time::Duration = core::time::Duration::from_secs(1);

/// The in-flight window of one relay connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowWindow {
    /// Current limit of historic requests in flight (≥ 1).
    limit: usize,
    /// When the window was last cut.
    last_cut: Option<Millis>,
    /// Refusals ("too many …") seen on this connection.
    pub refusals: u64,
}

impl FlowWindow {
    /// A window of `limit` requests (at least 1).
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), last_cut: None, refusals: 0 }
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Caps the window (e.g. at the relay's NIP-11 `max_subscriptions`).
    pub fn cap(&mut self, max: usize) {
        self.limit = self.limit.min(max.max(1));
    }

    /// The relay refused a request for being one too many: halve (minimum 1),
    /// unless the window was already cut within [`CUT_INTERVAL`].
    pub fn on_refusal(&mut self, now: Millis) {
        self.refusals += 1;
        if self.last_cut.is_some_and(|t| now.since(t) < CUT_INTERVAL) {
            return;
        }
        self.last_cut = Some(now);
        self.limit = (self.limit / 2).max(1);
    }
}

/// True when a NOTICE/CLOSED/NEG-ERR message is a relay's concurrency limit
/// ("too many concurrent REQs", "rate-limited: too many REQs", "too many
/// concurrent NEG requests", "max subscriptions reached"): flow control, never
/// a capability verdict and never a reason to fail a batch.
pub fn is_too_many(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too many") || m.contains("max subscriptions") || m.contains("maximum subscriptions") || m.contains("subscription limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn refusals_halve_down_to_one_once_per_burst() {
        let mut w = FlowWindow::new(8);
        let t = Millis(10_000);
        w.on_refusal(t);
        assert_eq!(w.limit(), 4);
        // the rest of the same burst does not cut again
        w.on_refusal(t + Duration::from_millis(5));
        w.on_refusal(t + Duration::from_millis(900));
        assert_eq!(w.limit(), 4);
        w.on_refusal(t + Duration::from_secs(1));
        assert_eq!(w.limit(), 2);
        w.on_refusal(t + Duration::from_secs(2));
        w.on_refusal(t + Duration::from_secs(3));
        w.on_refusal(t + Duration::from_secs(4));
        assert_eq!(w.limit(), 1, "never below one");
        assert_eq!(w.refusals, 7);
    }

    #[test]
    fn cap_never_raises_and_never_reaches_zero() {
        let mut w = FlowWindow::new(8);
        w.cap(20);
        assert_eq!(w.limit(), 8);
        w.cap(3);
        assert_eq!(w.limit(), 3);
        w.cap(0);
        assert_eq!(w.limit(), 1);
        assert_eq!(FlowWindow::new(0).limit(), 1);
    }

    #[test]
    fn too_many_messages_are_recognised() {
        for m in [
            "ERROR: too many concurrent REQs",
            "rate-limited: too many REQs",
            "ERROR: too many concurrent NEG requests",
            "error: max subscriptions reached",
            "blocked: subscription limit exceeded",
        ] {
            assert!(is_too_many(m), "{m}");
        }
        for m in ["ERROR: negentropy is not supported", "rate-limited: slow down", "invalid: bad filter", ""] {
            assert!(!is_too_many(m), "{m}");
        }
    }
}

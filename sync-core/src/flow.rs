//! Per-relay flow control (SPEC §5 "Flow control"): how many historic
//! requests (REQ pages, `REQ {ids}` fetches, negentropy sessions) may be in
//! flight on one relay, and how that window reacts to a relay saying "too many".
//!
//! Why a window: real relays cap concurrent subscriptions (often 20) and
//! negentropy sessions (often a handful) and answer the excess with a NOTICE
//! or CLOSED. Sending everything at once floods them, gets requests refused
//! and — worse — queues our own NEG-OPEN behind hundreds of REQs until it
//! looks unanswered. The window keeps the relay busy without exceeding it;
//! a refusal halves it — once per burst: refusals of requests sent before the
//! last cut do not cut again, as TCP reacts once per window of loss — and the
//! refused request is re-sent later.

/// A "too many" NOTICE names no subscription: requests still unanswered this
/// long after it are taken as the refused ones (accepted requests are
/// answered — an EVENT, EOSE or NEG-MSG — well within it on any live relay;
/// a slower one is merely asked twice).
pub const NOTICE_ATTRIBUTION: core::time::Duration = core::time::Duration::from_secs(3);

/// The in-flight window of one relay connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowWindow {
    /// Current limit of historic requests in flight (≥ 1).
    limit: usize,
    /// Start number of the newest request when the window was last cut:
    /// refusals of requests up to it belong to that burst.
    cut_at: Option<u64>,
    /// Refusals ("too many …") seen on this connection.
    pub refusals: u64,
}

impl FlowWindow {
    /// A window of `limit` requests (at least 1).
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), cut_at: None, refusals: 0 }
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Caps the window (e.g. at the relay's NIP-11 `max_subscriptions`).
    pub fn cap(&mut self, max: usize) {
        self.limit = self.limit.min(max.max(1));
    }

    /// The relay refused the request started as number `started` as one too
    /// many; `newest` is the newest start number so far. Halves the window
    /// (minimum 1) unless the refused request was sent before the last cut.
    pub fn on_refusal(&mut self, started: u64, newest: u64) {
        self.refusals += 1;
        self.cut(started, newest);
    }

    /// Halves the window for a burst of refusals (see [`FlowWindow::on_refusal`])
    /// without counting one.
    pub fn cut(&mut self, started: u64, newest: u64) {
        if self.cut_at.is_some_and(|c| started <= c) {
            return;
        }
        self.cut_at = Some(newest);
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

/// Why a relay's NOTICE, CLOSED or NEG-ERR refuses work, as counted per
/// relay (`RelayCounters::refusals`); `None` when the message is no refusal
/// we recognise (a NOTICE chatting, say).
pub fn refusal_reason(message: &str) -> Option<&'static str> {
    use nostr::message::MachineReadablePrefix as P;
    if is_too_many(message) {
        return Some("too_many");
    }
    if let Some(prefix) = P::parse(message) {
        return match prefix {
            P::RateLimited => Some("rate_limited"),
            P::Blocked => Some("blocked"),
            P::AuthRequired => Some("auth_required"),
            P::Restricted => Some("restricted"),
            P::Invalid => Some("invalid"),
            P::Error => Some("error"),
            P::Unsupported => Some("unsupported"),
            P::Pow => Some("pow"),
            P::Duplicate => None,
        };
    }
    let m = message.trim().to_ascii_lowercase();
    if m.starts_with("rejected") {
        return Some("rejected");
    }
    // relays that do not know a message type (NEG-OPEN on a relay without
    // NIP-77) say so in their own words
    let unknown =
        ["unknown message", "unknown command", "unknown type", "unsupported message", "unrecognized", "not supported", "could not parse"];
    unknown.iter().any(|u| m.contains(u)).then_some("unknown_message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_halve_down_to_one_once_per_burst() {
        let mut w = FlowWindow::new(8);
        // requests 1..=8 in flight; the relay allows 3 and refuses 4..=8
        w.on_refusal(4, 8);
        assert_eq!(w.limit(), 4);
        for started in 5..=8 {
            w.on_refusal(started, 8);
        }
        assert_eq!(w.limit(), 4, "one burst cuts once");
        // request 9, sent after the cut, is refused too: cut again
        w.on_refusal(9, 9);
        assert_eq!(w.limit(), 2);
        w.on_refusal(10, 10);
        w.on_refusal(11, 11);
        assert_eq!(w.limit(), 1, "never below one");
        assert_eq!(w.refusals, 8);
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

    #[test]
    fn refusals_are_named_by_reason() {
        for (message, reason) in [
            ("ERROR: too many concurrent REQs", Some("too_many")),
            ("rate-limited: slow down", Some("rate_limited")),
            ("rejected: too many subscriptions", Some("too_many")),
            ("rejected: not allowed", Some("rejected")),
            ("blocked: you are banned", Some("blocked")),
            ("auth-required: log in", Some("auth_required")),
            ("ERROR: unknown message type NEG-OPEN", Some("unknown_message")),
            ("error: internal", Some("error")),
            ("duplicate: have it", None),
            ("welcome to the relay", None),
        ] {
            assert_eq!(refusal_reason(message), reason, "{message}");
        }
    }
}

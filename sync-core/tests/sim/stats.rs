//! Coverage counters: evidence that the sweep really exercises the hostile
//! paths (pagination, rate limits, drops, forged events, quick reconnects…),
//! so the simulation cannot silently degrade into a happy-path test.

use core::ops::AddAssign;
use std::collections::BTreeMap;

use super::dataset::RelayKind;

/// Per-run (or summed) counts of interesting things that happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Runs counted.
    pub runs: u64,
    /// REQ pages asked with `until` (pagination past the first page).
    pub until_pages: u64,
    /// Historic requests with `since` (quick reconnect).
    pub since_requests: u64,
    /// NEG-OPEN frames sent.
    pub neg_opens: u64,
    /// NEG-MSG frames sent after the first round (multi-round reconciliation).
    pub neg_msgs: u64,
    /// `REQ {ids}` fetches sent.
    pub id_fetches: u64,
    /// `rate-limited:` answers the engine saw.
    pub rate_limited: u64,
    /// Connections dropped by flaky relays.
    pub drops: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Events rejected for an invalid signature.
    pub invalid_signatures: u64,
    /// Events rejected by the acceptance policy.
    pub not_accepted: u64,
    /// Store saves failed on purpose.
    pub store_failures: u64,
    /// Saves failed during a store outage.
    pub outage_failures: u64,
    /// Accepted events the engine forgot during an outage (beyond 4 × max_unsaved).
    pub forgotten: u64,
    /// Live events published during runs.
    pub live_published: u64,
    /// Relays ending ConnectedDegraded.
    pub degraded: u64,
    /// Addressable versions saved and later replaced by a newer one.
    pub replaced: u64,
    /// Events stored.
    pub stored: u64,
    /// Engine restarts (shutdown, persisted state, restore).
    pub restarts: u64,
    /// "Too many" refusals sent by limited relays.
    pub refusals: u64,
    /// Events at a page's `until` second an ExclusiveUntil relay left out.
    pub exclusive_until_skips: u64,
    /// Per relay kind: relays run.
    pub relays_by_kind: BTreeMap<String, u64>,
    /// Per relay kind: most historic requests (non-live subscriptions plus
    /// negentropy sessions) seen open at once on one connection, relay side.
    pub max_in_flight_by_kind: BTreeMap<String, usize>,
    /// Most live subscriptions seen open at once on one connection (any relay).
    pub max_live_open: usize,
    /// JunkFlood junk events sent.
    pub junk_sent: u64,
    /// EndlessNeg negentropy messages sent.
    pub endless_msgs: u64,
    /// NoticeStorm NOTICEs sent.
    pub storm_notices: u64,
    /// Live subscriptions closed by ClosesLive relays.
    pub live_closed: u64,
    /// Of those, reopened by the engine.
    pub live_reopened: u64,
    /// Events published to a ClosesLive relay while a matching live subscription was closed.
    pub published_while_closed: u64,
    /// Oversized frames sent.
    pub oversized_sent: u64,
    /// Frames the engine refused as oversized.
    pub oversized_refused: u64,
    /// Future-dated events the engine refused (`invalid_created_at`).
    pub future_refused: u64,
    /// Events the engine quarantined as unsaveable (random store failures).
    pub quarantined: u64,
    /// Most unsaved events the engine held at once (any run).
    pub max_unsaved: usize,
    /// Most events waiting to be saved while the store kept failing (any run).
    pub max_backlog_while_failing: usize,
    /// Longest Syncing spell (virtual ms, any run).
    pub max_syncing_ms: u64,
    /// Negentropy loads asked for while a save asked before them was
    /// unfinished (the driver had to hold them back).
    pub loads_waited: u64,
    /// Queries of stored events and persisted states asked for while a save
    /// was in flight (the driver had to finish it first; rare: the engine
    /// persists beside a save only while the store keeps failing, so not a
    /// coverage gap).
    pub store_reads_waited: u64,
    /// Driver stops (restarts and run ends) with a save in flight or
    /// unsaved events: the shutdown had to flush them before persisting.
    pub shutdown_flushes: u64,
}

impl AddAssign<&Stats> for Stats {
    fn add_assign(&mut self, o: &Stats) {
        self.runs += o.runs;
        self.until_pages += o.until_pages;
        self.since_requests += o.since_requests;
        self.neg_opens += o.neg_opens;
        self.neg_msgs += o.neg_msgs;
        self.id_fetches += o.id_fetches;
        self.rate_limited += o.rate_limited;
        self.drops += o.drops;
        self.connect_failures += o.connect_failures;
        self.invalid_signatures += o.invalid_signatures;
        self.not_accepted += o.not_accepted;
        self.store_failures += o.store_failures;
        self.outage_failures += o.outage_failures;
        self.forgotten += o.forgotten;
        self.live_published += o.live_published;
        self.degraded += o.degraded;
        self.replaced += o.replaced;
        self.stored += o.stored;
        self.restarts += o.restarts;
        self.refusals += o.refusals;
        self.exclusive_until_skips += o.exclusive_until_skips;
        self.max_live_open = self.max_live_open.max(o.max_live_open);
        self.junk_sent += o.junk_sent;
        self.endless_msgs += o.endless_msgs;
        self.storm_notices += o.storm_notices;
        self.live_closed += o.live_closed;
        self.live_reopened += o.live_reopened;
        self.published_while_closed += o.published_while_closed;
        self.oversized_sent += o.oversized_sent;
        self.oversized_refused += o.oversized_refused;
        self.future_refused += o.future_refused;
        self.quarantined += o.quarantined;
        self.max_unsaved = self.max_unsaved.max(o.max_unsaved);
        self.max_syncing_ms = self.max_syncing_ms.max(o.max_syncing_ms);
        self.max_backlog_while_failing = self.max_backlog_while_failing.max(o.max_backlog_while_failing);
        self.loads_waited += o.loads_waited;
        self.store_reads_waited += o.store_reads_waited;
        self.shutdown_flushes += o.shutdown_flushes;
        for (k, n) in &o.relays_by_kind {
            *self.relays_by_kind.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &o.max_in_flight_by_kind {
            let m = self.max_in_flight_by_kind.entry(k.clone()).or_default();
            *m = (*m).max(*n);
        }
    }
}

impl Stats {
    /// Counts one frame the engine sent.
    pub fn on_sent(&mut self, text: &str) {
        if text.starts_with("[\"REQ\"") {
            if text.contains("\"until\"") {
                self.until_pages += 1;
            }
            if text.contains("\"ids\"") {
                self.id_fetches += 1;
            }
        }
        if (text.starts_with("[\"REQ\",\"hist") || text.starts_with("[\"NEG-OPEN\"")) && text.contains("\"since\"") {
            self.since_requests += 1;
        }
        if text.starts_with("[\"NEG-OPEN\"") {
            self.neg_opens += 1;
        }
        if text.starts_with("[\"NEG-MSG\"") {
            self.neg_msgs += 1;
        }
    }

    /// Names of counters that stayed at zero (coverage gaps).
    pub fn gaps(&self) -> Vec<String> {
        let all = [
            ("until_pages", self.until_pages),
            ("since_requests", self.since_requests),
            ("neg_opens", self.neg_opens),
            ("neg_msgs", self.neg_msgs),
            ("id_fetches", self.id_fetches),
            ("rate_limited", self.rate_limited),
            ("drops", self.drops),
            ("connect_failures", self.connect_failures),
            ("invalid_signatures", self.invalid_signatures),
            ("not_accepted", self.not_accepted),
            ("store_failures", self.store_failures),
            ("outage_failures", self.outage_failures),
            ("live_published", self.live_published),
            ("degraded", self.degraded),
            ("replaced", self.replaced),
            ("restarts", self.restarts),
            ("refusals", self.refusals),
            ("exclusive_until_skips", self.exclusive_until_skips),
            ("junk_sent", self.junk_sent),
            ("endless_msgs", self.endless_msgs),
            ("storm_notices", self.storm_notices),
            ("live_closed", self.live_closed),
            ("live_reopened", self.live_reopened),
            ("published_while_closed", self.published_while_closed),
            ("oversized_refused", self.oversized_refused),
            ("future_refused", self.future_refused),
            ("loads_waited", self.loads_waited),
            ("shutdown_flushes", self.shutdown_flushes),
        ];
        let mut gaps: Vec<String> = all.iter().filter(|(_, n)| *n == 0).map(|(name, _)| name.to_string()).collect();
        for kind in RelayKind::ALL {
            let kind = format!("{kind:?}");
            if !self.relays_by_kind.contains_key(&kind) {
                gaps.push(format!("relay kind {kind}"));
            }
        }
        gaps
    }
}

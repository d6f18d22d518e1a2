//! Live subscriptions of one relay (SPEC §3 "live", §5 "Consolidation"),
//! kept by its [`RelayMachine`].
//!
//! New batches queue their items in `live_pending`;
//! [`RelayMachine::flush_live`] opens them packed several to a REQ (within
//! `live_req_max_bytes`) before any historic request of those batches goes
//! out, so nothing published meanwhile falls between historic and live. Live
//! REQs count against the relay's subscription limit (NIP-11
//! `max_subscriptions`, or learned from its refusals): they may use at most
//! half of it, and when one filter per 100 roots cannot fit, layer 3 goes
//! live through one kind filter ([`BatchItems::AllThreads`]) and the
//! acceptance policy keeps our threads.

use nostr::{ClientMessage, Filter, SubscriptionId};

use super::relay::RelayMachine;
use super::Engine;
use crate::config::SyncConfig;
use crate::filters::{self, BatchItems};
use crate::relay_url::RelayUrl;
use crate::status::DegradedReason;
use crate::time::Millis;

impl RelayMachine {
    /// Opens live REQs for the items of new batches (before their historic
    /// requests: `next_work` starts nothing while items wait here).
    pub(crate) fn flush_live(&mut self, config: &SyncConfig, now: Millis) {
        let Some(session) = self.session.as_mut() else { return };
        if session.live_pending.is_empty() || session.pause_until.is_some_and(|t| now < t) {
            return;
        }
        if session.l3_broad {
            session.live_pending.retain(|i| !matches!(i, BatchItems::Roots(_)));
        }
        let groups = filters::pack(session.live_pending.clone(), config.live_req_max_bytes);
        let projected = session.live.len() + groups.len();
        if self.consolidate(config, projected, now) {
            return;
        }
        let Some(session) = self.session.as_mut() else { return };
        let in_flight = session.requests_in_flight();
        if in_flight > 0 && session.sub_budget.is_some_and(|b| projected + in_flight > b) {
            // wait until historic requests free the relay's slots (with none
            // in flight, open anyway: a refusal then teaches the real limit)
            return;
        }
        session.live_pending.clear();
        let mut msgs = Vec::new();
        for group in groups {
            let sub = session.sub_id("live");
            msgs.push(live_req(&sub, &group));
            session.live.insert(sub, group);
        }
        for m in msgs {
            self.transmit(&m, now);
        }
    }

    /// Consolidation after a refusal or a budget change.
    pub(crate) fn maybe_consolidate(&mut self, config: &SyncConfig, now: Millis) {
        let Some(session) = self.session.as_ref() else { return };
        let projected = session.live.len();
        self.consolidate(config, projected, now);
    }

    /// SPEC §5 consolidation, given `projected` live REQs (open + about to
    /// open): more than `max_live_filters` (at most once per batch window),
    /// or more than half the relay's subscription limit, are replaced by the
    /// fewest REQs covering everything confirmed or pending — only when that
    /// lowers the count. Make-before-break when the relay's limit leaves room
    /// for both sets, so no live event is missed; otherwise the old REQs are
    /// closed first. True when it replaced them.
    fn consolidate(&mut self, config: &SyncConfig, projected: usize, now: Millis) -> bool {
        let (max_a, max_i, max_bytes) = (config.max_addresses_per_filter, config.max_ids_per_filter, config.live_req_max_bytes);
        let url = &self.url;
        let Some(session) = self.session.as_mut() else { return false };
        let over_budget = session.sub_budget.is_some_and(|b| projected > (b / 2).max(1));
        let over_max = projected > config.max_live_filters && session.last_consolidated.is_none_or(|t| now.since(t) >= config.batch_window);
        if !over_budget && !over_max {
            return false;
        }
        let (mut repos, mut roots) = session.pending_items();
        repos.extend(self.sync.confirmed_repos.iter().cloned());
        roots.extend(self.sync.confirmed_roots.iter().copied());
        let covering = |broad: bool| {
            let mut items = vec![BatchItems::Announcements];
            items.extend(filters::chunk_repos(&repos, max_a));
            if broad {
                items.push(BatchItems::AllThreads);
            } else {
                items.extend(filters::chunk_roots(&roots, max_i));
            }
            filters::pack(items, max_bytes)
        };
        let mut groups = covering(session.l3_broad);
        if let Some(budget) = session.sub_budget.filter(|b| groups.len() > (b / 2).max(1) && !session.l3_broad) {
            tracing::info!(relay = %url, budget, roots = roots.len(), "relay's subscription limit is too small for per-root live filters; layer 3 goes live by kind");
            session.l3_broad = true;
            groups = covering(true);
        }
        if groups.len() >= projected {
            return false;
        }
        let live = session.live.len();
        session.last_consolidated = Some(now);
        session.live_pending.clear();
        let old: Vec<String> = session.live.keys().cloned().collect();
        let mut opens = Vec::new();
        for group in groups {
            let sub = session.sub_id("live");
            opens.push(live_req(&sub, &group));
            session.live.insert(sub, group);
        }
        let closes: Vec<ClientMessage<'static>> = old
            .into_iter()
            .map(|s| {
                session.live.remove(&s);
                ClientMessage::close(SubscriptionId::new(s))
            })
            .collect();
        let fits_both = session.sub_budget.is_none_or(|b| live + opens.len() + session.requests_in_flight() <= b);
        tracing::info!(relay = %url, from = live, to = session.live.len(), make_before_break = fits_both, "consolidated live subscriptions");
        let msgs: Vec<ClientMessage<'static>> =
            if fits_both { opens.into_iter().chain(closes).collect() } else { closes.into_iter().chain(opens).collect() };
        for m in msgs {
            self.transmit(&m, now);
        }
        true
    }

    /// The relay refused a live REQ as one too many: its limit is what we
    /// hold now; pause, then cover the refused items again (consolidated).
    pub(crate) fn live_refused(&mut self, config: &SyncConfig, sub: &str, now: Millis) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(items) = session.live.remove(sub) else { return };
        let held = session.live.len() + session.requests_in_flight();
        session.sub_budget = Some(session.sub_budget.map_or(held, |b| b.min(held)).max(2));
        session.window.on_refusal(session.next_start, session.next_start);
        session.pause_until = Some(now + config.refusal_pause);
        tracing::info!(relay = %self.url, sub, budget = ?session.sub_budget, "relay refused a live subscription as too many");
        session.live_pending.extend(items);
        self.maybe_consolidate(config, now);
    }

    /// The relay closed a live subscription (not as one too many). It is
    /// still wanted: reopened with `since` (events published while it was
    /// closed are not lost), at once when rate limited (held in the outbox
    /// until the cooldown ends), otherwise after a backoff that doubles with
    /// each close in a row. After `live_reopen_max` closes in a row the
    /// relay is ConnectedDegraded, with the relay's reason in the status.
    pub(crate) fn live_closed(&mut self, config: &SyncConfig, sub: &str, message: &str, rate_limited: bool, now: Millis) {
        let since = nostr::Timestamp::from((now - config.since_safety_margin).as_secs());
        let Some(session) = self.session.as_mut() else { return };
        tracing::warn!(relay = %self.url, sub, message, "relay closed a live subscription");
        if rate_limited {
            let Some(items) = session.live.get(sub) else { return };
            let filters_: Vec<Filter> = items.iter().flat_map(|i| i.filters()).map(|f| f.since(since)).collect();
            return self.transmit(&ClientMessage::req(SubscriptionId::new(sub), filters_), now);
        }
        // closes arriving together (a relay dropping all its subscriptions) count once
        if self.last_live_close.is_none_or(|t| now >= t + core::time::Duration::from_secs(1)) {
            self.live_closes += 1;
        }
        self.last_live_close = Some(now);
        let closes = self.live_closes;
        let delay = config.backoff_base.saturating_mul(1u32 << (closes - 1).min(16)).min(config.backoff_max);
        let due = session.live_reopen.get(sub).map_or(since, |(_, s)| (*s).min(since));
        session.live_reopen.insert(sub.to_string(), (now + delay, due));
        if closes >= config.live_reopen_max {
            self.degrade(DegradedReason::LiveClosed { closes, message: message.to_string() }, now);
        }
    }

    /// Reopens the closed live subscriptions whose backoff is over.
    pub(crate) fn reopen_live(&mut self, now: Millis) {
        let Some(session) = self.session.as_mut() else { return };
        let due: Vec<(String, nostr::Timestamp)> =
            session.live_reopen.iter().filter(|(_, (at, _))| now >= *at).map(|(s, (_, since))| (s.clone(), *since)).collect();
        let mut msgs = Vec::new();
        for (sub, since) in due {
            session.live_reopen.remove(&sub);
            let Some(items) = session.live.get(&sub) else { continue };
            let filters_: Vec<Filter> = items.iter().flat_map(|i| i.filters()).map(|f| f.since(since)).collect();
            msgs.push(ClientMessage::req(SubscriptionId::new(&sub), filters_));
        }
        for m in msgs {
            self.transmit(&m, now);
        }
    }
}

/// The endpoint's side: route to the relay's machine, then pass on what it asked for.
impl Engine {
    /// See [`RelayMachine::flush_live`].
    pub(super) fn flush_live(&mut self, url: &RelayUrl, now: Millis) {
        self.with_relay(url, |relay, config| relay.flush_live(config, now));
    }

    /// See [`RelayMachine::maybe_consolidate`].
    pub(super) fn maybe_consolidate(&mut self, url: &RelayUrl, now: Millis) {
        self.with_relay(url, |relay, config| relay.maybe_consolidate(config, now));
    }

    /// See [`RelayMachine::live_refused`].
    pub(super) fn live_refused(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        self.with_relay(url, |relay, config| relay.live_refused(config, sub, now));
    }

    /// See [`RelayMachine::live_closed`].
    pub(super) fn live_closed(&mut self, url: &RelayUrl, sub: &str, message: &str, rate_limited: bool, now: Millis) {
        self.with_relay(url, |relay, config| relay.live_closed(config, sub, message, rate_limited, now));
    }

    /// See [`RelayMachine::reopen_live`].
    pub(super) fn reopen_live(&mut self, url: &RelayUrl, now: Millis) {
        self.with_relay(url, |relay, _| relay.reopen_live(now));
    }

    /// A relay whose closes stopped a stability period ago is trusted again.
    pub(super) fn forgive_live_closes(&mut self, url: &RelayUrl, now: Millis) {
        self.with_relay(url, |relay, config| relay.forgive_live_closes(config, now));
    }
}

/// `["REQ", sub, …]` with every item's filters in live form (`limit:0`).
fn live_req(sub: &str, group: &[BatchItems]) -> ClientMessage<'static> {
    let fs: Vec<Filter> = group.iter().flat_map(|i| i.filters()).map(|f| filters::live(&f)).collect();
    ClientMessage::req(SubscriptionId::new(sub), fs)
}

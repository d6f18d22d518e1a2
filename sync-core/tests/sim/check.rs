//! The invariants checked at the end of every run.
//!
//! (1) completeness, (2) nothing unacceptable, forged or future-dated
//! stored, (3) legal status histories, (4) totals and final states, (5) flow
//! control seen from the relays, (6) bounds against hostile relays: no relay
//! Syncing longer than [`SYNCING_BOUND`] after it connected, degraded relays
//! say why, negentropy rounds and REQ pages per request within the engine's
//! bounds, the unsaved backlog within 4 × `max_unsaved` while the store
//! fails, and live events a ClosesLive relay received while it had closed
//! our subscription arrive; (7) the production driver's store ordering (one
//! save in flight, negentropy loads after the saves asked before them,
//! queries and persisted states after every save, the shutdown flush), as
//! the simulated store saw it (`sim/store.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nostr::{Event, EventId};
use sync_core::{ConnectionStatus, HealthStatus};

use super::dataset::{RelayKind, World, GONE_RELAY, OUR_RELAY, PRIVATE_RELAY};
use super::model::Model;
use super::stats::Stats;
use super::world::{sim_config, Outcome};

/// No relay stays Syncing longer than this after it connected (virtual
/// time): the historic sync of the largest simulated dataset, through the
/// slowest relay (14 s per answer), rate-limit cooldowns and hostile
/// relays' bounded attempts, ends well within it.
pub const SYNCING_BOUND: Duration = Duration::from_secs(30 * 60);

fn addr_key(e: &Event) -> Option<(u16, String, String)> {
    let k = e.kind.as_u16();
    (30000..40000).contains(&k).then(|| {
        let d = e
            .tags
            .iter()
            .find_map(|t| (t.as_slice().first().map(String::as_str) == Some("d")).then(|| t.as_slice().get(1).cloned()).flatten());
        (k, e.pubkey.to_hex(), d.unwrap_or_default())
    })
}

/// NIP-01 ordering for replaceable events: newer wins, lower id on a tie.
fn newer_or_same(a: &Event, b: &Event) -> bool {
    sync_core::nip01::newest_first(a.created_at.as_secs(), &a.id, b.created_at.as_secs(), &b.id) != std::cmp::Ordering::Greater
}

/// Coverage counters that come from the final snapshot, the store and the relays.
pub fn snapshot_stats(world: &World, out: &Outcome) -> Stats {
    let status = &out.status;
    let mut s = out.stats.clone();
    for spec in &world.relays {
        let kind = format!("{:?}", spec.kind);
        *s.relays_by_kind.entry(kind.clone()).or_default() += 1;
        if let Some(obs) = out.relay_obs.get(&spec.url) {
            s.refusals += obs.refusals;
            s.exclusive_until_skips += obs.exclusive_until_skips;
            s.max_live_open = s.max_live_open.max(obs.max_live_open);
            let m = s.max_in_flight_by_kind.entry(kind).or_default();
            *m = (*m).max(obs.max_historic_open);
        }
    }
    for r in &status.relays {
        s.rate_limited += r.counters.rate_limited;
        s.connect_failures += r.counters.connect_failure;
        s.degraded += u64::from(r.connection == ConnectionStatus::ConnectedDegraded);
    }
    for spec in &world.relays {
        let Some(obs) = out.relay_obs.get(&spec.url) else { continue };
        s.junk_sent += obs.junk_sent;
        s.endless_msgs += obs.endless_msgs;
        s.storm_notices += obs.storm_notices;
        s.live_closed += obs.live_closed;
        s.live_reopened += obs.live_reopened;
        s.published_while_closed += obs.published_while_closed.len() as u64;
        s.oversized_sent += obs.oversized_sent;
    }
    s.quarantined += out.quarantined_before + status.totals.events_quarantined;
    s.forgotten += out.forgotten_before + status.totals.events_forgotten;
    s.future_refused += status.totals.events_rejected.get("invalid_created_at").copied().unwrap_or(0);
    s.oversized_refused += status.totals.events_rejected.get("oversized").copied().unwrap_or(0);
    s.max_unsaved = s.max_unsaved.max(out.max_unsaved);
    s.max_backlog_while_failing = s.max_backlog_while_failing.max(out.max_backlog_while_failing);
    s.max_syncing_ms = s.max_syncing_ms.max(syncing_spells(out).into_iter().map(|(_, _, d)| d.as_millis() as u64).max().unwrap_or(0));
    s.invalid_signatures += status.totals.events_rejected.get("invalid_signature").copied().unwrap_or(0);
    s.not_accepted += status.totals.events_rejected.get("not_accepted").copied().unwrap_or(0);
    s.stored += out.store.len() as u64;
    s.replaced += (out.saved_outcomes + out.prestored).saturating_sub(out.store.len() as u64);
    s
}

/// Every violated invariant, as one line each (empty when the run is good).
pub fn check(world: &World, model: &Model, out: &Outcome) -> Vec<String> {
    let mut errs = Vec::new();
    let mut stored: Vec<Event> = out.store.all();
    stored.sort_by_key(|e| e.id);
    let stored_ids: BTreeSet<EventId> = stored.iter().map(|e| e.id).collect();
    let by_key: BTreeMap<(u16, String, String), &Event> = stored.iter().filter_map(|e| addr_key(e).map(|k| (k, e))).collect();

    // (1) every required event stored exactly once (addressable: it or a newer version).
    // The engine may quarantine an event the store failed alone twice with
    // other saves succeeding in between (its poison-event rule, which random
    // transient failures can meet): such an event is excused, as long as the
    // engine counted at least that many quarantines.
    let quarantined = out.quarantined_before + out.status.totals.events_quarantined;
    let excused = |id: &EventId| quarantined > 0 && out.quarantine_suspects.contains(id);
    if quarantined > out.quarantine_suspects.len() as u64 {
        errs.push(format!(
            "{quarantined} events quarantined, but only {} failed to save alone twice with other saves in between",
            out.quarantine_suspects.len()
        ));
    }
    for (id, e) in model.required.iter().filter(|(id, _)| !excused(id)) {
        match addr_key(e) {
            Some(key) => match by_key.get(&key) {
                Some(s) if newer_or_same(s, e) => {}
                Some(s) => errs.push(format!(
                    "required addressable {id} (kind {}, created {}) superseded by older stored {}",
                    key.0, e.created_at, s.id
                )),
                None => errs.push(format!("required addressable {id} (kind {}) missing; {}", key.0, where_is(world, id))),
            },
            None => {
                if !stored_ids.contains(id) {
                    errs.push(format!(
                        "required event {id} (kind {}, created {}, tags {}) missing; {}",
                        e.kind.as_u16(),
                        e.created_at,
                        tags_of(e),
                        where_is(world, id)
                    ));
                }
            }
        }
    }
    // exactly once: nothing was ever saved twice
    for e in &stored {
        let n = out.store.saved_count(&e.id);
        if n != 1 {
            errs.push(format!("event {} saved {n} times", e.id));
        }
    }
    // (2) nothing unaccepted, forged or future-dated stored
    let skew = sim_config(world).max_future_skew;
    let latest = (out.end + skew).as_secs();
    let future: BTreeSet<EventId> = world.relays.iter().flat_map(|r| r.future.iter().map(|e| e.id)).collect();
    for e in &stored {
        if e.created_at.as_secs() > latest || future.contains(&e.id) {
            errs.push(format!("stored event {} (kind {}) is dated in the future: {}", e.id, e.kind.as_u16(), e.created_at));
        }
    }
    let universe = world.universe();
    for e in &stored {
        // the world's own events are validly signed: an identical copy
        // needs no verification (the expensive part of the checks)
        let genuine = universe.get(&e.id).is_some_and(|u| u == e && u.sig == e.sig);
        if !genuine && e.verify().is_err() {
            errs.push(format!("stored event {} does not verify (forged)", e.id));
        }
        if !model.allowed.contains(&e.id) {
            errs.push(format!("stored event {} (kind {}) is not acceptable", e.id, e.kind.as_u16()));
        }
    }
    // (3) status transitions follow the state machine, chained per relay.
    let mut last: BTreeMap<String, ConnectionStatus> = BTreeMap::new();
    for t in &out.transitions {
        let prev = last.get(t.relay.as_str()).copied().unwrap_or(ConnectionStatus::Disconnected);
        if prev != t.from {
            errs.push(format!("transition chain broken for {}: was {prev:?}, recorded from {:?} at {}", t.relay, t.from, t.at.0));
        }
        if !t.from.can_become(t.to) {
            errs.push(format!("illegal transition {} {:?} -> {:?} at {}", t.relay, t.from, t.to, t.at.0));
        }
        last.insert(t.relay.to_string(), t.to);
    }
    // (4) totals match the store and the per-relay rows.
    let status = &out.status;
    let totals = &status.totals;
    if totals.unsaved_events != 0 {
        errs.push(format!("{} accepted events never saved", totals.unsaved_events));
    }
    // (over restarts: every engine's counter, since each process starts at 0)
    if out.synced_before + totals.events_synced != out.saved_outcomes {
        errs.push(format!(
            "events_synced {} (+ {} before a restart) != store Saved outcomes {}",
            totals.events_synced, out.synced_before, out.saved_outcomes
        ));
    }
    // Saved outcomes (plus what was in the store before) = stored events +
    // addressable versions replaced later by a newer one.
    let replaced = universe.keys().filter(|id| !stored_ids.contains(id) && out.store.saved_count(id) == 1).count() as u64;
    let before = world.prestored.len() as u64;
    if out.saved_outcomes + before != stored.len() as u64 + replaced {
        errs.push(format!("saved outcomes {} + prestored {before} != stored {} + replaced {replaced}", out.saved_outcomes, stored.len()));
    }
    if totals.relays_tracked != status.relays.len() {
        errs.push(format!("relays_tracked {} != rows {}", totals.relays_tracked, status.relays.len()));
    }
    let connected = status.relays.iter().filter(|r| r.connection_code >= 2).count();
    if totals.relays_connected != connected {
        errs.push(format!("relays_connected {} != rows {connected}", totals.relays_connected));
    }
    let dead = status.relays.iter().filter(|r| r.health == HealthStatus::Dead).count();
    if totals.relays_dead != dead {
        errs.push(format!("relays_dead {} != rows {dead}", totals.relays_dead));
    }
    let pending: usize = status.relays.iter().map(|r| r.pending_batches).sum();
    if totals.pending_batches != pending {
        errs.push(format!("pending_batches {} != rows {pending}", totals.pending_batches));
    }
    let received: u64 = status.relays.iter().map(|r| r.counters.events_received).sum();
    if totals.events_received != received {
        errs.push(format!("events_received {} != rows {received}", totals.events_received));
    }
    if totals.repositories != status.repositories.len() {
        errs.push(format!("repositories {} != rows {}", totals.repositories, status.repositories.len()));
    }
    for r in &status.relays {
        if r.connection_code != r.connection.code() || r.health_code != r.health.code() {
            errs.push(format!("{}: codes do not match states", r.relay));
        }
        if last.get(&r.relay).copied().unwrap_or(ConnectionStatus::Disconnected) != r.connection {
            errs.push(format!("{}: status {:?} differs from last recorded transition", r.relay, r.connection));
        }
    }
    // Repositories: required ⊆ known ⊆ allowed.
    let known: BTreeSet<&str> = status.repositories.iter().map(|r| r.address.as_str()).collect();
    for a in &model.required_repos {
        if !known.contains(a.as_str()) {
            errs.push(format!("required repository {a} unknown to the engine"));
        }
    }
    for a in &known {
        if !model.allowed_repos.contains(*a) {
            errs.push(format!("engine serves repository {a} that is not acceptable"));
        }
    }
    // Relay URL rules: never our own relay, never a private address.
    for url in [OUR_RELAY, PRIVATE_RELAY] {
        if out.connect_attempts.contains_key(url) || status.relays.iter().any(|r| r.relay == url) {
            errs.push(format!("engine tracked or connected to forbidden relay {url}"));
        }
    }
    // Final connection status per relay kind.
    let rows: BTreeMap<&str, _> = status.relays.iter().map(|r| (r.relay.as_str(), r)).collect();
    for spec in &world.relays {
        let row = rows.get(spec.url.as_str());
        if model.contacted.contains(&spec.url) && row.is_none() {
            errs.push(format!("{} ({:?}) should be tracked", spec.url, spec.kind));
            continue;
        }
        let Some(row) = row else { continue };
        let ok = match spec.kind {
            k if k.reliable() => row.connection == ConnectionStatus::Connected,
            RelayKind::Withholding | RelayKind::NeverEose => row.connection == ConnectionStatus::ConnectedDegraded,
            _ => matches!(row.connection, ConnectionStatus::Connected | ConnectionStatus::ConnectedDegraded),
        };
        if !ok {
            errs.push(format!("{} ({:?}) ends {:?}", spec.url, spec.kind, row.connection));
        }
        if row.connection == ConnectionStatus::Connected && !row.historic_sync_completed {
            errs.push(format!("{} Connected without historic_sync_completed", spec.url));
        }
    }
    if let Some(gone) = rows.get(GONE_RELAY) {
        if gone.connection.is_connected() || gone.failures == 0 {
            errs.push(format!("{GONE_RELAY} should be failing, is {:?} with {} failures", gone.connection, gone.failures));
        }
    }
    // (5) flow control, seen from the relays.
    let config = sim_config(world);
    let window = config.max_in_flight;
    for spec in &world.relays {
        let Some(obs) = out.relay_obs.get(&spec.url) else { continue };
        if obs.max_historic_open > window {
            errs.push(format!(
                "{} ({:?}): {} historic requests open at once on one connection, window is {window}",
                spec.url, spec.kind, obs.max_historic_open
            ));
        }
        if obs.repeated_ids > 0 {
            errs.push(format!(
                "{} ({:?}): {} id(s) asked for again under another subscription on one connection: {}",
                spec.url,
                spec.kind,
                obs.repeated_ids,
                obs.repeated_findings.join("; ")
            ));
        }
        // SPEC §2: a lone NEG-OPEN without an answer in time makes a relay
        // REQ-only; answers slower than that timeout may legitimately do so.
        // (Hostile relays: see (6).)
        let answers_in_time = Duration::from_millis(spec.answer_delay_ms) < config.negentropy_open_timeout;
        if spec.nip77 && answers_in_time && !spec.kind.hostile() {
            if let Some((_, at)) = out.req_only_seen.iter().find(|(u, _)| *u == spec.url) {
                errs.push(format!("{} ({:?}) speaks NIP-77 but was REQ-only at +{at}ms", spec.url, spec.kind));
            } else if rows.get(spec.url.as_str()).is_some_and(|r| r.req_only) {
                errs.push(format!("{} ({:?}) speaks NIP-77 but ends REQ-only", spec.url, spec.kind));
            }
        }
        if let Some(max) = spec.stated_max_subs.filter(|m| obs.max_subs_wanted > *m) {
            errs.push(format!(
                "{} ({:?}): {} subscriptions wanted open at once on one connection, NIP-11 max_subscriptions is {max}",
                spec.url, spec.kind, obs.max_subs_wanted
            ));
        }
        if spec.kind.limited() && obs.refusals > 0 {
            if let Some(row) = rows.get(spec.url.as_str()).filter(|r| r.connection != ConnectionStatus::Connected) {
                errs.push(format!(
                    "{} ({:?}, {} refusals) states limits and must converge, ends {:?}",
                    spec.url, spec.kind, obs.refusals, row.connection
                ));
            }
        }
    }
    // (6) bounds against hostile relays.
    for (relay, from, took) in syncing_spells(out) {
        if took > SYNCING_BOUND {
            errs.push(format!("{relay} Syncing for {}s from +{}s (bound {}s)", took.as_secs(), from / 1000, SYNCING_BOUND.as_secs()));
        }
    }
    for r in status.relays.iter().filter(|r| r.connection == ConnectionStatus::ConnectedDegraded && r.degraded_reason.is_none()) {
        errs.push(format!("{} ends ConnectedDegraded without a degraded_reason", r.relay));
    }
    // While the store keeps failing, accepted events beyond 4 × max_unsaved
    // are forgotten (engine/saving.rs); otherwise backpressure stops new
    // historic requests at max_unsaved, and what is already in flight may
    // overshoot it (bounded by the requests in flight, not checked here).
    let unsaved_bound = 4 * config.max_unsaved;
    if out.max_backlog_while_failing > unsaved_bound {
        errs.push(format!(
            "the engine held {} unsaved events while the store kept failing, bound 4 × max_unsaved = {unsaved_bound}",
            out.max_backlog_while_failing
        ));
    }
    for r in &status.relays {
        if r.progress.requests_in_flight > window {
            errs.push(format!("{}: {} requests in flight, window is {window}", r.relay, r.progress.requests_in_flight));
        }
    }
    for spec in &world.relays {
        let Some(obs) = out.relay_obs.get(&spec.url) else { continue };
        if obs.max_neg_rounds > u64::from(config.max_negentropy_rounds) {
            errs.push(format!(
                "{} ({:?}): {} NEG-MSGs in one negentropy session, bound {}",
                spec.url, spec.kind, obs.max_neg_rounds, config.max_negentropy_rounds
            ));
        }
        // pages, plus a retry or two of the last one
        let reqs_bound = u64::from(config.max_pages_per_job) + u64::from(config.fetch_retries) + 2;
        if obs.max_reqs_per_sub > reqs_bound {
            errs.push(format!("{} ({:?}): {} REQs under one subscription, bound {reqs_bound}", spec.url, spec.kind, obs.max_reqs_per_sub));
        }
        // A hostile relay that answers negentropy in time is never made
        // REQ-only (it ends Connected or ConnectedDegraded, checked above) —
        // except by SPEC §2's one ambiguity: a NOTICE arriving while a
        // NEG-OPEN sent alone is unanswered is taken as its refusal, and a
        // NoticeStorm's unprompted NOTICEs can land just then.
        let in_time = Duration::from_millis(spec.answer_delay_ms) < config.negentropy_open_timeout;
        if spec.kind.hostile() && spec.nip77 && in_time {
            let seen = out.req_only_seen.iter().find(|(u, _)| *u == spec.url).map(|(_, at)| *at);
            if seen.is_some() || rows.get(spec.url.as_str()).is_some_and(|r| r.req_only) {
                let gave_up: Vec<_> = out.neg_to_req.iter().filter(|c| c.url == spec.url).collect();
                let unexplained = gave_up.iter().find(|c| !c.notices);
                let since = |t: sync_core::Millis| t.0.saturating_sub(super::dataset::START.0);
                if spec.kind != RelayKind::NoticeStorm || gave_up.is_empty() || unexplained.is_some() {
                    let how = match unexplained.or(gave_up.first()) {
                        Some(c) => format!(
                            "NEG-OPEN {} sent at +{}ms went on as a REQ at +{}ms{}",
                            c.sub,
                            since(c.opened_at),
                            since(c.req_at),
                            if c.notices { "" } else { " with no NOTICE in between" }
                        ),
                        None => "no NEG-OPEN was given up for a REQ".into(),
                    };
                    errs.push(format!(
                        "{} ({:?}) answered {} NEG-MSGs but was made REQ-only (seen at {seen:?} ms): {how}",
                        spec.url, spec.kind, obs.neg_msgs_sent
                    ));
                }
            }
        }
        for id in obs.published_while_closed.iter().filter(|id| model.required.contains_key(id) && !stored_ids.contains(id) && !excused(id))
        {
            errs.push(format!(
                "{} ({:?}): live event {id} published while the relay had closed our live subscription never arrived",
                spec.url, spec.kind
            ));
        }
    }
    for (url, n) in &out.closed_live_pending {
        errs.push(format!("{url}: {n} live subscription(s) the relay closed never reopened by the end of the run"));
    }
    errs.extend(out.liveness.iter().cloned());
    // (7) the driver's store ordering, seen from the store (sim/store.rs).
    errs.extend(out.ordering.iter().map(|e| format!("driver ordering: {e}")));
    errs
}

/// Every Syncing spell of the run: relay, start (virtual ms since START)
/// and how long it lasted (until the run's end for one still open).
pub fn syncing_spells(out: &Outcome) -> Vec<(String, u64, Duration)> {
    let mut open: BTreeMap<String, sync_core::Millis> = BTreeMap::new();
    let mut spells = Vec::new();
    let since_start = |t: sync_core::Millis| t.0.saturating_sub(super::dataset::START.0);
    for t in &out.transitions {
        if t.to == ConnectionStatus::Syncing {
            open.insert(t.relay.to_string(), t.at);
        } else if t.from == ConnectionStatus::Syncing {
            if let Some(from) = open.remove(t.relay.as_str()) {
                spells.push((t.relay.to_string(), since_start(from), Duration::from_millis(t.at.0.saturating_sub(from.0))));
            }
        }
    }
    for (relay, from) in open {
        spells.push((relay, since_start(from), Duration::from_millis(out.end.0.saturating_sub(from.0))));
    }
    spells
}

/// An event's tags, shortened, for failure messages.
fn tags_of(e: &Event) -> String {
    let tags: Vec<String> =
        e.tags.iter().map(|t| t.as_slice().iter().map(|v| v.chars().take(12).collect::<String>()).collect::<Vec<_>>().join(":")).collect();
    format!("[{}]", tags.join(" "))
}

/// Where an event lives, for failure messages.
fn where_is(world: &World, id: &EventId) -> String {
    let mut at: Vec<String> =
        world.relays.iter().filter(|r| r.events.iter().any(|e| e.id == *id)).map(|r| format!("{} ({:?})", r.url, r.kind)).collect();
    for l in world.live.iter().filter(|l| l.event.id == *id) {
        let to: Vec<String> = l.relays.iter().map(|&i| format!("{} ({:?})", world.relays[i].url, world.relays[i].kind)).collect();
        at.push(format!("published live at +{}ms to {}", l.at.0 - super::dataset::START.0, to.join(", ")));
    }
    format!("on {}", at.join(", "))
}

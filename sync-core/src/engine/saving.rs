//! Saving accepted events, and what happens when the store fails
//! (issue "hostile world", store faults and poison events).
//!
//! One `SaveEvents` is in flight at a time. When one fails the engine tells
//! two cases apart without knowing the store:
//! - **one bad event** (a store that cannot hold it): the failing batch is
//!   halved until single events are saved; an event that fails alone twice,
//!   with other saves succeeding in between, is quarantined (counted,
//!   logged) and the queue moves on;
//! - **the store is down** (disk full, map full, quota): single events fail
//!   and nothing saves; saves are retried with a doubling backoff, the
//!   error is in the status (`/health` answers 503), and accepted events
//!   beyond a hard bound are not held in memory: they are forgotten, and
//!   their relays sync afresh once the store recovers, so nothing is lost.
//!
//! The persisted sync state never runs ahead of the store: relays whose
//! events are not confirmed saved are written as needing a fresh sync.

use core::time::Duration;
use std::collections::{BTreeSet, HashMap};

use nostr::{Event, EventId};

use super::{Engine, EngineEvent, PARKED_PERSIST_BYTES};
use crate::command::Command;
use crate::relay_url::RelayUrl;
use crate::runtime::SaveOutcome;
use crate::state::{ParkedState, SyncState, STATE_VERSION};
use crate::time::Millis;

/// Retry delay while a failing batch is being halved (the store answers).
const ISOLATION_DELAY: Duration = Duration::from_millis(100);
/// First retry delay when nothing saves.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// While the store is down, accepted events beyond `max_unsaved` × this are forgotten.
const BACKLOG_FACTOR: usize = 4;

/// Save bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Saving {
    /// Events per `SaveEvents` (None: everything unsaved).
    chunk: Option<usize>,
    /// Failed saves in a row without any success.
    failures: u32,
    /// Successful saves, ever (to tell whether the store worked in between).
    successes: u64,
    /// Events that failed alone: how often, and `successes` at the first time.
    alone_failures: HashMap<EventId, (u32, u64)>,
    /// The last event that failed alone, since the last success.
    last_alone_failure: Option<EventId>,
    /// No save before then.
    pub(super) retry_at: Option<Millis>,
    /// The store's last error while it keeps failing.
    pub(crate) error: Option<String>,
    /// Failed saves, ever.
    pub(crate) errors_total: u64,
    /// Events quarantined as unsaveable.
    pub(crate) quarantined: u64,
    /// Accepted events forgotten while the store was down.
    pub(crate) forgotten: u64,
    /// Relays whose accepted events were forgotten: they sync afresh on recovery.
    forgotten_from: BTreeSet<RelayUrl>,
    /// Shutdown waits for the final save before persisting the state.
    pub(super) persist_after_saves: bool,
}

impl Engine {
    /// The next `SaveEvents`, if one may go out now.
    pub(super) fn next_save(&mut self) -> Option<Command> {
        if self.unsaved.is_empty() || !self.saves_in_flight.is_empty() || self.saving.retry_at.is_some() {
            return None;
        }
        let n = self.saving.chunk.unwrap_or(usize::MAX).min(self.unsaved.len());
        let batch: Vec<(Event, RelayUrl)> =
            if n == self.unsaved.len() { core::mem::take(&mut self.unsaved) } else { self.unsaved.drain(..n).collect() };
        Some(self.save_command(batch))
    }

    fn save_command(&mut self, batch: Vec<(Event, RelayUrl)>) -> Command {
        let token = self.token();
        self.saves_in_flight.insert(token, batch.iter().map(|(e, r)| (e.id, r.clone())).collect());
        Command::SaveEvents { token, events: batch.into_iter().map(|(e, _)| e).collect() }
    }

    /// The store answered `SaveEvents`.
    pub(crate) fn handle_saved(&mut self, token: u64, outcomes: Vec<SaveOutcome>, now: Millis) {
        let Some(ids) = self.saves_in_flight.remove(&token) else { return };
        let before = self.events_synced;
        for ((_, url), outcome) in ids.iter().zip(outcomes.iter()) {
            let Some(relay) = self.relays.get_mut(url) else {
                if matches!(outcome, SaveOutcome::Saved) {
                    self.events_synced += 1;
                }
                continue;
            };
            match outcome {
                SaveOutcome::Saved => {
                    self.events_synced += 1;
                    relay.counters.events_saved += 1;
                }
                SaveOutcome::Duplicate | SaveOutcome::Stale => relay.counters.events_duplicate += 1,
                SaveOutcome::Rejected(reason) => {
                    let key = format!("store:{}", reason.split(':').next().unwrap_or("other"));
                    *relay.counters.events_rejected.entry(key).or_default() += 1;
                }
            }
        }
        if ids.len() != outcomes.len() {
            tracing::error!(expected = ids.len(), got = outcomes.len(), "store returned the wrong number of outcomes");
        }
        if self.events_synced > before {
            self.push_event(EngineEvent::EventsSaved { count: self.events_synced - before });
        }
        self.save_succeeded(now);
        self.after_final_save();
        // Work held back by the unsaved-events bound can go out now.
        self.pump_all(now);
    }

    /// The store failed a `SaveEvents` (nothing of it was confirmed).
    pub(crate) fn handle_save_failed(&mut self, token: u64, events: Vec<Event>, error: &str, now: Millis) {
        let Some(ids) = self.saves_in_flight.remove(&token) else { return };
        let mut failed: Vec<(Event, RelayUrl)> = events.into_iter().zip(ids.into_iter().map(|(_, u)| u)).collect();
        let s = &mut self.saving;
        s.errors_total += 1;
        s.failures += 1;
        // One failure may be one bad event; failures in a row mean the store is down.
        let delay = if s.failures == 1 {
            ISOLATION_DELAY
        } else {
            if s.error.is_none() {
                tracing::error!(error, "store is failing; accepted events are held and retried");
            }
            s.error = Some(error.to_string());
            RETRY_BASE.saturating_mul(1u32 << (s.failures - 2).min(16)).min(self.config.store_retry_max)
        };
        s.retry_at = Some(now + delay);
        if failed.len() > 1 {
            // Halve until the failure is isolated (or single events fail too).
            s.chunk = Some(failed.len().div_ceil(2));
            tracing::warn!(error, events = failed.len(), "store failed a batch; retrying in smaller batches");
        } else if let Some((event, url)) = failed.pop() {
            s.chunk = Some(1);
            // Two different events failing alone in a row, nothing saved in
            // between: the store is down, and what failed so far proves nothing.
            if s.last_alone_failure.is_some_and(|other| other != event.id) {
                s.alone_failures.clear();
            }
            s.last_alone_failure = Some(event.id);
            let successes = s.successes;
            let (count, first_at) = s.alone_failures.entry(event.id).or_insert((0, successes));
            *count += 1;
            if *count >= 2 && successes > *first_at {
                self.quarantine(event, &url, error);
            } else {
                // Behind the others: whether they save tells poison from a store that is down.
                self.unsaved.push((event, url));
            }
        }
        failed.append(&mut self.unsaved);
        self.unsaved = failed;
        self.forget_beyond_backlog();
        if !self.running {
            // Shutdown: persist what is safe (relays with unsaved events sync afresh next time).
            self.saving.persist_after_saves = false;
            self.commands.push_back(Command::PersistState { state: self.state_bytes() });
        }
    }

    fn save_succeeded(&mut self, now: Millis) {
        let s = &mut self.saving;
        s.successes += 1;
        s.failures = 0;
        s.last_alone_failure = None;
        if s.error.take().is_some() {
            tracing::info!("store recovered");
        }
        if let Some(c) = s.chunk {
            // back to whole batches, doubling
            s.chunk = (c.saturating_mul(2) < self.config.max_unsaved).then_some(c.saturating_mul(2));
        }
        if s.chunk.is_none() {
            s.alone_failures.clear();
        }
        if !self.saving.forgotten_from.is_empty() {
            self.resync_forgotten(now);
        }
    }

    /// An event the store cannot save on its own: counted, logged, dropped.
    fn quarantine(&mut self, event: Event, url: &RelayUrl, error: &str) {
        tracing::error!(id = %event.id, kind = event.kind.as_u16(), created_at = event.created_at.as_secs(), relay = %url, error, "store cannot save this event; quarantined");
        self.saving.quarantined += 1;
        // Not "seen": a later sync (a reconnect, the daily reconciliation)
        // may bring it again, and the store may take it then.
        self.seen.remove(&event.id);
        if let Some(relay) = self.relays.get_mut(url) {
            *relay.counters.events_rejected.entry("store_quarantined".into()).or_default() += 1;
        }
    }

    /// While the store is down, accepted events beyond a hard bound are not
    /// held: forgotten (not "seen"), and their relays sync afresh later.
    pub(super) fn forget_beyond_backlog(&mut self) {
        let cap = self.config.max_unsaved.saturating_mul(BACKLOG_FACTOR);
        if self.saving.error.is_none() || self.unsaved.len() <= cap {
            return;
        }
        let forgotten: Vec<(Event, RelayUrl)> = self.unsaved.drain(cap..).collect();
        tracing::warn!(
            events = forgotten.len(),
            "store still failing; forgetting accepted events beyond the backlog bound until it recovers"
        );
        self.saving.forgotten += forgotten.len() as u64;
        for (event, url) in forgotten {
            self.seen.remove(&event.id);
            self.saving.forgotten_from.insert(url);
        }
    }

    /// The store works again: relays whose events were forgotten sync afresh.
    fn resync_forgotten(&mut self, now: Millis) {
        let relays = core::mem::take(&mut self.saving.forgotten_from);
        for url in relays {
            let Some(relay) = self.relays.get_mut(&url) else { continue };
            relay.sync.clear_confirmed();
            if relay.session.is_some() {
                tracing::info!(relay = %url, "store recovered: syncing this relay afresh for the events forgotten meanwhile");
                self.daily_reconciliation(&url, now);
            }
        }
        self.state_dirty = true;
    }

    /// After shutdown, the state is persisted once the final save reported.
    fn after_final_save(&mut self) {
        if !self.running && self.saving.persist_after_saves && self.saves_in_flight.is_empty() && self.unsaved.is_empty() {
            self.saving.persist_after_saves = false;
            self.commands.push_back(Command::PersistState { state: self.state_bytes() });
        }
    }

    /// The sync state as it may be persisted now: relays with events not
    /// yet confirmed saved (or forgotten) are written as needing a fresh
    /// sync, so a crash after this write loses nothing.
    pub fn state_bytes(&self) -> Vec<u8> {
        let pending: BTreeSet<&RelayUrl> = self
            .unsaved
            .iter()
            .map(|(_, u)| u)
            .chain(self.saves_in_flight.values().flatten().map(|(_, u)| u))
            .chain(self.saving.forgotten_from.iter())
            .collect();
        let relays = self
            .relays
            .iter()
            .map(|(u, r)| {
                let mut sync = r.sync.clone();
                if pending.contains(u) {
                    sync.clear_confirmed();
                }
                (u.clone(), sync)
            })
            .collect();
        SyncState { version: STATE_VERSION, repos: self.repos.clone(), relays, parked: self.parked_to_persist() }.to_bytes()
    }

    /// The newest parked states that fit in [`PARKED_PERSIST_BYTES`] of JSON
    /// (a relay can park many large states; the state file stays small).
    fn parked_to_persist(&self) -> Vec<ParkedState> {
        let mut budget = PARKED_PERSIST_BYTES;
        let mut out: Vec<ParkedState> = self
            .parked_states
            .iter()
            .rev()
            .map_while(|(event, relay)| {
                let size = event.content.len()
                    + event.tags.iter().map(|t| t.as_slice().iter().map(|v| v.len() + 3).sum::<usize>()).sum::<usize>()
                    + 300;
                budget = budget.checked_sub(size)?;
                Some(ParkedState { relay: relay.clone(), event: event.clone() })
            })
            .collect();
        out.reverse();
        out
    }
}

//! When each rule is due. Every relay's timer table and the engine's are
//! filled from the state they time (`RelayMachine::refresh_timers`,
//! [`Engine::refresh_timers`], after every round of outputs), and
//! [`Engine::run_expired_timers`] runs exactly the rules whose slot
//! expired. So no rule waits for the 2 s health tick: a relay whose backoff
//! ends at `t` is dialled at `t`, a completed sync is persisted as soon as
//! the store is quiet, a quiet period forgives closed live subscriptions
//! when it ends.

use core::time::Duration;

use super::relay::TimerContext;
use super::Engine;
use crate::relay_url::RelayUrl;
use crate::time::Millis;
use crate::timers::{EngineTimer, RelayTimer};

/// The sync state is written at least this often while running.
const PERSIST_HEARTBEAT: Duration = Duration::from_secs(60);
/// ... and at most this often when it only changed (unless a relay's
/// historic sync just completed: then at once).
const PERSIST_MIN_GAP: Duration = Duration::from_secs(5);

impl Engine {
    /// Fills every timer table from the current state.
    pub(super) fn refresh_timers(&mut self) {
        let budget_spent = self.connects_this_tick >= self.config.max_connects_per_tick;
        let ctx = TimerContext {
            running: self.running,
            window_open: self.window_started.is_some(),
            dial_not_before: budget_spent.then_some(self.next_tick),
        };
        for relay in self.relays.values_mut() {
            relay.refresh_timers(&self.config, ctx);
        }
        self.timers.set(EngineTimer::Tick, Some(self.next_tick));
        self.timers.set(EngineTimer::BatchWindow, self.window_started.map(|w| w + self.config.batch_window));
        self.timers.set(EngineTimer::SaveRetry, self.saving.retry_at);
        self.timers.set(EngineTimer::Persist, self.persist_deadline());
    }

    /// When the sync state is next due: written between saves (never ahead
    /// of the store), or anyway while the store keeps failing (`state_bytes`
    /// then marks the unconfirmed relays).
    fn persist_deadline(&self) -> Option<Millis> {
        let quiet = self.saves_in_flight.is_empty() && self.unsaved.is_empty();
        if !quiet && self.saving.error.is_none() {
            return None; // the save that ends the busy spell refreshes this
        }
        let heartbeat = self.last_persist + PERSIST_HEARTBEAT;
        if !self.state_dirty {
            return Some(heartbeat);
        }
        Some(if self.persist_soon { self.last_persist } else { (self.last_persist + PERSIST_MIN_GAP).min(heartbeat) })
    }

    /// Runs every rule whose timer expired at `now`.
    pub(super) fn run_expired_timers(&mut self, now: Millis) {
        self.refresh_timers();
        let engine_due: Vec<EngineTimer> = self.timers.expired(now).collect();
        if engine_due.contains(&EngineTimer::Tick) {
            // a new tick's connect budget, before anything due now dials
            self.connects_this_tick = 0;
        }
        if engine_due.contains(&EngineTimer::SaveRetry) {
            self.saving.retry_at = None;
        }
        if engine_due.contains(&EngineTimer::BatchWindow) {
            self.close_batch_window(now);
        }
        let relays_due: Vec<(RelayUrl, Vec<RelayTimer>)> = self
            .relays
            .iter()
            .map(|(url, r)| (url.clone(), r.timers.expired(now).collect::<Vec<_>>()))
            .filter(|(_, kinds)| !kinds.is_empty())
            .collect();
        for (url, kinds) in relays_due {
            self.run_relay_timers(&url, &kinds, now);
        }
        self.check_settled(now);
        if engine_due.contains(&EngineTimer::Tick) {
            self.next_tick = now + self.config.tick_interval;
            self.tick(now);
            // the tick may have closed the batch window early (a layer ended)
            self.check_settled(now);
        }
        // after the tick, which may have marked the state dirty
        self.refresh_timers();
        if self.timers.get(EngineTimer::Persist).is_some_and(|t| t <= now) {
            self.persist(now);
        }
    }

    /// One relay's expired rules.
    fn run_relay_timers(&mut self, url: &RelayUrl, kinds: &[RelayTimer], now: Millis) {
        let mut service = false;
        for kind in kinds {
            match kind {
                RelayTimer::Dial => self.dial(url, now),
                RelayTimer::RelayInfo | RelayTimer::Pause => self.end_waits(url, now),
                RelayTimer::Suspect => self.expire_suspects(url, now),
                RelayTimer::Cooldown | RelayTimer::Requests | RelayTimer::LiveReopen | RelayTimer::Reconcile => service = true,
                RelayTimer::Settle => {} // `check_settled` runs after every relay's timers
                RelayTimer::Stable => self.check_stable(url, now),
                RelayTimer::Forgive => self.forgive_live_closes(url, now),
            }
        }
        if service {
            self.service_connection(url, now);
        }
    }

    /// A connection whose NIP-11 document did not come in time goes on
    /// without it; a pause after a refusal ends.
    fn end_waits(&mut self, url: &RelayUrl, now: Millis) {
        if self.relays.get_mut(url).is_some_and(|r| r.end_waits(now)) {
            self.pump(url, now);
        }
    }
}

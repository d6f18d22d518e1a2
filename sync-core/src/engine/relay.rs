//! One relay as the engine tracks it: the per-relay machine.
//!
//! Like quinn-proto's `Connection` beside its `Endpoint`: a [`RelayMachine`]
//! owns what belongs to one relay (its connection status and health, the
//! degraded reason and last error, its connection's session with jobs,
//! batches, live subscriptions, flow window and outbox, its counters and its
//! timer table) and changes it with `&mut self` methods. What it needs from
//! the engine comes in as arguments; what it asks of the engine goes out as
//! [`RelayOutput`]s, which the engine turns into commands and events in
//! order (`Engine::flush_relay`).

use std::collections::VecDeque;

use nostr::{ClientMessage, JsonUtil};

use crate::config::SyncConfig;
use crate::relay_url::RelayUrl;
use crate::rng::SplitMix64;
use crate::session::{JobKind, Session};
use crate::state::RelaySyncEntry;
use crate::status::{ConnectionStatus, DegradedReason, RelayCounters, RelayError};
use crate::time::Millis;
use crate::timers::{RelayTimer, RelayTimers};

/// What a relay machine asks of the engine (quinn's `EndpointEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayOutput {
    /// Send this frame to the relay.
    Transmit(String),
    /// The connection status changed (the engine reports it as an event).
    StatusChanged {
        /// Before.
        from: ConnectionStatus,
        /// After.
        to: ConnectionStatus,
        /// When.
        at: Millis,
    },
}

/// Engine-wide facts a relay's timers depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerContext {
    /// The engine is running (not shut down).
    pub(crate) running: bool,
    /// The batch window is open (settling waits for it).
    pub(crate) window_open: bool,
    /// The connect budget of this tick is spent: dialling waits for the next tick.
    pub(crate) dial_not_before: Option<Millis>,
}

/// One relay as the engine tracks it (see the module doc).
#[derive(Debug)]
pub(crate) struct RelayMachine {
    /// Its normalised URL (for the log; the engine routes by it).
    pub(crate) url: RelayUrl,
    /// What is persisted: health, confirmed sets, connection times.
    pub(crate) sync: RelaySyncEntry,
    pub(crate) status: ConnectionStatus,
    /// The current connection's state (`None` while not connected).
    pub(crate) session: Option<Session>,
    pub(crate) counters: RelayCounters,
    pub(crate) historic_duration_ms: Option<u64>,
    /// Live subscriptions closed by the relay in a row (reset after a quiet
    /// stability period).
    pub(crate) live_closes: u32,
    pub(crate) last_live_close: Option<Millis>,
    /// Why the relay is (or will end) ConnectedDegraded, for the status.
    pub(crate) degraded_reason: Option<DegradedReason>,
    /// The most recent problem, for the status.
    pub(crate) last_error: Option<RelayError>,
    /// When each of its rules is next due (see `engine/deadlines.rs`).
    pub(crate) timers: RelayTimers,
    /// What it asked of the engine, oldest first.
    out: VecDeque<RelayOutput>,
}

impl RelayMachine {
    /// A relay just admitted (or configured, for `bootstrap`).
    pub(crate) fn new(url: RelayUrl, bootstrap: bool) -> Self {
        Self {
            url,
            sync: RelaySyncEntry { bootstrap, ..Default::default() },
            status: ConnectionStatus::Disconnected,
            session: None,
            counters: RelayCounters::default(),
            historic_duration_ms: None,
            live_closes: 0,
            last_live_close: None,
            degraded_reason: None,
            last_error: None,
            timers: RelayTimers::default(),
            out: VecDeque::new(),
        }
    }

    /// The next thing it asks of the engine.
    pub(crate) fn poll_output(&mut self) -> Option<RelayOutput> {
        self.out.pop_front()
    }

    /// Moves to `to` (SPEC §6 transitions only), reporting the change.
    pub(crate) fn set_status(&mut self, to: ConnectionStatus, now: Millis) {
        let from = self.status;
        if from == to {
            return;
        }
        debug_assert!(from.can_become(to), "illegal transition {from:?} -> {to:?}");
        self.status = to;
        self.out.push_back(RelayOutput::StatusChanged { from, to, at: now });
    }

    /// Marks a connected relay degraded, saying why (a Syncing relay ends
    /// its historic sync ConnectedDegraded instead of Connected).
    pub(crate) fn degrade(&mut self, reason: DegradedReason, now: Millis) {
        if self.degraded_reason.as_ref() != Some(&reason) {
            tracing::warn!(relay = %self.url, %reason, "relay degraded");
        }
        self.last_error = Some(RelayError { at: now, message: reason.to_string() });
        self.degraded_reason = Some(reason);
        if self.status == ConnectionStatus::Connected {
            self.set_status(ConnectionStatus::ConnectedDegraded, now);
        }
    }

    /// Sends a frame, or holds it in the outbox while the relay cools down
    /// after `rate-limited:` (and behind frames already held, to keep order).
    pub(crate) fn transmit(&mut self, msg: &ClientMessage<'_>, now: Millis) {
        let rate_limited = self.sync.health.is_rate_limited(now);
        let Some(session) = self.session.as_mut() else { return };
        let text = msg.as_json();
        if rate_limited || !session.outbox.is_empty() {
            session.outbox.push_back(text);
            return;
        }
        self.counters.frames_sent += 1;
        self.counters.bytes_sent += text.len() as u64;
        self.out.push_back(RelayOutput::Transmit(text));
    }

    /// No cooldown (any more): the frames held during one go out now, and
    /// the requests among them are timed from now, not from when they were
    /// queued (nothing said during the cooldown was about them).
    pub(crate) fn end_cooldown(&mut self, config: &SyncConfig, now: Millis) {
        self.sync.health.rate_limited_until = None;
        let Some(session) = self.session.as_mut() else { return };
        if session.outbox.is_empty() {
            return;
        }
        for job in session.jobs.values_mut() {
            let timeout = if matches!(job.kind, JobKind::NegOpen(_)) { config.negentropy_open_timeout } else { config.historic_timeout };
            job.deadline = job.deadline.max(now + timeout);
            job.suspect_until = None;
        }
        while let Some(text) = session.outbox.pop_front() {
            self.counters.frames_sent += 1;
            self.counters.bytes_sent += text.len() as u64;
            self.out.push_back(RelayOutput::Transmit(text));
        }
    }

    /// A connection attempt failed; true when it was one (the state changed).
    pub(crate) fn connect_failed(&mut self, config: &SyncConfig, rng: &mut SplitMix64, reason: &str, now: Millis) -> bool {
        if self.status != ConnectionStatus::Connecting {
            return false;
        }
        self.counters.connect_failure += 1;
        self.last_error = Some(RelayError { at: now, message: format!("connection failed: {reason}") });
        self.sync.health.record_failure(config, now, rng);
        tracing::warn!(relay = %self.url, reason, failures = self.sync.health.failures, "connection failed");
        self.set_status(ConnectionStatus::Disconnected, now);
        true
    }

    /// The connection was lost (its session, the pending state, goes with
    /// it); true when there was one.
    pub(crate) fn disconnected(&mut self, config: &SyncConfig, rng: &mut SplitMix64, reason: &str, now: Millis) -> bool {
        match self.status {
            ConnectionStatus::Disconnected => return false,
            ConnectionStatus::Connecting => return self.connect_failed(config, rng, reason, now),
            _ => {}
        }
        self.session = None;
        self.last_error = Some(RelayError { at: now, message: format!("disconnected: {reason}") });
        self.sync.disconnected_at = Some(now);
        self.sync.last_connected = Some(now);
        self.sync.health.record_disconnected(config, now, rng);
        tracing::warn!(relay = %self.url, reason, "disconnected");
        self.set_status(ConnectionStatus::Disconnected, now);
        true
    }

    /// The relay refused work (`reason`, see `flow::refusal_reason`): counted,
    /// and logged at debug (a refusal storm must not flood the log; the
    /// counters and `/metrics` show it).
    pub(crate) fn count_refusal(&mut self, reason: &'static str, message: &str) {
        *self.counters.refusals.entry(reason.to_string()).or_default() += 1;
        tracing::debug!(relay = %self.url, reason, message, "relay refused work");
    }

    /// After the stability period its failures are forgiven (Healthy);
    /// true when that happened now.
    pub(crate) fn check_stable(&mut self, config: &SyncConfig, now: Millis) -> bool {
        let stable = self.sync.health.check_stable(config, now);
        if stable {
            tracing::info!(relay = %self.url, "relay stable again");
        }
        stable
    }

    /// Closed live subscriptions stopped a stability period ago: trusted
    /// again (Connected, unless a historic batch failed).
    pub(crate) fn forgive_live_closes(&mut self, config: &SyncConfig, now: Millis) {
        if self.live_closes == 0 || self.last_live_close.is_some_and(|t| now < t + config.stability_period) {
            return;
        }
        self.live_closes = 0;
        let failed = self.session.as_ref().is_some_and(|s| s.any_failed());
        if matches!(self.degraded_reason, Some(DegradedReason::LiveClosed { .. })) {
            self.degraded_reason = None;
            if self.status == ConnectionStatus::ConnectedDegraded && !failed {
                tracing::info!(relay = %self.url, "live subscriptions stable again");
                self.set_status(ConnectionStatus::Connected, now);
            }
        }
    }

    /// The NIP-11 wait or a pause after a refusal is over; true when one ended.
    pub(crate) fn end_waits(&mut self, now: Millis) -> bool {
        let Some(s) = self.session.as_mut() else { return false };
        let mut ended = false;
        if s.info_wait_until.is_some_and(|t| now >= t) {
            tracing::debug!(relay = %self.url, "no NIP-11 document in time; going on without");
            s.info_wait_until = None;
            ended = true;
        }
        if s.pause_until.is_some_and(|t| now >= t) {
            s.pause_until = None;
            ended = true;
        }
        ended
    }

    /// Fills this relay's timer table from its state.
    pub(super) fn refresh_timers(&mut self, config: &SyncConfig, ctx: TimerContext) {
        use RelayTimer::*;
        let health = &self.sync.health;
        let t = &mut self.timers;
        let dial = (self.status == ConnectionStatus::Disconnected && ctx.running).then(|| {
            let at = health.next_attempt_at.max(health.rate_limited_until.unwrap_or(Millis::ZERO));
            ctx.dial_not_before.map_or(at, |n| at.max(n))
        });
        t.set(Dial, dial);
        let connected = self.status.is_connected();
        let unstable = health.failures > 0 || health.dead;
        t.set(Stable, health.connected_since.filter(|_| connected && unstable).map(|since| since + config.stability_period));
        t.set(Forgive, self.last_live_close.filter(|_| connected && self.live_closes > 0).map(|at| at + config.stability_period));
        let Some(s) = &self.session else {
            for kind in [RelayInfo, Pause, Cooldown, Requests, Suspect, LiveReopen, Reconcile, Settle] {
                t.set(kind, None);
            }
            return;
        };
        t.set(RelayInfo, s.info_wait_until);
        t.set(Pause, s.pause_until);
        let in_flight = || s.jobs.values().filter(|j| j.in_flight());
        t.set(Suspect, in_flight().filter(|j| !j.answered).filter_map(|j| j.suspect_until).min());
        // while the batch window is open, settling waits for it (its end is a deadline of its own)
        let settling = self.status == ConnectionStatus::Syncing && !ctx.window_open;
        t.set(Settle, s.idle_since.filter(|_| settling).map(|idle| idle + config.settle_window()));
        if let Some(until) = health.rate_limited_until {
            // nothing else of the connection is due while the relay cools down
            t.set(Cooldown, Some(until));
            for kind in [Requests, LiveReopen, Reconcile] {
                t.set(kind, None);
            }
        } else {
            t.set(Cooldown, None);
            let requests = in_flight().filter(|j| j.held.is_none() && !matches!(j.kind, JobKind::LoadingItems(_)));
            t.set(Requests, requests.map(|j| j.deadline).min());
            t.set(LiveReopen, s.live_reopen.values().map(|(at, _)| *at).min());
            t.set(Reconcile, Some(s.reconcile_at));
        }
    }
}

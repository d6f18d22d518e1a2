//! The sans-IO GRASP-02 state machine.
//!
//! Inputs arrive through `handle_*` (each with the current time); outputs are
//! pulled with [`Engine::poll_command`] and [`Engine::poll_timeout`]. The
//! engine never performs I/O, reads a clock or spawns anything, so the same
//! code runs in the daemon, the browser and the deterministic simulation.

mod admission;
mod deadlines;
mod live;
mod pump;
mod relay;
pub(crate) mod saving;
mod startup;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use nostr::message::MachineReadablePrefix;
use nostr::{ClientMessage, Event, EventId, Filter, JsonUtil, RelayMessage, SubscriptionId};

use crate::command::Command;
use crate::config::SyncConfig;
use crate::filters::{self, BatchItems, Layer};
use crate::flow;
use crate::historic::fetch::FetchOutcome;
use crate::historic::negentropy::{NegSession, NegStep};
use crate::historic::paginate::{PageOutcome, Paginator};
use crate::ingest::{BoundedSet, RejectionCache};
use crate::io::{Input, Output};
use crate::nip34;
use crate::plan;
use crate::policy::{AcceptancePolicy, Rejection, Verdict};
use crate::relay_url::RelayUrl;
use crate::repo_index::RepoSyncIndex;
use crate::rng::SplitMix64;
use crate::runtime::NegentropyItem;
use crate::session::{Job, JobKind, PendingBatch, Session};
use crate::state::{RelaySyncEntry, StateError, SyncState};
use crate::status::{ConnectionStatus, DegradedReason, RelayError};
use crate::time::Millis;
use crate::timers::EngineTimers;

pub(crate) use relay::{RelayMachine, RelayOutput};

/// What ingesting an event learned about it.
enum Validity {
    /// Verified (accepted, or parked after verification).
    Valid,
    /// Bad id, bad signature or implausible date.
    Invalid,
    /// Not accepted by the policy, so its signature was not checked.
    Unchecked(Box<Event>),
}

/// At most this many conditionally rejected repository states wait for their announcement.
const PARKED_STATES_MAX: usize = 1024;
/// At most this much of them (JSON, newest first) is persisted.
pub(crate) const PARKED_PERSIST_BYTES: usize = 256 * 1024;

/// Engine construction failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// SPEC §5: a reconnect within the window after a disconnect (with L1 already
/// synced) keeps confirmed state; anything else is a fresh start.
pub(crate) fn is_quick_reconnect(sync: &RelaySyncEntry, now: Millis, window: core::time::Duration) -> bool {
    sync.announcements_synced && sync.disconnected_at.is_some_and(|d| now.since(d) <= window)
}

/// A connection-status transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Relay.
    pub relay: RelayUrl,
    /// Previous status.
    pub from: ConnectionStatus,
    /// New status.
    pub to: ConnectionStatus,
    /// When.
    pub at: Millis,
}

/// Something the front end may want to show at once (see [`Engine::poll_event`]);
/// everything else changes gradually and is read from [`Engine::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A relay's connection status changed.
    StatusChanged(Transition),
    /// The store saved this many new events.
    EventsSaved {
        /// Newly saved events.
        count: u64,
    },
}

/// Events kept for a front end that does not poll them (oldest dropped).
const MAX_PENDING_EVENTS: usize = 10_000;

/// The GRASP-02 proactive sync state machine.
pub struct Engine {
    pub(crate) config: SyncConfig,
    pub(crate) policy: AcceptancePolicy,
    pub(crate) repos: RepoSyncIndex,
    pub(crate) relays: BTreeMap<RelayUrl, RelayMachine>,
    excluded: BTreeSet<RelayUrl>,
    rng: SplitMix64,
    commands: VecDeque<Command>,
    seen: BoundedSet<EventId>,
    rejections: RejectionCache,
    /// Refused relay URLs (reason + URL), to log each once.
    refused_urls: BoundedSet<String>,
    /// Distinct refused URLs by reason (`ngit_sync_relay_urls_refused{reason}`).
    pub(crate) urls_refused: BTreeMap<&'static str, u64>,
    /// A capacity bound (per host, total) refused a listed relay.
    capacity_refused: bool,
    /// A tracked relay was dropped since the last admission pass.
    relays_dropped: bool,
    /// `Connect` commands issued this tick.
    connects_this_tick: usize,
    unsaved: Vec<(Event, RelayUrl)>,
    /// Repository states rejected only because their announcement had not
    /// been accepted yet; re-examined when the batch window closes.
    parked_states: VecDeque<(Event, RelayUrl)>,
    saves_in_flight: BTreeMap<u64, Vec<(EventId, RelayUrl)>>,
    pub(crate) saving: saving::Saving,
    neg_loads: BTreeMap<u64, (RelayUrl, String)>,
    /// Ids asked for by a fetch, with the relay and subscription asking
    /// (SPEC §5: an id already requested anywhere is not requested again).
    requested: HashMap<EventId, (RelayUrl, String)>,
    next_token: u64,
    window_started: Option<Millis>,
    next_tick: Millis,
    state_dirty: bool,
    /// A relay's historic sync completed: persist at the next quiet tick,
    /// without waiting out the minimum gap (a crash then resumes instead of
    /// syncing that relay afresh).
    persist_soon: bool,
    last_persist: Millis,
    pub(crate) events_synced: u64,
    pub(crate) running: bool,
    events: VecDeque<EngineEvent>,
    startup: startup::Startup,
    /// When each engine-wide rule is next due (see `engine/deadlines.rs`).
    timers: EngineTimers,
}

impl Engine {
    /// A new engine. `seed` drives jitter and reconciliation intervals;
    /// bootstrap relays are operator-chosen and not subject to the safety
    /// rule (the front end parsed them once, at the edge).
    pub fn new(config: SyncConfig, policy: AcceptancePolicy, bootstrap: &[RelayUrl], seed: u64, now: Millis) -> Result<Self, EngineError> {
        config.validate().map_err(EngineError::Config)?;
        let excluded = match &policy {
            AcceptancePolicy::Server { relay_urls, .. } => relay_urls.clone(),
            AcceptancePolicy::Client(_) => BTreeSet::new(),
        };
        let mut engine = Self {
            seen: BoundedSet::new(config.seen_capacity),
            rejections: RejectionCache::new(config.rejection_capacity),
            config,
            policy,
            repos: RepoSyncIndex::default(),
            relays: BTreeMap::new(),
            excluded,
            rng: SplitMix64::new(seed),
            commands: VecDeque::new(),
            refused_urls: BoundedSet::new(admission::REFUSED_URLS_REMEMBERED),
            urls_refused: BTreeMap::new(),
            capacity_refused: false,
            relays_dropped: false,
            connects_this_tick: 0,
            unsaved: Vec::new(),
            parked_states: VecDeque::new(),
            saves_in_flight: BTreeMap::new(),
            saving: saving::Saving::default(),
            neg_loads: BTreeMap::new(),
            requested: HashMap::new(),
            next_token: 0,
            window_started: None,
            next_tick: now,
            state_dirty: false,
            persist_soon: false,
            last_persist: now,
            events_synced: 0,
            running: true,
            events: VecDeque::new(),
            startup: startup::Startup::LoadingState,
            timers: EngineTimers::default(),
        };
        engine.commands.push_back(Command::LoadState);
        for url in bootstrap {
            engine.relays.insert(url.clone(), RelayMachine::new(url.clone(), true));
        }
        Ok(engine)
    }

    /// Restores persisted sync state (repository index, confirmed sets,
    /// connection times, health). Drivers answer `Command::LoadState` with
    /// `handle_state_loaded` instead; this is for tests and tools.
    pub(crate) fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let state = SyncState::from_bytes(bytes)?;
        self.repos = state.repos;
        let mut restored = BTreeMap::new();
        for (url, mut entry) in state.relays {
            // A process that died while connected never recorded the disconnect:
            // its last heartbeat is the best estimate.
            if entry.disconnected_at.is_none() || entry.last_connected > entry.disconnected_at {
                entry.disconnected_at = entry.last_connected;
            }
            entry.health.connected_since = None;
            entry.health.next_attempt_at = Millis::ZERO.max(entry.health.next_attempt_at);
            let bootstrap_now = self.relays.get(&url).is_some_and(|r| r.sync.bootstrap);
            entry.bootstrap = bootstrap_now;
            restored.insert(url, entry);
        }
        // Relays are admitted under today's bounds (a state written before
        // them may track thousands); their saved sync progress comes back.
        self.track_all_listed();
        for (url, entry) in restored {
            if let Some(relay) = self.relays.get_mut(&url) {
                relay.sync = entry;
            }
        }
        // Parked states come back as they were parked: genuine repository
        // states only (the file is ours, but it is checked like input).
        self.parked_states = state
            .parked
            .into_iter()
            .filter(|p| p.event.kind.as_u16() == nip34::REPO_STATE && p.event.verify().is_ok())
            .map(|p| (p.event, p.relay))
            .collect();
        while self.parked_states.len() > PARKED_STATES_MAX {
            self.parked_states.pop_front();
        }
        Ok(())
    }

    /// Indexes events already in the store (announcements first, then root
    /// events) without saving them again. Start-up does this through
    /// `Command::QueryStored`:
    /// negentropy treats stored events as "have", so without it an
    /// announcement that reached the store some other way (a lost state file,
    /// users publishing straight to the operator's relay in relay-store mode)
    /// would never become a repository to sync.
    pub(crate) fn index_stored(&mut self, events: &[Event], now: Millis) {
        let mut grew = false;
        for event in events {
            match self.policy.classify(event, &self.repos) {
                Verdict::Announcement(listed) => grew |= self.apply_announcement(event, Some(&listed)),
                Verdict::Delisting => grew |= self.apply_announcement(event, None),
                Verdict::Root(repos) => {
                    for repo in repos {
                        grew |= self.repos.add_root(&repo, event.id);
                    }
                }
                _ => continue,
            }
            self.seen.insert(event.id);
        }
        if grew {
            self.accepted_set_grew(now);
        }
    }

    /// Filters whose stored events `index_stored` should see, in order.
    pub(crate) fn stored_index_filters() -> [Filter; 2] {
        use nostr::Kind;
        [
            Filter::new().kind(Kind::Custom(nip34::REPO_ANNOUNCEMENT)),
            Filter::new().kinds([Kind::Custom(nip34::PATCH), Kind::Custom(nip34::PULL_REQUEST), Kind::Custom(nip34::ISSUE)]),
        ]
    }

    /// The next event for the front end (status changes, saved events), in
    /// order: the driver publishes a fresh snapshot when one arrives instead
    /// of diffing snapshots.
    pub(crate) fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, event: EngineEvent) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The configuration in use.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Feeds one input: the answer to a command, a frame, a lost
    /// connection, time passing or the order to stop (see [`Input`]).
    pub fn handle_input(&mut self, input: Input, now: Millis) {
        match input {
            Input::LoadState(result) => self.handle_state_loaded(result, now),
            Input::QueryStored { token, result } => self.handle_stored_events(token, result, now),
            Input::Connect { relay, result: Ok(()) } => self.handle_connected(&relay, now),
            Input::Connect { relay, result: Err(reason) } => self.handle_connect_failed(&relay, now, &reason),
            Input::FetchRelayInfo { relay, document } => self.handle_relay_info(&relay, document.as_deref(), now),
            Input::SaveEvents { token, result: Ok(outcomes) } => self.handle_saved(token, outcomes, now),
            Input::SaveEvents { token, result: Err(failure) } => self.handle_save_failed(token, failure.events, &failure.error, now),
            Input::LoadNegentropyItems { token, result: Ok(items) } => self.handle_negentropy_items(token, items, now),
            Input::LoadNegentropyItems { token, result: Err(e) } => self.handle_negentropy_items_failed(token, &e, now),
            Input::Frame { relay, text } => self.handle_frame(&relay, &text, now),
            Input::Disconnected { relay, reason } => self.handle_disconnected(&relay, now, &reason),
            Input::Timeout => self.handle_timeout(now),
            Input::Shutdown => self.shutdown(now),
        }
    }

    /// What to do next: every command, then every event, then
    /// [`Output::Timeout`] with the next deadline (call until it comes).
    pub fn poll_output(&mut self) -> Output {
        if let Some(command) = self.poll_command() {
            return Output::Command(command);
        }
        if let Some(event) = self.poll_event() {
            return Output::Event(event);
        }
        self.refresh_timers();
        Output::Timeout(self.poll_timeout())
    }

    /// The next command for the driver, if any.
    pub(crate) fn poll_command(&mut self) -> Option<Command> {
        if let Some(c) = self.commands.pop_front() {
            return Some(c);
        }
        // One save at a time: while it commits, accepted events gather into
        // the next (larger) batch instead of many small commits.
        self.next_save()
    }

    /// When the engine next wants `handle_timeout`: the earliest slot of
    /// every timer table, as last refreshed (`poll_output` refreshes them).
    pub(crate) fn poll_timeout(&self) -> Option<Millis> {
        if !self.running || !self.is_started() {
            return None;
        }
        self.relays.values().filter_map(|r| r.timers.next()).chain(self.timers.next()).min()
    }

    /// Events accepted but not yet confirmed saved by the store.
    pub fn unsaved_count(&self) -> usize {
        self.unsaved.len() + self.saves_in_flight.values().map(Vec::len).sum::<usize>()
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    // ----- relay bookkeeping -------------------------------------------------

    fn set_status(&mut self, url: &RelayUrl, to: ConnectionStatus, now: Millis) {
        self.with_relay(url, |relay, _| relay.set_status(to, now));
    }

    /// Runs `f` on the machine of `url` (when tracked), then passes on what
    /// it asked for.
    fn with_relay(&mut self, url: &RelayUrl, f: impl FnOnce(&mut RelayMachine, &SyncConfig)) {
        if let Some(relay) = self.relays.get_mut(url) {
            f(relay, &self.config);
        }
        self.flush_relay(url);
    }

    /// Turns what a relay machine asked for into commands and events, in order.
    fn flush_relay(&mut self, url: &RelayUrl) {
        while let Some(output) = self.relays.get_mut(url).and_then(RelayMachine::poll_output) {
            match output {
                RelayOutput::Transmit(text) => self.commands.push_back(Command::Send { relay: url.clone(), text }),
                RelayOutput::StatusChanged { from, to, at } => {
                    self.push_event(EngineEvent::StatusChanged(Transition { relay: url.clone(), from, to, at }))
                }
            }
        }
    }

    fn send(&mut self, url: &RelayUrl, msg: ClientMessage<'_>, now: Millis) {
        self.with_relay(url, |relay, _| relay.transmit(&msg, now));
    }

    // ----- connection lifecycle ---------------------------------------------

    /// The driver opened the connection requested by `Command::Connect`.
    pub(crate) fn handle_connected(&mut self, url: &RelayUrl, now: Millis) {
        let Some(relay) = self.relays.get_mut(url).filter(|r| r.status == ConnectionStatus::Connecting) else {
            // Dropped or shut down while connecting: close the socket the driver just opened.
            self.commands.push_back(Command::Disconnect { relay: url.clone() });
            return;
        };
        relay.counters.connect_success += 1;
        relay.sync.health.record_connected(now);
        relay.degraded_reason = None;
        let quick = is_quick_reconnect(&relay.sync, now, self.config.quick_reconnect_window);
        let since = if quick {
            relay.sync.last_connected.or(relay.sync.disconnected_at).map(|t| (t - self.config.since_safety_margin).as_secs())
        } else {
            None
        };
        relay.sync.last_connected = Some(now);
        let reconcile_at = now + self.reconcile_interval();
        let mut session = Session::new(now, reconcile_at, self.config.max_in_flight);
        session.resumed = quick;
        if !self.config.relay_info_timeout.is_zero() {
            session.info_wait_until = Some(now + self.config.relay_info_timeout);
            self.commands.push_back(Command::FetchRelayInfo { relay: url.clone() });
        }
        let relay = self.relays.get_mut(url).expect("relay exists");
        relay.session = Some(session);
        self.set_status(url, ConnectionStatus::Syncing, now);
        tracing::info!(relay = %url, quick, "connected");
        if quick {
            self.quick_reconnect(url, since, now);
        } else {
            self.fresh_start(url, now);
        }
        self.state_dirty = true;
    }

    fn reconcile_interval(&mut self) -> core::time::Duration {
        let lo = self.config.reconcile_min.as_millis() as u64;
        let hi = self.config.reconcile_max.as_millis() as u64;
        core::time::Duration::from_millis(self.rng.range(lo, hi))
    }

    /// Fresh start (SPEC §5): forget confirmed state, L1 live + historic, then L2/L3.
    fn fresh_start(&mut self, url: &RelayUrl, now: Millis) {
        if let Some(relay) = self.relays.get_mut(url) {
            relay.sync.clear_confirmed();
        }
        self.start_batch(url, BatchItems::Announcements, None, true, now);
        self.run_diff(url, now);
        self.pump(url, now);
    }

    /// Quick reconnect (SPEC §5): keep confirmed, re-open live filters, historic
    /// with `since`, then the diff for whatever is new.
    fn quick_reconnect(&mut self, url: &RelayUrl, since: Option<u64>, now: Millis) {
        let (repos, roots) = match self.relays.get(url) {
            Some(r) => (r.sync.confirmed_repos.clone(), r.sync.confirmed_roots.clone()),
            None => return,
        };
        let max_a = self.config.max_addresses_per_filter;
        let max_i = self.config.max_ids_per_filter;
        for items in filters::consolidated(&repos, &roots, max_a, max_i) {
            self.start_batch(url, items, since, true, now);
        }
        self.run_diff(url, now);
        self.pump(url, now);
    }

    /// The driver fetched (or failed to fetch: `None`) the relay's NIP-11
    /// document: its limits cap the window and page size, its NIPs decide
    /// negentropy; then historic work starts.
    pub(crate) fn handle_relay_info(&mut self, url: &RelayUrl, document: Option<&str>, now: Millis) {
        let info = document.and_then(crate::nip11::RelayInfo::parse);
        let Some(relay) = self.relays.get_mut(url) else { return };
        let Some(session) = relay.session.as_mut() else { return };
        if session.info_wait_until.take().is_none() {
            return; // late: the engine already went on without it
        }
        if let Some(info) = info {
            tracing::info!(
                relay = %url,
                max_subscriptions = ?info.max_subscriptions,
                max_limit = ?info.max_limit,
                nip77 = ?info.negentropy,
                "relay limits learned from NIP-11"
            );
            if let Some(max) = info.max_subscriptions {
                session.sub_budget = Some(max);
                session.window.cap(max.saturating_sub(1).max(1));
            }
            if let Some(max) = info.max_limit {
                session.page_limit = Some(self.config.page_limit.min(max));
            }
            match info.negentropy {
                Some(true) => relay.sync.negentropy = Some(true),
                Some(false) if relay.sync.negentropy != Some(true) => {
                    tracing::info!(relay = %url, "relay does not list NIP-77; using REQ+EOSE");
                    session.req_only = true;
                }
                _ => {}
            }
        }
        self.pump(url, now);
    }

    /// The driver could not connect.
    pub(crate) fn handle_connect_failed(&mut self, url: &RelayUrl, now: Millis, reason: &str) {
        let Some(relay) = self.relays.get_mut(url) else { return };
        if relay.connect_failed(&self.config, &mut self.rng, reason, now) {
            self.state_dirty = true;
        }
        self.flush_relay(url);
    }

    /// The connection was lost (not asked for by `Command::Disconnect`).
    pub(crate) fn handle_disconnected(&mut self, url: &RelayUrl, now: Millis, reason: &str) {
        let Some(relay) = self.relays.get_mut(url) else { return };
        if relay.disconnected(&self.config, &mut self.rng, reason, now) {
            self.neg_loads.retain(|_, (r, _)| r != url);
            self.state_dirty = true;
        }
        self.flush_relay(url);
    }

    /// Stops: closes every connection and persists state. The driver should
    /// keep executing commands until `poll_command` returns `None`.
    pub(crate) fn shutdown(&mut self, now: Millis) {
        let urls: Vec<RelayUrl> = self.relays.keys().cloned().collect();
        for url in urls {
            let relay = self.relays.get_mut(&url).expect("listed");
            if relay.status == ConnectionStatus::Disconnected {
                continue;
            }
            if relay.status.is_connected() {
                relay.sync.last_connected = Some(now);
                relay.sync.disconnected_at = Some(now);
            }
            relay.session = None;
            relay.sync.health.connected_since = None;
            self.set_status(&url, ConnectionStatus::Disconnected, now);
            self.commands.push_back(Command::Disconnect { relay: url });
        }
        self.running = false;
        self.state_dirty = false;
        // The final save goes out now (whatever the retry schedule), and the
        // state is persisted once it reports: never ahead of the store.
        self.saving.retry_at = None;
        if let Some(save) = self.next_save() {
            self.commands.push_back(save);
            self.saving.persist_after_saves = true;
        } else {
            self.commands.push_back(Command::PersistState { state: self.state_bytes() });
        }
    }

    // ----- batches -----------------------------------------------------------

    /// Creates a batch: its live filters (opened packed by the next pump) and
    /// one historic job per filter, queued for the relay's window; callers
    /// pump once they have created every batch.
    fn start_batch(&mut self, url: &RelayUrl, items: BatchItems, since: Option<u64>, with_live: bool, now: Millis) {
        let historic_timeout = self.config.historic_timeout;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let batch_id = session.batch_id();
        let filters_ = items.filters();
        if with_live {
            session.live_pending.push(items.clone());
        }
        session.batches.insert(batch_id, PendingBatch::new(items, filters_.len(), since, now));
        session.idle_since = None;
        session.last_batch_created = now;
        for f in filters_ {
            let sub = session.sub_id("hist");
            let filter = filters::historic(&f, since);
            session.jobs.insert(sub, Job::new(batch_id, filter, JobKind::New, now + historic_timeout));
        }
    }

    fn begin_negentropy(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        let token = self.token();
        let timeout = self.config.historic_timeout;
        let Some(job) = self.job_mut(url, sub) else { return };
        job.kind = JobKind::LoadingItems(token);
        job.deadline = now + timeout;
        let filter = job.filter.clone();
        self.neg_loads.insert(token, (url.clone(), sub.to_string()));
        self.commands.push_back(Command::LoadNegentropyItems { token, filter });
    }

    fn begin_pagination(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        let timeout = self.config.historic_timeout;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let limit = session.page_limit.unwrap_or(self.config.page_limit);
        let Some(job) = session.jobs.get_mut(sub) else { return };
        job.held = None;
        let mut p = Paginator::new(job.filter.clone());
        let f = p.request(limit);
        job.kind = JobKind::Page(Box::new(p));
        job.last_request = Some(f.clone());
        job.deadline = now + timeout;
        self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![f]), now);
    }

    fn job_mut(&mut self, url: &RelayUrl, sub: &str) -> Option<&mut Job> {
        self.relays.get_mut(url)?.session.as_mut()?.jobs.get_mut(sub)
    }

    /// The store answered `LoadNegentropyItems`.
    pub(crate) fn handle_negentropy_items(&mut self, token: u64, items: Vec<NegentropyItem>, now: Millis) {
        let Some((url, sub)) = self.neg_loads.remove(&token) else { return };
        let frame_limit = self.config.negentropy_frame_limit;
        let open_timeout = self.config.negentropy_open_timeout;
        let Some(job) = self.job_mut(&url, &sub) else { return };
        if !matches!(job.kind, JobKind::LoadingItems(t) if t == token) {
            return;
        }
        match NegSession::open(&items, frame_limit) {
            Ok((session, init)) => {
                job.kind = JobKind::NegOpen(Box::new(session));
                job.deadline = now + open_timeout;
                let filter = job.filter.clone();
                self.send(
                    &url,
                    ClientMessage::NegOpen {
                        subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(&sub)),
                        filter: std::borrow::Cow::Owned(filter),
                        id_size: None,
                        initial_message: std::borrow::Cow::Owned(init),
                    },
                    now,
                );
            }
            Err(e) => {
                tracing::warn!(relay = %url, error = %e, "negentropy setup failed; using REQ pagination");
                self.begin_pagination(&url, &sub, now);
            }
        }
    }

    /// The store could not load negentropy items: fall back to pagination.
    pub(crate) fn handle_negentropy_items_failed(&mut self, token: u64, error: &str, now: Millis) {
        let Some((url, sub)) = self.neg_loads.remove(&token) else { return };
        tracing::warn!(relay = %url, error, "loading negentropy items failed; using REQ pagination");
        self.begin_pagination(&url, &sub, now);
    }

    /// A job ended: frees its window slot, and completes its batch when
    /// nothing of the batch is left.
    fn finish_job(&mut self, url: &RelayUrl, sub: &str, ok: bool, now: Millis) {
        if !ok {
            // A failed request must not stay open at the relay: it would hold
            // one of the relay's subscription slots for the connection's life.
            let close = self.job_mut(url, sub).filter(|j| j.in_flight()).and_then(|j| match j.kind {
                JobKind::Page(_) | JobKind::Fetch(_) => Some(ClientMessage::close(SubscriptionId::new(sub))),
                JobKind::NegOpen(_) | JobKind::Neg(_) => {
                    Some(ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) })
                }
                JobKind::New | JobKind::LoadingItems(_) => None,
            });
            if let Some(close) = close {
                self.send(url, close, now);
            }
        }
        let Some(relay) = self.relays.get_mut(url) else { return };
        let Some(session) = relay.session.as_mut() else { return };
        let Some(job) = session.jobs.remove(sub) else { return };
        if let JobKind::Fetch(f) = &job.kind {
            for id in f.requested_ids() {
                if self.requested.get(id).is_some_and(|(u, s)| u == url && s == sub) {
                    self.requested.remove(id);
                }
            }
        }
        let Some(batch) = session.batches.get_mut(&job.batch) else { return };
        if !ok && !batch.failed {
            batch.failed = true;
            relay.counters.batches_failed += 1;
            tracing::warn!(relay = %url, sub, "historic batch failed");
        }
        batch.jobs_left = batch.jobs_left.saturating_sub(1);
        self.try_complete_batch(url, job.batch, now);
        self.pump_all(now);
    }

    /// Confirms a batch whose jobs all ended and whose needed ids were all
    /// requested (SPEC §5: pending → confirmed). A completed layer releases
    /// the next one at once (no idle wait for the batch window).
    fn try_complete_batch(&mut self, url: &RelayUrl, batch_id: u64, now: Millis) {
        let Some(relay) = self.relays.get_mut(url) else { return };
        let Some(session) = relay.session.as_mut() else { return };
        let Some(batch) = session.batches.get(&batch_id) else { return };
        if !batch.is_done() || batch.failed {
            if session.in_flight() == 0 {
                session.idle_since.get_or_insert(now);
            }
            return;
        }
        let batch = session.batches.remove(&batch_id).expect("present");
        let layer = batch.layer();
        match batch.items {
            BatchItems::Announcements => relay.sync.announcements_synced = true,
            BatchItems::Repos(r) => relay.sync.confirmed_repos.extend(r),
            BatchItems::Roots(r) => relay.sync.confirmed_roots.extend(r),
            BatchItems::AllThreads => {}
        }
        let layer_done = !session.batches.values().any(|b| !b.failed && b.layer() <= layer);
        if session.in_flight() == 0 {
            session.idle_since.get_or_insert(now);
        }
        self.state_dirty = true;
        if layer_done && layer != Layer::L3 && self.window_started.is_some() {
            // SPEC §5 "fresh start without idle waits": what this layer
            // discovered goes out now, not when the batch window closes.
            self.close_batch_window(now);
        }
    }

    /// The three-way diff (target − pending − confirmed) for one connected relay.
    fn run_diff(&mut self, url: &RelayUrl, now: Millis) {
        let Some(relay) = self.relays.get(url) else { return };
        let Some(session) = relay.session.as_ref() else { return };
        let work = plan::new_work(&self.repos, url, &relay.sync, session, &self.config);
        for items in work {
            self.start_batch(url, items, None, true, now);
        }
        self.pump(url, now);
    }

    // ----- incoming frames ---------------------------------------------------

    /// One text frame from a relay.
    pub(crate) fn handle_frame(&mut self, url: &RelayUrl, text: &str, now: Millis) {
        let max = self.config.max_frame_bytes;
        let Some(relay) = self.relays.get_mut(url) else { return };
        if relay.session.is_none() {
            return;
        }
        relay.counters.frames_received += 1;
        relay.counters.bytes_received += text.len() as u64;
        if text.len() > max {
            *relay.counters.events_rejected.entry("oversized".into()).or_default() += 1;
            tracing::warn!(relay = %url, bytes = text.len(), "frame larger than max_frame_bytes ignored");
            return;
        }
        let msg = match RelayMessage::from_json(text) {
            Ok(m) => m,
            Err(e) => {
                *relay.counters.events_rejected.entry("malformed".into()).or_default() += 1;
                tracing::debug!(relay = %url, error = ?e, "malformed frame ignored");
                return;
            }
        };
        match msg {
            RelayMessage::Event { subscription_id, event } => self.on_event(url, subscription_id.as_str(), event.into_owned(), now),
            RelayMessage::EndOfStoredEvents(sub) => self.on_eose(url, sub.as_str(), now),
            RelayMessage::Ok { message, .. } => {
                self.check_rate_limited(url, &message, now);
            }
            RelayMessage::Notice(message) => self.on_notice(url, &message, now),
            RelayMessage::Closed { subscription_id, message } => self.on_closed(url, subscription_id.as_str(), &message, now),
            RelayMessage::NegMsg { subscription_id, message } => self.on_neg_msg(url, subscription_id.as_str(), &message, now),
            RelayMessage::NegErr { subscription_id, message } => self.on_neg_err(url, subscription_id.as_str(), &message, now),
            RelayMessage::Auth { .. } | RelayMessage::Count { .. } => {}
        }
    }

    fn check_rate_limited(&mut self, url: &RelayUrl, message: &str, now: Millis) -> bool {
        if MachineReadablePrefix::parse(message) != Some(MachineReadablePrefix::RateLimited) {
            return false;
        }
        let cooldown = self.config.rate_limit_cooldown;
        let Some(relay) = self.relays.get_mut(url) else { return true };
        relay.counters.rate_limited += 1;
        relay.last_error = Some(RelayError { at: now, message: format!("rate limited: {message}") });
        relay.sync.health.record_rate_limited(&self.config, now);
        if let Some(session) = relay.session.as_mut() {
            for job in session.jobs.values_mut() {
                job.deadline = job.deadline.max(now + cooldown + self.config.historic_timeout);
            }
        }
        tracing::warn!(relay = %url, message, "rate limited; pausing");
        true
    }

    fn on_notice(&mut self, url: &RelayUrl, message: &str, now: Millis) {
        if let Some(r) = self.relays.get_mut(url) {
            r.counters.notices += 1;
            if let Some(reason) = flow::refusal_reason(message) {
                r.count_refusal(reason, message);
            }
        }
        if flow::is_too_many(message) {
            // Flow control: which request was refused shows by its silence.
            let neg = message.to_ascii_lowercase().contains("neg");
            self.too_many_notice(url, neg, now);
            return;
        }
        if self.check_rate_limited(url, message, now) {
            return;
        }
        // A relay without NIP-77 answers NEG-OPEN with a NOTICE — but a NOTICE
        // is only a verdict when the NEG-OPEN was alone in flight (SPEC §2),
        // and never while frames wait in the outbox (a rate-limit cooldown):
        // the NEG-OPEN may not even have reached the relay.
        let Some(relay) = self.relays.get(url) else { return };
        let Some(session) = relay.session.as_ref() else { return };
        if !session.outbox.is_empty() || relay.sync.health.is_rate_limited(now) {
            return;
        }
        let opens: Vec<String> =
            session.jobs.iter().filter(|(_, j)| matches!(j.kind, JobKind::NegOpen(_))).map(|(s, _)| s.clone()).collect();
        if opens.is_empty() {
            return;
        }
        if session.requests_in_flight() == 1 || session.jobs.values().any(|j| j.alone && j.in_flight()) {
            self.neg_open_refused(url, message, now);
        } else {
            self.probe_negentropy_alone(url, &opens, now);
        }
    }

    /// The NEG-OPEN itself was refused (or a NEG-OPEN sent alone went
    /// unanswered): REQ-only. A relay where negentropy worked before stays
    /// remembered as NIP-77 — only this session paginates — so the next
    /// connection tries negentropy again.
    fn neg_open_refused(&mut self, url: &RelayUrl, why: &str, now: Millis) {
        let remembered = self.relays.get(url).is_some_and(|r| r.sync.negentropy == Some(true));
        self.mark_req_only(url, why, now);
        if remembered {
            if let Some(r) = self.relays.get_mut(url) {
                r.sync.negentropy = Some(true);
            }
        }
    }

    /// An ambiguous signal (a NOTICE, or silence, with other requests in
    /// flight): the unanswered NEG-OPENs are asked again, each alone, so the
    /// answer can be attributed.
    fn probe_negentropy_alone(&mut self, url: &RelayUrl, subs: &[String], now: Millis) {
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        for sub in subs {
            let Some(mut job) = session.jobs.remove(sub) else { continue };
            job.kind = JobKind::New;
            job.queued = true;
            job.alone = true;
            job.suspect_until = None;
            job.answered = false;
            let new_sub = session.sub_id("hist");
            session.jobs.insert(new_sub, job);
        }
        for sub in subs {
            self.commands_close_neg(url, sub, now);
        }
        self.pump(url, now);
    }

    fn commands_close_neg(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        self.send(url, ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }, now);
    }

    /// The relay does not speak NIP-77: every negentropy job falls back to REQ.
    fn mark_req_only(&mut self, url: &RelayUrl, why: &str, now: Millis) {
        let Some(relay) = self.relays.get_mut(url) else { return };
        relay.sync.negentropy = Some(false);
        let Some(session) = relay.session.as_mut() else { return };
        if !session.req_only {
            tracing::info!(relay = %url, why, "relay does not do negentropy; using REQ+EOSE");
        }
        session.req_only = true;
        for job in session.jobs.values_mut() {
            job.alone = false;
        }
        let subs: Vec<(String, bool)> = session
            .jobs
            .iter()
            .filter(|(_, j)| j.in_flight() && matches!(j.kind, JobKind::NegOpen(_) | JobKind::LoadingItems(_)))
            .map(|(s, j)| (s.clone(), matches!(j.kind, JobKind::NegOpen(_))))
            .collect();
        for (sub, opened) in subs {
            if opened {
                // a late answer must not leave the session open at the relay
                self.commands_close_neg(url, &sub, now);
            }
            self.begin_pagination(url, &sub, now);
        }
        self.pump(url, now);
    }

    fn on_event(&mut self, url: &RelayUrl, sub: &str, event: Event, now: Millis) {
        let id = event.id;
        let created_at = event.created_at;
        let Some(relay) = self.relays.get_mut(url) else { return };
        relay.counters.events_received += 1;
        // Pagination counts only events that match the job's filter and
        // verify: a relay streaming junk must not keep a job paging (or its
        // deadline fresh) forever.
        let page_filter_matches = relay.session.as_mut().and_then(|s| s.jobs.get_mut(sub)).is_some_and(|job| {
            job.answered = true;
            matches!(job.kind, JobKind::Page(_)) && job.filter.match_event(&event, nostr::filter::MatchEventOptions::new())
        });
        let counts = if self.seen.contains(&id) {
            relay.counters.events_duplicate += 1;
            page_filter_matches
        } else if self.rejections.contains(&id, now) {
            *relay.counters.events_rejected.entry("not_accepted".into()).or_default() += 1;
            page_filter_matches && event.verify().is_ok()
        } else {
            match self.ingest(url, event, now) {
                Validity::Valid => page_filter_matches,
                Validity::Invalid => false,
                Validity::Unchecked(event) => page_filter_matches && event.verify_signature(),
            }
        };
        if counts {
            let deadline = now + self.config.historic_timeout;
            if let Some(job) = self.job_mut(url, sub) {
                if let JobKind::Page(p) = &mut job.kind {
                    p.on_event(id, created_at);
                    job.deadline = deadline;
                }
            }
        }
        // Any event under a requested id answers the fetch, even an invalid
        // one: the relay returned its (bad) copy rather than withholding the
        // id, and the rejection is already counted. Otherwise one forged event
        // on a NIP-77 relay would leave it ConnectedDegraded after every sync.
        if let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) {
            if let Some(JobKind::Fetch(f)) = session.jobs.get_mut(sub).map(|j| &mut j.kind) {
                if f.on_event(id) {
                    session.progress.ids_fetched += 1;
                    self.requested.remove(&id);
                }
            }
        }
    }

    /// Policy, verification and queueing for save.
    fn ingest(&mut self, url: &RelayUrl, event: Event, now: Millis) -> Validity {
        let reject = |engine: &mut Engine, reason: &str| {
            if let Some(r) = engine.relays.get_mut(url) {
                *r.counters.events_rejected.entry(reason.into()).or_default() += 1;
            }
        };
        if !event.verify_id() {
            reject(self, "invalid_id");
            return Validity::Invalid;
        }
        // Implausible dates are refused before anything else: a valid event
        // dated 2^53 s or later cannot be stored by every store (IndexedDB
        // keys are doubles) and would block the save queue.
        if event.created_at.as_secs() > (now + self.config.max_future_skew).as_secs() {
            reject(self, "invalid_created_at");
            tracing::debug!(relay = %url, id = %event.id, created_at = event.created_at.as_secs(), "event dated in the future");
            // Not stored, but it took a place on the page: pagination counts
            // it when it verifies, or it would end early.
            return Validity::Unchecked(Box::new(event));
        }
        let mut verdict = self.policy.classify(&event, &self.repos);
        if verdict == Verdict::Delisting && !self.repos.replaces_indexed(&event) {
            verdict = Verdict::Reject(Rejection::Permanent); // an older version
        }
        if let Verdict::Reject(kind) = verdict {
            // L1 brings announcements and states together, newest first: a
            // state often arrives before the announcement that makes it
            // acceptable, and no later batch asks for it again, so it is
            // parked. Only a genuine one: a forged copy must neither be parked
            // nor make its id look "already handled" to negentropy, or the
            // real event would never be fetched from an honest relay.
            let park = kind == Rejection::Conditional && event.kind.as_u16() == nip34::REPO_STATE;
            if park && !event.verify_signature() {
                reject(self, "invalid_signature");
                return Validity::Invalid;
            }
            self.rejections.insert(event.id, kind, now + self.config.rejection_ttl);
            reject(self, "not_accepted");
            if park {
                if self.parked_states.len() >= PARKED_STATES_MAX {
                    self.parked_states.pop_front();
                }
                self.parked_states.push_back((event, url.clone()));
                return Validity::Valid;
            }
            return Validity::Unchecked(Box::new(event));
        }
        if !event.verify_signature() {
            reject(self, "invalid_signature");
            tracing::debug!(relay = %url, id = %event.id, "invalid signature");
            return Validity::Invalid;
        }
        self.seen.insert(event.id);
        match verdict {
            Verdict::Announcement(listed) if self.apply_announcement(&event, Some(&listed)) => self.accepted_set_grew(now),
            Verdict::Delisting if self.apply_announcement(&event, None) => self.accepted_set_grew(now),
            Verdict::Root(repos) => {
                let mut new = false;
                for repo in repos {
                    new |= self.repos.add_root(&repo, event.id);
                }
                if new {
                    self.accepted_set_grew(now);
                }
            }
            _ => {}
        }
        self.unsaved.push((event, url.clone()));
        self.forget_beyond_backlog();
        Validity::Valid
    }

    fn accepted_set_grew(&mut self, now: Millis) {
        self.rejections.accepted_set_grew();
        self.window_started.get_or_insert(now);
        self.state_dirty = true;
    }

    fn on_eose(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        let (retries, timeout) = (self.config.fetch_retries, self.config.historic_timeout);
        let max_pages = self.config.max_pages_per_job;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let limit = session.page_limit.unwrap_or(self.config.page_limit);
        // A relay answering at most `max_limit` events per page still pages on.
        let threshold = self.config.pagination_threshold.min(limit);
        let Some(job) = session.jobs.get_mut(sub) else { return };
        if job.queued {
            return; // an answer to a request we re-queued as refused
        }
        job.answered = true;
        job.deadline = now + timeout;
        if matches!(job.kind, JobKind::Page(_)) {
            session.progress.pages_done += 1;
        }
        match &mut job.kind {
            JobKind::Page(p) => match p.on_eose(threshold, limit) {
                PageOutcome::Next(_) if p.pages > max_pages => {
                    tracing::warn!(relay = %url, sub, pages = p.pages, "historic job beyond its page bound; batch failed");
                    self.send(url, ClientMessage::close(SubscriptionId::new(sub)), now);
                    self.finish_job(url, sub, false, now);
                }
                PageOutcome::Next(f) => {
                    job.last_request = Some(f.clone());
                    self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![f]), now);
                }
                PageOutcome::Done => {
                    // A second that held more than a page: possibly incomplete.
                    let complete = !p.incomplete;
                    if !complete {
                        tracing::warn!(relay = %url, sub, "one second held more events than a page; some may be missing");
                    }
                    self.send(url, ClientMessage::close(SubscriptionId::new(sub)), now);
                    self.finish_job(url, sub, complete, now);
                }
            },
            JobKind::Fetch(f) => match f.on_eose(retries) {
                FetchOutcome::Complete => {
                    self.send(url, ClientMessage::close(SubscriptionId::new(sub)), now);
                    self.finish_job(url, sub, true, now);
                }
                FetchOutcome::Retry(filter) => {
                    job.last_request = Some(filter.clone());
                    self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![filter]), now);
                }
                FetchOutcome::Failed(missing) => {
                    tracing::warn!(relay = %url, missing = missing.len(), "relay withheld ids negentropy said it has");
                    self.finish_job(url, sub, false, now);
                }
            },
            _ => {}
        }
    }

    fn on_closed(&mut self, url: &RelayUrl, sub: &str, message: &str, now: Millis) {
        if let Some(r) = self.relays.get_mut(url) {
            r.count_refusal(flow::refusal_reason(message).unwrap_or("closed"), message);
        }
        let too_many = flow::is_too_many(message);
        let rate_limited = !too_many && self.check_rate_limited(url, message, now);
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        if too_many && session.live.contains_key(sub) {
            return self.live_refused(url, sub, now);
        }
        if session.live.contains_key(sub) {
            return self.live_closed(url, sub, message, rate_limited, now);
        }
        let Some(job) = session.jobs.get(sub) else { return };
        if job.queued {
            return;
        }
        if too_many {
            return self.requeue_refused(url, sub, now);
        }
        if matches!(job.kind, JobKind::NegOpen(_)) && !rate_limited {
            return self.neg_open_refused(url, message, now);
        }
        if rate_limited {
            // Re-sent from the outbox once the cooldown is over.
            return self.restart_job(url, sub, now, false);
        }
        use MachineReadablePrefix::{AuthRequired, Blocked, Restricted};
        if matches!(MachineReadablePrefix::parse(message), Some(AuthRequired | Restricted | Blocked)) {
            return self.finish_job(url, sub, false, now);
        }
        self.restart_job(url, sub, now, true);
    }

    /// Re-sends a job's request; `counts` makes it a retry (second one fails the job).
    fn restart_job(&mut self, url: &RelayUrl, sub: &str, now: Millis, counts: bool) {
        let timeout = self.config.historic_timeout;
        let Some(job) = self.job_mut(url, sub) else { return };
        if counts {
            job.restarts += 1;
            if job.restarts > 1 {
                return self.finish_job(url, sub, false, now);
            }
        }
        job.deadline = now + timeout;
        match &job.kind {
            JobKind::Page(_) | JobKind::Fetch(_) => {
                let f = match &job.kind {
                    JobKind::Fetch(f) => f.resend_filter(),
                    _ => job.last_request.clone().unwrap_or_else(|| job.filter.clone()),
                };
                self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![f]), now);
            }
            JobKind::Neg(_) | JobKind::NegOpen(_) => {
                // A broken negentropy session is finished by REQ pagination.
                self.send(url, ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }, now);
                self.begin_pagination(url, sub, now);
            }
            JobKind::LoadingItems(_) | JobKind::New => {}
        }
    }

    fn on_neg_msg(&mut self, url: &RelayUrl, sub: &str, hex: &str, now: Millis) {
        let timeout = self.config.historic_timeout;
        let (max_rounds, max_ids) = (self.config.max_negentropy_rounds, self.config.max_negentropy_ids);
        let queue_max = self.config.fetch_queue_max;
        let Some(relay) = self.relays.get_mut(url) else { return };
        relay.sync.negentropy = Some(true);
        let Some(session) = relay.session.as_mut() else { return };
        if !session.negentropy_seen {
            session.negentropy_seen = true;
            tracing::info!(relay = %url, "relay speaks negentropy (NIP-77): it answered a NEG-OPEN");
        }
        if session.jobs.get(sub).is_some_and(|j| j.alone) {
            // The probe answered: negentropy works, nothing needs to go alone.
            session.jobs.values_mut().for_each(|j| j.alone = false);
        }
        let Some(job) = session.jobs.get_mut(sub) else { return };
        job.answered = true;
        let kind = core::mem::replace(&mut job.kind, JobKind::LoadingItems(0));
        let mut neg = match kind {
            JobKind::NegOpen(n) | JobKind::Neg(n) => n,
            other => {
                job.kind = other;
                return;
            }
        };
        job.deadline = now + timeout;
        let mut need = Vec::new();
        let step = neg.on_message(hex, &mut need);
        let endless = neg.rounds > max_rounds || neg.ids > max_ids;
        let (rounds, ids) = (neg.rounds, neg.ids);
        job.kind = JobKind::Neg(neg);
        relay.counters.negentropy_rounds += 1;
        if endless {
            // A session this long is a lying or broken relay: give the batch
            // up (ConnectedDegraded) rather than hold memory and stay Syncing.
            tracing::warn!(relay = %url, sub, rounds, ids, "negentropy session beyond its bounds; batch failed");
            self.send(url, ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }, now);
            self.finish_job(url, sub, false, now);
            return self.pump(url, now);
        }
        // Fetch while reconciling: needed ids queue on the batch right away.
        let batch_id = job.batch;
        let (seen, rejections) = (&self.seen, &self.rejections);
        // the negentropy crate reports ids in hash order: sort, so a run is
        // reproducible (simulation seeds replay exactly)
        need.sort_unstable();
        need.dedup();
        need.retain(|id| !seen.contains(id) && !rejections.contains(id, now));
        session.progress.ids_needed += need.len() as u64;
        let queue_len = match session.batches.get_mut(&batch_id) {
            Some(b) => {
                b.fetch_queue.extend(need);
                b.fetch_queue.len()
            }
            None => 0,
        };
        match step {
            Ok(NegStep::Continue(msg)) => {
                if queue_len > queue_max {
                    // Bounded: the next round waits until fetching catches up.
                    if let Some(job) = session.jobs.get_mut(sub) {
                        job.held = Some(msg);
                    }
                } else {
                    self.send_neg_msg(url, sub, msg, now);
                }
            }
            Ok(NegStep::Done) => {
                self.send(url, ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }, now);
                self.finish_job(url, sub, true, now);
            }
            Err(e) => {
                tracing::warn!(relay = %url, error = %e, "relay sent an invalid negentropy message; using REQ pagination");
                self.send(url, ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }, now);
                self.begin_pagination(url, sub, now);
            }
        }
        self.pump(url, now);
    }

    fn send_neg_msg(&mut self, url: &RelayUrl, sub: &str, msg: String, now: Millis) {
        self.send(
            url,
            ClientMessage::NegMsg {
                subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)),
                message: std::borrow::Cow::Owned(msg),
            },
            now,
        );
    }

    fn on_neg_err(&mut self, url: &RelayUrl, sub: &str, message: &str, now: Millis) {
        if self.job_mut(url, sub).is_none_or(|j| j.queued) {
            return;
        }
        if let Some(r) = self.relays.get_mut(url) {
            r.count_refusal(flow::refusal_reason(message).unwrap_or("neg_err"), message);
        }
        if flow::is_too_many(message) {
            return self.requeue_refused(url, sub, now);
        }
        if self.check_rate_limited(url, message, now) {
            return self.restart_job(url, sub, now, false);
        }
        let Some(job) = self.job_mut(url, sub) else { return };
        match job.kind {
            JobKind::NegOpen(_) => self.neg_open_refused(url, message, now),
            JobKind::Neg(_) => {
                tracing::warn!(relay = %url, message, "negentropy error mid-session; using REQ pagination");
                self.begin_pagination(url, sub, now);
            }
            _ => {}
        }
    }

    // ----- store results -----------------------------------------------------

    /// Parked repository states whose announcement has been accepted since
    /// are ingested now; the others stay parked.
    fn retry_parked_states(&mut self, now: Millis) {
        let parked = core::mem::take(&mut self.parked_states);
        for (event, url) in parked {
            if self.seen.contains(&event.id) {
                continue;
            }
            if matches!(self.policy.classify(&event, &self.repos), Verdict::Reject(_)) {
                self.parked_states.push_back((event, url));
            } else {
                let _ = self.ingest(&url, event, now);
            }
        }
    }

    // ----- time --------------------------------------------------------------

    /// Timers: the 2 s health tick, the batch window, settle windows, retries.
    pub(crate) fn handle_timeout(&mut self, now: Millis) {
        if !self.running || !self.is_started() {
            return;
        }
        self.run_expired_timers(now);
    }

    /// The batch window closes: parked states are re-examined and every
    /// connected relay gets the diff.
    fn close_batch_window(&mut self, now: Millis) {
        self.window_started = None;
        self.retry_parked_states(now);
        // what the window changed may leave relays unlisted, or free room
        // for relays refused earlier: not left for the next tick
        let urls: Vec<RelayUrl> = self.relays.keys().cloned().collect();
        for url in urls {
            self.drop_if_unwanted(&url);
        }
        self.admit_again();
        let urls: Vec<RelayUrl> = self.relays.iter().filter(|(_, r)| r.session.is_some()).map(|(u, _)| u.clone()).collect();
        for url in urls {
            self.run_diff(&url, now);
        }
    }

    fn check_settled(&mut self, now: Millis) {
        let settle = self.config.settle_window();
        let window_open = self.window_started.is_some();
        let mut done = Vec::new();
        for (url, relay) in &self.relays {
            let Some(s) = &relay.session else { continue };
            if relay.status != ConnectionStatus::Syncing || s.in_flight() > 0 || window_open {
                continue;
            }
            if let Some(idle) = s.idle_since {
                if now >= idle + settle && s.last_batch_created <= idle {
                    done.push((url.clone(), s.any_failed(), s.connected_at));
                }
            }
        }
        for (url, failed, connected_at) in done {
            let live_trouble = self.relays.get(&url).is_some_and(|r| r.degraded_reason.is_some());
            if failed || live_trouble {
                if failed {
                    let relay = self.relays.get_mut(&url).expect("listed");
                    relay.degraded_reason = Some(DegradedReason::HistoricIncomplete);
                }
                self.set_status(&url, ConnectionStatus::ConnectedDegraded, now);
                tracing::warn!(relay = %url, "historic sync finished with failed batches");
            } else {
                let relay = self.relays.get_mut(&url).expect("listed");
                relay.sync.historic_sync_completed = true;
                relay.sync.historic_sync_completed_at = Some(now);
                relay.historic_duration_ms = Some(now.since(connected_at).as_millis() as u64);
                self.set_status(&url, ConnectionStatus::Connected, now);
                tracing::info!(relay = %url, "historic sync completed");
                self.persist_soon = true;
            }
            self.state_dirty = true;
        }
    }

    fn tick(&mut self, now: Millis) {
        self.admit_again();
        let urls: Vec<RelayUrl> = self.relays.keys().cloned().collect();
        for url in urls {
            self.tick_relay(&url, now);
        }
    }

    /// The sync state, now (the `Persist` timer decides when).
    fn persist(&mut self, now: Millis) {
        self.last_persist = now;
        self.state_dirty = false;
        self.persist_soon = false;
        self.commands.push_back(Command::PersistState { state: self.state_bytes() });
    }

    fn tick_relay(&mut self, url: &RelayUrl, now: Millis) {
        if self.drop_if_unwanted(url) {
            return;
        }
        let Some(relay) = self.relays.get(url) else { return };
        match relay.status {
            ConnectionStatus::Disconnected => self.dial(url, now),
            ConnectionStatus::Connecting => {}
            _ => self.tick_connected(url, now),
        }
    }

    /// Stops tracking a relay nothing it carries is wanted from (not a
    /// bootstrap relay, listed by no repository), unless the batch window
    /// is open; true when it was dropped.
    fn drop_if_unwanted(&mut self, url: &RelayUrl) -> bool {
        let wanted = self.relays.get(url).is_some_and(|r| r.sync.bootstrap) || self.repos.lists_relay(url);
        if wanted || self.window_started.is_some() {
            return false;
        }
        let Some(relay) = self.relays.remove(url) else { return false };
        if relay.status != ConnectionStatus::Disconnected {
            self.commands.push_back(Command::Disconnect { relay: url.clone() });
        }
        tracing::info!(relay = %url, "dropping relay no repository lists");
        self.relays_dropped = true;
        self.neg_loads.retain(|_, (r, _)| r != url);
        self.state_dirty = true;
        true
    }

    /// A disconnected relay whose backoff is over is dialled, within the
    /// per-tick connect budget.
    fn dial(&mut self, url: &RelayUrl, now: Millis) {
        let Some(relay) = self.relays.get(url) else { return };
        if relay.status != ConnectionStatus::Disconnected || !relay.sync.health.may_attempt(now) || !self.running {
            return;
        }
        let timeout = relay.sync.health.connect_timeout(&self.config);
        if !self.take_connect_budget() {
            return; // its Dial timer waits for the next tick's budget
        }
        self.set_status(url, ConnectionStatus::Connecting, now);
        self.commands.push_back(Command::Connect { relay: url.clone(), timeout });
    }

    fn tick_connected(&mut self, url: &RelayUrl, now: Millis) {
        let Some(relay) = self.relays.get_mut(url) else { return };
        relay.sync.last_connected = Some(now);
        self.check_stable(url, now);
        self.forgive_live_closes(url, now);
        self.service_connection(url, now);
    }

    /// After the stability period the relay's failures are forgiven (Healthy).
    fn check_stable(&mut self, url: &RelayUrl, now: Millis) {
        if self.relays.get_mut(url).is_some_and(|r| r.check_stable(&self.config, now)) {
            self.state_dirty = true;
        }
    }

    /// Every deadline of one connection that has passed: the end of a
    /// rate-limit cooldown (held frames go out), historic requests without
    /// an answer (retry, probe or fail), the daily reconciliation. Run on
    /// every timeout (`poll_timeout` includes these deadlines), so none waits
    /// for the next tick.
    fn service_connection(&mut self, url: &RelayUrl, now: Millis) {
        let Some(relay) = self.relays.get_mut(url).filter(|r| r.session.is_some()) else { return };
        let rate_limited = relay.sync.health.is_rate_limited(now);
        if !rate_limited {
            relay.end_cooldown(&self.config, now);
            self.flush_relay(url);
        }
        let Some(session) = self.relays.get(url).and_then(|r| r.session.as_ref()) else { return };
        let expired: Vec<String> = if rate_limited {
            Vec::new()
        } else {
            session.jobs.iter().filter(|(_, j)| j.in_flight() && j.held.is_none() && now >= j.deadline).map(|(s, _)| s.clone()).collect()
        };
        let reconcile = now >= session.reconcile_at && !rate_limited;
        for sub in expired {
            // An earlier iteration may have restarted this job already
            // (`mark_req_only` moves every NEG-OPEN job to pagination).
            if self.job_mut(url, &sub).is_none_or(|j| now < j.deadline) {
                continue;
            }
            let is_open = self.job_mut(url, &sub).is_some_and(|j| matches!(j.kind, JobKind::NegOpen(_)));
            if is_open {
                // Silence is a verdict only for a NEG-OPEN that was alone in
                // flight; otherwise it may just be queued behind other work.
                let session = self.relays.get(url).and_then(|r| r.session.as_ref());
                let alone = session.is_some_and(|s| s.requests_in_flight() == 1 || s.jobs.get(&sub).is_some_and(|j| j.alone));
                if alone {
                    self.neg_open_refused(url, "no answer to NEG-OPEN", now);
                } else {
                    self.probe_negentropy_alone(url, std::slice::from_ref(&sub), now);
                }
            } else if self.job_mut(url, &sub).is_some_and(|j| !matches!(j.kind, JobKind::LoadingItems(_))) {
                tracing::warn!(relay = %url, sub, "historic request timed out");
                self.restart_job(url, &sub, now, true);
            }
        }
        if reconcile {
            self.daily_reconciliation(url, now);
        } else if !rate_limited {
            self.reopen_live(url, now);
        }
        self.pump(url, now);
    }

    /// SPEC §5 daily reconciliation: a full fresh sync of a connected relay.
    fn daily_reconciliation(&mut self, url: &RelayUrl, now: Millis) {
        tracing::info!(relay = %url, "daily reconciliation");
        let interval = self.reconcile_interval();
        let Some(relay) = self.relays.get_mut(url) else { return };
        let Some(old) = relay.session.take() else { return };
        let mut session = Session::new(old.connected_at, now + interval, self.config.max_in_flight);
        session.window = old.window.clone();
        session.req_only = old.req_only;
        session.next_sub = old.next_sub;
        session.next_batch = old.next_batch;
        relay.session = Some(session);
        self.neg_loads.retain(|_, (r, _)| r != url);
        let mut closes: Vec<ClientMessage<'static>> = old.live.into_keys().map(|s| ClientMessage::close(SubscriptionId::new(s))).collect();
        closes.extend(old.jobs.into_iter().filter(|(_, j)| j.in_flight()).map(|(s, j)| {
            if matches!(j.kind, JobKind::NegOpen(_) | JobKind::Neg(_)) {
                ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(s)) }
            } else {
                ClientMessage::close(SubscriptionId::new(s))
            }
        }));
        for c in closes {
            self.send(url, c, now);
        }
        if self.relays.get(url).is_some_and(|r| r.status != ConnectionStatus::Syncing) {
            self.set_status(url, ConnectionStatus::Syncing, now);
        }
        self.fresh_start(url, now);
    }
}

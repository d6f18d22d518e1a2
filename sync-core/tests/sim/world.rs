//! The simulation loop: a virtual clock, an event queue ordered by
//! `(time, seq)`, simulated relays behind a network with per-relay latency
//! (frames on one connection stay in order, like TCP), a [`MemoryStore`],
//! and the engine driven directly: every command is executed right after
//! each input, and `handle_timeout` runs at `poll_timeout()`. A restart
//! shuts the engine down and starts a new one from its persisted state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nostr::{Event, EventId, Filter};
use sync_core::rng::SplitMix64;
use sync_core::{
    AcceptancePolicy, Command, ConnectionStatus, Engine, EngineEvent, Input, MemoryStore, Millis, Output, RelayUrl, SaveFailure,
    SaveOutcome, SyncConfig, Transition,
};

use super::dataset::{World, OUR_RELAY, START};
use super::relay::{RelayObs, SimRelay};
use super::stats::Stats;

/// A run stops once the system is quiescent (see [`Sim::settled`]), checked
/// this often, but never later than [`MAX_RUN`].
pub const SETTLE_CHECK: Duration = Duration::from_secs(30);
/// Upper bound on a run's virtual duration; a run that has not settled by
/// then fails its status checks.
pub const MAX_RUN: Duration = Duration::from_secs(3 * 3600);
/// A relay that had to refuse this many requests as "too many" in one run is
/// being flooded (refused work re-sent without end): the run is recorded as
/// a liveness failure and stopped (its status checks fail too), so such an
/// engine bug costs the sweep milliseconds rather than hours of virtual time.
pub const REFUSAL_STORM: u64 = 1_000;

/// Something that happens at a virtual instant.
#[derive(Debug)]
enum Ev {
    /// A connect attempt ends.
    ConnectResult { url: String, epoch: u64, ok: bool },
    /// A frame reaches the relay.
    ToRelay { url: String, epoch: u64, text: String },
    /// A frame reaches the engine.
    ToEngine { url: String, epoch: u64, text: String },
    /// A flaky relay drops the connection.
    Drop { url: String, epoch: u64 },
    /// A live event is published.
    Publish { index: usize },
    /// The engine shuts down (the process stops).
    Restart { down: Duration },
    /// A new engine starts from the persisted state.
    Start,
    /// The store finished a save.
    Saved { token: u64, events: Vec<Event> },
    /// The store loaded negentropy items.
    NegItems { token: u64, filter: Filter },
    /// A NIP-11 fetch ends (the document, if the relay publishes one).
    RelayInfo { url: String, document: Option<String> },
    /// A hostile relay acts unprompted (NOTICE burst, live closes).
    Hostile { url: String },
}

/// The engine's view of one relay link.
#[derive(Default)]
struct Link {
    /// Current connection generation; frames of older ones are dropped.
    epoch: u64,
    /// The connection is open (both sides).
    open: bool,
    /// Last scheduled delivery per direction, to keep frames in order.
    last_to_relay: Millis,
    last_to_engine: Millis,
}

/// What a run leaves behind for the invariant checks.
pub struct Outcome {
    /// The engine at the end of the run.
    pub engine: Engine,
    /// The store.
    pub store: MemoryStore,
    /// Every recorded connection-status transition.
    pub transitions: Vec<Transition>,
    /// Newly saved events the store reported (`SaveOutcome::Saved`).
    pub saved_outcomes: u64,
    /// URLs the engine asked to connect to.
    pub connect_attempts: BTreeMap<String, u64>,
    /// Liveness problems seen while running (busy loops).
    pub liveness: Vec<String>,
    /// Virtual end time.
    pub end: Millis,
    /// Events in the store before the run.
    pub prestored: u64,
    /// `events_synced` of engines shut down by a restart.
    pub synced_before: u64,
    /// Coverage counters gathered while running (status-derived ones are added by the checks).
    pub stats: Stats,
    /// What each simulated relay saw of the engine, by URL.
    pub relay_obs: BTreeMap<String, RelayObs>,
    /// Negentropy sessions given up for REQ pagination.
    pub neg_to_req: Vec<NegToReq>,
    /// Relays (URL) still connected at the end with live subscriptions they
    /// closed that the engine never reopened (nor closed).
    pub closed_live_pending: BTreeMap<String, usize>,
    /// NIP-77 relays seen REQ-only in a status snapshot during the run (URL, virtual ms).
    pub req_only_seen: Vec<(String, u64)>,
    /// Most events the engine held accepted but unconfirmed (`unsaved_count`), after any input.
    pub max_unsaved: usize,
    /// Most events the engine held waiting to be saved (`unsaved_count`
    /// less the save in flight) while the store kept failing (two or more
    /// failed saves in a row: the engine reports the store error then).
    pub max_backlog_while_failing: usize,
    /// Events whose save failed with the event alone at least twice, with
    /// other saves succeeding in between: by the engine's contract
    /// (`engine/saving.rs`) it may quarantine them as unsaveable.
    pub quarantine_suspects: BTreeSet<EventId>,
    /// `events_quarantined` of engines shut down by a restart.
    pub quarantined_before: u64,
    /// `events_forgotten` of engines shut down by a restart.
    pub forgotten_before: u64,
}

/// The whole simulated system.
pub struct Sim {
    now: Millis,
    seq: u64,
    queue: BTreeMap<(Millis, u64), Ev>,
    rng: SplitMix64,
    relays: BTreeMap<String, SimRelay>,
    links: BTreeMap<String, Link>,
    engine: Engine,
    seed: u64,
    /// Latest `PersistState` bytes.
    persisted: Option<Vec<u8>>,
    /// `events_synced` of engines that were shut down.
    synced_before: u64,
    store: MemoryStore,
    world: World,
    transitions: Vec<Transition>,
    saved_outcomes: u64,
    connect_attempts: BTreeMap<String, u64>,
    liveness: Vec<String>,
    trace: bool,
    stats: Stats,
    req_only_seen: Vec<(String, u64)>,
    /// The engine is shut down (between a restart and the next start).
    down: bool,
    max_unsaved: usize,
    max_backlog_while_failing: usize,
    /// Events of each `SaveEvents` in flight, by token.
    saves_pending: BTreeMap<u64, usize>,
    /// Failed saves in a row.
    save_failures_in_row: u32,
    /// Per event: failed saves of it alone, and the successful saves before the first.
    solo_failures: BTreeMap<EventId, (u32, u64)>,
    /// Successful saves.
    saves_ok: u64,
    quarantined_before: u64,
    forgotten_before: u64,
    /// NEG-OPENs sent, by (relay, connection epoch, subscription).
    neg_opened: BTreeMap<(String, u64, String), Millis>,
    /// When unprompted NOTICEs reached the engine, per relay.
    notices_at: BTreeMap<String, Vec<Millis>>,
    neg_to_req: Vec<NegToReq>,
}

/// A new engine for `world` (server policy, its bootstrap relays).
fn new_engine(world: &World, seed: u64, now: Millis) -> Engine {
    let policy = AcceptancePolicy::Server {
        relay_urls: [RelayUrl::parse(OUR_RELAY).expect("our url")].into(),
        domains: ["grasp.example.com".to_string()].into(),
    };
    let bootstrap: Vec<RelayUrl> =
        world.relays.iter().filter(|r| r.bootstrap).map(|r| RelayUrl::parse(&r.url).expect("simulated relay URL")).collect();
    Engine::new(sim_config(world), policy, &bootstrap, seed, now).expect("engine")
}

/// The engine configuration used by the simulation for this world.
pub fn sim_config(world: &World) -> SyncConfig {
    let defaults = SyncConfig::default();
    SyncConfig {
        pagination_threshold: world.knobs.threshold,
        page_limit: world.knobs.page_limit,
        fetch_chunk: world.knobs.fetch_chunk,
        max_unsaved: world.knobs.max_unsaved.unwrap_or(defaults.max_unsaved),
        max_negentropy_ids: world.knobs.max_negentropy_ids.unwrap_or(defaults.max_negentropy_ids),
        ..defaults
    }
}

impl Sim {
    /// Builds the relays, the store and the engine for `world`.
    pub fn new(seed: u64, world: World) -> Self {
        let engine = new_engine(&world, seed, START);
        let relays = world
            .relays
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.url.clone(), SimRelay::new(spec.clone(), seed.wrapping_mul(31).wrapping_add(i as u64))))
            .collect();
        let mut sim = Self {
            now: START,
            seq: 0,
            queue: BTreeMap::new(),
            rng: SplitMix64::new(seed.rotate_left(17) ^ 0xA11CE),
            relays,
            links: BTreeMap::new(),
            engine,
            seed,
            persisted: None,
            synced_before: 0,
            store: MemoryStore::new(),
            world,
            transitions: Vec::new(),
            saved_outcomes: 0,
            connect_attempts: BTreeMap::new(),
            liveness: Vec::new(),
            trace: std::env::var_os("SIM_TRACE").is_some(),
            stats: Stats { runs: 1, ..Stats::default() },
            req_only_seen: Vec::new(),
            down: false,
            max_unsaved: 0,
            max_backlog_while_failing: 0,
            saves_pending: BTreeMap::new(),
            save_failures_in_row: 0,
            solo_failures: BTreeMap::new(),
            saves_ok: 0,
            quarantined_before: 0,
            forgotten_before: 0,
            neg_opened: BTreeMap::new(),
            notices_at: BTreeMap::new(),
            neg_to_req: Vec::new(),
        };
        if sim.trace {
            for r in &sim.world.relays {
                eprintln!(
                    "relay {} {:?} nip77={} bootstrap={} latency={}ms cap={} max_subs={} max_negs={} notice_refusals={} answer_delay={}ms events={} junk={} endless_ids={} future={} ticks={} nip11={}",
                    r.url,
                    r.kind,
                    r.nip77,
                    r.bootstrap,
                    r.latency_ms,
                    r.cap,
                    r.max_subs,
                    r.max_negs,
                    r.notice_refusals,
                    r.answer_delay_ms,
                    r.events.len(),
                    r.junk_per_page,
                    r.endless_ids,
                    r.future.len(),
                    r.hostile_ticks.len(),
                    r.nip11.as_deref().unwrap_or("-")
                );
            }
            eprintln!("knobs {:?}", sim.world.knobs);
        }
        sim.store.save_sync(sim.world.prestored.clone()).expect("memory store");
        for index in 0..sim.world.live.len() {
            let at = sim.world.live[index].at;
            sim.schedule(at, Ev::Publish { index });
        }
        if let Some((at, down)) = sim.world.knobs.restart {
            sim.schedule(at, Ev::Restart { down });
        }
        let ticks: Vec<(Millis, String)> =
            sim.world.relays.iter().flat_map(|r| r.hostile_ticks.iter().map(|t| (*t, r.url.clone()))).collect();
        for (at, url) in ticks {
            sim.schedule(at, Ev::Hostile { url });
        }
        sim
    }

    fn schedule(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn latency(&mut self, url: &str) -> Duration {
        let base = self.relays.get(url).map_or(50, |r| r.spec.latency_ms);
        Duration::from_millis(base + self.rng.range(0, base / 2))
    }

    /// Runs until quiescent (or `START + MAX_RUN`) and returns what the checks need.
    pub fn run(mut self) -> Outcome {
        let mut end = START + MAX_RUN;
        // Nothing may be judged before the last publication, the end of
        // every flaky relay's bad period, a hostile relay's last act and
        // the end of a store outage.
        let mut next_check = self
            .world
            .live
            .iter()
            .map(|l| l.at)
            .chain(self.world.relays.iter().map(|r| r.bad_until))
            .chain(self.world.relays.iter().flat_map(|r| r.hostile_ticks.last().copied()))
            .chain(self.world.knobs.store_outage.map(|(at, long)| at + long))
            .max()
            .unwrap_or(START)
            + SETTLE_CHECK;
        let mut last_fingerprint = None;
        if let Some(mins) = std::env::var("SIM_RUN_MINUTES").ok().and_then(|v| v.parse::<u64>().ok()) {
            // Debugging aid: a fixed virtual duration instead of stopping when quiescent.
            end = START + Duration::from_secs(mins * 60);
            next_check = end + SETTLE_CHECK;
        }
        let mut last_timeout_at: Option<Millis> = None;
        loop {
            let deadline = self.pump();
            let next_ev = self.queue.keys().next().map(|(t, _)| *t);
            let mut timeout = deadline.map(|t| t.max(self.now));
            if timeout.is_some() && timeout == last_timeout_at {
                // handle_timeout(now) already ran, no input came since, and the engine still wants a
                // wake-up at or before now: a real driver would spin. Record it
                // and let virtual time advance so the run can go on.
                if self.liveness.len() < 5 {
                    self.liveness.push(format!("busy loop: poll_timeout() <= now = {} right after handle_timeout(now)", self.now.0));
                }
                if self.trace {
                    eprintln!("{} busy loop: poll_timeout {:?}", self.now.0 - START.0, timeout.map(|t| t.0 as i64 - START.0 as i64));
                    for r in self.engine.status(self.now).relays {
                        eprintln!(
                            "    {} {:?} rate_limited_until={:?} in_flight={} pending={} window={} req_only={}",
                            r.relay,
                            r.connection,
                            r.rate_limited_until.map(|t| t.0 - START.0),
                            r.progress.requests_in_flight,
                            r.pending_batches,
                            r.progress.window,
                            r.req_only
                        );
                    }
                }
                timeout = timeout.map(|t| t + Duration::from_millis(10));
            }
            let next = match (next_ev, timeout) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            if next >= next_check {
                let storm = if self.down { None } else { self.relays.iter().find(|(_, r)| r.obs.refusals >= REFUSAL_STORM) };
                if let Some((url, r)) = storm {
                    self.liveness.push(format!(
                        "refusal storm: {url} ({:?}) refused {} requests as too many by +{}s; run stopped",
                        r.spec.kind,
                        r.obs.refusals,
                        next_check.since(START).as_secs()
                    ));
                    end = next_check;
                    self.now = self.now.max(end);
                    break;
                }
                let fingerprint = self.settled_fingerprint(next_check);
                if fingerprint.is_some() && fingerprint == last_fingerprint {
                    end = next_check;
                    self.now = self.now.max(end);
                    break;
                }
                last_fingerprint = fingerprint;
                next_check = next_check + SETTLE_CHECK;
            }
            self.now = next;
            if next_ev == Some(next) {
                let key = *self.queue.keys().next().expect("present");
                let ev = self.queue.remove(&key).expect("present");
                self.handle(ev);
                // an input may leave a deadline at `now` (e.g. a settle
                // window that ended meanwhile): the next handle_timeout(now)
                // acts on it, which is no spin
                last_timeout_at = None;
            } else {
                self.engine.handle_input(Input::Timeout, next);
                last_timeout_at = Some(next);
            }
            let unsaved = self.engine.unsaved_count();
            self.max_unsaved = self.max_unsaved.max(unsaved);
            if self.save_failures_in_row >= 2 {
                let backlog = unsaved.saturating_sub(self.saves_pending.values().sum());
                self.max_backlog_while_failing = self.max_backlog_while_failing.max(backlog);
            }
        }
        self.pump();
        let relay_obs = self.relays.iter().map(|(u, r)| (u.clone(), r.obs.clone())).collect();
        let closed_live_pending = self.relays.iter().map(|(u, r)| (u.clone(), r.closed_live_pending())).filter(|(_, n)| *n > 0).collect();
        Outcome {
            relay_obs,
            closed_live_pending,
            neg_to_req: self.neg_to_req,
            req_only_seen: self.req_only_seen,
            engine: self.engine,
            store: self.store,
            transitions: self.transitions,
            saved_outcomes: self.saved_outcomes,
            connect_attempts: self.connect_attempts,
            liveness: self.liveness,
            end,
            stats: self.stats,
            prestored: self.world.prestored.len() as u64,
            synced_before: self.synced_before,
            max_unsaved: self.max_unsaved,
            max_backlog_while_failing: self.max_backlog_while_failing,
            quarantine_suspects: self
                .solo_failures
                .iter()
                .filter(|(_, (n, first))| *n >= 2 && self.saves_ok > *first)
                .map(|(id, _)| *id)
                .collect(),
            quarantined_before: self.quarantined_before,
            forgotten_before: self.forgotten_before,
        }
    }

    /// When the system looks quiescent at `at`: nothing pending or unsaved,
    /// no rate-limit cooldown running, reliable relays Connected and the others
    /// Connected or ConnectedDegraded; returns a fingerprint of that state
    /// (two equal fingerprints one check apart end the run).
    fn settled_fingerprint(&mut self, at: Millis) -> Option<(u64, usize, Vec<u8>)> {
        let st = self.engine.status(at);
        for r in st.relays.iter().filter(|r| r.req_only) {
            let nip77 = self.relays.get(&r.relay).is_some_and(|s| s.spec.nip77);
            if nip77 && !self.req_only_seen.iter().any(|(u, _)| *u == r.relay) {
                self.req_only_seen.push((r.relay.clone(), at.0 - START.0));
            }
        }
        if st.totals.pending_batches > 0 || st.totals.unsaved_events > 0 {
            return None;
        }
        // a live subscription the relay closed is reopened after a backoff:
        // the run is not over before (what was published meanwhile comes then)
        if self.relays.values().any(|r| r.closed_live_pending() > 0) {
            return None;
        }
        let mut codes = Vec::new();
        for r in &st.relays {
            if r.rate_limited_until.is_some() {
                return None;
            }
            if let Some(sim) = self.relays.get(&r.relay) {
                let ok = if sim.spec.kind.reliable() {
                    r.connection == ConnectionStatus::Connected
                } else {
                    matches!(r.connection, ConnectionStatus::Connected | ConnectionStatus::ConnectedDegraded)
                };
                if !ok {
                    return None;
                }
            }
            codes.push(r.connection_code);
        }
        Some((st.totals.events_synced, st.totals.root_events, codes))
    }

    /// Executes every pending engine output; returns the engine's next deadline.
    fn pump(&mut self) -> Option<Millis> {
        self.drain(false)
    }

    /// Executes outputs until the engine waits: commands (saves at once when
    /// `saves_now`, as a stopping driver awaits them), and transitions recorded.
    fn drain(&mut self, saves_now: bool) -> Option<Millis> {
        loop {
            match self.engine.poll_output() {
                Output::Command(Command::SaveEvents { token, events }) if saves_now => self.save_now(token, events),
                Output::Command(cmd) => self.execute(cmd),
                Output::Event(EngineEvent::StatusChanged(t)) => {
                    if self.trace {
                        eprintln!("{} status {} {:?} -> {:?}", t.at.0 - START.0, t.relay, t.from, t.to);
                    }
                    self.transitions.push(t);
                }
                Output::Event(EngineEvent::EventsSaved { .. }) => {}
                Output::Timeout(deadline) => return deadline,
            }
        }
    }

    fn execute(&mut self, cmd: Command) {
        let now = self.now;
        if self.trace {
            match &cmd {
                Command::Send { relay, text } => eprintln!("{} -> {relay} {}", now.0 - START.0, short(text)),
                Command::SaveEvents { token, events } => eprintln!("{} save #{token} {} events", now.0 - START.0, events.len()),
                Command::PersistState { state } => eprintln!("{} persist {} bytes", now.0 - START.0, state.len()),
                other => eprintln!("{} {other:?}", now.0 - START.0),
            }
        }
        match cmd {
            Command::Connect { relay, timeout } => {
                let url = relay.to_string();
                *self.connect_attempts.entry(url.clone()).or_default() += 1;
                let link = self.links.entry(url.clone()).or_default();
                link.epoch += 1;
                link.open = false;
                let epoch = link.epoch;
                let accepts = self.relays.get_mut(&url).map(|r| r.accepts_connection(now));
                match accepts {
                    Some(true) => {
                        let rtt = self.latency(&url) * 2;
                        self.schedule(now + rtt.min(timeout), Ev::ConnectResult { url, epoch, ok: rtt <= timeout });
                    }
                    Some(false) => {
                        let rtt = self.latency(&url);
                        self.schedule(now + rtt, Ev::ConnectResult { url, epoch, ok: false });
                    }
                    // Not simulated: the connection attempt hangs until the timeout.
                    None => self.schedule(now + timeout, Ev::ConnectResult { url, epoch, ok: false }),
                }
            }
            Command::Disconnect { relay } => {
                let url = relay.to_string();
                if let Some(link) = self.links.get_mut(&url) {
                    link.epoch += 1;
                    link.open = false;
                }
                if let Some(r) = self.relays.get_mut(&url) {
                    r.close();
                }
            }
            Command::Send { relay, text } => {
                self.stats.on_sent(&text);
                let url = relay.to_string();
                let lat = self.latency(&url);
                let Some(link) = self.links.get_mut(&url) else { return };
                if !link.open {
                    return;
                }
                let at = (now + lat).max(link.last_to_relay);
                link.last_to_relay = at;
                let epoch = link.epoch;
                // a NEG-OPEN whose subscription goes on as a REQ: negentropy given up
                if let Some(sub) = sub_of(&text, "[\"NEG-OPEN\",\"") {
                    self.neg_opened.insert((url.clone(), epoch, sub.to_string()), now);
                } else if let Some(sub) = sub_of(&text, "[\"REQ\",\"") {
                    if let Some(opened_at) = self.neg_opened.remove(&(url.clone(), epoch, sub.to_string())) {
                        let notices = self.notices_at.get(&url).is_some_and(|ts| ts.iter().any(|t| *t >= opened_at && *t <= now));
                        self.neg_to_req.push(NegToReq { url: url.clone(), sub: sub.to_string(), opened_at, req_at: now, notices });
                    }
                }
                self.schedule(at, Ev::ToRelay { url, epoch, text });
            }
            Command::SaveEvents { token, events } => {
                self.saves_pending.insert(token, events.len());
                let delay = Duration::from_millis(self.rng.range(0, 30));
                self.schedule(now + delay, Ev::Saved { token, events });
            }
            Command::LoadNegentropyItems { token, filter } => {
                let delay = Duration::from_millis(self.rng.range(0, 10));
                self.schedule(now + delay, Ev::NegItems { token, filter });
            }
            Command::PersistState { state } => self.persisted = Some(state),
            Command::LoadState => self.engine.handle_input(Input::LoadState(Ok(self.persisted.clone())), now),
            Command::QueryStored { token, filter } => {
                let result = self.store.query_sync(&filter).map_err(|e| e.to_string());
                self.engine.handle_input(Input::QueryStored { token, result }, now);
            }
            Command::FetchRelayInfo { relay } => {
                // an HTTP round trip; relays without a document (and unknown
                // hosts) answer None, as a driver reports a failed fetch
                let url = relay.to_string();
                let document = self.relays.get(&url).and_then(|r| r.spec.nip11.clone());
                let rtt = self.latency(&url) * 2;
                self.schedule(now + rtt, Ev::RelayInfo { url, document });
            }
        }
    }

    /// The process stops: finish the store work in flight, shut the engine
    /// down, execute its last commands (saves and state complete
    /// synchronously, as a driver awaits them), and start again after `down`.
    fn restart(&mut self, down: Duration) {
        let now = self.now;
        let pending: Vec<(Millis, u64)> =
            self.queue.iter().filter(|(_, ev)| matches!(ev, Ev::Saved { .. } | Ev::NegItems { .. })).map(|(k, _)| *k).collect();
        for key in pending {
            if let Some(Ev::Saved { token, events }) = self.queue.remove(&key) {
                self.save_now(token, events);
            }
        }
        self.engine.handle_input(Input::Shutdown, now);
        self.drain(true);
        let totals = self.engine.status(now).totals;
        self.synced_before += totals.events_synced;
        self.quarantined_before += totals.events_quarantined;
        self.forgotten_before += totals.events_forgotten;
        self.stats.restarts += 1;
        self.down = true;
        self.schedule(now + down, Ev::Start);
    }

    fn save_now(&mut self, token: u64, events: Vec<Event>) {
        if self.trace {
            let ids: Vec<String> = events.iter().map(|e| e.id.to_hex()[..8].to_string()).collect();
            eprintln!("{} save #{token} done: {}", self.now.0 - START.0, ids.join(" "));
        }
        let outcomes = self.store.save_sync(events).expect("memory store");
        self.saves_ok += 1;
        self.saves_pending.remove(&token);
        self.save_failures_in_row = 0;
        self.saved_outcomes += outcomes.iter().filter(|o| **o == SaveOutcome::Saved).count() as u64;
        self.engine.handle_input(Input::SaveEvents { token, result: Ok(outcomes) }, self.now);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ConnectResult { url, epoch, ok } => {
                let relay = RelayUrl::parse(&url).expect("url");
                let Some(link) = self.links.get_mut(&url) else { return };
                if link.epoch != epoch {
                    return;
                }
                if ok {
                    link.open = true;
                    link.last_to_relay = now;
                    link.last_to_engine = now;
                    let drop_at = self.relays.get_mut(&url).and_then(|r| {
                        r.open();
                        r.drop_at(now)
                    });
                    if let Some(at) = drop_at {
                        self.schedule(at, Ev::Drop { url: url.clone(), epoch });
                    }
                    self.engine.handle_input(Input::Connect { relay, result: Ok(()) }, now);
                } else {
                    self.engine.handle_input(Input::Connect { relay, result: Err("simulated connect failure".into()) }, now);
                }
            }
            Ev::ToRelay { url, epoch, text } => {
                if !self.links.get(&url).is_some_and(|l| l.open && l.epoch == epoch) {
                    return;
                }
                let answers = self.relays.get_mut(&url).map(|r| r.on_frame(&text, now)).unwrap_or_default();
                self.send_to_engine(&url, answers);
            }
            Ev::ToEngine { url, epoch, text } => {
                if !self.links.get(&url).is_some_and(|l| l.open && l.epoch == epoch) {
                    return;
                }
                let relay = RelayUrl::parse(&url).expect("url");
                if self.trace {
                    eprintln!("{} <- {relay} {}", now.0 - START.0, short(&text));
                }
                self.engine.handle_input(Input::Frame { relay, text }, now);
            }
            Ev::Drop { url, epoch } => {
                let Some(link) = self.links.get_mut(&url) else { return };
                if !link.open || link.epoch != epoch {
                    return;
                }
                link.open = false;
                link.epoch += 1;
                if let Some(r) = self.relays.get_mut(&url) {
                    r.close();
                }
                self.stats.drops += 1;
                let relay = RelayUrl::parse(&url).expect("url");
                self.engine.handle_input(Input::Disconnected { relay, reason: "simulated drop".into() }, now);
            }
            Ev::Publish { index } => {
                self.stats.live_published += 1;
                let live = self.world.live[index].clone();
                for i in live.relays {
                    let url = self.world.relays[i].url.clone();
                    let frames = self.relays.get_mut(&url).map(|r| r.publish(live.event.clone())).unwrap_or_default();
                    self.send_to_engine(&url, frames);
                }
            }
            Ev::Saved { token, events } => {
                let outage = self.world.knobs.store_outage.is_some_and(|(at, long)| now >= at && now < at + long);
                let random = !outage && self.world.knobs.store_failure > 0.0 && self.rng.chance(self.world.knobs.store_failure);
                self.saves_pending.remove(&token);
                if outage || random {
                    self.save_failures_in_row += 1;
                    if let [e] = events.as_slice() {
                        let ok = self.saves_ok;
                        self.solo_failures.entry(e.id).or_insert((0, ok)).0 += 1;
                    }
                }
                if outage {
                    self.stats.outage_failures += 1;
                    if self.trace {
                        eprintln!("{} save #{token} failed: store down ({} events)", now.0 - START.0, events.len());
                    }
                    let error = "simulated outage: no space left on device".into();
                    self.engine.handle_input(Input::SaveEvents { token, result: Err(SaveFailure { events, error }) }, now);
                    return;
                }
                if random {
                    self.stats.store_failures += 1;
                    if self.trace {
                        let ids: Vec<String> = events.iter().map(|e| e.id.to_hex()[..8].to_string()).collect();
                        eprintln!("{} save #{token} failed: {}", now.0 - START.0, ids.join(" "));
                    }
                    let error = "simulated store failure".into();
                    self.engine.handle_input(Input::SaveEvents { token, result: Err(SaveFailure { events, error }) }, now);
                    return;
                }
                self.save_now(token, events);
            }
            Ev::Restart { down } => self.restart(down),
            Ev::Start => {
                // start-up (restore the persisted state, index what the store
                // holds) runs through the engine's own commands
                self.engine = new_engine(&self.world, self.seed.wrapping_add(1), now);
                self.down = false;
            }
            Ev::RelayInfo { url, document } => {
                if self.trace {
                    eprintln!("{} nip11 {url} {}", now.0 - START.0, document.as_deref().unwrap_or("(none)"));
                }
                self.engine.handle_input(Input::FetchRelayInfo { relay: RelayUrl::parse(&url).expect("url"), document }, now);
            }
            Ev::NegItems { token, filter } => {
                let result = Ok(self.store.negentropy_items_sync(&filter).expect("memory store"));
                self.engine.handle_input(Input::LoadNegentropyItems { token, result }, now);
            }
            Ev::Hostile { url } => {
                if self.links.get(&url).is_some_and(|l| l.open) {
                    let frames = self.relays.get_mut(&url).map(|r| r.hostile_tick()).unwrap_or_default();
                    let notices = frames.iter().any(|f| f.starts_with("[\"NOTICE\""));
                    if let Some(at) = self.send_to_engine(&url, frames).filter(|_| notices) {
                        self.notices_at.entry(url).or_default().push(at);
                    }
                }
            }
        }
    }

    /// Sends `frames` from the relay to the engine; returns when they arrive.
    fn send_to_engine(&mut self, url: &str, frames: Vec<String>) -> Option<Millis> {
        if frames.is_empty() {
            return None;
        }
        // a slow relay answers late (processing time on top of the network)
        let delay = self.relays.get(url).map_or(0, |r| r.spec.answer_delay_ms);
        let lat = self.latency(url) + Duration::from_millis(delay);
        let now = self.now;
        let link = self.links.get_mut(url)?;
        if !link.open {
            return None;
        }
        let epoch = link.epoch;
        let at = (now + lat).max(link.last_to_engine);
        link.last_to_engine = at;
        let url = url.to_string();
        for text in frames {
            self.schedule(at, Ev::ToEngine { url: url.clone(), epoch, text });
        }
        Some(at)
    }
}

/// The subscription id of a frame starting with `prefix` (`["REQ","` …).
fn sub_of<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?;
    rest.split('"').next()
}

/// A negentropy session the engine gave up for REQ pagination under the
/// same subscription id (REQ-only verdict, refusal, broken session).
#[derive(Debug, Clone)]
pub struct NegToReq {
    /// Relay URL.
    pub url: String,
    /// Subscription id.
    pub sub: String,
    /// When the NEG-OPEN was sent.
    pub opened_at: Millis,
    /// When the REQ replacing it was sent.
    pub req_at: Millis,
    /// An unprompted NOTICE (NoticeStorm) reached the engine in between.
    pub notices: bool,
}

/// A frame shortened for traces.
fn short(text: &str) -> String {
    if text.len() > 160 {
        format!("{}…", &text[..text.char_indices().take_while(|(i, _)| *i < 160).last().map_or(0, |(i, _)| i)])
    } else {
        text.to_string()
    }
}

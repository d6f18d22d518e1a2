//! The simulated world around the production [`Driver`]: virtual time
//! ([`super::exec`]), a network of simulated relays ([`super::net`]) and a
//! faulty store ([`super::store`]), with an event queue ordered by
//! `(time, seq)` for what the world does on its own (frames arriving, drops,
//! publications, hostile acts, restarts).
//!
//! [`Sim::run`] alternates two things: it polls the driver until it is
//! stalled (waiting for a socket, the store or its timer), then moves time
//! to the earliest of the next world event and the earliest pending sleep
//! (the driver's timer, a store commit, a connect deadline) and lets that
//! happen. World events come first on a tie, one at a time, each followed by
//! a run of the driver. A restart stops the driver through its handle, lets
//! it finish its shutdown (saves in flight, final save, persisted state) in
//! virtual time, and later starts a new engine and driver on the same store.
//!
//! The driver's [`Observer`] is how the world watches the engine: it records
//! status transitions, the engine's unsaved backlog, busy loops, the
//! commands asked for (to check the store-side ordering, see
//! [`super::store`]), and decides at its idle points when the system is
//! quiescent; the final status is taken there, then the driver is stopped
//! once more so every run also ends with a checked shutdown.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use nostr::EventId;
use sync_core::driver::Observer;
use sync_core::rng::SplitMix64;
use sync_core::{
    AcceptancePolicy, Command, ConnectionStatus, Driver, DriverHandle, Engine, EngineEvent, Input, MemoryStore, Millis, Output, RelayUrl,
    SyncConfig, SyncStatus, Transition, TransportError,
};

use super::dataset::{World, OUR_RELAY, START};
use super::exec::{self, Exec, SimClock, Time};
use super::net::{ConnectResult, SimConnector};
use super::relay::{RelayObs, SimRelay};
use super::stats::Stats;
use super::store::{SimStore, StoreState};

/// A run stops once the system is quiescent (see [`Shared::settled_fingerprint`]),
/// checked this often, but never later than [`MAX_RUN`].
pub const SETTLE_CHECK: Duration = Duration::from_secs(30);
/// Upper bound on a run's virtual duration; a run that has not settled by
/// then fails its status checks.
pub const MAX_RUN: Duration = Duration::from_secs(3 * 3600);
/// A relay that had to refuse this many requests as "too many" in one run is
/// being flooded (refused work re-sent without end): the run is recorded as
/// a liveness failure and stopped (its status checks fail too), so such an
/// engine bug costs the sweep milliseconds rather than hours of virtual time.
pub const REFUSAL_STORM: u64 = 1_000;

/// The driver as the simulation runs it.
pub type SimDriver = Driver<SimClock, SimConnector, SimStore>;

/// Something the world does at a virtual instant.
pub(super) enum Ev {
    /// A connect attempt ends (the driver may have given up on it already).
    ConnectResult { url: String, epoch: u64, ok: bool, reply: oneshot::Sender<ConnectResult> },
    /// A frame reaches the relay.
    ToRelay { url: String, epoch: u64, text: String },
    /// A frame reaches the driver's socket.
    ToEngine { url: String, epoch: u64, text: String },
    /// A flaky relay drops the connection.
    Drop { url: String, epoch: u64 },
    /// A live event is published.
    Publish { index: usize },
    /// The process stops (the driver is asked to shut down).
    Restart { down: Duration },
    /// A new engine and driver start from the persisted state.
    Start,
    /// A hostile relay acts unprompted (NOTICE burst, live closes).
    Hostile { url: String },
}

/// The world's view of one relay link.
#[derive(Default)]
pub(super) struct Link {
    /// Current connection generation; frames of older ones are dropped.
    pub(super) epoch: u64,
    /// The connection is open (both sides).
    pub(super) open: bool,
    /// Last scheduled delivery per direction, to keep frames in order.
    pub(super) last_to_relay: Millis,
    pub(super) last_to_engine: Millis,
    /// The driver's side of the open connection.
    pub(super) to_engine: Option<mpsc::UnboundedSender<Result<String, TransportError>>>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The driver runs.
    Running,
    /// A restart: the driver is shutting down; a new one starts `down` after.
    Stopping { down: Duration },
    /// Between a restart's shutdown and the next start.
    Down,
    /// The final status is taken; a settled run's driver shuts down, an
    /// unsettled one is abandoned.
    Final { settled: bool },
    /// Nothing more to run.
    Done,
}

/// What the observer took when the run ended.
struct Captured {
    status: SyncStatus,
    end: Millis,
    closed_live_pending: BTreeMap<String, usize>,
}

/// What a run leaves behind for the invariant checks.
pub struct Outcome {
    /// The engine's status at the end of the run (before the final shutdown).
    pub status: SyncStatus,
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
    /// Violations of the driver's store ordering (see [`super::store`]).
    pub ordering: Vec<String>,
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
    /// Times the driver was polled (the executor's work, for the notes).
    pub polls: u64,
}

/// Everything the driver's platform (clock, connector, store) and observer
/// share with the world loop; one `RefCell`, borrowed briefly and never
/// while the driver is polled.
pub(super) struct Shared {
    /// This very cell, to hand sockets a handle to it.
    pub(super) me: Weak<RefCell<Shared>>,
    pub(super) time: Time,
    seq: u64,
    queue: BTreeMap<(Millis, u64), Ev>,
    pub(super) rng: SplitMix64,
    pub(super) relays: BTreeMap<String, SimRelay>,
    pub(super) links: BTreeMap<String, Link>,
    pub(super) world: World,
    pub(super) trace: bool,
    pub(super) stats: Stats,
    pub(super) store: StoreState,
    pub(super) connect_attempts: BTreeMap<String, u64>,
    /// NEG-OPENs sent, by (relay, connection epoch, subscription).
    pub(super) neg_opened: BTreeMap<(String, u64, String), Millis>,
    /// When unprompted NOTICEs reached the engine, per relay.
    notices_at: BTreeMap<String, Vec<Millis>>,
    pub(super) neg_to_req: Vec<NegToReq>,
    // ----- the engine, as the observer sees it -----
    pub(super) phase: Phase,
    handle: Option<DriverHandle>,
    transitions: Vec<Transition>,
    pub(super) liveness: Vec<String>,
    req_only_seen: Vec<(String, u64)>,
    max_unsaved: usize,
    max_backlog_while_failing: usize,
    /// Unsaved events at the engine's last idle point.
    last_unsaved: usize,
    /// The last input handed to the engine was `Input::Timeout`.
    last_input_timeout: bool,
    /// `SaveEvents` commands so far (all engines).
    pub(super) saves_asked: u64,
    /// Per `LoadNegentropyItems` not yet started at the store, in order:
    /// the saves asked before it (all must have finished when it starts).
    pub(super) load_asks: VecDeque<u64>,
    synced_before: u64,
    quarantined_before: u64,
    forgotten_before: u64,
    // ----- when to end -----
    next_check: Millis,
    end: Millis,
    last_fingerprint: Option<(u64, usize, Vec<u8>)>,
    captured: Option<Captured>,
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

/// Virtual ms since the start of the run, for traces.
pub(super) fn since(t: Millis) -> u64 {
    t.0.saturating_sub(START.0)
}

/// The whole simulated system.
pub struct Sim {
    shared: Rc<RefCell<Shared>>,
    time: Time,
    exec: Exec<SimDriver>,
    seed: u64,
}

impl Sim {
    /// Builds the relays, the store and the world's schedule for `world`.
    pub fn new(seed: u64, world: World) -> Self {
        let time = exec::new_time(START);
        let relays = world
            .relays
            .iter()
            .enumerate()
            .map(|(i, spec)| (spec.url.clone(), SimRelay::new(spec.clone(), seed.wrapping_mul(31).wrapping_add(i as u64))))
            .collect();
        let trace = std::env::var_os("SIM_TRACE").is_some();
        // Nothing may be judged before the last publication, the end of
        // every flaky relay's bad period, a hostile relay's last act and
        // the end of a store outage.
        let mut next_check = world
            .live
            .iter()
            .map(|l| l.at)
            .chain(world.relays.iter().map(|r| r.bad_until))
            .chain(world.relays.iter().flat_map(|r| r.hostile_ticks.last().copied()))
            .chain(world.knobs.store_outage.map(|(at, long)| at + long))
            .max()
            .unwrap_or(START)
            + SETTLE_CHECK;
        let mut end = START + MAX_RUN;
        if let Some(mins) = std::env::var("SIM_RUN_MINUTES").ok().and_then(|v| v.parse::<u64>().ok()) {
            // Debugging aid: a fixed virtual duration instead of stopping when quiescent.
            end = START + Duration::from_secs(mins * 60);
            next_check = end + SETTLE_CHECK;
        }
        let shared = Rc::new_cyclic(|me| {
            RefCell::new(Shared {
                me: me.clone(),
                time: Rc::clone(&time),
                seq: 0,
                queue: BTreeMap::new(),
                rng: SplitMix64::new(seed.rotate_left(17) ^ 0xA11CE),
                relays,
                links: BTreeMap::new(),
                world,
                trace,
                stats: Stats { runs: 1, ..Stats::default() },
                store: StoreState::default(),
                connect_attempts: BTreeMap::new(),
                neg_opened: BTreeMap::new(),
                notices_at: BTreeMap::new(),
                neg_to_req: Vec::new(),
                phase: Phase::Down,
                handle: None,
                transitions: Vec::new(),
                liveness: Vec::new(),
                req_only_seen: Vec::new(),
                max_unsaved: 0,
                max_backlog_while_failing: 0,
                last_unsaved: 0,
                last_input_timeout: false,
                saves_asked: 0,
                load_asks: VecDeque::new(),
                synced_before: 0,
                quarantined_before: 0,
                forgotten_before: 0,
                next_check,
                end,
                last_fingerprint: None,
                captured: None,
            })
        });
        {
            let mut s = shared.borrow_mut();
            if s.trace {
                for r in &s.world.relays {
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
                eprintln!("knobs {:?}", s.world.knobs);
            }
            let prestored = s.world.prestored.clone();
            s.store.mem.save_sync(prestored).expect("memory store");
            for index in 0..s.world.live.len() {
                let at = s.world.live[index].at;
                s.schedule(at, Ev::Publish { index });
            }
            for (at, down) in s.world.knobs.early_restart.into_iter().chain(s.world.knobs.restart) {
                s.schedule(at, Ev::Restart { down });
            }
            let ticks: Vec<(Millis, String)> =
                s.world.relays.iter().flat_map(|r| r.hostile_ticks.iter().map(|t| (*t, r.url.clone()))).collect();
            for (at, url) in ticks {
                s.schedule(at, Ev::Hostile { url });
            }
        }
        Self { shared, time, exec: Exec::new(), seed }
    }

    /// Runs until quiescent (or `START + MAX_RUN`), shuts the driver down
    /// and returns what the checks need.
    pub fn run(mut self) -> Outcome {
        self.start_driver(self.seed);
        // past this, something is wedged (the observer ends runs at MAX_RUN)
        let hard_end = START + MAX_RUN + Duration::from_secs(3600);
        loop {
            if let Some(driver) = self.exec.run_until_stalled() {
                self.driver_done(driver);
            }
            let phase = self.shared.borrow().phase;
            if matches!(phase, Phase::Done | Phase::Final { settled: false }) {
                break;
            }
            let next_ev = self.shared.borrow().queue.keys().next().map(|(t, _)| *t);
            let next_sleep = self.time.borrow().next_deadline();
            let next = match (next_ev, next_sleep) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => {
                    let now = self.time.borrow().now();
                    self.shared.borrow_mut().liveness.push(format!(
                        "nothing left to happen at +{}ms ({phase:?}): no world event, no timer, the driver waits forever",
                        since(now)
                    ));
                    break;
                }
            };
            if next > hard_end {
                self.shared
                    .borrow_mut()
                    .liveness
                    .push(format!("the run never ended by itself ({phase:?}) by +{}s", since(hard_end) / 1000));
                break;
            }
            self.time.borrow_mut().set_now(next);
            if next_ev == Some(next) {
                let ev = self.shared.borrow_mut().pop_event();
                match ev {
                    Ev::Restart { down } => self.restart(down),
                    Ev::Start => self.start_driver(self.seed.wrapping_add(1)),
                    ev => self.shared.borrow_mut().handle(ev),
                }
            } else {
                self.time.borrow_mut().wake_due();
            }
        }
        self.finish()
    }

    /// A new engine and driver (start-up restores the persisted state and
    /// indexes stored events through the engine's own commands).
    fn start_driver(&mut self, seed: u64) {
        let now = self.time.borrow().now();
        let engine = new_engine(&self.shared.borrow().world, seed, now);
        let clock = SimClock(Rc::clone(&self.time));
        let connector = SimConnector { shared: Rc::clone(&self.shared), time: Rc::clone(&self.time) };
        let store = SimStore { shared: Rc::clone(&self.shared), time: Rc::clone(&self.time) };
        let mut driver = Driver::new(engine, clock, connector, store);
        driver.observe(Box::new(SimObserver { shared: Rc::clone(&self.shared) }));
        {
            let mut s = self.shared.borrow_mut();
            if s.trace {
                eprintln!("{} start", since(now));
            }
            s.handle = Some(driver.handle());
            s.phase = Phase::Running;
            s.load_asks.clear();
            s.last_input_timeout = false;
        }
        self.exec.spawn(Box::pin(driver.run()));
    }

    /// The process stops: the driver finishes the save in flight, shuts the
    /// engine down and persists its state; a new one starts `down` later.
    fn restart(&mut self, down: Duration) {
        let mut s = self.shared.borrow_mut();
        if s.phase != Phase::Running {
            return;
        }
        s.begin_stop(Phase::Stopping { down });
    }

    /// The driver's `run` returned.
    fn driver_done(&mut self, driver: SimDriver) {
        let now = self.time.borrow().now();
        {
            let mut s = self.shared.borrow_mut();
            s.check_shutdown(now);
            match s.phase {
                Phase::Stopping { down } => {
                    let totals = driver.engine().status(now).totals;
                    s.synced_before += totals.events_synced;
                    s.quarantined_before += totals.events_quarantined;
                    s.forgotten_before += totals.events_forgotten;
                    s.stats.restarts += 1;
                    s.phase = Phase::Down;
                    s.handle = None;
                    if s.trace {
                        eprintln!("{} stopped; down for {}s", since(now), down.as_secs());
                    }
                    s.schedule(now + down, Ev::Start);
                }
                Phase::Final { .. } => s.phase = Phase::Done,
                other => {
                    s.liveness.push(format!("the driver stopped by itself at +{}ms ({other:?})", since(now)));
                    s.phase = Phase::Done;
                }
            }
        }
        // dropped outside the borrow (sockets tell the world they closed)
        drop(driver);
    }

    fn finish(mut self) -> Outcome {
        // an unsettled run's driver is abandoned mid-flight: drop it (and its
        // sockets) before taking the world apart
        drop(self.exec.abandon());
        let polls = self.exec.polls;
        let now = self.time.borrow().now();
        let mut s = self.shared.borrow_mut();
        for at in self.time.borrow().driver_spins.iter().take(5) {
            s.liveness.push(format!("busy driver: its timer fired over {} times at +{}ms", exec::TIMER_FIRES_PER_INSTANT, since(*at)));
        }
        let captured = match s.captured.take() {
            Some(c) => c,
            None => {
                // the observer never got to take the final status: use the
                // driver's last published snapshot (the run fails anyway)
                let status = s.handle.as_ref().map(|h| (*h.status()).clone());
                s.liveness.push(format!("the run ended at +{}ms without a final status", since(now)));
                let closed_live_pending = s.closed_live_pending();
                match status {
                    Some(status) => Captured { status, end: now, closed_live_pending },
                    None => panic!("seed {}: no driver and no final status", self.seed),
                }
            }
        };
        let relay_obs = s.relays.iter().map(|(u, r)| (u.clone(), r.obs.clone())).collect();
        let store = std::mem::take(&mut s.store);
        Outcome {
            status: captured.status,
            end: captured.end,
            closed_live_pending: captured.closed_live_pending,
            relay_obs,
            neg_to_req: std::mem::take(&mut s.neg_to_req),
            req_only_seen: std::mem::take(&mut s.req_only_seen),
            transitions: std::mem::take(&mut s.transitions),
            connect_attempts: std::mem::take(&mut s.connect_attempts),
            liveness: std::mem::take(&mut s.liveness),
            ordering: store.ordering,
            stats: std::mem::take(&mut s.stats),
            prestored: s.world.prestored.len() as u64,
            synced_before: s.synced_before,
            max_unsaved: s.max_unsaved,
            max_backlog_while_failing: s.max_backlog_while_failing,
            saved_outcomes: store.saved_outcomes,
            quarantine_suspects: store
                .solo_failures
                .iter()
                .filter(|(_, (n, first))| *n >= 2 && store.saves_ok > *first)
                .map(|(id, _)| *id)
                .collect(),
            store: store.mem,
            quarantined_before: s.quarantined_before,
            forgotten_before: s.forgotten_before,
            polls,
        }
    }
}

impl Shared {
    pub(super) fn now(&self) -> Millis {
        self.time.borrow().now()
    }

    pub(super) fn schedule(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        let at = at.max(self.now());
        self.queue.insert((at, self.seq), ev);
    }

    fn pop_event(&mut self) -> Ev {
        self.queue.pop_first().expect("an event is due").1
    }

    pub(super) fn latency(&mut self, url: &str) -> Duration {
        let base = self.relays.get(url).map_or(50, |r| r.spec.latency_ms);
        Duration::from_millis(base + self.rng.range(0, base / 2))
    }

    /// Asks the driver to stop (a restart or the end of the run).
    fn begin_stop(&mut self, phase: Phase) {
        self.phase = phase;
        self.store.on_stop();
        if self.last_unsaved > 0 || !self.store.in_flight.is_empty() {
            // the shutdown has a save to finish or a final save to make
            self.stats.shutdown_flushes += 1;
        }
        if self.trace {
            eprintln!("{} stop ({} unsaved, {} save(s) in flight)", since(self.now()), self.last_unsaved, self.store.in_flight.len());
        }
        if let Some(h) = &self.handle {
            h.stop();
        }
    }

    /// Live subscriptions closed by relays and not reopened, per URL.
    fn closed_live_pending(&self) -> BTreeMap<String, usize> {
        self.relays.iter().map(|(u, r)| (u.clone(), r.closed_live_pending())).filter(|(_, n)| *n > 0).collect()
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::ConnectResult { url, epoch, ok, reply } => self.connect_result(url, epoch, ok, reply),
            Ev::ToRelay { url, epoch, text } => {
                if !self.links.get(&url).is_some_and(|l| l.open && l.epoch == epoch) {
                    return;
                }
                let answers = self.relays.get_mut(&url).map(|r| r.on_frame(&text, now)).unwrap_or_default();
                self.send_to_engine(&url, answers);
            }
            Ev::ToEngine { url, epoch, text } => {
                let Some(link) = self.links.get(&url).filter(|l| l.open && l.epoch == epoch) else { return };
                if self.trace {
                    eprintln!("{} <- {url} {}", since(now), short(&text));
                }
                if let Some(tx) = &link.to_engine {
                    let _ = tx.unbounded_send(Ok(text));
                }
            }
            Ev::Drop { url, epoch } => {
                let Some(link) = self.links.get_mut(&url) else { return };
                if !link.open || link.epoch != epoch {
                    return;
                }
                link.open = false;
                link.epoch += 1;
                // the socket reports the error, then ends
                if let Some(tx) = link.to_engine.take() {
                    let _ = tx.unbounded_send(Err(TransportError("simulated drop".into())));
                }
                if let Some(r) = self.relays.get_mut(&url) {
                    r.close();
                }
                self.stats.drops += 1;
                if self.trace {
                    eprintln!("{} drop {url}", since(now));
                }
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
            Ev::Hostile { url } => {
                if self.links.get(&url).is_some_and(|l| l.open) {
                    let frames = self.relays.get_mut(&url).map(|r| r.hostile_tick()).unwrap_or_default();
                    let notices = frames.iter().any(|f| f.starts_with("[\"NOTICE\""));
                    if let Some(at) = self.send_to_engine(&url, frames).filter(|_| notices) {
                        self.notices_at.entry(url).or_default().push(at);
                    }
                }
            }
            Ev::Restart { .. } | Ev::Start => unreachable!("handled by Sim::run"),
        }
    }

    /// Sends `frames` from the relay to the engine; returns when they arrive.
    pub(super) fn send_to_engine(&mut self, url: &str, frames: Vec<String>) -> Option<Millis> {
        if frames.is_empty() {
            return None;
        }
        // a slow relay answers late (processing time on top of the network)
        let delay = self.relays.get(url).map_or(0, |r| r.spec.answer_delay_ms);
        let lat = self.latency(url) + Duration::from_millis(delay);
        let now = self.now();
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

    /// A NEG-OPEN answered by a REQ under the same subscription (the sink
    /// saw both): negentopy given up for pagination.
    pub(super) fn note_neg_to_req(&mut self, url: &str, epoch: u64, text: &str) {
        let now = self.now();
        if let Some(sub) = sub_of(text, "[\"NEG-OPEN\",\"") {
            self.neg_opened.insert((url.to_string(), epoch, sub.to_string()), now);
        } else if let Some(sub) = sub_of(text, "[\"REQ\",\"") {
            if let Some(opened_at) = self.neg_opened.remove(&(url.to_string(), epoch, sub.to_string())) {
                let notices = self.notices_at.get(url).is_some_and(|ts| ts.iter().any(|t| *t >= opened_at && *t <= now));
                self.neg_to_req.push(NegToReq { url: url.to_string(), sub: sub.to_string(), opened_at, req_at: now, notices });
            }
        }
    }

    // ----- the observer's side -----

    fn on_output(&mut self, output: &Output, now: Millis) {
        match output {
            Output::Command(cmd) => {
                if self.trace {
                    match cmd {
                        Command::Send { relay, text } => eprintln!("{} -> {relay} {}", since(now), short(text)),
                        Command::SaveEvents { token, events } => eprintln!("{} save #{token} {} events", since(now), events.len()),
                        Command::PersistState { state } => eprintln!("{} persist {} bytes", since(now), state.len()),
                        other => eprintln!("{} {other:?}", since(now)),
                    }
                }
                match cmd {
                    Command::SaveEvents { .. } => self.saves_asked += 1,
                    Command::LoadNegentropyItems { .. } => {
                        self.load_asks.push_back(self.saves_asked);
                        if self.store.saves_finished < self.saves_asked {
                            // the driver must hold this load back
                            self.stats.loads_waited += 1;
                        }
                    }
                    Command::QueryStored { .. } | Command::PersistState { .. } if !self.store.in_flight.is_empty() => {
                        self.stats.store_reads_waited += 1;
                    }
                    _ => {}
                }
            }
            Output::Event(EngineEvent::StatusChanged(t)) => {
                // the final shutdown's transitions come after the final status
                if matches!(self.phase, Phase::Running | Phase::Stopping { .. }) {
                    if self.trace {
                        eprintln!("{} status {} {:?} -> {:?}", since(t.at), t.relay, t.from, t.to);
                    }
                    self.transitions.push(t.clone());
                }
            }
            Output::Event(EngineEvent::EventsSaved { .. }) => {}
            Output::Timeout(deadline) => {
                if self.last_input_timeout && deadline.is_some_and(|d| d <= now) && self.phase == Phase::Running {
                    // handle_timeout(now) just ran and the engine still
                    // wants a wake-up at or before now: the driver would
                    // spin. Record it and let virtual time go on.
                    if self.liveness.len() < 5 {
                        self.liveness.push(format!("busy loop: poll_timeout() <= now = {} right after handle_timeout(now)", now.0));
                    }
                    if self.trace {
                        eprintln!("{} busy loop: poll_timeout {:?}", since(now), deadline.map(|t| t.0 as i64 - START.0 as i64));
                    }
                    self.time.borrow_mut().guard_spin();
                }
            }
        }
    }

    fn on_idle(&mut self, engine: &Engine, now: Millis) {
        let unsaved = engine.unsaved_count();
        self.last_unsaved = unsaved;
        self.max_unsaved = self.max_unsaved.max(unsaved);
        if self.store.failures_in_row >= 2 {
            let backlog = unsaved.saturating_sub(self.store.in_flight.values().sum());
            self.max_backlog_while_failing = self.max_backlog_while_failing.max(backlog);
        }
        if self.phase != Phase::Running {
            return;
        }
        if now >= self.end {
            self.capture(engine, now, false);
            return;
        }
        if now < self.next_check {
            return;
        }
        let storm = self.relays.iter().find(|(_, r)| r.obs.refusals >= REFUSAL_STORM);
        if let Some((url, r)) = storm {
            self.liveness.push(format!(
                "refusal storm: {url} ({:?}) refused {} requests as too many by +{}s; run stopped",
                r.spec.kind,
                r.obs.refusals,
                since(self.next_check) / 1000
            ));
            self.capture(engine, now, false);
            return;
        }
        let fingerprint = self.settled_fingerprint(engine, now);
        if fingerprint.is_some() && fingerprint == self.last_fingerprint {
            self.capture(engine, now, true);
            return;
        }
        self.last_fingerprint = fingerprint;
        self.next_check = self.next_check + SETTLE_CHECK;
    }

    /// The run ends now: the final status is taken. A settled run's driver
    /// is then stopped (its shutdown is checked like a restart's); an
    /// unsettled one's is abandoned with the store frozen, so nothing after
    /// this moment changes what the checks see.
    fn capture(&mut self, engine: &Engine, now: Millis, settled: bool) {
        let closed_live_pending = self.closed_live_pending();
        self.captured = Some(Captured { status: engine.status(now), end: now, closed_live_pending });
        if settled {
            self.begin_stop(Phase::Final { settled });
        } else {
            self.phase = Phase::Final { settled };
            self.store.frozen = true;
        }
    }

    /// When the system looks quiescent at `at`: nothing pending or unsaved,
    /// no rate-limit cooldown running, reliable relays Connected and the others
    /// Connected or ConnectedDegraded; returns a fingerprint of that state
    /// (two equal fingerprints one check apart end the run).
    fn settled_fingerprint(&mut self, engine: &Engine, at: Millis) -> Option<(u64, usize, Vec<u8>)> {
        let st = engine.status(at);
        for r in st.relays.iter().filter(|r| r.req_only) {
            let nip77 = self.relays.get(&r.relay).is_some_and(|s| s.spec.nip77);
            if nip77 && !self.req_only_seen.iter().any(|(u, _)| *u == r.relay) {
                self.req_only_seen.push((r.relay.clone(), since(at)));
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
}

/// The driver's observer: hands what it sees to the world.
struct SimObserver {
    shared: Rc<RefCell<Shared>>,
}

impl Observer for SimObserver {
    fn input(&mut self, input: &Input, _now: Millis) {
        self.shared.borrow_mut().last_input_timeout = matches!(input, Input::Timeout);
    }

    fn output(&mut self, output: &Output, now: Millis) {
        self.shared.borrow_mut().on_output(output, now);
    }

    fn idle(&mut self, engine: &Engine, now: Millis) {
        self.shared.borrow_mut().on_idle(engine, now);
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
pub(super) fn short(text: &str) -> String {
    if text.len() > 160 {
        format!("{}…", &text[..text.char_indices().take_while(|(i, _)| *i < 160).last().map_or(0, |(i, _)| i)])
    } else {
        text.to_string()
    }
}

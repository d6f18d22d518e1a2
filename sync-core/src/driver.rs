//! The `futures`-only driver: pumps the [`Engine`] over a [`Clock`], a
//! [`Connector`] and an [`EventStore`].
//!
//! It owns the sockets and the timer, executes the engine's commands in
//! order and feeds results back. Saving events runs beside everything else
//! (frames keep flowing while the store commits; the engine has at most one
//! save in flight, so batches grow with the backlog, and it asks to persist
//! its state only when no save is outstanding); the other store commands are
//! awaited in order. It spawns nothing: everything is polled from `run`, so
//! it works on any executor, including the browser's.
//!
//! An [`Observer`] may watch it (the deterministic simulation checks the
//! engine's bounds and records every status transition through one); it sees
//! what the driver does and changes none of it.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::future::{self, Either, LocalBoxFuture};
use futures::stream::{AbortHandle, Abortable, FuturesUnordered, LocalBoxStream, SelectAll};
use futures::{FutureExt, StreamExt};

use crate::command::Command;
use crate::engine::Engine;
use crate::io::{Input, Output, SaveFailure};
use crate::relay_url::RelayUrl;
use crate::runtime::{Clock, Connector, EventStore, FrameSink, FrameStream, TransportError};
use crate::status::SyncStatus;
use crate::time::Millis;

/// Requests from the front end to a running driver.
#[derive(Debug)]
enum Control {
    Stop,
}

/// A cheap, thread-safe handle to a running driver: read the latest status
/// snapshot, or ask it to stop.
#[derive(Clone)]
pub struct DriverHandle {
    control: mpsc::UnboundedSender<Control>,
    status: Arc<Mutex<Arc<SyncStatus>>>,
}

impl DriverHandle {
    /// Asks the driver to shut down cleanly (close relays, flush, persist).
    pub fn stop(&self) {
        let _ = self.control.unbounded_send(Control::Stop);
    }

    /// The most recent status snapshot.
    pub fn status(&self) -> Arc<SyncStatus> {
        self.status.lock().map(|s| Arc::clone(&s)).unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }
}

/// Watches a running driver without changing what it does: every input it
/// hands the engine, every output it takes from it, and the engine each time
/// the driver is about to wait. The simulation (`tests/simulation.rs`)
/// records status transitions, checks the driver's store ordering and the
/// engine's bounds with one; a front end could trace with one. Each method
/// defaults to doing nothing; none may block.
pub trait Observer {
    /// An input, just before the engine handles it.
    fn input(&mut self, input: &Input, now: Millis) {
        let _ = (input, now);
    }

    /// An output of the engine (a command, an event or the next deadline),
    /// just before the driver acts on it.
    fn output(&mut self, output: &Output, now: Millis) {
        let _ = (output, now);
    }

    /// The engine after the driver executed all its outputs, just before
    /// the main loop waits for a socket, the store, the timer or a stop.
    fn idle(&mut self, engine: &Engine, now: Millis) {
        let _ = (engine, now);
    }
}

/// Status snapshots are published at most this often (except on ticks).
const PUBLISH_INTERVAL: core::time::Duration = core::time::Duration::from_millis(200);

/// Callback invoked with every changed status snapshot.
pub type StatusCallback = Box<dyn FnMut(&SyncStatus)>;

type Tasks = FuturesUnordered<LocalBoxFuture<'static, TaskResult>>;

enum TaskResult {
    /// A connection opened: the driver wires its socket, then tells the engine.
    Connected { relay: RelayUrl, sink: FrameSink, stream: FrameStream },
    /// A connection's writer ended (the socket is gone).
    WriterDone { relay: RelayUrl, conn: u64, error: Option<String> },
    /// The save in flight finished (an `Input::SaveEvents`).
    Saved(Input),
    /// Any other answer, handed to the engine as it is.
    Answer(Input),
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<String>,
    abort: AbortHandle,
}

type Incoming = (RelayUrl, u64, Option<Result<String, TransportError>>);

enum Wake {
    Control(Option<Control>),
    Task(TaskResult),
    Frame(Incoming),
    Timer,
}

/// Runs an engine on a platform.
pub struct Driver<C: Clock, N: Connector, S: EventStore> {
    engine: Engine,
    clock: C,
    connector: N,
    store: Rc<S>,
    /// Saves in flight (awaited before shutdown persists the state).
    saves: usize,
    /// Saves started and finished so far: a negentropy load waits for the
    /// saves started before it (their events are part of what it offers).
    saves_started: u64,
    saves_done: u64,
    /// Negentropy loads waiting for saves: (saves started when asked, token, filter).
    loads: VecDeque<(u64, u64, nostr::Filter)>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    handle: DriverHandle,
    on_status: Option<StatusCallback>,
    observer: Option<Box<dyn Observer>>,
    conns: HashMap<RelayUrl, Conn>,
    next_conn: u64,
    last_publish_at: Millis,
    /// A throttled publish is owed: wake at `last_publish_at + 200 ms` for it,
    /// so a change (e.g. a live event saved) never waits for the next tick.
    publish_owed: bool,
}

impl<C: Clock, N: Connector, S: EventStore + 'static> Driver<C, N, S> {
    /// A driver for `engine`.
    pub fn new(engine: Engine, clock: C, connector: N, store: S) -> Self {
        let (tx, rx) = mpsc::unbounded();
        let now = clock.now();
        let initial = Arc::new(engine.status(now));
        Self {
            engine,
            clock,
            connector,
            store: Rc::new(store),
            saves: 0,
            saves_started: 0,
            saves_done: 0,
            loads: VecDeque::new(),
            control_rx: rx,
            handle: DriverHandle { control: tx, status: Arc::new(Mutex::new(initial)) },
            on_status: None,
            observer: None,
            conns: HashMap::new(),
            next_conn: 0,
            last_publish_at: Millis::ZERO,
            publish_owed: false,
        }
    }

    /// A handle to control the driver and read its status.
    pub fn handle(&self) -> DriverHandle {
        self.handle.clone()
    }

    /// Calls `callback` whenever the status snapshot changes.
    pub fn on_status(&mut self, callback: StatusCallback) {
        self.on_status = Some(callback);
    }

    /// Lets `observer` watch the driver from now on (see [`Observer`]).
    pub fn observe(&mut self, observer: Box<dyn Observer>) {
        self.observer = Some(observer);
    }

    /// The store (e.g. to query after `run` returns).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Runs until [`DriverHandle::stop`]; the engine's first commands restore
    /// its persisted state and index stored events, its last ones persist it.
    pub async fn run(mut self) -> Self {
        let mut incoming: SelectAll<LocalBoxStream<'static, Incoming>> = SelectAll::new();
        let mut tasks: Tasks = FuturesUnordered::new();
        // the save in flight (apart: other store commands wait for it first)
        let mut saves: Tasks = FuturesUnordered::new();
        saves.push(future::pending().boxed_local());
        // keep SelectAll/FuturesUnordered non-empty so `next()` pends instead of ending
        incoming.push(futures::stream::pending().boxed_local());
        tasks.push(future::pending().boxed_local());
        self.feed(Input::Timeout, self.clock.now());
        loop {
            let (changed, mut deadline) = self.execute_outputs(&mut tasks, &mut saves).await;
            // status changes and saved events are shown at once (throttled)
            if changed || self.publish_owed {
                self.publish(false);
            }
            if self.publish_owed {
                let owed = self.last_publish_at + PUBLISH_INTERVAL;
                deadline = Some(deadline.map_or(owed, |d| d.min(owed)));
            }
            if let Some(o) = self.observer.as_mut() {
                o.idle(&self.engine, self.clock.now());
            }
            let sleep = match deadline {
                Some(t) => Either::Left(self.clock.sleep_until(t)),
                None => Either::Right(future::pending::<()>()),
            };
            let wake = futures::select_biased! {
                ctrl = self.control_rx.next() => Wake::Control(ctrl),
                task = tasks.select_next_some() => Wake::Task(task),
                task = saves.select_next_some() => Wake::Task(task),
                item = incoming.select_next_some() => Wake::Frame(item),
                _ = sleep.fuse() => Wake::Timer,
            };
            match wake {
                Wake::Control(Some(Control::Stop) | None) => break,
                Wake::Task(task) => self.on_task(task, &mut incoming, &mut tasks),
                Wake::Frame(item) => self.on_incoming(item),
                Wake::Timer => {
                    self.feed(Input::Timeout, self.clock.now());
                    // throttled like every other publish: with a timer per
                    // relay rule, wake-ups come in bursts
                    self.publish(false);
                }
            }
        }
        // a save still running must report before the final state is
        // persisted (after shutdown, saves are awaited in order)
        self.finish_saves(&mut saves).await;
        self.feed(Input::Shutdown, self.clock.now());
        self.execute_outputs(&mut tasks, &mut saves).await;
        for (_, conn) in self.conns.drain() {
            conn.abort.abort();
        }
        self.publish(true);
        self
    }

    /// Hands one input to the engine (and shows it to the observer).
    fn feed(&mut self, input: Input, now: Millis) {
        if let Some(o) = self.observer.as_mut() {
            o.input(&input, now);
        }
        self.engine.handle_input(input, now);
    }

    fn on_task(&mut self, task: TaskResult, incoming: &mut SelectAll<LocalBoxStream<'static, Incoming>>, tasks: &mut Tasks) {
        let now = self.clock.now();
        match task {
            TaskResult::Connected { relay, sink, stream } => {
                self.next_conn += 1;
                let id = self.next_conn;
                let (tx, rx) = mpsc::unbounded::<String>();
                let (abort, reg) = AbortHandle::new_pair();
                let r = relay.clone();
                let frames = Abortable::new(stream, reg).map(move |item| (r.clone(), id, Some(item)));
                let r2 = relay.clone();
                let end = futures::stream::once(async move { (r2, id, None) });
                incoming.push(frames.chain(end).boxed_local());
                let r3 = relay.clone();
                tasks.push(
                    async move {
                        let result = rx.map(Ok).forward(sink).await;
                        TaskResult::WriterDone { relay: r3, conn: id, error: result.err().map(|e| e.0) }
                    }
                    .boxed_local(),
                );
                if let Some(old) = self.conns.insert(relay.clone(), Conn { id, tx, abort }) {
                    old.abort.abort();
                }
                self.feed(Input::Connect { relay, result: Ok(()) }, now);
            }
            TaskResult::Saved(input) => self.on_saved(input),
            TaskResult::Answer(input) => self.feed(input, now),
            TaskResult::WriterDone { relay, conn, error } => {
                if self.conns.get(&relay).is_some_and(|c| c.id == conn) {
                    if let Some(c) = self.conns.remove(&relay) {
                        c.abort.abort();
                    }
                    let reason = error.unwrap_or_else(|| "writer closed".into());
                    self.feed(Input::Disconnected { relay, reason }, now);
                }
            }
        }
    }

    fn on_incoming(&mut self, (relay, conn, item): Incoming) {
        if self.conns.get(&relay).is_none_or(|c| c.id != conn) {
            return; // a connection we already closed
        }
        let now = self.clock.now();
        let input = match item {
            Some(Ok(text)) => Input::Frame { relay, text },
            Some(Err(e)) => {
                self.drop_conn(&relay);
                Input::Disconnected { relay, reason: e.0 }
            }
            None => {
                self.drop_conn(&relay);
                Input::Disconnected { relay, reason: "connection closed".into() }
            }
        };
        self.feed(input, now);
    }

    fn drop_conn(&mut self, relay: &RelayUrl) {
        if let Some(c) = self.conns.remove(relay) {
            c.abort.abort();
        }
    }

    /// Waits for the save in flight and reports it to the engine.
    async fn finish_saves(&mut self, saves: &mut Tasks) {
        while self.saves > 0 {
            if let TaskResult::Saved(input) = saves.select_next_some().await {
                self.on_saved(input);
            }
        }
    }

    fn on_saved(&mut self, input: Input) {
        self.saves -= 1;
        self.saves_done += 1;
        self.feed(input, self.clock.now());
    }

    /// Starts the negentropy loads whose earlier saves have finished.
    fn start_ready_loads(&mut self, tasks: &mut Tasks) {
        while self.loads.front().is_some_and(|(after, _, _)| *after <= self.saves_done) {
            let (_, token, filter) = self.loads.pop_front().expect("front");
            let store = Rc::clone(&self.store);
            tasks.push(
                async move {
                    let result = store.negentropy_items(filter).await.map_err(|e| e.0);
                    TaskResult::Answer(Input::LoadNegentropyItems { token, result })
                }
                .boxed_local(),
            );
        }
    }

    /// Executes the engine's outputs until it has nothing more to do now;
    /// returns whether it reported an event, and its next deadline.
    async fn execute_outputs(&mut self, tasks: &mut Tasks, saves: &mut Tasks) -> (bool, Option<Millis>) {
        self.start_ready_loads(tasks);
        let mut events = false;
        loop {
            let output = self.engine.poll_output();
            if let Some(o) = self.observer.as_mut() {
                o.output(&output, self.clock.now());
            }
            let cmd = match output {
                Output::Command(cmd) => cmd,
                Output::Event(_) => {
                    events = true;
                    continue;
                }
                Output::Timeout(deadline) => {
                    self.start_ready_loads(tasks);
                    return (events, deadline);
                }
            };
            match cmd {
                Command::Connect { relay, timeout } => {
                    let connect = self.connector.connect(&relay, timeout);
                    let deadline = self.clock.sleep_until(self.clock.now() + timeout);
                    tasks.push(
                        async move {
                            match future::select(connect, deadline).await {
                                Either::Left((Ok((sink, stream)), _)) => TaskResult::Connected { relay, sink, stream },
                                Either::Left((Err(e), _)) => TaskResult::Answer(Input::Connect { relay, result: Err(e.0) }),
                                Either::Right(_) => TaskResult::Answer(Input::Connect {
                                    relay,
                                    result: Err(format!("connect timed out after {timeout:?}")),
                                }),
                            }
                        }
                        .boxed_local(),
                    );
                }
                Command::Disconnect { relay } => self.drop_conn(&relay),
                Command::FetchRelayInfo { relay } => {
                    let timeout = self.engine.config().relay_info_timeout;
                    let fetch = self.connector.fetch_info(&relay, timeout);
                    tasks.push(
                        async move {
                            let document = match fetch.await {
                                Ok(doc) => Some(doc),
                                Err(e) => {
                                    tracing::debug!(relay = %relay, error = %e, "no NIP-11 document");
                                    None
                                }
                            };
                            TaskResult::Answer(Input::FetchRelayInfo { relay, document })
                        }
                        .boxed_local(),
                    );
                }
                Command::Send { relay, text } => {
                    if let Some(c) = self.conns.get(&relay) {
                        let _ = c.tx.unbounded_send(text);
                    }
                }
                Command::SaveEvents { token, events } if !self.engine.running => {
                    let result = self.store.save(events.clone()).await.map_err(|e| SaveFailure { events, error: e.0 });
                    self.feed(Input::SaveEvents { token, result }, self.clock.now());
                }
                Command::SaveEvents { token, events } => {
                    let store = Rc::clone(&self.store);
                    self.saves += 1;
                    self.saves_started += 1;
                    saves.push(
                        async move {
                            let result = store.save(events.clone()).await.map_err(|e| SaveFailure { events, error: e.0 });
                            TaskResult::Saved(Input::SaveEvents { token, result })
                        }
                        .boxed_local(),
                    );
                }
                Command::LoadNegentropyItems { token, filter } if self.engine.running => {
                    // Loaded beside frame processing, once the saves started
                    // before it have finished: what negentropy offers as "have"
                    // includes them. (Awaiting here stalled every relay behind
                    // a store commit for each NEG-OPEN: half a browser sync.)
                    self.loads.push_back((self.saves_started, token, filter));
                }
                Command::LoadNegentropyItems { token, filter } => {
                    self.finish_saves(saves).await;
                    let result = self.store.negentropy_items(filter).await.map_err(|e| e.0);
                    self.feed(Input::LoadNegentropyItems { token, result }, self.clock.now());
                }
                Command::LoadState => {
                    let state = self.store.load_state().await.map_err(|e| e.to_string());
                    self.feed(Input::LoadState(state), self.clock.now());
                }
                Command::QueryStored { token, filter } => {
                    self.finish_saves(saves).await;
                    let result = self.store.query(filter).await.map_err(|e| e.to_string());
                    self.feed(Input::QueryStored { token, result }, self.clock.now());
                }
                Command::PersistState { state } => {
                    self.finish_saves(saves).await;
                    if let Err(e) = self.store.save_state(state).await {
                        tracing::error!(error = %e, "could not persist sync state");
                    }
                }
            }
        }
    }

    /// Publishes the snapshot: at most every 200 ms (a publish held back is
    /// owed and happens when due, so the last change is always shown), or
    /// at once on `force` (the final one, after shutdown). The only status
    /// throttle: front ends pass snapshots on as they come.
    fn publish(&mut self, force: bool) {
        let now = self.clock.now();
        if !force && now.since(self.last_publish_at) < PUBLISH_INTERVAL {
            self.publish_owed = true;
            return;
        }
        self.publish_owed = false;
        self.last_publish_at = now;
        let status = self.engine.status(now);
        if let Some(cb) = self.on_status.as_mut() {
            cb(&status);
        }
        if let Ok(mut s) = self.handle.status.lock() {
            *s = Arc::new(status);
        }
    }

    /// The engine (for inspection after `run` returns).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

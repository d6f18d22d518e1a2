//! Test kit (feature `testkit`, and the crate's own tests): the one
//! in-process interpreter of the engine's commands ([`Platform`], [`answer`],
//! [`run_until_idle`]), used by unit tests, fuzzing and benchmarks alike, a
//! scripted relay, and an engine harness with a virtual clock. The relay answers REQ (newest
//! first, capped), NEG-OPEN/NEG-MSG (via `NegResponder`) and CLOSE in process,
//! so a whole sync runs in microseconds and deterministically. The randomised
//! multi-relay simulation lives in `tests/simulation.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nostr::{ClientMessage, Event, Filter, JsonUtil, RelayMessage, SubscriptionId};

use crate::command::Command;
use crate::config::SyncConfig;
use crate::engine::{Engine, EngineEvent, Transition};
use crate::io::{Input, Output, SaveFailure};
use crate::policy::AcceptancePolicy;
use crate::relay_url::RelayUrl;
use crate::runtime::{NegentropyItem, SaveOutcome};
use crate::status::{ConnectionStatus, HealthStatus};
use crate::store::memory::MemoryStore;
use crate::time::Millis;

pub mod hostile;
mod neg_responder;

pub use neg_responder::NegResponder;

fn url(s: &str) -> RelayUrl {
    RelayUrl::parse(s).expect("valid test relay URL")
}

/// How a scripted relay behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Speaks NIP-01 and NIP-77.
    Nip77,
    /// Answers NEG-OPEN with a NOTICE.
    ReqOnly,
    /// Negentropy works, but `REQ {ids}` returns nothing.
    Withholding,
    /// REQ-only (NOTICE on NEG-OPEN) and never sends EOSE for historic REQs.
    NeverEose,
    /// Never answers NEG-OPEN at all; REQ works.
    SilentNeg,
    /// Answers every NEG-OPEN/NEG-MSG with fresh ids and a fingerprint
    /// mismatch (`hostile::endless_negentropy_message`); REQ works.
    EndlessNeg,
}

/// An in-process relay answering frames from a fixed event list.
pub struct ScriptRelay {
    /// Events held.
    pub events: Vec<Event>,
    /// Behaviour.
    pub mode: Mode,
    /// Most events per REQ answer.
    pub cap: usize,
    /// Open negentropy sessions.
    pub neg: BTreeMap<String, NegResponder>,
    /// Open live subscriptions.
    pub live: BTreeMap<String, Vec<nostr::Filter>>,
    /// Connected now.
    pub connected: bool,
    /// Answer the next REQ with `CLOSED rate-limited:`.
    pub rate_limit_next_req: bool,
    /// At most this many subscriptions (live and historic REQs until CLOSE)
    /// open at once; the excess is refused as "too many concurrent REQs", like strfry.
    pub max_subs: usize,
    /// At most this many negentropy sessions open at once (excess: NEG-ERR).
    pub max_negs: usize,
    /// Refuse with a NOTICE (no sub id) instead of CLOSED.
    pub refuse_with_notice: bool,
    /// Historic subscriptions open now.
    pub open: BTreeSet<String>,
    /// Most historic subscriptions + negentropy sessions ever open at once.
    pub max_open_seen: usize,
    /// Requests refused as too many.
    pub refusals: u64,
    /// NIP-11 document served (`None`: the relay has none).
    pub info: Option<String>,
    /// Junk events (matching, not verifying) added to every historic REQ page.
    pub junk_per_page: usize,
    /// Answers sent (salts junk and negentropy ids).
    answers: u64,
}

impl ScriptRelay {
    /// A relay holding `events`.
    pub fn new(mode: Mode, events: Vec<Event>) -> Self {
        Self {
            events,
            mode,
            cap: 100,
            neg: BTreeMap::new(),
            live: BTreeMap::new(),
            connected: false,
            rate_limit_next_req: false,
            max_subs: usize::MAX,
            max_negs: usize::MAX,
            refuse_with_notice: false,
            open: BTreeSet::new(),
            max_open_seen: 0,
            refusals: 0,
            info: None,
            junk_per_page: 0,
            answers: 0,
        }
    }

    fn refuse(&mut self, sub: &SubscriptionId, what: &str, neg: bool) -> Vec<String> {
        self.refusals += 1;
        let text = format!("error: too many concurrent {what}");
        if self.refuse_with_notice {
            vec![RelayMessage::notice(format!("ERROR: too many concurrent {what}")).as_json()]
        } else if neg {
            vec![RelayMessage::NegErr { subscription_id: std::borrow::Cow::Owned(sub.clone()), message: std::borrow::Cow::Owned(text) }
                .as_json()]
        } else {
            vec![RelayMessage::closed(sub.clone(), text).as_json()]
        }
    }

    fn note_open(&mut self) {
        self.max_open_seen = self.max_open_seen.max(self.open.len() + self.neg.len());
    }

    /// The relay's answers to one client frame.
    pub fn answer(&mut self, frame: &str) -> Vec<String> {
        self.answers += 1;
        let msg = ClientMessage::from_json(frame).expect("engine sends valid frames");
        let opts = nostr::filter::MatchEventOptions::new();
        match msg {
            ClientMessage::Req { subscription_id, filters } => {
                if self.rate_limit_next_req {
                    self.rate_limit_next_req = false;
                    return vec![RelayMessage::closed(subscription_id.into_owned(), "rate-limited: slow down").as_json()];
                }
                let sub = subscription_id.into_owned();
                let mut out = Vec::new();
                let live = filters.iter().all(|f| f.limit == Some(0));
                let known = self.open.contains(sub.as_str()) || self.live.contains_key(sub.as_str());
                if !known && self.open.len() + self.live.len() >= self.max_subs {
                    return self.refuse(&sub, "REQs", false);
                }
                if !live && !known {
                    self.open.insert(sub.to_string());
                    self.note_open();
                }
                if live {
                    self.live.insert(sub.to_string(), filters.iter().map(|f| f.clone().into_owned()).collect());
                    return vec![RelayMessage::eose(sub).as_json()];
                }
                if sub.as_str().starts_with("live") {
                    // a live subscription reopened with `since`: stored
                    // matches, EOSE, then it stays open like any REQ
                    self.open.remove(sub.as_str());
                    self.live.insert(sub.to_string(), filters.iter().map(|f| f.clone().into_owned()).collect());
                }
                for f in &filters {
                    if self.mode == Mode::Withholding && f.ids.is_some() {
                        continue;
                    }
                    let mut m: Vec<&Event> = self.events.iter().filter(|e| f.match_event(e, opts)).collect();
                    m.sort_by(|a, b| crate::nip01::newest_first(a.created_at.as_secs(), &a.id, b.created_at.as_secs(), &b.id));
                    m.truncate(self.cap.min(f.limit.unwrap_or(usize::MAX)));
                    let until = m.last().map(|e| e.created_at).or(f.until).unwrap_or(nostr::Timestamp::from(1_700_000_000));
                    out.extend(m.into_iter().map(|e| RelayMessage::event(sub.clone(), e.clone()).as_json()));
                    if f.ids.is_none() {
                        let junk = hostile::junk_matching(f, until, self.junk_per_page, self.answers);
                        out.extend(junk.into_iter().map(|e| RelayMessage::event(sub.clone(), e).as_json()));
                    }
                }
                if self.mode != Mode::NeverEose || filters.iter().any(|f| f.ids.is_some()) {
                    out.push(RelayMessage::eose(sub).as_json());
                }
                out
            }
            ClientMessage::NegOpen { subscription_id, filter, initial_message, .. } => {
                if self.mode == Mode::SilentNeg {
                    return vec![];
                }
                if self.mode == Mode::ReqOnly || self.mode == Mode::NeverEose {
                    return vec![RelayMessage::notice("ERROR: unknown message type NEG-OPEN").as_json()];
                }
                if self.neg.len() >= self.max_negs {
                    return self.refuse(&subscription_id, "NEG requests", true);
                }
                if self.mode == Mode::EndlessNeg {
                    let answer = hostile::endless_negentropy_message(self.answers, 1000);
                    return vec![RelayMessage::NegMsg { subscription_id, message: std::borrow::Cow::Owned(answer) }.as_json()];
                }
                let items: Vec<_> = self.events.iter().filter(|e| filter.match_event(e, opts)).map(|e| (e.id, e.created_at)).collect();
                let mut r = NegResponder::new(&items, 60_000).unwrap();
                let answer = r.reconcile(&initial_message).unwrap();
                self.neg.insert(subscription_id.to_string(), r);
                self.note_open();
                vec![RelayMessage::NegMsg { subscription_id, message: std::borrow::Cow::Owned(answer) }.as_json()]
            }
            ClientMessage::NegMsg { subscription_id, .. } if self.mode == Mode::EndlessNeg => {
                let answer = hostile::endless_negentropy_message(self.answers, 1000);
                vec![RelayMessage::NegMsg { subscription_id, message: std::borrow::Cow::Owned(answer) }.as_json()]
            }
            ClientMessage::NegMsg { subscription_id, message } => {
                let Some(r) = self.neg.get_mut(subscription_id.as_str()) else { return vec![] };
                let answer = r.reconcile(&message).unwrap();
                vec![RelayMessage::NegMsg { subscription_id, message: std::borrow::Cow::Owned(answer) }.as_json()]
            }
            ClientMessage::NegClose { subscription_id } => {
                self.neg.remove(subscription_id.as_str());
                vec![]
            }
            ClientMessage::Close(sub) => {
                self.live.remove(sub.as_str());
                self.open.remove(sub.as_str());
                vec![]
            }
            _ => vec![],
        }
    }

    /// Publishes a new event to matching live subscriptions.
    pub fn publish(&mut self, e: Event) -> Vec<String> {
        let opts = nostr::filter::MatchEventOptions::new();
        self.events.push(e.clone());
        self.live
            .iter()
            .filter(|(_, fs)| fs.iter().any(|f| f.match_event(&e, opts)))
            .map(|(s, _)| RelayMessage::event(SubscriptionId::new(s), e.clone()).as_json())
            .collect()
    }
}

/// An in-process world that can carry out commands at once: scripted
/// relays and a store in tests, fuzzing and tools. (The production
/// [`crate::Driver`] does the same asynchronously over real sockets.)
pub trait Platform {
    /// Opens a connection.
    fn connect(&mut self, relay: &RelayUrl) -> Result<(), String>;
    /// Closes one the engine asked to close.
    fn disconnect(&mut self, relay: &RelayUrl);
    /// Delivers a frame; returns the relay's immediate answers.
    fn send(&mut self, relay: &RelayUrl, text: &str) -> Vec<String>;
    /// The relay's NIP-11 document.
    fn relay_info(&mut self, relay: &RelayUrl) -> Option<String>;
    /// Saves events.
    fn save(&mut self, events: &[Event]) -> Result<Vec<SaveOutcome>, String>;
    /// Negentropy items for a filter.
    fn negentropy_items(&mut self, filter: &Filter) -> Result<Vec<NegentropyItem>, String>;
    /// Stored events for a filter.
    fn query(&mut self, filter: &Filter) -> Result<Vec<Event>, String>;
    /// The persisted state.
    fn load_state(&mut self) -> Result<Option<Vec<u8>>, String>;
    /// Persists the state.
    fn persist_state(&mut self, state: Vec<u8>);
}

/// Carries out `command` on `platform` and returns the inputs that answer it,
/// in order (a `Send` may be answered by several frames, a `Disconnect` by none).
pub fn answer(platform: &mut impl Platform, command: Command) -> Vec<Input> {
    match command {
        Command::LoadState => vec![Input::LoadState(platform.load_state())],
        Command::QueryStored { token, filter } => vec![Input::QueryStored { token, result: platform.query(&filter) }],
        Command::Connect { relay, .. } => {
            let result = platform.connect(&relay);
            vec![Input::Connect { relay, result }]
        }
        Command::Disconnect { relay } => {
            platform.disconnect(&relay);
            vec![]
        }
        Command::Send { relay, text } => {
            platform.send(&relay, &text).into_iter().map(|text| Input::Frame { relay: relay.clone(), text }).collect()
        }
        Command::SaveEvents { token, events } => {
            let result = platform.save(&events).map_err(|error| SaveFailure { events, error });
            vec![Input::SaveEvents { token, result }]
        }
        Command::LoadNegentropyItems { token, filter } => {
            vec![Input::LoadNegentropyItems { token, result: platform.negentropy_items(&filter) }]
        }
        Command::FetchRelayInfo { relay } => {
            let document = platform.relay_info(&relay);
            vec![Input::FetchRelayInfo { relay, document }]
        }
        Command::PersistState { state } => {
            platform.persist_state(state);
            vec![]
        }
    }
}

/// Runs the engine's outputs against `platform` until it has nothing more
/// to do now, feeding every answer back at `now`; events are appended to
/// `events`. Returns the engine's next deadline.
pub fn run_until_idle(engine: &mut Engine, platform: &mut impl Platform, now: Millis, events: &mut Vec<EngineEvent>) -> Option<Millis> {
    let mut guard = 0u64;
    loop {
        match engine.poll_output() {
            Output::Command(command) => {
                guard += 1;
                assert!(guard < 10_000_000, "command storm");
                for input in answer(platform, command) {
                    engine.handle_input(input, now);
                }
            }
            Output::Event(event) => events.push(event),
            Output::Timeout(deadline) => return deadline,
        }
    }
}

/// Scripted relays and a memory store as a [`Platform`]: the world of
/// [`Harness`], borrowed from it beside its engine.
struct ScriptWorld<'a> {
    now: Millis,
    store: &'a mut MemoryStore,
    relays: &'a mut BTreeMap<RelayUrl, ScriptRelay>,
    sent: &'a mut BTreeMap<RelayUrl, Vec<String>>,
    connects: &'a mut Vec<(Millis, RelayUrl)>,
    disconnects: &'a mut Vec<RelayUrl>,
    persisted: &'a mut Option<Vec<u8>>,
    down: &'a [RelayUrl],
    save_attempts: &'a mut u64,
    events_offered: &'a mut u64,
    trace: &'a mut Vec<Executed>,
    state_to_load: &'a mut Option<Vec<u8>>,
}

impl Platform for ScriptWorld<'_> {
    fn connect(&mut self, relay: &RelayUrl) -> Result<(), String> {
        self.connects.push((self.now, relay.clone()));
        match self.relays.get_mut(relay) {
            Some(r) if !self.down.contains(relay) => {
                r.connected = true;
                Ok(())
            }
            _ => Err("refused".into()),
        }
    }

    fn disconnect(&mut self, relay: &RelayUrl) {
        self.disconnects.push(relay.clone());
        if let Some(r) = self.relays.get_mut(relay) {
            r.connected = false;
            r.live.clear();
            r.open.clear();
            r.neg.clear();
        }
    }

    fn send(&mut self, relay: &RelayUrl, text: &str) -> Vec<String> {
        self.sent.entry(relay.clone()).or_default().push(text.to_string());
        self.relays.get_mut(relay).map(|r| r.answer(text)).unwrap_or_default()
    }

    fn relay_info(&mut self, relay: &RelayUrl) -> Option<String> {
        self.relays.get(relay).and_then(|r| r.info.clone())
    }

    fn save(&mut self, events: &[Event]) -> Result<Vec<SaveOutcome>, String> {
        *self.save_attempts += 1;
        *self.events_offered += events.len() as u64;
        let result = self.store.save_sync(events.to_vec()).map_err(|e| e.0);
        self.trace.push(Executed::Save { events: events.len(), ok: result.is_ok() });
        result
    }

    fn negentropy_items(&mut self, filter: &Filter) -> Result<Vec<NegentropyItem>, String> {
        self.store.negentropy_items_sync(filter).map_err(|e| e.0)
    }

    fn query(&mut self, filter: &Filter) -> Result<Vec<Event>, String> {
        let result = self.store.query_sync(filter).map_err(|e| e.to_string());
        self.trace.push(Executed::Query { events: result.as_ref().map_or(0, Vec::len) });
        result
    }

    fn load_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.state_to_load.take())
    }

    fn persist_state(&mut self, state: Vec<u8>) {
        self.trace.push(Executed::Persist);
        *self.persisted = Some(state);
    }
}

/// Store commands a [`Harness`] executed, in order (for tests of ordering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// `SaveEvents` with this many events; whether the store took them.
    Save {
        /// Events in the command.
        events: usize,
        /// The store answered Ok.
        ok: bool,
    },
    /// `QueryStored`, answered with this many events.
    Query {
        /// Events returned.
        events: usize,
    },
    /// `PersistState`.
    Persist,
}

/// An engine driven by hand over scripted relays and a memory store.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// Virtual time.
    pub now: Millis,
    /// Its store.
    pub store: MemoryStore,
    /// Scripted relays.
    pub relays: BTreeMap<RelayUrl, ScriptRelay>,
    /// Frames the engine sent, per relay.
    pub sent: BTreeMap<RelayUrl, Vec<String>>,
    /// Connection attempts.
    pub connects: Vec<(Millis, RelayUrl)>,
    /// Disconnects the engine asked for.
    pub disconnects: Vec<RelayUrl>,
    /// Last persisted state.
    pub persisted: Option<Vec<u8>>,
    /// Relays refusing connections.
    pub down: Vec<RelayUrl>,
    /// `SaveEvents` commands executed.
    pub save_attempts: u64,
    /// Events carried by those commands (each accepted event once, unless a save failed).
    pub events_offered: u64,
    /// Events the engine reported, oldest first (see [`Harness::take_transitions`]).
    pub events: Vec<EngineEvent>,
    /// Store commands executed, in order.
    pub trace: Vec<Executed>,
    /// The persisted state start-up loads (set it before the first pump:
    /// a restart of a process that persisted it).
    pub state_to_load: Option<Vec<u8>>,
}

impl Harness {
    /// An engine (seed 42) with scripted relays.
    pub fn new(config: SyncConfig, policy: AcceptancePolicy, bootstrap: &[&str], relays: Vec<(&str, ScriptRelay)>) -> Self {
        let now = Millis(1_800_000_000_000);
        let boot: Vec<RelayUrl> = bootstrap.iter().map(|s| url(s)).collect();
        let engine = Engine::new(config, policy, &boot, 42, now).unwrap();
        Self {
            engine,
            now,
            store: MemoryStore::new(),
            relays: relays.into_iter().map(|(u, r)| (url(u), r)).collect(),
            sent: BTreeMap::new(),
            connects: Vec::new(),
            disconnects: Vec::new(),
            persisted: None,
            down: Vec::new(),
            save_attempts: 0,
            events_offered: 0,
            events: Vec::new(),
            trace: Vec::new(),
            state_to_load: None,
        }
    }

    /// Executes every pending output; relays answer immediately. Returns the
    /// engine's next deadline.
    pub fn pump(&mut self) -> Option<Millis> {
        let Harness {
            engine,
            now,
            store,
            relays,
            sent,
            connects,
            disconnects,
            persisted,
            down,
            save_attempts,
            events_offered,
            events,
            trace,
            state_to_load,
        } = self;
        let mut world = ScriptWorld {
            now: *now,
            store,
            relays,
            sent,
            connects,
            disconnects,
            persisted,
            down,
            save_attempts,
            events_offered,
            trace,
            state_to_load,
        };
        run_until_idle(engine, &mut world, *now, events)
    }

    /// Feeds one input at the current time, then executes what follows.
    pub fn input(&mut self, input: Input) -> Option<Millis> {
        self.engine.handle_input(input, self.now);
        self.pump()
    }

    /// Takes the connection-status transitions reported so far, dropping other events.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        self.events
            .drain(..)
            .filter_map(|e| match e {
                EngineEvent::StatusChanged(t) => Some(t),
                EngineEvent::EventsSaved { .. } => None,
            })
            .collect()
    }

    /// Advances virtual time by `d`, firing every timeout on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut next = self.pump();
        let mut stuck = 0;
        while let Some(t) = next {
            if t > end {
                break;
            }
            stuck = if t <= self.now { stuck + 1 } else { 0 };
            assert!(stuck < 1000, "engine keeps asking for a timeout at {t:?} without progress (now {:?})", self.now);
            self.now = self.now.max(t);
            next = self.input(Input::Timeout);
        }
        self.now = end;
    }

    /// Connection status of a tracked relay.
    pub fn status(&self, relay: &str) -> ConnectionStatus {
        self.engine.status(self.now).relays.iter().find(|r| r.relay == url(relay).as_str()).map(|r| r.connection).expect("tracked")
    }

    /// Health of a tracked relay.
    pub fn health(&self, relay: &str) -> HealthStatus {
        self.engine.status(self.now).relays.iter().find(|r| r.relay == url(relay).as_str()).map(|r| r.health).expect("tracked")
    }

    /// Is the relay tracked?
    pub fn tracked(&self, relay: &str) -> bool {
        self.engine.status(self.now).relays.iter().any(|r| r.relay == url(relay).as_str())
    }

    /// The relay drops the connection.
    pub fn drop_connection(&mut self, relay: &str) {
        let u = url(relay);
        self.relays.get_mut(&u).unwrap().connected = false;
        self.relays.get_mut(&u).unwrap().live.clear();
        self.input(Input::Disconnected { relay: u, reason: "test drop".into() });
    }

    /// Frames the engine sent to a relay.
    pub fn sent_to(&self, relay: &str) -> Vec<String> {
        self.sent.get(&url(relay)).cloned().unwrap_or_default()
    }

    /// Publishes `e` on a relay, delivering it to live subscriptions.
    pub fn publish(&mut self, relay: &str, e: Event) {
        let u = url(relay);
        let frames = self.relays.get_mut(&u).unwrap().publish(e);
        for text in frames {
            self.engine.handle_input(Input::Frame { relay: u.clone(), text }, self.now);
        }
        self.pump();
    }
}

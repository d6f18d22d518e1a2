//! A scripted relay and an engine harness with a virtual clock, shared by the
//! engine's unit tests and the benchmarks. The relay answers REQ (newest
//! first, capped), NEG-OPEN/NEG-MSG (via `NegResponder`) and CLOSE in process,
//! so a whole sync runs in microseconds and deterministically. The randomised
//! multi-relay simulation lives in `tests/simulation.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nostr::{ClientMessage, Event, JsonUtil, RelayMessage, SubscriptionId};

use crate::command::Command;
use crate::config::SyncConfig;
use crate::engine::Engine;
use crate::historic::negentropy::NegResponder;
use crate::policy::AcceptancePolicy;
use crate::relay_url::RelayUrl;
use crate::status::{ConnectionStatus, HealthStatus};
use crate::store::memory::MemoryStore;
use crate::time::Millis;

pub mod hostile;

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
                    m.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
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
}

impl Harness {
    /// An engine (seed 42) with scripted relays.
    pub fn new(config: SyncConfig, policy: AcceptancePolicy, bootstrap: &[&str], relays: Vec<(&str, ScriptRelay)>) -> Self {
        let now = Millis(1_800_000_000_000);
        let boot: Vec<String> = bootstrap.iter().map(|s| s.to_string()).collect();
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
        }
    }

    /// Executes every pending command; relays answer immediately.
    pub fn pump(&mut self) {
        let mut guard = 0;
        while let Some(cmd) = self.engine.poll_command() {
            guard += 1;
            assert!(guard < 1_000_000, "command storm");
            match cmd {
                Command::Connect { relay, .. } => {
                    self.connects.push((self.now, relay.clone()));
                    if self.down.contains(&relay) || !self.relays.contains_key(&relay) {
                        self.engine.handle_connect_failed(&relay, self.now, "refused");
                    } else {
                        self.relays.get_mut(&relay).unwrap().connected = true;
                        self.engine.handle_connected(&relay, self.now);
                    }
                }
                Command::Disconnect { relay } => {
                    self.disconnects.push(relay.clone());
                    if let Some(r) = self.relays.get_mut(&relay) {
                        r.connected = false;
                        r.live.clear();
                        r.open.clear();
                        r.neg.clear();
                    }
                }
                Command::Send { relay, text } => {
                    self.sent.entry(relay.clone()).or_default().push(text.clone());
                    let answers = self.relays.get_mut(&relay).map(|r| r.answer(&text)).unwrap_or_default();
                    for a in answers {
                        self.engine.handle_frame(&relay, &a, self.now);
                    }
                }
                Command::SaveEvents { token, events } => {
                    self.save_attempts += 1;
                    self.events_offered += events.len() as u64;
                    match self.store.save_sync(events.clone()) {
                        Ok(out) => self.engine.handle_saved(token, out, self.now),
                        Err(e) => self.engine.handle_save_failed(token, events, &e.0, self.now),
                    }
                }
                Command::LoadNegentropyItems { token, filter } => {
                    let items = self.store.negentropy_items_sync(&filter).unwrap();
                    self.engine.handle_negentropy_items(token, items, self.now);
                }
                Command::PersistState { state } => self.persisted = Some(state),
                Command::LoadState => self.engine.handle_state_loaded(Ok(None), self.now),
                Command::QueryStored { token, filter } => {
                    let events = self.store.query_sync(&filter).map_err(|e| e.to_string());
                    self.engine.handle_stored_events(token, events, self.now);
                }
                Command::FetchRelayInfo { relay } => {
                    let doc = self.relays.get(&relay).and_then(|r| r.info.clone());
                    self.engine.handle_relay_info(&relay, doc.as_deref(), self.now);
                }
            }
        }
    }

    /// Advances virtual time by `d`, firing every timeout on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        self.pump();
        let mut stuck = 0;
        while let Some(t) = self.engine.poll_timeout() {
            if t > end {
                break;
            }
            stuck = if t <= self.now { stuck + 1 } else { 0 };
            assert!(stuck < 1000, "engine keeps asking for a timeout at {t:?} without progress (now {:?})", self.now);
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            self.pump();
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
        self.engine.handle_disconnected(&u, self.now, "test drop");
        self.pump();
    }

    /// Frames the engine sent to a relay.
    pub fn sent_to(&self, relay: &str) -> Vec<String> {
        self.sent.get(&url(relay)).cloned().unwrap_or_default()
    }

    /// Publishes `e` on a relay, delivering it to live subscriptions.
    pub fn publish(&mut self, relay: &str, e: Event) {
        let u = url(relay);
        let frames = self.relays.get_mut(&u).unwrap().publish(e);
        for f in frames {
            self.engine.handle_frame(&u, &f, self.now);
        }
        self.pump();
    }
}

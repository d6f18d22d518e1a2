//! Shared pieces of the sync-core fuzz targets: deterministic event signing,
//! a fixed NIP-34 dataset, and [`Rig`], an [`Engine`] driven by hand with a
//! virtual clock, a memory store and scripted relays — like
//! `sync_core::testkit::Harness`, except that frames the engine sends are
//! only answered when the fuzz input says so, so arbitrary relay frames can be
//! interleaved with genuine protocol traffic.
//!
//! Invariants checked on every command the engine issues:
//! - every frame it sends parses as a NIP-01/NIP-77 client message;
//! - every event in `Command::SaveEvents` has a valid id and signature;
//! - it never issues an unbounded stream of commands, nor asks for a timeout
//!   in the past over and over without progress (a busy loop in a driver);
//! - its persisted state restores into a fresh engine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::time::Duration;

use sync_core::nip34;
use sync_core::nostr::secp256k1::{schnorr::Signature, Keypair, Message};
use sync_core::nostr::{ClientMessage, Event, EventId, Filter, JsonUtil, Kind, PublicKey, RelayMessage, Tag, Tags, Timestamp, SECP256K1};
use sync_core::state::SyncState;
use sync_core::testkit::{answer, Mode, Platform, ScriptRelay};
use sync_core::{AcceptancePolicy, Engine, Input, MemoryStore, Millis, NegentropyItem, Output, RelayUrl, SaveOutcome, SyncConfig};

/// Our service URL (server policy).
pub const OURS: &str = "wss://grasp.example.com";
/// Bootstrap relay; speaks NIP-01 and NIP-77.
pub const R1: &str = "wss://r1.example.com";
/// Listed by the repository; REQ-only (answers NEG-OPEN with a NOTICE).
pub const R2: &str = "wss://r2.example.com";
/// Virtual start time.
pub const T0: Millis = Millis(1_800_000_000_000);

/// Parses a known-good relay URL.
pub fn url(s: &str) -> RelayUrl {
    RelayUrl::parse(s).expect("valid fixture URL")
}

/// Deterministic Schnorr signing with a fixed key (no aux randomness), so a
/// crashing input reproduces byte for byte.
pub struct Signer {
    keypair: Keypair,
    /// The key's public half.
    pub pubkey: PublicKey,
}

impl Signer {
    /// Key number `n` (secret key bytes `[n + 1; 32]`).
    pub fn new(n: u8) -> Self {
        let keypair = Keypair::from_seckey_slice(SECP256K1, &[n.wrapping_add(1).max(1); 32]).expect("valid secret key");
        let pubkey = PublicKey::from_slice(&keypair.x_only_public_key().0.serialize()).expect("valid x-only key");
        Self { keypair, pubkey }
    }

    /// A signed event.
    pub fn sign(&self, kind: u16, tags: Vec<Tag>, content: &str, created_at: u64) -> Event {
        let (id, tags, at, kind) = self.id(kind, tags, content, created_at);
        let sig = SECP256K1.sign_schnorr_no_aux_rand(&Message::from_digest(id.to_bytes()), &self.keypair);
        Event::new(id, self.pubkey, at, kind, tags, content, sig)
    }

    /// An event with a correct id but an all-zero signature: for code that
    /// parses and indexes events without verifying them.
    pub fn unsigned(&self, kind: u16, tags: Vec<Tag>, content: &str, created_at: u64) -> Event {
        let (id, tags, at, kind) = self.id(kind, tags, content, created_at);
        Event::new(id, self.pubkey, at, kind, tags, content, Signature::from_slice(&[0; 64]).expect("64 bytes"))
    }

    fn id(&self, kind: u16, tags: Vec<Tag>, content: &str, created_at: u64) -> (EventId, Tags, Timestamp, Kind) {
        let tags = Tags::from_list(tags);
        let at = Timestamp::from(created_at);
        let kind = Kind::Custom(kind);
        (EventId::new(&self.pubkey, &at, &kind, &tags, content), tags, at, kind)
    }
}

/// A tag from its parts (empty parts: no tag).
pub fn tag<S: AsRef<str>>(parts: &[S]) -> Option<Tag> {
    Tag::parse(parts.iter().map(|s| s.as_ref().to_string()).collect::<Vec<_>>()).ok()
}

fn t(parts: &[&str]) -> Tag {
    tag(parts).expect("non-empty tag")
}

/// The fixed dataset, signed once per process.
pub struct Fixtures {
    /// The repository owner.
    pub owner: Signer,
    /// Someone else.
    pub stranger: Signer,
    /// `30617:<owner>:repo`, listing OURS, R1 and R2.
    pub announcement: Event,
    /// Its address.
    pub address: String,
    /// A patch of the repository (an L3 root).
    pub patch: Event,
    /// Every event the scripted relays hold (accepted ones and noise).
    pub events: Vec<Event>,
}

/// The dataset.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let owner = Signer::new(0);
        let stranger = Signer::new(1);
        let at = 1_700_000_000;
        let announcement = owner.sign(
            30617,
            vec![t(&["d", "repo"]), t(&["name", "repo"]), t(&["relays", OURS, R1, R2]), t(&["maintainers", &stranger.pubkey.to_hex()])],
            "",
            at,
        );
        let address = nip34::repo_address(&announcement);
        let patch = owner.sign(1617, vec![t(&["a", &address])], "patch", at + 10);
        let issue = stranger.sign(1621, vec![t(&["a", &address])], "issue", at + 11);
        let pr = owner.sign(1618, vec![t(&["a", &address])], "pr", at + 12);
        let mut events = vec![announcement.clone(), patch.clone(), issue.clone(), pr];
        events.push(owner.sign(30618, vec![t(&["d", "repo"])], "", at + 13));
        events.push(stranger.sign(1631, vec![t(&["e", &patch.id.to_hex()])], "", at + 14));
        for i in 0..6u64 {
            // enough replies that a small page limit paginates
            let root = if i % 2 == 0 { &patch } else { &issue };
            events.push(stranger.sign(1111, vec![t(&["E", &root.id.to_hex()])], &format!("reply {i}"), at + 20 + i));
        }
        // noise: another repository, a reply to nothing we know
        events.push(stranger.sign(30617, vec![t(&["d", "other"]), t(&["relays", "wss://elsewhere.example.org"])], "", at));
        events.push(stranger.sign(1111, vec![t(&["E", &EventId::all_zeros().to_hex()])], "noise", at + 40));
        Fixtures { owner, stranger, announcement, address, patch, events }
    })
}

/// The server policy for [`OURS`].
pub fn server_policy() -> AcceptancePolicy {
    AcceptancePolicy::Server { relay_urls: [url(OURS)].into(), domains: ["grasp.example.com".to_string()].into() }
}

/// Small limits: pagination, fetch chunking and the in-flight window all
/// come into play with the tiny dataset.
pub fn small_config() -> SyncConfig {
    SyncConfig {
        page_limit: 4,
        pagination_threshold: 4,
        fetch_chunk: 2,
        max_in_flight: 2,
        max_negentropy_sessions: 1,
        fetch_queue_max: 3,
        ..SyncConfig::default()
    }
}

/// Most commands one drain may produce before it counts as a storm.
const COMMAND_STORM: usize = 200_000;
/// Most sub ids remembered per relay.
const MAX_SUBS: usize = 256;

/// The rig's world: scripted relays that answer only when the fuzz input
/// says so, and a memory store that fails while `store_fails` is set. Its
/// [`Platform`] impl is all the rig knows about commands: the mapping from
/// each command to its answer is the test kit's one interpreter.
pub struct FuzzWorld {
    /// Its store (holds the announcement from the start).
    pub store: MemoryStore,
    /// Scripted relays (R1: NIP-77, R2: REQ-only).
    pub relays: BTreeMap<RelayUrl, ScriptRelay>,
    /// Frames the engine sent that no relay has answered yet.
    pub pending: BTreeMap<RelayUrl, VecDeque<String>>,
    /// Subscription ids the engine used per relay (first-seen order).
    pub subs: BTreeMap<RelayUrl, Vec<String>>,
    /// Subscription ids of NEG-OPENs per relay (first-seen order).
    pub neg_subs: BTreeMap<RelayUrl, Vec<String>>,
    /// NIP-11 document served to `FetchRelayInfo`.
    pub info: Option<String>,
    /// The store fails `SaveEvents` while set.
    pub store_fails: bool,
    /// The last persisted state.
    pub persisted: Option<Vec<u8>>,
}

impl Platform for FuzzWorld {
    fn connect(&mut self, relay: &RelayUrl) -> Result<(), String> {
        let r = self.relays.get_mut(relay).ok_or("refused")?;
        r.connected = true;
        Ok(())
    }

    fn disconnect(&mut self, relay: &RelayUrl) {
        if let Some(r) = self.relays.get_mut(relay) {
            r.connected = false;
            r.live.clear();
            r.open.clear();
            r.neg.clear();
        }
        self.pending.remove(relay);
    }

    fn send(&mut self, relay: &RelayUrl, text: &str) -> Vec<String> {
        let msg = match ClientMessage::from_json(text) {
            Ok(m) => m,
            Err(e) => panic!("engine sent a frame that is not a client message ({e}): {text}"),
        };
        let (sub, neg) = match &msg {
            ClientMessage::Req { subscription_id, .. } => (Some(subscription_id.to_string()), false),
            ClientMessage::NegOpen { subscription_id, .. } => (Some(subscription_id.to_string()), true),
            _ => (None, false),
        };
        if let Some(sub) = sub {
            remember(self.subs.entry(relay.clone()).or_default(), sub.clone());
            if neg {
                remember(self.neg_subs.entry(relay.clone()).or_default(), sub);
            }
        }
        self.pending.entry(relay.clone()).or_default().push_back(text.to_string());
        vec![] // answered later, when the fuzz input says so
    }

    fn relay_info(&mut self, _relay: &RelayUrl) -> Option<String> {
        self.info.clone()
    }

    fn save(&mut self, events: &[Event]) -> Result<Vec<SaveOutcome>, String> {
        let fixtures = &fixtures().events;
        for e in events {
            // (the fixtures are signed; skipping them saves half the verification time)
            if !fixtures.contains(e) {
                assert!(e.verify().is_ok(), "SaveEvents carries an event that does not verify: {}", e.as_json());
            }
        }
        if self.store_fails {
            return Err("fuzz: store down".into());
        }
        Ok(self.store.save_sync(events.to_vec()).expect("memory store"))
    }

    fn negentropy_items(&mut self, filter: &Filter) -> Result<Vec<NegentropyItem>, String> {
        Ok(self.store.negentropy_items_sync(filter).expect("memory store"))
    }

    fn query(&mut self, filter: &Filter) -> Result<Vec<Event>, String> {
        self.store.query_sync(filter).map_err(|e| e.to_string())
    }

    fn load_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }

    fn persist_state(&mut self, state: Vec<u8>) {
        self.persisted = Some(state);
    }
}

/// An engine connected to scripted relays, driven by the fuzz input.
pub struct Rig {
    /// The engine under test.
    pub engine: Engine,
    /// Virtual time.
    pub now: Millis,
    /// Relays and store.
    pub world: FuzzWorld,
    config: SyncConfig,
}

impl Rig {
    /// Starts an engine (start-up commands answered, the announcement already
    /// stored), connects R1 and R2 and lets their historic work begin: after
    /// this, live REQs, NEG-OPENs (R1) and REQs (R2) are in flight, unanswered.
    pub fn new(config: SyncConfig, info: Option<String>) -> Self {
        let f = fixtures();
        let engine = Engine::new(config.clone(), server_policy(), &[url(R1)], 42, T0).expect("valid config");
        let store = MemoryStore::new();
        store.save_sync(vec![f.announcement.clone()]).expect("memory store");
        let relays =
            [(url(R1), ScriptRelay::new(Mode::Nip77, f.events.clone())), (url(R2), ScriptRelay::new(Mode::ReqOnly, f.events.clone()))]
                .into_iter()
                .collect();
        let world = FuzzWorld {
            store,
            relays,
            pending: BTreeMap::new(),
            subs: BTreeMap::new(),
            neg_subs: BTreeMap::new(),
            info,
            store_fails: false,
            persisted: None,
        };
        let mut rig = Self { engine, now: T0, world, config };
        rig.drain();
        assert!(rig.engine.is_started(), "start-up did not finish");
        rig.input(Input::Timeout);
        rig
    }

    /// Executes everything the engine has to do now; relays do not answer.
    /// Returns its next deadline.
    pub fn drain(&mut self) -> Option<Millis> {
        let mut n = 0;
        loop {
            match self.engine.poll_output() {
                Output::Command(command) => {
                    n += 1;
                    assert!(n < COMMAND_STORM, "command storm: {COMMAND_STORM} commands in one drain");
                    for input in answer(&mut self.world, command) {
                        self.engine.handle_input(input, self.now);
                    }
                }
                Output::Event(_) => {}
                Output::Timeout(deadline) => return deadline,
            }
        }
    }

    /// Feeds one input now, then drains.
    pub fn input(&mut self, input: Input) -> Option<Millis> {
        self.engine.handle_input(input, self.now);
        self.drain()
    }

    /// One frame from `relay`.
    pub fn frame(&mut self, relay: &RelayUrl, text: &str) {
        self.input(Input::Frame { relay: relay.clone(), text: text.to_string() });
    }

    /// The scripted relay answers up to `n` of the frames sent to it.
    pub fn answer(&mut self, relay: &RelayUrl, n: usize) {
        for _ in 0..n {
            let Some(text) = self.world.pending.get_mut(relay).and_then(VecDeque::pop_front) else { return };
            let Some(r) = self.world.relays.get_mut(relay) else { return };
            if !r.connected {
                continue;
            }
            let answers = match ClientMessage::from_json(&text).expect("checked when sent") {
                // The fuzz input may have pushed the engine's session out of
                // step with the relay's: answer NEG-ERR instead of panicking
                // like the test relay does.
                ClientMessage::NegMsg { subscription_id, message } => match r.neg.get_mut(subscription_id.as_str()) {
                    Some(responder) => vec![match responder.reconcile(&message) {
                        Ok(answer) => RelayMessage::NegMsg { subscription_id, message: std::borrow::Cow::Owned(answer) }.as_json(),
                        Err(e) => {
                            RelayMessage::NegErr { subscription_id, message: std::borrow::Cow::Owned(format!("error: {e}")) }.as_json()
                        }
                    }],
                    None => vec![],
                },
                _ => r.answer(&text),
            };
            for text in answers {
                self.engine.handle_input(Input::Frame { relay: relay.clone(), text }, self.now);
            }
            self.drain();
        }
    }

    /// Advances virtual time by `d`, firing every timeout on the way (like a
    /// driver that is awake throughout).
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        let mut stuck = 0;
        let mut next = self.drain();
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

    /// Jumps virtual time by `d` with one timeout at the end (a driver that
    /// was suspended, or a clock that stepped).
    pub fn jump(&mut self, d: Duration) {
        self.now = self.now + d;
        self.input(Input::Timeout);
    }

    /// The connection to `relay` is lost.
    pub fn drop_connection(&mut self, relay: &RelayUrl) {
        self.world.disconnect(relay);
        self.input(Input::Disconnected { relay: relay.clone(), reason: "fuzz: connection lost".into() });
    }

    /// A subscription id the engine used on `relay` (`i` modulo how many), or
    /// `fallback` when it used none.
    pub fn sub(&self, relay: &RelayUrl, i: usize, neg_only: bool) -> String {
        let list = if neg_only { &self.world.neg_subs } else { &self.world.subs };
        match list.get(relay) {
            Some(v) if !v.is_empty() => v[i % v.len()].clone(),
            _ => "hist1".to_string(),
        }
    }

    /// End-of-input checks: the status snapshot builds, and the engine's
    /// state (and the last persisted one) parses and starts a fresh engine.
    pub fn finish(mut self) {
        let _ = self.engine.status(self.now);
        let bytes = self.engine.state_bytes();
        for state in [Some(bytes), self.world.persisted.take()].into_iter().flatten() {
            if let Err(e) = SyncState::from_bytes(&state) {
                panic!("state written by the engine does not restore: {e}");
            }
            let mut fresh = Engine::new(self.config.clone(), server_policy(), &[url(R1)], 7, self.now).expect("valid config");
            fresh.handle_input(Input::LoadState(Ok(Some(state))), self.now);
        }
    }
}

fn remember(list: &mut Vec<String>, sub: String) {
    if !list.contains(&sub) {
        if list.len() >= MAX_SUBS {
            list.remove(0);
        }
        list.push(sub);
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A frame as JSON text: `[tag, sub, rest…]` with proper escaping.
pub fn frame_json(parts: Vec<serde_json::Value>) -> String {
    serde_json::Value::Array(parts).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::nostr::SubscriptionId;

    /// The rig reaches the state the targets start from: both relays
    /// connected, NEG-OPENs in flight on R1, REQs on R2, nothing answered.
    #[test]
    fn rig_starts_with_historic_work_in_flight() {
        for config in [SyncConfig::default(), small_config()] {
            let mut rig = Rig::new(config, None);
            let (r1, r2) = (url(R1), url(R2));
            assert!(!rig.world.neg_subs.get(&r1).map_or(true, Vec::is_empty), "no NEG-OPEN on R1: {:?}", rig.world.pending);
            assert!(rig.world.pending.get(&r2).is_some_and(|p| p.iter().any(|f| f.contains("\"hist"))), "no historic REQ on R2");
            println!("subs: {:?}\nneg: {:?}", rig.world.subs, rig.world.neg_subs);
            for (relay, frames) in &rig.world.pending {
                for f in frames {
                    println!("{relay} <- {}", &f[..f.len().min(160)]);
                }
            }
            rig.answer(&r1, usize::MAX);
            rig.answer(&r2, usize::MAX);
            rig.advance(Duration::from_secs(60));
            rig.answer(&r1, usize::MAX);
            rig.answer(&r2, usize::MAX);
            rig.advance(Duration::from_secs(60));
            let stored = rig.world.store.len();
            assert!(stored > 5, "the scripted relays synced only {stored} events");
            rig.finish();
        }
    }

    /// Regenerates the seeds that carry signed events and genuine negentropy
    /// answers (`cargo +nightly test --release -- --ignored write_seeds`).
    #[test]
    #[ignore]
    fn write_seeds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/handle_frame");
        std::fs::create_dir_all(dir).unwrap();
        let f = fixtures();
        // what R1 answers to the frames sent at connect: NEG-MSGs, EOSEs
        let rig = Rig::new(SyncConfig::default(), None);
        let r1 = url(R1);
        let mut r = ScriptRelay::new(Mode::Nip77, f.events.clone());
        let mut lines = Vec::new();
        for frame in rig.world.pending.get(&r1).cloned().unwrap_or_default() {
            lines.extend(r.answer(&frame));
        }
        lines.push(String::new());
        lines.push(".".into());
        lines.push(String::new());
        std::fs::write(format!("{dir}/seed-conversation"), lines.join("\n")).unwrap();
        let event = RelayMessage::event(SubscriptionId::new("hist2"), f.patch.clone()).as_json();
        let mut forged: serde_json::Value = serde_json::from_str(&event).unwrap();
        forged[2]["sig"] = serde_json::Value::String("00".repeat(64));
        let mut other =
            serde_json::from_str::<serde_json::Value>(&RelayMessage::event(SubscriptionId::new("$1"), f.events[4].clone()).as_json())
                .unwrap();
        other[2]["content"] = "changed".into();
        std::fs::write(format!("{dir}/seed-events"), [event, forged.to_string(), other.to_string()].join("\n")).unwrap();
    }
}

//! Random NIP-34 worlds, one per seed: simulated relays with their kinds
//! (honest, REQ-only, rate-limiting, flaky, withholding, never-EOSE, forged,
//! limited, slow, quirky, and the hostile ones of [`RelayKind::hostile`]),
//! repository announcements listing several of them, states, roots, threads,
//! noise, forged and future-dated events and events published live during
//! the run.
//!
//! Everything derives from the seed (keys come from a fixed pool), so a seed
//! always builds the same world; only signature nonces differ, which the
//! engine never looks at beyond verifying them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use nostr::{Event, EventBuilder, EventId, Keys, Kind, SecretKey, Tag, Timestamp};
use sync_core::rng::SplitMix64;
use sync_core::Millis;

/// The server's own relay: announcements listing it are accepted (server policy).
pub const OUR_RELAY: &str = "wss://grasp.example.com";
/// A listed relay that never answers (connect attempts time out).
pub const GONE_RELAY: &str = "wss://gone.sim-relay.net";
/// A listed relay on a private address: refused by the URL safety rule.
pub const PRIVATE_RELAY: &str = "ws://127.0.0.1:7777";
/// Virtual time at which every run starts.
pub const START: Millis = Millis(1_750_000_000_000);

/// How a simulated relay behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RelayKind {
    /// Honest, speaks NIP-77.
    Nip77,
    /// Honest, answers NEG-OPEN with a NOTICE.
    ReqOnly,
    /// Honest, but sometimes answers `CLOSED "rate-limited: slow down"`.
    RateLimiting,
    /// Honest after a bad period during which it refuses connects and drops connections.
    Flaky,
    /// Negentropy advertises ids that `REQ` never returns.
    Withholding,
    /// Never sends EOSE (and answers NEG-OPEN with a NOTICE).
    NeverEose,
    /// Serves events with invalid signatures, including forged copies of real ids.
    Forged,
    /// Honest, but at most `max_subs` concurrent subscriptions per connection
    /// (live ones included; re-using an open id replaces it): the excess is
    /// refused with a NOTICE or a CLOSED "too many concurrent REQs".
    LimitedSubs,
    /// Honest NIP-77 relay with at most `max_negs` concurrent negentropy
    /// sessions: the excess gets NEG-ERR or a NOTICE "too many concurrent NEG requests".
    LimitedNeg,
    /// Honest NIP-77 relay answering every frame seconds late (`answer_delay_ms`).
    Slow,
    /// Honest REQ-only relay (NOTICE on NEG-OPEN) that treats `until` as
    /// exclusive (`created_at < until`), against NIP-01.
    ExclusiveUntil,
    /// Honest, but answers `limit:0` (live) REQs with stored events anyway.
    LimitZeroStored,
    /// Honest, but one `limit`/cap is shared by all filters of a REQ
    /// (newest first over their union) instead of applying per filter.
    SharedLimit,
    // ----- hostile kinds (drawn with probability `HOSTILE_RATE`) -----
    /// Hostile: every historic REQ page (not `REQ {ids}`, not live) also
    /// carries `junk_per_page` junk events per filter, besides the capped real
    /// ones: they match the filter (its first kind and tag) but do not verify,
    /// with fresh ids and falling `created_at` below the page's `until`.
    /// Its real events are all served, so it counts as reliable.
    JunkFlood,
    /// Hostile NIP-77 relay whose negentropy never ends: most sessions
    /// (NEG-OPEN with probability 0.6; the others are honest) and all their
    /// NEG-MSGs are answered with a message reporting `endless_ids` fresh ids
    /// (never served by REQ; 0: fingerprints only) and a fingerprint that
    /// never matches (`testkit::hostile::endless_negentropy_message`), until
    /// the engine's round or id bound ends the session. REQ is honest. Not
    /// reliable: its batches fail (rounds/ids bound) and its events are not
    /// fetched from it; the engine must end it ConnectedDegraded or Connected,
    /// never REQ-only, within the round bound.
    EndlessNeg,
    /// Hostile: at each of `hostile_ticks` (the first minutes of the run),
    /// sends an unprompted burst of NOTICEs, some saying "too many …" or
    /// "rate-limited: …" about nothing it refused. Otherwise honest and reliable.
    NoticeStorm,
    /// Hostile: at each of `hostile_ticks` closes the live subscriptions it
    /// holds with `CLOSED "error: …"`; events published while one is closed
    /// must still arrive (the engine reopens with `since`). Reliable; ends
    /// Connected once the closes stop for a stability period.
    ClosesLive,
    /// Hostile: besides its honest events it stores `future`: valid signed
    /// events dated years ahead (a newer announcement without our relay,
    /// patches, comments, a state), served by REQ and negentropy like any
    /// other. None may be stored. Not counted as reliable (unless
    /// `SIM_FUTURE_RELIABLE=1`): they take real events' places at the top of
    /// capped newest-first pages, and the engine, which counts only events it
    /// accepts towards a page, ends pagination early (an engine finding of the hostile-world sweep).
    FutureDated,
    /// Hostile: every historic REQ answer also carries one EVENT frame longer
    /// than the engine's `max_frame_bytes` (`oversized_bytes`), which must be
    /// refused unparsed. Otherwise honest and reliable.
    Oversized,
}

impl RelayKind {
    /// Relays whose content the engine must end up with.
    ///
    /// ExclusiveUntil counts as reliable: like every relay's, its dataset
    /// has at most 3 events in one second (the shared noise 2), below every
    /// page size (at least 4), so a client that allows for both readings of
    /// `until` loses nothing there (SPEC §3: "never lose events that share a
    /// second"). Losing events on it is an engine finding, not a simulation
    /// artefact.
    pub fn reliable(self) -> bool {
        match self {
            RelayKind::Withholding | RelayKind::NeverEose | RelayKind::Forged | RelayKind::EndlessNeg => false,
            RelayKind::FutureDated => future_reliable(),
            _ => true,
        }
    }

    /// Relays that neither withhold nor forge nor lie about refusals: they
    /// answer every `REQ {ids}` fully, so the engine has no reason to ask one
    /// of them twice for an id. (EndlessNeg reports ids it never serves; a
    /// NoticeStorm's "too many" NOTICEs make silent requests look refused.)
    pub fn honest(self) -> bool {
        !matches!(self, RelayKind::Withholding | RelayKind::Forged | RelayKind::EndlessNeg | RelayKind::NoticeStorm)
    }

    /// The hostile kinds: they attack the engine's bounds rather
    /// than merely misbehave. Drawn for a relay with probability [`HOSTILE_RATE`].
    pub fn hostile(self) -> bool {
        Self::HOSTILE.contains(&self)
    }

    /// Relays that state limits (and must still converge).
    pub fn limited(self) -> bool {
        matches!(self, RelayKind::LimitedSubs | RelayKind::LimitedNeg)
    }

    /// The hostile kinds, in the order the generator draws from.
    pub const HOSTILE: [RelayKind; 6] = [
        RelayKind::JunkFlood,
        RelayKind::EndlessNeg,
        RelayKind::NoticeStorm,
        RelayKind::ClosesLive,
        RelayKind::FutureDated,
        RelayKind::Oversized,
    ];

    /// Every kind: the first 13 are drawn uniformly (when no hostile kind is), then the hostile ones.
    pub const ALL: [RelayKind; 19] = [
        RelayKind::Nip77,
        RelayKind::ReqOnly,
        RelayKind::RateLimiting,
        RelayKind::Flaky,
        RelayKind::Withholding,
        RelayKind::NeverEose,
        RelayKind::Forged,
        RelayKind::LimitedSubs,
        RelayKind::LimitedNeg,
        RelayKind::Slow,
        RelayKind::ExclusiveUntil,
        RelayKind::LimitZeroStored,
        RelayKind::SharedLimit,
        RelayKind::JunkFlood,
        RelayKind::EndlessNeg,
        RelayKind::NoticeStorm,
        RelayKind::ClosesLive,
        RelayKind::FutureDated,
        RelayKind::Oversized,
    ];
}

/// `SIM_FUTURE_RELIABLE=1`: FutureDated relays count as reliable (their
/// honest events must all arrive), to reproduce the pagination finding.
fn future_reliable() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SIM_FUTURE_RELIABLE").is_ok_and(|v| v == "1"))
}

/// Probability that a relay (other than the first, always Nip77) is of a
/// hostile kind, each equally likely; modest, so the default sweep keeps
/// its duration and the other kinds their share.
pub const HOSTILE_RATE: f64 = 0.12;

/// Hostile relays act unprompted (NOTICE bursts, live closes) only during
/// the run's first minutes, at most this late: the run can then settle.
pub const HOSTILE_UNTIL: core::time::Duration = core::time::Duration::from_secs(12 * 60);

/// One simulated relay's configuration and initial content.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    /// Normalised URL.
    pub url: String,
    /// Behaviour.
    pub kind: RelayKind,
    /// Answers NEG-OPEN (otherwise a NOTICE).
    pub nip77: bool,
    /// Configured as a bootstrap relay of the engine.
    pub bootstrap: bool,
    /// One-way latency in milliseconds.
    pub latency_ms: u64,
    /// At most this many stored events per filter in one REQ answer.
    pub cap: usize,
    /// Negentropy frame size limit of the relay (0: unlimited; 4096 makes
    /// large reconciliations take several rounds).
    pub neg_frame_limit: u64,
    /// Flaky relays misbehave until then.
    pub bad_until: Millis,
    /// LimitedSubs: concurrent subscriptions per connection (0: unlimited).
    pub max_subs: usize,
    /// LimitedNeg: concurrent negentropy sessions per connection (0: unlimited).
    pub max_negs: usize,
    /// Limited relays refuse with a NOTICE (else CLOSED / NEG-ERR naming the subscription).
    pub notice_refusals: bool,
    /// Slow: every answer leaves the relay this much later (processing delay,
    /// on top of the network latency).
    pub answer_delay_ms: u64,
    /// Its NIP-11 document, if it publishes one (truthful about NIP-77 and
    /// its limits, or not JSON at all).
    pub nip11: Option<String>,
    /// `limitation.max_subscriptions` of that document, if it states one.
    pub stated_max_subs: Option<usize>,
    /// Valid events stored at the start.
    pub events: Vec<Event>,
    /// Ids the relay advertises in negentropy but never returns (withholding).
    pub withheld: BTreeSet<EventId>,
    /// Invalid events served in place of (or besides) valid ones (forged).
    pub forged: Vec<Event>,
    /// JunkFlood: junk events added per filter to each historic REQ page.
    pub junk_per_page: usize,
    /// EndlessNeg: fresh ids reported by each negentropy message.
    pub endless_ids: usize,
    /// FutureDated: valid events dated years ahead, served besides `events`
    /// (not part of [`World::universe`]: none may ever be stored).
    pub future: Vec<Event>,
    /// NoticeStorm / ClosesLive: when the relay acts unprompted (sorted).
    pub hostile_ticks: Vec<Millis>,
    /// Oversized: size of the oversized EVENT frame added to each historic answer.
    pub oversized_bytes: usize,
}

/// An event published to some relays during the run.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Publication time.
    pub at: Millis,
    /// The event.
    pub event: Event,
    /// Indices into `World::relays`.
    pub relays: Vec<usize>,
}

/// Engine-side knobs drawn per seed (pagination sizes are shrunk so the
/// small datasets exercise `until` pagination).
#[derive(Debug, Clone)]
pub struct Knobs {
    /// `SyncConfig::pagination_threshold`.
    pub threshold: usize,
    /// `SyncConfig::page_limit`.
    pub page_limit: usize,
    /// `SyncConfig::fetch_chunk`.
    pub fetch_chunk: usize,
    /// Probability that a store save fails.
    pub store_failure: f64,
    /// Restart the engine (shutdown, persisted state, restore) at this time,
    /// down for this long: under 15 min is a quick reconnect, over is a fresh start.
    pub restart: Option<(Millis, core::time::Duration)>,
    /// The store is down (every save fails) from then, for this long.
    pub store_outage: Option<(Millis, core::time::Duration)>,
    /// `SyncConfig::max_unsaved`, when not the default (small: the
    /// backpressure and the 4 × backlog bound during an outage are reached).
    pub max_unsaved: Option<usize>,
    /// `SyncConfig::max_negentropy_ids`, when not the default (small enough
    /// that EndlessNeg sessions meet it before the round bound, far above
    /// what an honest session reports here).
    pub max_negentropy_ids: Option<usize>,
    /// A slow store (a browser's IndexedDB, a busy disk): a save commits up
    /// to this many ms after it starts (otherwise up to 30), a negentropy
    /// load answers in up to a third of it (otherwise up to 10). Saves then
    /// overlap frames, negentropy loads and restarts, so the driver's
    /// ordering rules (`sim/store.rs`) are exercised.
    pub store_latency_ms: Option<u64>,
    /// An early restart, during the initial sync (saves, loads and
    /// negentropy in full swing), down for this long: the driver's shutdown
    /// must finish the save in flight and the final save before it persists.
    pub early_restart: Option<(Millis, core::time::Duration)>,
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct World {
    /// Simulated relays.
    pub relays: Vec<RelaySpec>,
    /// Events published during the run.
    pub live: Vec<LiveEvent>,
    /// Engine knobs.
    pub knobs: Knobs,
    /// Events already in the store when the run starts (an earlier run's data
    /// without its sync state).
    pub prestored: Vec<Event>,
}

impl World {
    /// Every valid event of the world, relays and live publications alike, by id.
    pub fn universe(&self) -> BTreeMap<EventId, Event> {
        let mut all = BTreeMap::new();
        for r in &self.relays {
            for e in &r.events {
                all.insert(e.id, e.clone());
            }
        }
        for l in &self.live {
            all.insert(l.event.id, l.event.clone());
        }
        all
    }
}

/// A fixed pool of keys, derived once (key derivation is the slow part).
pub fn key_pool() -> &'static [Keys] {
    static POOL: OnceLock<Vec<Keys>> = OnceLock::new();
    POOL.get_or_init(|| {
        (1..=8u8)
            .map(|i| {
                let sk = SecretKey::from_slice(&[i; 32]).expect("valid secret key");
                Keys::new(sk)
            })
            .collect()
    })
}

/// Announcements of repositories that do not list our relay, signed once
/// and shared by every seed (signing is the expensive part of a dataset).
pub fn noise_pool() -> &'static [Event] {
    static POOL: OnceLock<Vec<Event>> = OnceLock::new();
    POOL.get_or_init(|| {
        let keys = key_pool();
        (0..240u64)
            .map(|i| {
                let k = &keys[(i % keys.len() as u64) as usize];
                let d = format!("elsewhere-{i}");
                // two per second, to exercise pagination ties
                build(k, 30617, &[&["d", &d], &["relays", "wss://elsewhere.example.org"]], "", START.as_secs() - 86_400 - i / 2)
            })
            .collect()
    })
}

/// 40 labels tagging repository `addr`, two per second (pagination ties that
/// page boundaries split), signed once per address and shared by every seed
/// that uses it.
pub fn busy_thread(addr: &str) -> Vec<Event> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Vec<Event>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
    if let Some(v) = cache.lock().expect("not poisoned").get(addr) {
        return v.clone();
    }
    let keys = key_pool();
    let events: Vec<Event> = (0..40u64)
        .map(|i| {
            let k = &keys[(i % keys.len() as u64) as usize];
            build(k, 1985, &[&["a", addr], &["L", "busy"]], &format!("busy {i}"), START.as_secs() - 7_200 - (i / 2) * 7)
        })
        .collect();
    cache.lock().expect("not poisoned").entry(addr.to_string()).or_insert(events).clone()
}

/// Builds and signs an event with explicit time (never the wall clock).
pub fn build(keys: &Keys, kind: u16, tags: &[&[&str]], content: &str, at: u64) -> Event {
    let tags: Vec<Tag> = tags.iter().map(|t| Tag::parse(t.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("tag")).collect();
    EventBuilder::new(Kind::from(kind), content).tags(tags).custom_created_at(Timestamp::from(at)).sign_with_keys(keys).expect("sign")
}

/// A copy of `event` with the signature of another event: same id, invalid signature.
pub fn forge(event: &Event, sig_donor: &Event) -> Event {
    let mut forged = event.clone();
    forged.sig = sig_donor.sig;
    forged
}

/// Historic timestamps: spread over three days, with short same-second runs
/// (at most 3, below the smallest relay cap) to exercise pagination ties.
struct Clock {
    last: u64,
    run: u32,
}

impl Clock {
    fn next(&mut self, rng: &mut SplitMix64) -> u64 {
        if self.last != 0 && self.run < 3 && rng.chance(0.3) {
            self.run += 1;
            return self.last;
        }
        self.run = 1;
        self.last = START.as_secs() - rng.range(120, 3 * 86_400);
        self.last
    }
}

fn pick<T: Copy>(rng: &mut SplitMix64, items: &[T]) -> T {
    items[rng.range(0, items.len() as u64 - 1) as usize]
}

/// A relay's NIP-11 document, or none (most relays). Truthful: NIP-77 is
/// listed exactly when the relay speaks it, `max_subscriptions` is the
/// relay's real limit (LimitedSubs "states" its limit this way in some
/// seeds) or, for others, a generous figure; `max_limit` is the relay's cap.
/// Sometimes the "document" is an HTML error page. Returns the document and
/// the `max_subscriptions` it states.
fn nip11_document(
    rng: &mut SplitMix64,
    kind: RelayKind,
    nip77: bool,
    cap: usize,
    max_subs: usize,
    max_negs: usize,
) -> (Option<String>, Option<usize>) {
    if !rng.chance(0.4) {
        return (None, None);
    }
    if rng.chance(0.1) {
        return (Some("<html><body>502 Bad Gateway</body></html>".into()), None);
    }
    let nips = if nip77 { "[1,9,11,77]" } else { "[1,9,11]" };
    let mut limitation = Vec::new();
    let stated = if kind == RelayKind::LimitedSubs {
        Some(max_subs)
    } else if rng.chance(0.3) {
        Some(rng.range(20, 100) as usize)
    } else {
        None
    };
    if let Some(n) = stated {
        limitation.push(format!("\"max_subscriptions\":{n}"));
    }
    if rng.chance(0.5) {
        limitation.push(format!("\"max_limit\":{cap}"));
    }
    if max_negs > 0 && rng.chance(0.5) {
        // not a NIP-11 field: engines must ignore what they do not know
        limitation.push(format!("\"max_negentropy_sessions\":{max_negs}"));
    }
    let doc = format!("{{\"name\":\"sim\",\"supported_nips\":{nips},\"limitation\":{{{}}}}}", limitation.join(","));
    (Some(doc), stated)
}

/// FutureDated's specials: 1–6 valid events dated 1–30 years ahead, tagging
/// the world's repositories and roots (a newer announcement that would
/// delist a repository or move it elsewhere, a state, patches, comments),
/// which the engine must refuse (`invalid_created_at`) and never store.
fn future_dated(rng: &mut SplitMix64, repos: &[Repo], url: &str) -> Vec<Event> {
    let keys = key_pool();
    let mut out = Vec::new();
    for _ in 0..rng.range(1, 6) {
        let repo = &repos[rng.range(0, repos.len() as u64 - 1) as usize];
        let at = START.as_secs() + rng.range(365, 30 * 365) * 86_400 + rng.range(0, 86_399);
        let owner = &keys[repo.owner];
        let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
        let ev = match rng.range(0, 4) {
            // a newer version without our relay: accepting it would delist the repository
            0 => build(owner, 30617, &[&["d", &repo.d], &["relays", url]], "future version", at),
            1 => build(owner, 30618, &[&["d", &repo.d], &["HEAD", "ref: refs/heads/future"]], "", at),
            2 if !repo.roots.is_empty() => {
                let root = &repo.roots[rng.range(0, repo.roots.len() as u64 - 1) as usize];
                build(author, 1111, &[&["E", &root.id.to_hex()], &["K", &root.kind.as_u16().to_string()]], "future comment", at)
            }
            3 => build(owner, 30617, &[&["d", &repo.d], &["relays", OUR_RELAY, url]], "future version listing us", at),
            _ => build(author, 1617, &[&["a", &repo.addr]], "future patch", at),
        };
        out.push(ev);
    }
    out
}

/// A random subset of `0..n` of size `lo..=hi` (clamped to `n`).
fn subset(rng: &mut SplitMix64, n: usize, lo: usize, hi: usize) -> Vec<usize> {
    let want = rng.range(lo.min(n) as u64, hi.min(n) as u64) as usize;
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..idx.len()).rev() {
        let j = rng.range(0, i as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(want);
    idx.sort_unstable();
    idx
}

/// A repository as generated (for placing its events).
struct Repo {
    addr: String,
    /// Index of the owner's key in [`key_pool`], and the `d` tag.
    owner: usize,
    d: String,
    ours: bool,
    listed: Vec<usize>,
    roots: Vec<Event>,
}

/// Builds the world for `seed`.
pub fn generate(seed: u64) -> World {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_DA7A);
    let keys = key_pool();
    let n_relays = rng.range(4, 7) as usize;
    // Small pages so that tens of events already paginate. Pages (the
    // engine's limit and the relay's cap) stay above the longest same-second
    // run (3): more events in one second than a page holds cannot be paged
    // through with `until` by any client.
    let threshold = rng.range(2, 10) as usize;
    let min_page = threshold.max(4) as u64;
    let knobs = Knobs {
        threshold,
        page_limit: rng.range(min_page, 40) as usize,
        fetch_chunk: rng.range(3, 50) as usize,
        store_failure: if rng.chance(0.3) { 0.05 } else { 0.0 },
        restart: rng.chance(0.25).then(|| {
            let at = START + core::time::Duration::from_millis(rng.range(20_000, 5 * 60_000));
            let down = if rng.chance(0.6) { rng.range(1, 10 * 60) } else { rng.range(16 * 60, 20 * 60) };
            (at, core::time::Duration::from_secs(down))
        }),
        store_outage: rng.chance(0.12).then(|| {
            let at = START + core::time::Duration::from_secs(rng.range(5, 5 * 60));
            (at, core::time::Duration::from_secs(rng.range(20, 4 * 60)))
        }),
        max_unsaved: rng.chance(0.3).then(|| rng.range(10, 60) as usize),
        max_negentropy_ids: rng.chance(0.3).then(|| rng.range(600, 1000) as usize),
        // drawn apart, so adding it left every other part of the worlds as it was
        store_latency_ms: None,
        early_restart: None,
    };
    // drawn apart, so adding them left every other part of the worlds as it was
    let mut apart = SplitMix64::new(seed ^ 0x5105_70DE);
    let knobs = Knobs {
        store_latency_ms: apart.chance(0.25).then(|| apart.range(100, 3000)),
        early_restart: apart.chance(0.3).then(|| {
            let at = START + core::time::Duration::from_millis(apart.range(500, 15_000));
            (at, core::time::Duration::from_secs(apart.range(1, 60)))
        }),
        ..knobs
    };
    let mut relays: Vec<RelaySpec> = (0..n_relays)
        .map(|i| {
            let kind = if i == 0 {
                RelayKind::Nip77
            } else if rng.chance(HOSTILE_RATE) {
                pick(&mut rng, &RelayKind::HOSTILE)
            } else {
                pick(&mut rng, &RelayKind::ALL[..13])
            };
            let nip77 = match kind {
                RelayKind::Nip77
                | RelayKind::Withholding
                | RelayKind::Forged
                | RelayKind::LimitedNeg
                | RelayKind::Slow
                | RelayKind::EndlessNeg => true,
                RelayKind::ReqOnly | RelayKind::NeverEose | RelayKind::ExclusiveUntil => false,
                RelayKind::RateLimiting
                | RelayKind::Flaky
                | RelayKind::LimitedSubs
                | RelayKind::LimitZeroStored
                | RelayKind::SharedLimit
                | RelayKind::JunkFlood
                | RelayKind::NoticeStorm
                | RelayKind::ClosesLive
                | RelayKind::FutureDated
                | RelayKind::Oversized => rng.chance(0.5),
            };
            let max_subs = if kind == RelayKind::LimitedSubs { rng.range(3, 20) as usize } else { 0 };
            let max_negs = if kind == RelayKind::LimitedNeg { rng.range(1, 4) as usize } else { 0 };
            // Mostly 2–8 s late: with the network latency still below the
            // engine's 10 s NEG-OPEN timeout, so such a relay must not end
            // REQ-only. Sometimes 10–14 s: past that timeout, where SPEC §2
            // makes a relay whose lone NEG-OPEN gets no answer in time REQ-only
            // (allowed then), but flow control and completeness still hold.
            let answer_delay_ms = match kind {
                RelayKind::Slow if rng.chance(0.2) => rng.range(10_000, 14_000),
                RelayKind::Slow => rng.range(2_000, 8_000),
                _ => 0,
            };
            let cap = rng.range(min_page, 60) as usize;
            let (nip11, stated_max_subs) = nip11_document(&mut rng, kind, nip77, cap, max_subs, max_negs);
            let hostile_ticks = match kind {
                RelayKind::NoticeStorm | RelayKind::ClosesLive => {
                    // every 15–90 s from a few seconds in until 3–12 minutes
                    let until = START + core::time::Duration::from_secs(rng.range(3 * 60, HOSTILE_UNTIL.as_secs()));
                    let mut at = START + core::time::Duration::from_secs(rng.range(5, 40));
                    let mut ticks = Vec::new();
                    while at < until {
                        ticks.push(at);
                        at = at + core::time::Duration::from_secs(rng.range(15, 90));
                    }
                    ticks
                }
                _ => Vec::new(),
            };
            RelaySpec {
                url: format!("wss://r{i}.sim-relay.net"),
                kind,
                nip77,
                bootstrap: i == 0 || rng.chance(0.3),
                latency_ms: rng.range(5, 250),
                cap,
                neg_frame_limit: if rng.chance(0.5) { 4096 } else { 0 },
                bad_until: START + core::time::Duration::from_secs(rng.range(60, 180)),
                max_subs,
                max_negs,
                notice_refusals: rng.chance(0.5),
                answer_delay_ms,
                nip11,
                stated_max_subs,
                events: Vec::new(),
                withheld: BTreeSet::new(),
                forged: Vec::new(),
                junk_per_page: if kind == RelayKind::JunkFlood { rng.range(2, 16) as usize } else { 0 },
                endless_ids: if kind == RelayKind::EndlessNeg { rng.range(0, 12) as usize } else { 0 },
                future: Vec::new(),
                hostile_ticks,
                oversized_bytes: if kind == RelayKind::Oversized { (1 << 20) + rng.range(1, 4096) as usize } else { 0 },
            }
        })
        .collect();
    let mut clock = Clock { last: 0, run: 0 };
    let mut placed: Vec<BTreeSet<usize>> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let bootstrap: Vec<usize> = relays.iter().enumerate().filter(|(_, r)| r.bootstrap).map(|(i, _)| i).collect();
    // Places `ev` on some of `home` (at least one) plus, sometimes, a copy elsewhere.
    let mut place = |rng: &mut SplitMix64, ev: Event, home: &[usize], extra: &[usize]| {
        let mut at: BTreeSet<usize> = BTreeSet::new();
        for &h in home {
            if rng.chance(0.6) {
                at.insert(h);
            }
        }
        if at.is_empty() && !home.is_empty() {
            at.insert(pick(rng, home));
        }
        for &x in extra {
            if rng.chance(0.6) {
                at.insert(x);
            }
        }
        if rng.chance(0.3) {
            at.insert(rng.range(0, n_relays as u64 - 1) as usize);
        }
        events.push(ev);
        placed.push(at);
    };

    let n_repos = rng.range(2, 5);
    let mut repos: Vec<Repo> = Vec::new();
    for j in 0..n_repos {
        let owner_index = rng.range(0, keys.len() as u64 - 1) as usize;
        let owner = &keys[owner_index];
        let d = format!("repo-{j}");
        let addr = format!("30617:{}:{d}", owner.public_key().to_hex());
        let listed = subset(&mut rng, n_relays, 1, 3);
        let mut relay_tag: Vec<String> = vec!["relays".into()];
        relay_tag.extend(listed.iter().map(|&i| relays[i].url.clone()));
        let ours = rng.chance(0.75);
        if ours {
            relay_tag.push(OUR_RELAY.into());
        }
        if rng.chance(0.3) {
            relay_tag.push(GONE_RELAY.into());
        }
        if rng.chance(0.2) {
            relay_tag.push(PRIVATE_RELAY.into());
        }
        let maintainer = rng.chance(0.5).then(|| keys[rng.range(0, keys.len() as u64 - 1) as usize].public_key().to_hex());
        let versions = rng.range(1, 2);
        let t0 = clock.next(&mut rng);
        for v in 0..versions {
            let rt: Vec<&str> = relay_tag.iter().map(String::as_str).collect();
            let name = format!("repo {j}");
            let dt = ["d", d.as_str()];
            let nt = ["name", name.as_str()];
            let mut tags: Vec<&[&str]> = vec![&dt, &nt, &rt];
            let m;
            if let Some(mk) = &maintainer {
                m = ["maintainers", mk.as_str()];
                tags.push(&m);
            }
            let ev = build(owner, 30617, &tags, &format!("version {v}"), t0 + v * 1000);
            place(&mut rng, ev, &listed, &bootstrap);
        }
        for _ in 0..rng.range(0, 2) {
            let who = match rng.range(0, 2) {
                0 => owner.clone(),
                1 => maintainer.as_ref().map_or(owner.clone(), |_| keys[rng.range(0, keys.len() as u64 - 1) as usize].clone()),
                _ => keys[rng.range(0, keys.len() as u64 - 1) as usize].clone(),
            };
            let ev = build(&who, 30618, &[&["d", &d], &["HEAD", "ref: refs/heads/main"]], "", clock.next(&mut rng));
            place(&mut rng, ev, &listed, &bootstrap);
        }
        let mut roots = Vec::new();
        for _ in 0..rng.range(0, 4) {
            let kind = pick(&mut rng, &[1617u16, 1618, 1621]);
            let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
            let ev = build(author, kind, &[&["a", &addr]], "root", clock.next(&mut rng));
            roots.push(ev.clone());
            place(&mut rng, ev, &listed, &[]);
        }
        for root in &roots {
            let rid = root.id.to_hex();
            for _ in 0..rng.range(0, 3) {
                let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
                let at = clock.next(&mut rng);
                let ev = match rng.range(0, 3) {
                    0 => build(author, 1111, &[&["E", &rid], &["K", &root.kind.as_u16().to_string()]], "comment", at),
                    1 => build(author, pick(&mut rng, &[1630u16, 1631, 1632, 1633]), &[&["e", &rid]], "status", at),
                    2 => build(author, 1, &[&["q", &rid]], "quote", at),
                    _ => build(author, 1619, &[&["E", &rid]], "pr update", at),
                };
                place(&mut rng, ev, &listed, &[]);
            }
        }
        for _ in 0..rng.range(0, 2) {
            let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
            let at = clock.next(&mut rng);
            let ev = match rng.range(0, 2) {
                0 => build(author, 1985, &[&["a", &addr], &["L", "sim"]], "label", at),
                1 => build(author, 1, &[&["q", &addr]], "quote repo", at),
                _ => build(author, 1111, &[&["A", &addr]], "repo comment", at),
            };
            place(&mut rng, ev, &listed, &[]);
        }
        repos.push(Repo { addr, owner: owner_index, d, ours, listed, roots });
    }
    // Sometimes a busy repository: enough L2 events that the second relay's
    // negentropy reconciliation starts from fingerprints (several rounds) and
    // `until` pagination splits same-second pairs (more often when an
    // ExclusiveUntil relay carries it).
    let mut prestored = Vec::new();
    let exclusive = repos[0].listed.iter().any(|&i| relays[i].kind == RelayKind::ExclusiveUntil);
    if rng.chance(if exclusive { 0.7 } else { 0.3 }) {
        let (addr, listed) = (repos[0].addr.clone(), repos[0].listed.clone());
        let keep = repos[0].ours && rng.chance(0.7);
        for ev in busy_thread(&addr) {
            if keep && rng.chance(0.8) {
                prestored.push(ev.clone());
            }
            place(&mut rng, ev, &listed, &[]);
        }
    }
    // Noise: unrelated notes, comments on unknown events, events tagging unknown repositories.
    for i in 0..rng.range(3, 12) {
        let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
        let at = clock.next(&mut rng);
        let fake_root = EventId::from_byte_array([i as u8 + 1; 32]).to_hex();
        let fake_addr = format!("30617:{}:nope-{i}", author.public_key().to_hex());
        let ev = match rng.range(0, 2) {
            0 => build(author, 1, &[], &format!("noise {i}"), at),
            1 => build(author, 1111, &[&["E", &fake_root]], "orphan comment", at),
            _ => build(author, 1617, &[&["a", &fake_addr]], "patch for nobody", at),
        };
        let home = [rng.range(0, n_relays as u64 - 1) as usize];
        place(&mut rng, ev, &home, &[]);
    }
    for (ev, at) in events.iter().zip(&placed) {
        for &i in at {
            relays[i].events.push(ev.clone());
        }
    }
    // Busy relays: many announcements of repositories that do not list us
    // (L1 paginates, negentropy needs several rounds, rejections pile up).
    for r in relays.iter_mut() {
        if rng.chance(0.2) {
            let pool = noise_pool();
            let start = rng.range(0, 40) as usize;
            // more than 128 ids do not fit a 4096-byte negentropy frame
            let n = if rng.chance(0.3) { rng.range(130, 200) } else { rng.range(30, 80) } as usize;
            debug_assert!(start + n <= pool.len());
            r.events.extend(pool[start..start + n].iter().cloned());
        }
    }
    // Misbehaving relays' specials.
    for r in relays.iter_mut() {
        match r.kind {
            RelayKind::Withholding => {
                let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
                let secret = build(author, 30617, &[&["d", "withheld"], &["relays", OUR_RELAY]], "withheld", clock.next(&mut rng));
                r.withheld.insert(secret.id);
                r.events.push(secret);
                for e in &r.events {
                    if rng.chance(0.3) {
                        r.withheld.insert(e.id);
                    }
                }
            }
            RelayKind::FutureDated => r.future = future_dated(&mut rng, &repos, &r.url),
            RelayKind::Forged if !r.events.is_empty() => {
                let donor = r.events[0].clone();
                let mut forged: Vec<Event> = Vec::new();
                for e in r.events.iter().skip(1) {
                    if rng.chance(0.3) {
                        forged.push(forge(e, &donor));
                    }
                }
                let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
                let fake_ann = build(author, 30617, &[&["d", "forged"], &["relays", OUR_RELAY, &r.url]], "forged", clock.next(&mut rng));
                forged.push(forge(&fake_ann, &donor));
                if let Some(repo) = repos.first() {
                    let fake_patch = build(author, 1617, &[&["a", &repo.addr]], "forged patch", clock.next(&mut rng));
                    forged.push(forge(&fake_patch, &donor));
                }
                r.forged = forged;
            }
            _ => {}
        }
    }
    // Live publications during the first 6 virtual minutes.
    let mut live = Vec::new();
    for _ in 0..rng.range(0, 6) {
        let repo = &repos[rng.range(0, repos.len() as u64 - 1) as usize];
        let at = START + core::time::Duration::from_millis(rng.range(30_000, 6 * 60_000));
        let author = &keys[rng.range(0, keys.len() as u64 - 1) as usize];
        let ev = if repo.roots.is_empty() || rng.chance(0.4) {
            build(author, pick(&mut rng, &[1617u16, 1621]), &[&["a", &repo.addr]], "live root", at.as_secs())
        } else {
            let root = &repo.roots[rng.range(0, repo.roots.len() as u64 - 1) as usize];
            build(author, 1111, &[&["E", &root.id.to_hex()]], "live comment", at.as_secs())
        };
        let mut to = subset(&mut rng, repo.listed.len(), 1, 2).into_iter().map(|i| repo.listed[i]).collect::<Vec<_>>();
        if rng.chance(0.2) {
            to.push(rng.range(0, n_relays as u64 - 1) as usize);
        }
        to.sort_unstable();
        to.dedup();
        live.push(LiveEvent { at, event: ev, relays: to });
    }
    World { relays, live, knobs, prestored }
}

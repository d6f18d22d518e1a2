//! A simulated relay speaking NIP-01 and NIP-77 over JSON text frames.
//!
//! It answers `REQ` newest-first with `limit`/`until` and a relay-side cap
//! (so the engine must paginate), keeps subscriptions open after EOSE and
//! pushes events published later, handles `CLOSE`, and answers
//! `NEG-OPEN`/`NEG-MSG`/`NEG-CLOSE` with [`NegResponder`]. Its
//! [`RelayKind`] decides how it misbehaves; the hostile kinds also act
//! unprompted at their `hostile_ticks` ([`SimRelay::hostile_tick`]).
//!
//! It also watches the engine from the relay side ([`RelayObs`]): how many
//! historic requests (non-live subscriptions plus negentropy sessions) are
//! open at once on a connection, and whether an id is asked for by
//! `REQ {ids}` under two subscription ids of one connection; how many
//! negentropy rounds one session and how many REQs one subscription took;
//! and what the hostile kinds sent.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use nostr::filter::MatchEventOptions;
use nostr::{ClientMessage, Event, EventId, Filter, JsonUtil, RelayMessage, SubscriptionId, Timestamp};
use sync_core::rng::SplitMix64;
use sync_core::testkit::hostile;
use sync_core::testkit::NegResponder;
use sync_core::Millis;

use super::dataset::{RelayKind, RelaySpec};

/// Prefix of the engine's live subscription ids (every other one is historic).
pub const LIVE_PREFIX: &str = "live";

/// At most this many repeated-id findings are kept per relay (the count goes on).
const FINDINGS_MAX: usize = 5;

/// One open connection's state (dropped on disconnect).
#[derive(Default)]
struct Conn {
    subs: BTreeMap<String, Vec<Filter>>,
    negs: BTreeMap<String, NegResponder>,
    /// Ids asked for by `REQ {ids}` on this connection, with the first
    /// subscription that asked (requests the relay refused do not count).
    ids_requested: BTreeMap<EventId, String>,
    /// EndlessNeg: open negentropy sessions (they have no responder).
    endless: BTreeSet<String>,
    /// NEG-MSGs received per negentropy session (reset by NEG-OPEN).
    neg_rounds: BTreeMap<String, u64>,
    /// REQs received per historic subscription id.
    reqs_per_sub: BTreeMap<String, u64>,
    /// ClosesLive: live subscriptions this relay closed that the engine has
    /// not reopened (nor closed) yet, with their filters.
    closed_live: BTreeMap<String, Vec<Filter>>,
}

impl Conn {
    /// Historic requests open: non-live subscriptions plus negentropy sessions.
    fn historic_open(&self) -> usize {
        self.subs.keys().filter(|s| !s.starts_with(LIVE_PREFIX)).count() + self.negs.len() + self.endless.len()
    }
}

/// What a relay saw of the engine over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayObs {
    /// Most historic requests open at once on one connection.
    pub max_historic_open: usize,
    /// Most live subscriptions open at once on one connection.
    pub max_live_open: usize,
    /// Most subscriptions (live and historic) the engine wanted open at once
    /// on one connection: those open plus the new one of each `REQ`, refused or not.
    pub max_subs_wanted: usize,
    /// "Too many" refusals sent (LimitedSubs / LimitedNeg).
    pub refusals: u64,
    /// ExclusiveUntil: stored events at exactly a REQ's `until` second that
    /// its exclusive reading left out (a NIP-01 relay would have sent them).
    pub exclusive_until_skips: u64,
    /// Ids asked for by `REQ {ids}` under a second subscription id of one connection.
    pub repeated_ids: u64,
    /// The first few of those, described.
    pub repeated_findings: Vec<String>,
    /// Connections accepted.
    pub connections: u64,
    /// Most NEG-MSGs received under one negentropy session.
    pub max_neg_rounds: u64,
    /// Most REQs received under one historic subscription id on one connection.
    pub max_reqs_per_sub: u64,
    /// JunkFlood: junk events sent.
    pub junk_sent: u64,
    /// EndlessNeg: endless negentropy messages sent.
    pub endless_msgs: u64,
    /// NoticeStorm: unprompted NOTICEs sent.
    pub storm_notices: u64,
    /// ClosesLive: live subscriptions closed by the relay.
    pub live_closed: u64,
    /// ClosesLive: live subscriptions the engine opened again after a close.
    pub live_reopened: u64,
    /// ClosesLive: events published while one of its closed live
    /// subscriptions (whose filters match them) was not reopened yet.
    pub published_while_closed: Vec<EventId>,
    /// Oversized: frames over the engine's limit sent.
    pub oversized_sent: u64,
    /// NEG-MSG frames sent (answers to NEG-OPEN or NEG-MSG).
    pub neg_msgs_sent: u64,
}

/// A simulated relay.
pub struct SimRelay {
    /// Configuration.
    pub spec: RelaySpec,
    /// What it stores (forged copies replace valid ones with the same id),
    /// with each event's JSON serialised once, when first sent.
    events: BTreeMap<EventId, (Event, OnceCell<String>)>,
    conn: Option<Conn>,
    rng: SplitMix64,
    /// Frames received over the whole run (for debugging output).
    pub frames_in: u64,
    /// Relay-side observations of the engine.
    pub obs: RelayObs,
    /// Hostile answers sent (salts junk and endless negentropy ids).
    hostile_answers: u64,
    /// Per-relay salt of those.
    salt: u64,
    /// Oversized: the padding of its oversized frames, built once.
    padding: OnceCell<String>,
}

impl SimRelay {
    /// A relay with its initial content.
    pub fn new(spec: RelaySpec, seed: u64) -> Self {
        let mut events = BTreeMap::new();
        for e in spec.events.iter().chain(spec.forged.iter()).chain(spec.future.iter()) {
            events.insert(e.id, (e.clone(), OnceCell::new()));
        }
        Self {
            spec,
            events,
            conn: None,
            rng: SplitMix64::new(seed),
            frames_in: 0,
            obs: RelayObs::default(),
            hostile_answers: 0,
            salt: seed << 20,
            padding: OnceCell::new(),
        }
    }

    /// Does the relay accept a connection at `now`?
    pub fn accepts_connection(&mut self, now: Millis) -> bool {
        !(self.spec.kind == RelayKind::Flaky && now < self.spec.bad_until && self.rng.chance(0.6))
    }

    /// When a flaky relay in its bad period drops a connection opened at `now`.
    pub fn drop_at(&mut self, now: Millis) -> Option<Millis> {
        if self.spec.kind != RelayKind::Flaky || now >= self.spec.bad_until {
            return None;
        }
        let at = now + core::time::Duration::from_millis(self.rng.range(1_000, 120_000));
        (at < self.spec.bad_until).then_some(at)
    }

    /// Live subscriptions this relay closed on the open connection that the
    /// engine has neither reopened nor closed yet.
    pub fn closed_live_pending(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.closed_live.len())
    }

    /// A new connection is open.
    pub fn open(&mut self) {
        self.conn = Some(Conn::default());
        self.obs.connections += 1;
    }

    /// The connection is gone (either side closed it).
    pub fn close(&mut self) {
        self.conn = None;
    }

    fn visible(&self, e: &Event) -> bool {
        !self.spec.withheld.contains(&e.id)
    }

    /// Stores a published event; returns frames for open subscriptions it matches.
    pub fn publish(&mut self, event: Event) -> Vec<String> {
        self.events.insert(event.id, (event.clone(), OnceCell::new()));
        let Some(conn) = &self.conn else { return Vec::new() };
        if self.spec.withheld.contains(&event.id) {
            return Vec::new();
        }
        let opts = MatchEventOptions::new();
        if conn.closed_live.values().any(|fs| fs.iter().any(|f| f.match_event(&event, opts))) {
            self.obs.published_while_closed.push(event.id);
        }
        conn.subs
            .iter()
            .filter(|(_, fs)| fs.iter().any(|f| f.match_event(&event, opts)))
            .map(|(sub, _)| RelayMessage::event(SubscriptionId::new(sub), event.clone()).as_json())
            .collect()
    }

    /// Unprompted frames at one of the relay's `hostile_ticks` (only while connected).
    pub fn hostile_tick(&mut self) -> Vec<String> {
        let Some(conn) = self.conn.as_mut() else { return Vec::new() };
        match self.spec.kind {
            RelayKind::NoticeStorm => {
                const NOTICES: [&str; 10] = [
                    "rate-limited: slow down",
                    "ERROR: too many concurrent REQs",
                    "error: too many concurrent NEG requests",
                    "maximum subscriptions reached",
                    "error: internal error",
                    "auth-required: we only serve members",
                    "restricted: read access denied",
                    "",
                    "<html><body>503</body></html>",
                    "NOTICE",
                ];
                let n = self.rng.range(3, 10);
                self.obs.storm_notices += n;
                (0..n).map(|_| RelayMessage::notice(NOTICES[self.rng.range(0, NOTICES.len() as u64 - 1) as usize]).as_json()).collect()
            }
            RelayKind::ClosesLive => {
                const REASONS: [&str; 4] = [
                    "error: subscription expired",
                    "error: shutting down idle subscriptions",
                    "error: internal error",
                    "error: relay restarting",
                ];
                let live: Vec<String> = conn.subs.keys().filter(|s| s.starts_with(LIVE_PREFIX)).cloned().collect();
                let mut out = Vec::new();
                for (i, sub) in live.iter().enumerate() {
                    // most of them, at least the first
                    if i > 0 && !self.rng.chance(0.7) {
                        continue;
                    }
                    let filters = conn.subs.remove(sub).expect("listed");
                    conn.closed_live.insert(sub.clone(), filters);
                    let why = REASONS[self.rng.range(0, REASONS.len() as u64 - 1) as usize];
                    out.push(RelayMessage::closed(SubscriptionId::new(sub), why).as_json());
                }
                self.obs.live_closed += out.len() as u64;
                out
            }
            _ => Vec::new(),
        }
    }

    /// Handles one client frame at `now`; returns the answer frames in order.
    pub fn on_frame(&mut self, text: &str, now: Millis) -> Vec<String> {
        self.frames_in += 1;
        if self.conn.is_none() {
            return Vec::new();
        }
        let msg = match ClientMessage::from_json(text) {
            Ok(m) => m,
            Err(e) => return vec![RelayMessage::notice(format!("error: bad frame: {e}")).as_json()],
        };
        match msg {
            ClientMessage::Req { subscription_id, filters } => {
                let filters: Vec<Filter> = filters.into_iter().map(|f| f.into_owned()).collect();
                self.on_req(subscription_id.into_owned(), filters, now)
            }
            ClientMessage::Close(sub) => {
                if let Some(c) = self.conn.as_mut() {
                    c.subs.remove(sub.as_str());
                    c.closed_live.remove(sub.as_str());
                }
                Vec::new()
            }
            ClientMessage::NegOpen { subscription_id, filter, initial_message, .. } => {
                self.on_neg_open(subscription_id.into_owned(), filter.into_owned(), &initial_message)
            }
            ClientMessage::NegMsg { subscription_id, message } => {
                let sub = subscription_id.into_owned();
                if let Some(c) = self.conn.as_mut() {
                    let n = c.neg_rounds.entry(sub.as_str().to_string()).or_default();
                    *n += 1;
                    self.obs.max_neg_rounds = self.obs.max_neg_rounds.max(*n);
                }
                if self.conn.as_ref().is_some_and(|c| c.endless.contains(sub.as_str())) {
                    return vec![self.endless_msg(&sub)];
                }
                let Some(neg) = self.conn.as_mut().and_then(|c| c.negs.get_mut(sub.as_str())) else {
                    return vec![neg_err(&sub, "closed: no such negentropy session")];
                };
                match neg.reconcile(&message) {
                    Ok(hex) => {
                        self.obs.neg_msgs_sent += 1;
                        vec![neg_msg(&sub, hex)]
                    }
                    Err(e) => {
                        // NEG-ERR ends the session (NIP-77)
                        if let Some(c) = self.conn.as_mut() {
                            c.negs.remove(sub.as_str());
                        }
                        vec![neg_err(&sub, &format!("error: {e}"))]
                    }
                }
            }
            ClientMessage::NegClose { subscription_id } => {
                if let Some(c) = self.conn.as_mut() {
                    c.negs.remove(subscription_id.as_str());
                    c.endless.remove(subscription_id.as_str());
                }
                Vec::new()
            }
            ClientMessage::Event(e) => vec![RelayMessage::ok(e.id, false, "blocked: read-only simulated relay").as_json()],
            _ => vec![RelayMessage::notice("error: unsupported message").as_json()],
        }
    }

    fn on_req(&mut self, sub: SubscriptionId, filters: Vec<Filter>, now: Millis) -> Vec<String> {
        if self.spec.kind == RelayKind::RateLimiting && self.rng.chance(0.15) {
            return vec![RelayMessage::closed(sub, "rate-limited: slow down").as_json()];
        }
        let Some(conn) = self.conn.as_mut() else { return Vec::new() };
        if conn.closed_live.remove(sub.as_str()).is_some() {
            self.obs.live_reopened += 1;
        }
        if !sub.as_str().starts_with(LIVE_PREFIX) {
            let n = conn.reqs_per_sub.entry(sub.as_str().to_string()).or_default();
            *n += 1;
            self.obs.max_reqs_per_sub = self.obs.max_reqs_per_sub.max(*n);
        }
        let wanted = conn.subs.len() + usize::from(!conn.subs.contains_key(sub.as_str()));
        self.obs.max_subs_wanted = self.obs.max_subs_wanted.max(wanted);
        // Re-using an open subscription id replaces that subscription.
        if self.spec.max_subs > 0 && !conn.subs.contains_key(sub.as_str()) && conn.subs.len() >= self.spec.max_subs {
            self.obs.refusals += 1;
            return vec![if self.spec.notice_refusals {
                RelayMessage::notice("ERROR: too many concurrent REQs").as_json()
            } else {
                RelayMessage::closed(sub, "error: too many concurrent REQs").as_json()
            }];
        }
        if self.spec.kind.honest() {
            for id in filters.iter().filter_map(|f| f.ids.as_ref()).flatten() {
                match conn.ids_requested.get(id) {
                    Some(first) if first != sub.as_str() => {
                        self.obs.repeated_ids += 1;
                        if self.obs.repeated_findings.len() < FINDINGS_MAX {
                            self.obs.repeated_findings.push(format!(
                                "id {id} asked for by REQ {{ids}} under `{first}` and again under `{}` on connection {}",
                                sub.as_str(),
                                self.obs.connections
                            ));
                        }
                    }
                    Some(_) => {}
                    None => {
                        conn.ids_requested.insert(*id, sub.as_str().to_string());
                    }
                }
            }
        }
        let (mut out, skipped) = self.answer(&sub, &filters);
        self.obs.exclusive_until_skips += skipped;
        if !sub.as_str().starts_with(LIVE_PREFIX) {
            out.extend(self.hostile_extras(&sub, &filters, now));
        }
        if self.spec.kind != RelayKind::NeverEose {
            out.push(RelayMessage::eose(sub.clone()).as_json());
        }
        if let Some(c) = self.conn.as_mut() {
            c.subs.insert(sub.as_str().to_string(), filters);
            self.obs.max_historic_open = self.obs.max_historic_open.max(c.historic_open());
            let live = c.subs.keys().filter(|s| s.starts_with(LIVE_PREFIX)).count();
            self.obs.max_live_open = self.obs.max_live_open.max(live);
        }
        out
    }

    /// The stored events a REQ gets (EOSE follows, unless NeverEose); and, for
    /// ExclusiveUntil, how many events at an `until` second it left out.
    fn answer(&self, sub: &SubscriptionId, filters: &[Filter]) -> (Vec<String>, u64) {
        let opts = MatchEventOptions::new();
        let kind = self.spec.kind;
        let mut skipped = 0;
        if kind == RelayKind::ExclusiveUntil {
            for f in filters.iter().filter(|f| f.until.is_some()) {
                let until = f.until;
                skipped +=
                    self.events.values().filter(|(e, _)| self.visible(e) && Some(e.created_at) == until && f.match_event(e, opts)).count()
                        as u64;
            }
        }
        let mut out = Vec::new();
        let mut sent: BTreeSet<EventId> = BTreeSet::new();
        let serve = |f: &Filter| -> (Filter, usize) {
            let mut f = f.clone();
            if kind == RelayKind::ExclusiveUntil {
                // `created_at < until` instead of NIP-01's `<=`
                f.until = f.until.map(|u| Timestamp::from(u.as_secs().saturating_sub(1)));
            }
            if kind == RelayKind::LimitZeroStored && f.limit == Some(0) {
                f.limit = None;
            }
            let limit = f.limit.unwrap_or(usize::MAX).min(self.spec.cap);
            (f, limit)
        };
        let newest_first = |a: &&(Event, OnceCell<String>), b: &&(Event, OnceCell<String>)| {
            sync_core::nip01::newest_first(a.0.created_at.as_secs(), &a.0.id, b.0.created_at.as_secs(), &b.0.id)
        };
        if kind == RelayKind::SharedLimit {
            // one limit (the smallest asked, capped) over the union of the filters
            let served: Vec<(Filter, usize)> = filters.iter().map(serve).collect();
            let limit = served.iter().map(|(_, l)| *l).min().unwrap_or(0);
            let mut matching: Vec<&(Event, OnceCell<String>)> =
                self.events.values().filter(|(e, _)| self.visible(e) && served.iter().any(|(f, _)| f.match_event(e, opts))).collect();
            matching.sort_by(newest_first);
            for (e, json) in matching.into_iter().take(limit) {
                out.push(event_frame(sub, e, json.get_or_init(|| e.as_json())));
            }
        } else {
            for f in filters {
                let (f, limit) = serve(f);
                let mut matching: Vec<&(Event, OnceCell<String>)> =
                    self.events.values().filter(|(e, _)| self.visible(e) && f.match_event(e, opts)).collect();
                matching.sort_by(newest_first);
                for (e, json) in matching.into_iter().take(limit) {
                    if sent.insert(e.id) {
                        out.push(event_frame(sub, e, json.get_or_init(|| e.as_json())));
                    }
                }
            }
        }
        (out, skipped)
    }

    /// What a hostile relay adds to a historic REQ answer: junk events
    /// matching each filter (JunkFlood), an oversized frame (Oversized).
    /// `REQ {ids}` gets none (no fresh id can match it).
    fn hostile_extras(&mut self, sub: &SubscriptionId, filters: &[Filter], now: Millis) -> Vec<String> {
        if filters.iter().any(|f| f.ids.is_some()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match self.spec.kind {
            RelayKind::JunkFlood => {
                for f in filters {
                    self.hostile_answers += 1;
                    let until = f.until.unwrap_or(Timestamp::from(now.as_secs()));
                    let junk = hostile::junk_matching(f, until, self.spec.junk_per_page, self.salt + self.hostile_answers);
                    self.obs.junk_sent += junk.len() as u64;
                    out.extend(junk.into_iter().map(|e| RelayMessage::event(sub.clone(), e).as_json()));
                }
            }
            RelayKind::Oversized if self.rng.chance(0.4) => {
                self.hostile_answers += 1;
                let size = self.spec.oversized_bytes;
                let padding = self.padding.get_or_init(|| "x".repeat(size));
                let id = format!("{:064x}", self.salt + self.hostile_answers);
                out.push(format!(
                    "[\"EVENT\",\"{}\",{{\"id\":\"{id}\",\"pubkey\":\"{id}\",\"created_at\":{},\"kind\":1617,\"tags\":[],\"content\":\"{padding}\",\"sig\":\"{id}{id}\"}}]",
                    sub.as_str(),
                    now.as_secs()
                ));
                self.obs.oversized_sent += 1;
            }
            _ => {}
        }
        out
    }

    /// EndlessNeg's answer to NEG-OPEN and every NEG-MSG: fresh ids it never
    /// serves and a fingerprint that never matches.
    fn endless_msg(&mut self, sub: &SubscriptionId) -> String {
        self.hostile_answers += 1;
        self.obs.endless_msgs += 1;
        self.obs.neg_msgs_sent += 1;
        neg_msg(sub, endless_negentropy_message(self.salt + self.hostile_answers, self.spec.endless_ids))
    }

    fn on_neg_open(&mut self, sub: SubscriptionId, filter: Filter, init: &str) -> Vec<String> {
        if !self.spec.nip77 {
            return vec![RelayMessage::notice("ERROR: negentropy is not supported").as_json()];
        }
        if self.spec.kind == RelayKind::RateLimiting && self.rng.chance(0.15) {
            return vec![neg_err(&sub, "rate-limited: slow down")];
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.neg_rounds.remove(sub.as_str());
            if self.spec.kind == RelayKind::EndlessNeg && self.rng.chance(0.6) {
                conn.negs.remove(sub.as_str());
                conn.endless.insert(sub.as_str().to_string());
                self.obs.max_historic_open = self.obs.max_historic_open.max(conn.historic_open());
                return vec![self.endless_msg(&sub)];
            }
            conn.endless.remove(sub.as_str());
            // NEG-OPEN under an open session's id replaces it (NIP-77)
            if conn.negs.remove(sub.as_str()).is_none() && self.spec.max_negs > 0 && conn.negs.len() >= self.spec.max_negs {
                self.obs.refusals += 1;
                return vec![if self.spec.notice_refusals {
                    RelayMessage::notice("ERROR: too many concurrent NEG requests").as_json()
                } else {
                    neg_err(&sub, "error: too many concurrent NEG requests")
                }];
            }
        }
        let opts = MatchEventOptions::new();
        let mut f = filter;
        f.limit = None;
        // Negentropy advertises everything, withheld ids included.
        let items: Vec<_> = self.events.values().filter(|(e, _)| f.match_event(e, opts)).map(|(e, _)| (e.id, e.created_at)).collect();
        let mut neg = match NegResponder::new(&items, self.spec.neg_frame_limit) {
            Ok(n) => n,
            Err(e) => return vec![neg_err(&sub, &format!("error: {e}"))],
        };
        match neg.reconcile(init) {
            Ok(hex) => {
                if let Some(c) = self.conn.as_mut() {
                    c.negs.insert(sub.as_str().to_string(), neg);
                    self.obs.max_historic_open = self.obs.max_historic_open.max(c.historic_open());
                }
                self.obs.neg_msgs_sent += 1;
                vec![neg_msg(&sub, hex)]
            }
            Err(e) => vec![neg_err(&sub, &format!("error: {e}"))],
        }
    }
}

/// Mirrors `testkit::hostile::endless_negentropy_message` (hex-encoded
/// faster: the simulation sends tens of thousands): a NEG-MSG reporting
/// `ids` fresh ids below timestamp 1000 and a fingerprint mismatch above.
pub fn endless_negentropy_message(round: u64, ids: usize) -> String {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        let mut groups = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n > 0 {
            groups.push((n & 0x7f) as u8 | 0x80);
            n >>= 7;
        }
        out.extend(groups.iter().rev());
    }
    let mut out = vec![0x61u8]; // protocol version 1
                                // range 1: up to timestamp 1000, an id list
    varint(&mut out, 1001);
    varint(&mut out, 0);
    varint(&mut out, 2);
    varint(&mut out, ids as u64);
    for i in 0..ids as u64 {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&round.to_be_bytes());
        id[8..16].copy_from_slice(&i.to_be_bytes());
        id[31] = 0x5a;
        out.extend_from_slice(&id);
    }
    // range 2: up to infinity, a fingerprint that never matches
    varint(&mut out, 0);
    varint(&mut out, 0);
    varint(&mut out, 1);
    let mut fp = [0xeeu8; 16];
    fp[..8].copy_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&fp);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(out.len() * 2);
    for b in out {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// `["EVENT", sub, event]` from the event's cached JSON when the
/// subscription id needs no escaping (the engine's never do).
fn event_frame(sub: &SubscriptionId, event: &Event, event_json: &str) -> String {
    let id = sub.as_str();
    if id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        format!("[\"EVENT\",\"{id}\",{event_json}]")
    } else {
        RelayMessage::event(sub.clone(), event.clone()).as_json()
    }
}

fn neg_msg(sub: &SubscriptionId, hex: String) -> String {
    RelayMessage::NegMsg { subscription_id: std::borrow::Cow::Owned(sub.clone()), message: std::borrow::Cow::Owned(hex) }.as_json()
}

fn neg_err(sub: &SubscriptionId, reason: &str) -> String {
    RelayMessage::NegErr { subscription_id: std::borrow::Cow::Owned(sub.clone()), message: std::borrow::Cow::Owned(reason.to_string()) }
        .as_json()
}

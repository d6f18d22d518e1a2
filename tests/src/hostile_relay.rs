//! A relay that misbehaves on purpose, for the hostile-relay soak (a GRASP
//! server syncs from relays anyone can run, so every bound of the engine
//! must hold against one that attacks it): a real WebSocket server on
//! 127.0.0.1 (tokio-tungstenite) that speaks just enough NIP-01/NIP-77 to be
//! synced from, and abuses every answer. Behaviours, each
//! switchable in [`Modes`] (all on by default in [`Modes::all`]):
//!
//! - **junk**: malformed frames — truncated JSON, non-arrays, wrong arity,
//!   wrong types, 5,000-deep nesting, 100 kB subscription ids, numbers out
//!   of range, binary frames, bad hex in `NEG-MSG`, a negentropy message
//!   claiming 2^34 ids — for open and invented subscriptions, in answer to
//!   every REQ and on a timer (a flood);
//! - **forged**: events with invalid signatures or with ids that do not
//!   match their content — forged copies of the *real* events (the ones the
//!   good relays serve, passed in at start), events for every id asked for in
//!   `REQ {ids}`, events for subscriptions never opened and after `CLOSE`;
//! - **oversized**: a text frame of `oversized_bytes` (4 MiB by default,
//!   an EVENT with a huge content and a forged id) every `oversized_every`,
//!   the first that long into the connection (a client that drops the
//!   connection on it still gets exposed to the rest first);
//! - **endless negentropy**: every `NEG-OPEN`/`NEG-MSG` (even for a closed
//!   session) is answered with a fresh `NEG-MSG` that claims ids the client
//!   lacks (real ids matching the session's filter plus random ones) and a
//!   random fingerprint over the rest of the range, so reconciliation never
//!   converges; every other session claims `neg_ids_per_round` ids a round
//!   (large id lists), the others 1/50 of that (many cheap rounds);
//! - **NOTICE storm**: bursts of `NOTICE`s that sound like rate limits,
//!   auth, "too many" and "negentropy not supported", plus `CLOSED` for
//!   invented and open subscriptions and `AUTH` challenges; a
//!   "rate-limited:" NOTICE every `rate_limit_every`;
//! - **never EOSE**: no `EOSE` ever ends a REQ (but with `eose_for_ids`
//!   fetches by id are ended, so negentropy's fetch queue drains);
//!
//! The junk, forged and NOTICE floods fire every `flood_interval` from
//! `quiet_start` into each connection, so the first answers (to NEG-OPEN in
//! particular) are not drowned and negentropy gets used.
//!
//! A plain HTTP GET gets a NIP-11 document claiming NIP-77. Every kind of
//! frame sent is counted ([`HostileStats`]) so a soak can report what the
//! daemon was exposed to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use nostr::filter::MatchEventOptions;
use nostr::{Event, Filter, JsonUtil};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Which bad behaviours are on.
#[derive(Debug, Clone, Copy)]
pub struct Modes {
    /// Malformed frames, in answers and on the flood timer.
    pub junk: bool,
    /// Events with invalid signatures / mismatched ids.
    pub forged: bool,
    /// An `oversized_bytes` frame answering a REQ, at most once per `oversized_every`.
    pub oversized: bool,
    /// Size of the oversized frame.
    pub oversized_bytes: usize,
    /// Spacing of oversized frames (the first comes this long into a connection).
    pub oversized_every: Duration,
    /// Never-converging negentropy.
    pub endless_negentropy: bool,
    /// Ids claimed in each negentropy answer.
    pub neg_ids_per_round: usize,
    /// NOTICE (and stray CLOSED/AUTH) bursts on the flood timer.
    pub notice_storm: bool,
    /// No EOSE, ever.
    pub never_eose: bool,
    /// With `never_eose`, still end `REQ {ids}` fetches (after their
    /// forgeries) with EOSE: the client's fetch queue then drains and the
    /// endless negentropy rounds go on instead of stalling behind it.
    pub eose_for_ids: bool,
    /// How often the flood timer fires per connection.
    pub flood_interval: Duration,
    /// The storm's "rate-limited:" NOTICE comes this often (the first this
    /// long into a connection): more often would only keep a polite client
    /// paused, and so away from everything else.
    pub rate_limit_every: Duration,
    /// Floods start this long into a connection.
    pub quiet_start: Duration,
    /// Frames of each enabled kind per flood tick.
    pub flood_burst: usize,
}

impl Modes {
    /// Every behaviour on: 4 MiB frames every 8 s, 5,000 ids (a 320 kB
    /// frame) per negentropy round, a burst of 10 frames of each kind every
    /// 100 ms from 1 s into each connection, "rate-limited:" every 3 s.
    pub fn all() -> Self {
        Self {
            junk: true,
            forged: true,
            oversized: true,
            oversized_bytes: 4 << 20,
            oversized_every: Duration::from_secs(8),
            endless_negentropy: true,
            neg_ids_per_round: 5_000,
            notice_storm: true,
            never_eose: true,
            eose_for_ids: true,
            flood_interval: Duration::from_millis(100),
            rate_limit_every: Duration::from_secs(3),
            quiet_start: Duration::from_secs(1),
            flood_burst: 10,
        }
    }

    /// Nothing bad: answers REQs with EOSE and NEG-OPENs with NEG-ERR.
    pub fn none() -> Self {
        Self {
            junk: false,
            forged: false,
            oversized: false,
            oversized_bytes: 0,
            oversized_every: Duration::from_secs(3600),
            endless_negentropy: false,
            neg_ids_per_round: 0,
            notice_storm: false,
            never_eose: false,
            eose_for_ids: true,
            flood_interval: Duration::from_secs(3600),
            rate_limit_every: Duration::from_secs(3600),
            quiet_start: Duration::from_secs(3600),
            flood_burst: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    nip11: AtomicU64,
    frames_in: AtomicU64,
    reqs: AtomicU64,
    neg_opens: AtomicU64,
    neg_msgs_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    junk: AtomicU64,
    forged: AtomicU64,
    oversized: AtomicU64,
    notices: AtomicU64,
    neg_msgs_out: AtomicU64,
    ids_claimed: AtomicU64,
    eose: AtomicU64,
}

/// What the relay did so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostileStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// NIP-11 documents served.
    pub nip11: u64,
    /// Text frames received.
    pub frames_in: u64,
    /// REQs received.
    pub reqs: u64,
    /// NEG-OPENs received.
    pub neg_opens: u64,
    /// NEG-MSGs received.
    pub neg_msgs_in: u64,
    /// Frames sent (all kinds).
    pub frames_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Malformed frames sent.
    pub junk: u64,
    /// Forged events sent.
    pub forged: u64,
    /// Oversized frames sent.
    pub oversized: u64,
    /// NOTICE / stray CLOSED / AUTH frames sent.
    pub notices: u64,
    /// NEG-MSGs sent.
    pub neg_msgs_out: u64,
    /// Ids claimed in NEG-MSGs.
    pub ids_claimed: u64,
    /// EOSEs sent (0 with `never_eose`).
    pub eose: u64,
}

impl Counters {
    fn snapshot(&self) -> HostileStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HostileStats {
            connections: l(&self.connections),
            nip11: l(&self.nip11),
            frames_in: l(&self.frames_in),
            reqs: l(&self.reqs),
            neg_opens: l(&self.neg_opens),
            neg_msgs_in: l(&self.neg_msgs_in),
            frames_out: l(&self.frames_out),
            bytes_out: l(&self.bytes_out),
            junk: l(&self.junk),
            forged: l(&self.forged),
            oversized: l(&self.oversized),
            notices: l(&self.notices),
            neg_msgs_out: l(&self.neg_msgs_out),
            ids_claimed: l(&self.ids_claimed),
            eose: l(&self.eose),
        }
    }
}

/// The hostile relay; stops (and cuts every connection) when dropped.
pub struct HostileRelay {
    /// Listening port.
    pub port: u16,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl HostileRelay {
    /// Listens on 127.0.0.1:`port` (0: a free one). `real` are genuine
    /// events (what the good relays serve) to forge copies of; `seed` makes
    /// the junk reproducible.
    pub async fn start(port: u16, modes: Modes, real: Vec<Event>, seed: u64) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("hostile relay listens");
        let port = listener.local_addr().expect("local addr").port();
        let counters = Arc::new(Counters::default());
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let real = Arc::new(real);
        let (c, t) = (Arc::clone(&counters), Arc::clone(&tasks));
        let accept = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                n += 1;
                let _ = tcp.set_nodelay(true);
                let conn = tokio::spawn(serve(tcp, modes, Arc::clone(&real), Arc::clone(&c), seed ^ n.wrapping_mul(0x9e37_79b9)));
                if let Ok(mut tasks) = t.lock() {
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(conn);
                }
            }
        });
        tasks.lock().expect("tasks").push(accept);
        Self { port, counters, tasks }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Counts so far.
    pub fn stats(&self) -> HostileStats {
        self.counters.snapshot()
    }

    /// Stops listening and cuts every connection.
    pub fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

impl Drop for HostileRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Not hostile, just slow: a pass-through WebSocket proxy (NIP-77 included)
/// that delays every relay→client frame by `delay_us` (accumulated and slept
/// in steps of at least 2 ms), to stretch a sync over seconds or let a
/// hostile relay answer before the good ones.
pub struct SlowProxy {
    /// Listening port.
    pub port: u16,
    task: JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a free 127.0.0.1 port in front of `upstream` (a `ws://` URL).
    pub async fn start(upstream: &str, delay_us: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("slow proxy listens");
        let port = listener.local_addr().expect("local addr").port();
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(slow_conn(tcp, upstream.clone(), delay_us));
            }
        });
        Self { port, task }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn slow_conn(tcp: TcpStream, upstream: String, delay_us: u64) {
    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else { return };
    let (mut ctx, mut crx) = client.split();
    let (mut utx, mut urx) = up.split();
    let mut debt_us = 0u64;
    loop {
        tokio::select! {
            m = crx.next() => match m {
                Some(Ok(m @ Message::Text(_))) => if utx.send(m).await.is_err() { break },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            m = urx.next() => match m {
                Some(Ok(m @ Message::Text(_))) => {
                    debt_us += delay_us;
                    if debt_us >= 2_000 {
                        tokio::time::sleep(Duration::from_micros(debt_us)).await;
                        debt_us = 0;
                    }
                    if ctx.send(m).await.is_err() { break }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// SplitMix64: small, seedable, good enough for junk.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// `n` random bytes as lowercase hex.
    pub fn hex(&mut self, n: usize) -> String {
        hex(&self.bytes(n))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Largest HTTP request head we look at.
const MAX_HEAD: usize = 8192;

/// NIP-11: claims NIP-77 so the daemon tries negentropy with us.
const NIP11: &str =
    r#"{"name":"hostile","description":"misbehaves on purpose","supported_nips":[1,11,77],"limitation":{"max_subscriptions":1000}}"#;

async fn serve(mut tcp: TcpStream, modes: Modes, real: Arc<Vec<Event>>, c: Arc<Counters>, seed: u64) {
    let Some(head) = peek_head(&tcp).await else { return };
    let lower = head.to_ascii_lowercase();
    if !lower.lines().any(|l| l.starts_with("upgrade:") && l.contains("websocket")) {
        let mut sink = vec![0u8; head.len()];
        let _ = tcp.read_exact(&mut sink).await;
        c.nip11.fetch_add(1, Ordering::Relaxed);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{NIP11}",
            NIP11.len()
        );
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return;
    }
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20)).max_frame_size(Some(64 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
    c.connections.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = ws.split();
    let mut conn = Conn {
        modes,
        real,
        rng: Rng::new(seed),
        subs: Vec::new(),
        negs: HashMap::new(),
        neg_count: 0,
        last_oversized: Instant::now(),
        last_rate_limit: Instant::now(),
        big: None,
    };
    let mut flood = tokio::time::interval_at(tokio::time::Instant::now() + modes.quiet_start, modes.flood_interval);
    flood.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let out: Vec<(Kind, Message)> = tokio::select! {
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    c.frames_in.fetch_add(1, Ordering::Relaxed);
                    conn.answer(t.as_str(), &c)
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => Vec::new(),
            },
            _ = flood.tick() => conn.flood(),
        };
        for (kind, m) in out {
            let counter = match kind {
                Kind::Junk => Some(&c.junk),
                Kind::Forged => Some(&c.forged),
                Kind::Oversized => Some(&c.oversized),
                Kind::Notice => Some(&c.notices),
                Kind::NegMsg => Some(&c.neg_msgs_out),
                Kind::Eose => Some(&c.eose),
                Kind::Other => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            c.frames_out.fetch_add(1, Ordering::Relaxed);
            c.bytes_out.fetch_add(m.len() as u64, Ordering::Relaxed);
            if tx.feed(m).await.is_err() {
                return;
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
    }
}

/// The request head (up to the blank line), without consuming it.
async fn peek_head(tcp: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; MAX_HEAD];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, tcp.peek(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end + 4]).into_owned());
        }
        if n == MAX_HEAD {
            return None;
        }
        if n == last {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        last = n;
    }
}

/// What a sent frame counts as.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Junk,
    Forged,
    Oversized,
    Notice,
    NegMsg,
    Eose,
    Other,
}

/// State of one connection.
struct Conn {
    modes: Modes,
    real: Arc<Vec<Event>>,
    rng: Rng,
    /// Subscriptions opened (newest last, bounded).
    subs: Vec<String>,
    /// Negentropy sessions and their filters.
    negs: HashMap<String, (Option<Filter>, bool)>,
    /// NEG-OPENs so far (the 1st, 3rd, … sessions get the large id lists).
    neg_count: u64,
    /// When the last oversized frame went out (the connection's start at first).
    last_oversized: Instant,
    /// When the last "rate-limited:" NOTICE went out.
    last_rate_limit: Instant,
    /// The oversized content, built once.
    big: Option<String>,
}

impl Conn {
    fn answer(&mut self, text: &str, c: &Counters) -> Vec<(Kind, Message)> {
        let Ok(serde_json::Value::Array(arr)) = serde_json::from_str::<serde_json::Value>(text) else { return Vec::new() };
        let cmd = arr.first().and_then(|v| v.as_str()).unwrap_or("");
        let sub = arr.get(1).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let mut out = Vec::new();
        match cmd {
            "REQ" => {
                c.reqs.fetch_add(1, Ordering::Relaxed);
                let filters: Vec<Filter> = arr[2..].iter().filter_map(|f| Filter::from_json(f.to_string()).ok()).collect();
                if !self.subs.contains(&sub) {
                    self.subs.push(sub.clone());
                    if self.subs.len() > 512 {
                        self.subs.remove(0);
                    }
                }
                if self.modes.oversized && self.last_oversized.elapsed() >= self.modes.oversized_every {
                    self.last_oversized = Instant::now();
                    out.push((Kind::Oversized, self.oversized(&sub, &filters)));
                }
                if self.modes.forged {
                    for f in &filters {
                        out.extend(self.forgeries_for(&sub, f));
                    }
                }
                if self.modes.junk {
                    for _ in 0..3 {
                        let j = self.junk(&sub);
                        out.push((Kind::Junk, j));
                    }
                }
                let fetch = !filters.is_empty() && filters.iter().all(|f| f.ids.is_some());
                if !self.modes.never_eose || (fetch && self.modes.eose_for_ids) {
                    out.push((Kind::Eose, Message::text(serde_json::json!(["EOSE", sub]).to_string())));
                }
            }
            "CLOSE" => {
                self.subs.retain(|s| *s != sub);
                if self.modes.forged {
                    // live after close
                    if let Some(m) = self.forged_copy(&sub, None) {
                        out.push((Kind::Forged, m));
                    }
                }
            }
            "NEG-OPEN" => {
                c.neg_opens.fetch_add(1, Ordering::Relaxed);
                let filter = arr.get(2).and_then(|f| Filter::from_json(f.to_string()).ok());
                if self.modes.endless_negentropy {
                    self.neg_count += 1;
                    self.negs.insert(sub.clone(), (filter, self.neg_count & 1 == 1));
                    if self.negs.len() > 512 {
                        let k = self.negs.keys().next().cloned();
                        if let Some(k) = k {
                            self.negs.remove(&k);
                        }
                    }
                    out.push((Kind::NegMsg, self.endless(&sub, c)));
                } else {
                    out.push((Kind::Other, Message::text(serde_json::json!(["NEG-ERR", sub, "blocked: no negentropy here"]).to_string())));
                }
            }
            "NEG-MSG" => {
                c.neg_msgs_in.fetch_add(1, Ordering::Relaxed);
                if self.modes.endless_negentropy {
                    out.push((Kind::NegMsg, self.endless(&sub, c)));
                }
            }
            "NEG-CLOSE" => {
                // one more round for a closed session
                if self.modes.endless_negentropy {
                    out.push((Kind::NegMsg, self.endless(&sub, c)));
                }
                self.negs.remove(&sub);
            }
            _ => {}
        }
        out
    }

    /// A burst on the flood timer.
    fn flood(&mut self) -> Vec<(Kind, Message)> {
        let mut out = Vec::new();
        let n = self.modes.flood_burst;
        if self.modes.oversized && self.last_oversized.elapsed() >= self.modes.oversized_every {
            self.last_oversized = Instant::now();
            let sub = self.some_sub();
            out.push((Kind::Oversized, self.oversized(&sub, &[])));
        }
        if self.modes.notice_storm && self.last_rate_limit.elapsed() >= self.modes.rate_limit_every {
            self.last_rate_limit = Instant::now();
            out.push((Kind::Notice, Message::text(r#"["NOTICE","rate-limited: slow down"]"#)));
        }
        if self.modes.notice_storm {
            for _ in 0..n {
                let m = self.notice();
                out.push((Kind::Notice, m));
            }
        }
        if self.modes.junk {
            for _ in 0..n {
                let sub = self.some_sub();
                let m = self.junk(&sub);
                out.push((Kind::Junk, m));
            }
        }
        if self.modes.forged {
            for _ in 0..n {
                let sub = self.some_sub();
                if let Some(m) = self.forged_copy(&sub, None) {
                    out.push((Kind::Forged, m));
                }
            }
        }
        out
    }

    /// An open subscription, or an invented one a third of the time.
    fn some_sub(&mut self) -> String {
        if self.subs.is_empty() || self.rng.below(3) == 0 {
            return format!("hostile-{}", self.rng.hex(4));
        }
        let i = self.rng.below(self.subs.len() as u64) as usize;
        self.subs[i].clone()
    }

    fn notice(&mut self) -> Message {
        const TEXTS: &[&str] = &[
            "error: too many concurrent REQs",
            "ERROR: too many concurrent NEG requests",
            "ERROR: negentropy is not supported by this relay",
            "auth-required: we only serve authenticated users",
            "restricted: not allowed",
            "blocked: you are banned",
            "error: internal error",
            "",
            "pow: difficulty 30 required",
        ];
        match self.rng.below(12) {
            9 => Message::text(serde_json::json!(["CLOSED", format!("hostile-{}", self.rng.hex(4)), "error: shutting down"]).to_string()),
            10 => Message::text(serde_json::json!(["AUTH", self.rng.hex(16)]).to_string()),
            11 => {
                let sub = self.some_sub();
                Message::text(serde_json::json!(["CLOSED", sub, "error: too many concurrent REQs"]).to_string())
            }
            i => Message::text(serde_json::json!(["NOTICE", TEXTS[i as usize]]).to_string()),
        }
    }

    fn junk(&mut self, sub: &str) -> Message {
        let s = serde_json::to_string(sub).unwrap_or_default();
        let text = match self.rng.below(22) {
            0 => "[".to_string(),
            1 => r#"{"not":"an array"}"#.to_string(),
            2 => "null".to_string(),
            3 => r#"["EVENT"]"#.to_string(),
            4 => format!(r#"["EVENT",{s}]"#),
            5 => format!(r#"["EVENT",{s},{{}}]"#),
            6 => format!(r#"["EVENT",{s},"not an event"]"#),
            7 => format!(r#"["EVENT",{s},{{"id":"zz","pubkey":1,"created_at":-1,"kind":-5,"tags":"x","content":null,"sig":null}}]"#),
            8 => r#"["EOSE"]"#.to_string(),
            9 => r#"["EOSE",42]"#.to_string(),
            10 => format!(r#"["NEG-MSG",{s},"zz not hex"]"#),
            11 => format!(r#"["NEG-MSG",{s},"61ff"]"#),
            12 => format!(r#"["NEG-MSG",{s},"62"]"#),
            // a negentropy IdList claiming 2^34 ids, none following
            13 => format!(r#"["NEG-MSG",{s},"610000 02c080808000"]"#).replace(' ', ""),
            14 => format!(r#"["OK","{}",true,""]"#, self.rng.hex(32)),
            15 => format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            16 => format!(r#"["EVENT",{s},{{"id":"{}","created_at":1e400,"kind":1}}]"#, self.rng.hex(32)),
            17 => format!(r#"["EOSE","{}"]"#, "x".repeat(100_000)),
            18 => r#"["NOTICE"]"#.to_string(),
            19 => r#"["COUNT","x",{"count":-1}]"#.to_string(),
            20 => return Message::binary(self.rng.bytes(512)),
            _ => String::from_utf8_lossy(&self.rng.bytes(64)).into_owned(),
        };
        Message::text(text)
    }

    /// A real event (matching `filter` if one does), forged: content altered
    /// after signing (id mismatch) or another event's signature.
    fn forged_copy(&mut self, sub: &str, filter: Option<&Filter>) -> Option<Message> {
        if self.real.is_empty() {
            return None;
        }
        let candidates: Vec<&Event> = match filter {
            Some(f) => self.real.iter().filter(|e| f.match_event(e, MatchEventOptions::new())).collect(),
            None => Vec::new(),
        };
        let event = if candidates.is_empty() {
            &self.real[self.rng.below(self.real.len() as u64) as usize]
        } else {
            candidates[self.rng.below(candidates.len() as u64) as usize]
        };
        let mut v: serde_json::Value = serde_json::from_str(&event.as_json()).ok()?;
        if self.rng.below(2) == 0 {
            v["content"] = serde_json::Value::String(format!("forged by the hostile relay {}", self.rng.hex(4)));
        } else {
            v["sig"] = serde_json::Value::String(self.rng.hex(64));
        }
        Some(Message::text(serde_json::json!(["EVENT", sub, v]).to_string()))
    }

    /// Forgeries answering one filter: for `ids` filters an event for every
    /// id asked (forged), otherwise forged copies of up to 30 matching real events.
    fn forgeries_for(&mut self, sub: &str, filter: &Filter) -> Vec<(Kind, Message)> {
        let mut out = Vec::new();
        if let Some(ids) = &filter.ids {
            for id in ids.iter().take(200) {
                let template = self.real.iter().find(|e| e.id == *id).or_else(|| self.real.first());
                let Some(t) = template else { break };
                let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&t.as_json()) else { continue };
                v["id"] = serde_json::Value::String(id.to_hex());
                if t.id == *id {
                    v["sig"] = serde_json::Value::String(self.rng.hex(64));
                } else {
                    v["content"] = serde_json::Value::String(format!("claimed id {}", id.to_hex()));
                }
                out.push((Kind::Forged, Message::text(serde_json::json!(["EVENT", sub, v]).to_string())));
            }
        } else {
            for _ in 0..30 {
                if let Some(m) = self.forged_copy(sub, Some(filter)) {
                    out.push((Kind::Forged, m));
                }
            }
        }
        out
    }

    fn oversized(&mut self, sub: &str, filters: &[Filter]) -> Message {
        let size = self.modes.oversized_bytes;
        let big = self.big.get_or_insert_with(|| "A".repeat(size)).clone();
        let event =
            filters.iter().find_map(|f| self.real.iter().find(|e| f.match_event(e, MatchEventOptions::new()))).or(self.real.first());
        let mut v = match event.and_then(|e| serde_json::from_str::<serde_json::Value>(&e.as_json()).ok()) {
            Some(v) => v,
            None => {
                serde_json::json!({"id": self.rng.hex(32), "pubkey": self.rng.hex(32), "created_at": 1, "kind": 1, "tags": [], "sig": self.rng.hex(64)})
            }
        };
        v["content"] = serde_json::Value::String(big);
        Message::text(serde_json::json!(["EVENT", sub, v]).to_string())
    }

    /// A NEG-MSG that never lets reconciliation finish: an IdList over
    /// `[0, now)` claiming ids (real ones matching the session's filter, then
    /// random ones) and a random fingerprint over `[now, ∞)`.
    fn endless(&mut self, sub: &str, c: &Counters) -> Message {
        let (filter, large) = self.negs.get(sub).cloned().unwrap_or((None, true));
        let n = if large { self.modes.neg_ids_per_round } else { (self.modes.neg_ids_per_round / 50).max(1) };
        let mut ids: Vec<[u8; 32]> = Vec::with_capacity(n);
        if let Some(f) = &filter {
            for e in self.real.iter().filter(|e| f.match_event(e, MatchEventOptions::new())).take(n / 2) {
                ids.push(e.id.to_bytes());
            }
        }
        while ids.len() < n {
            let mut id = [0u8; 32];
            id.copy_from_slice(&self.rng.bytes(32));
            ids.push(id);
        }
        c.ids_claimed.fetch_add(ids.len() as u64, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut msg = vec![0x61u8];
        // bound 1: timestamp `now` (delta-encoded from 0: now + 1), no id prefix
        msg.extend(varint(now + 1));
        msg.extend(varint(0));
        msg.extend(varint(2)); // IdList
        msg.extend(varint(ids.len() as u64));
        for id in &ids {
            msg.extend_from_slice(id);
        }
        // bound 2: infinity, no id prefix, a random fingerprint
        msg.extend(varint(0));
        msg.extend(varint(0));
        msg.extend(varint(1)); // Fingerprint
        msg.extend(self.rng.bytes(16));
        Message::text(serde_json::json!(["NEG-MSG", sub, hex(&msg)]).to_string())
    }
}

/// Negentropy varint: base 128, most significant group first, high bit on all but the last.
fn varint(mut n: u64) -> Vec<u8> {
    let mut o = vec![(n & 0x7f) as u8];
    n >>= 7;
    while n > 0 {
        o.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    o.reverse();
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use negentropy::{Id, Negentropy, NegentropyStorageVector};

    #[test]
    fn varint_matches_negentropy_encoding() {
        assert_eq!(varint(0), vec![0]);
        assert_eq!(varint(127), vec![0x7f]);
        assert_eq!(varint(128), vec![0x81, 0x00]);
        assert_eq!(varint(300), vec![0x82, 0x2c]);
    }

    /// The endless answer parses, reports the claimed ids as needed and
    /// asks for another round, every time.
    #[test]
    fn endless_negentropy_never_converges() {
        let mut storage = NegentropyStorageVector::new();
        storage.insert(1_000, Id::from_byte_array([7; 32])).unwrap();
        storage.seal().unwrap();
        let mut client = Negentropy::owned(storage, 0).unwrap();
        let _ = client.initiate().unwrap();
        let modes = Modes { neg_ids_per_round: 20, ..Modes::all() };
        let mut conn = Conn {
            modes,
            real: Arc::new(Vec::new()),
            rng: Rng::new(1),
            subs: Vec::new(),
            negs: HashMap::new(),
            neg_count: 0,
            last_oversized: Instant::now(),
            last_rate_limit: Instant::now(),
            big: None,
        };
        let c = Counters::default();
        for round in 0..5 {
            let Message::Text(t) = conn.endless("s", &c) else { panic!("text") };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
            let msg: Vec<u8> = (0..v[2].as_str().unwrap().len() / 2)
                .map(|i| u8::from_str_radix(&v[2].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let (mut have, mut need) = (Vec::new(), Vec::new());
            let next = client.reconcile_with_ids(&msg, &mut have, &mut need).unwrap();
            assert_eq!(need.len(), 20, "round {round}");
            assert!(next.is_some(), "round {round}: the client must answer again");
        }
    }
}

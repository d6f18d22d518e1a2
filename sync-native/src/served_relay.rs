//! Serves the stored events as a read-only nostr relay (NIP-01 `REQ`, NIP-77
//! negentropy) so downstream clients — including the browser build — can
//! sync from this daemon. It is `nostr-relay-builder`'s `LocalRelay` over the
//! same LMDB environment the sync engine writes; a write policy refuses every
//! `EVENT`, so only the engine's accepted, verified events are ever served.
//!
//! # Limits ([`ServedLimits`])
//!
//! The builder enforces two of them itself: `limit` above the maximum is
//! clamped (`max_filter_limit`, like strfry; a filter without `limit` gets the
//! maximum) and subscriptions per connection (`RateLimit::max_reqs`, answered
//! `CLOSED "rate-limited: too many REQs"`). It has no cap on negentropy
//! sessions, message size, idle time or connections per address, and its own
//! connection cap drops sockets without an answer, so this module accepts the
//! TCP connections itself and puts a thin WebSocket proxy in front of each
//! builder session (handed over through an in-memory pipe with
//! `LocalRelay::take_connection`):
//!
//! - over `max_connections` (or `max_connections_per_ip`), the connection is
//!   answered `503 Service Unavailable` before the WebSocket handshake;
//! - a message larger than `max_message_bytes` closes the connection with
//!   close code 1009, before the message is buffered;
//! - a `REQ` with more than `max_filters` filters is answered `CLOSED`
//!   (`limit` is per filter, so the filter count bounds what one REQ returns);
//! - a `NEG-OPEN` beyond `max_negentropy_sessions` open sessions is answered
//!   `NEG-ERR "blocked: too many negentropy sessions …"` (each session holds a
//!   copy of its filter's ids in memory until `NEG-CLOSE`);
//! - idle connections are closed: one with no open subscription or negentropy
//!   session that sends nothing for `idle_timeout`, or any that answers nothing
//!   (not even the pings sent every `idle_timeout / 2`) for that long, or that
//!   does not take a message for that long.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::{ClientMessage, Event, JsonUtil, RelayMessage};
use nostr_lmdb::NostrLMDB;
use nostr_relay_builder::builder::{PolicyResult, RateLimit, WritePolicy};
use nostr_relay_builder::prelude::BoxedFuture;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Bounds on the served relay. Defaults: [`ServedLimits::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedLimits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one IP address (0: no per-address cap; behind a
    /// reverse proxy every client has the proxy's address).
    pub max_connections_per_ip: usize,
    /// A filter's `limit` is clamped to this (also the limit of a filter without one).
    pub max_limit: usize,
    /// Filters in one `REQ`.
    pub max_filters: usize,
    /// Open subscriptions per connection.
    pub max_subscriptions: usize,
    /// Open negentropy sessions per connection.
    pub max_negentropy_sessions: usize,
    /// Largest WebSocket message (and frame) accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// See the module documentation.
    pub idle_timeout: Duration,
}

impl Default for ServedLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 0,
            max_limit: 500,
            max_filters: 200,
            max_subscriptions: 20,
            max_negentropy_sessions: 8,
            max_message_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// The WebSocket handshake must finish within this (or the idle timeout, if shorter).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer of the in-memory pipe between a proxy and its builder session.
const PIPE_BYTES: usize = 64 * 1024;

/// Refuses all writes: the relay is a mirror of what the engine accepted.
#[derive(Debug)]
struct ReadOnly;

impl WritePolicy for ReadOnly {
    fn admit_event<'a>(&'a self, _event: &'a Event, _addr: &'a SocketAddr) -> BoxedFuture<'a, PolicyResult> {
        Box::pin(async { PolicyResult::Reject("read-only mirror: this relay only serves what grasp-sync synced".to_string()) })
    }
}

/// Why the served relay did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the relay on {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Starts the read-only relay on `addr` (must run inside a tokio runtime).
pub async fn serve(db: Arc<NostrLMDB>, addr: SocketAddr, limits: ServedLimits) -> Result<LocalRelay, ServeError> {
    let builder = RelayBuilder::default()
        .database(db)
        .write_policy(ReadOnly)
        .max_filter_limit(limits.max_limit)
        .default_filter_limit(limits.max_limit)
        .rate_limit(RateLimit { max_reqs: limits.max_subscriptions, notes_per_minute: 60 });
    // Not `run()`: connections come in through `accept` below.
    let relay = LocalRelay::new(builder);
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError { addr, source })?;
    tokio::spawn(accept(listener, relay.clone(), Arc::new(limits)));
    Ok(relay)
}

async fn accept(listener: TcpListener, relay: LocalRelay, limits: Arc<ServedLimits>) {
    let admission = Arc::new(Admission { limits: Arc::clone(&limits), open: Mutex::default() });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "served relay: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match admission.admit(peer.ip()) {
            Ok(slot) => {
                let (relay, limits) = (relay.clone(), Arc::clone(&limits));
                tokio::spawn(async move {
                    connection(stream, peer, relay, limits).await;
                    drop(slot);
                });
            }
            Err(why) => {
                tracing::debug!(%peer, why, "served relay: connection refused");
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// Counts open connections, in total and per address.
struct Admission {
    limits: Arc<ServedLimits>,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.limits.max_connections {
            return Err("max connections");
        }
        let from_ip = open.1.entry(ip).or_default();
        if self.limits.max_connections_per_ip > 0 && *from_ip >= self.limits.max_connections_per_ip {
            return Err("max connections per IP");
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(Slot { admission: Arc::clone(self), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// Answers `503` to a connection over the caps (WebSocket clients report
/// the HTTP status), then briefly drains it: closing with unread input
/// makes the kernel send a reset that can destroy the answer.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One client: handshake, then the proxy in front of a builder session.
async fn connection(stream: TcpStream, peer: SocketAddr, relay: LocalRelay, limits: Arc<ServedLimits>) {
    let config = WebSocketConfig::default().max_message_size(Some(limits.max_message_bytes)).max_frame_size(Some(limits.max_message_bytes));
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let client = match tokio::time::timeout(HANDSHAKE_TIMEOUT.min(limits.idle_timeout), handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "served relay: handshake failed"),
        Err(_) => return tracing::debug!(%peer, "served relay: handshake timed out"),
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let session = tokio::spawn(async move {
        if let Err(e) = relay.take_connection(theirs, peer).await {
            tracing::debug!(%peer, error = %e, "served relay: session ended with an error");
        }
    });
    let inner = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
    Proxy { limits, subs: HashSet::new(), negs: HashSet::new() }.run(client, inner, peer).await;
    // The slot is held until the builder's session is gone too.
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
}

/// What to do with a client message.
enum Verdict {
    Forward,
    Answer(String),
}

/// The per-connection state the limits need: open subscription and
/// negentropy session ids, mirrored from the messages both ways.
struct Proxy {
    limits: Arc<ServedLimits>,
    subs: HashSet<String>,
    negs: HashSet<String>,
}

impl Proxy {
    fn busy(&self) -> bool {
        !self.subs.is_empty() || !self.negs.is_empty()
    }

    async fn run(mut self, client: WebSocketStream<TcpStream>, inner: WebSocketStream<DuplexStream>, peer: SocketAddr) {
        let (mut to_client, mut from_client) = client.split();
        let (mut to_relay, mut from_relay) = inner.split();
        let idle = self.limits.idle_timeout;
        let ping_every = (idle / 2).max(Duration::from_millis(1));
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let (mut heard, mut quiet_since) = (Instant::now(), Instant::now());
        let close: Option<CloseFrame> = loop {
            let busy = self.busy();
            // Unresponsive: nothing heard (pongs count); idle: nothing open and no message.
            let deadline = if busy { heard } else { heard.min(quiet_since) } + idle;
            let outgoing = tokio::select! {
                msg = from_client.next() => {
                    heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            quiet_since = heard;
                            match self.check(text.as_str()) {
                                Verdict::Forward => {
                                    if to_relay.send(Message::Text(text)).await.is_err() {
                                        break None;
                                    }
                                    None
                                }
                                Verdict::Answer(reply) => Some(Message::text(reply)),
                            }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            quiet_since = heard;
                            if to_relay.send(Message::Binary(b)).await.is_err() {
                                break None;
                            }
                            None
                        }
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Ok(_)) => None, // ping (answered by tungstenite), pong
                        Some(Err(WsError::Capacity(e))) => {
                            tracing::debug!(%peer, error = %e, "served relay: message too large");
                            let reason = format!("message too large (max {} bytes)", self.limits.max_message_bytes);
                            break Some(CloseFrame { code: CloseCode::Size, reason: reason.into() });
                        }
                        Some(Err(_)) => break None,
                    }
                }
                msg = from_relay.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        self.observe(text.as_str());
                        Some(Message::Text(text))
                    }
                    Some(Ok(_)) => None,
                    // The session ended: relay shutdown, or a message it could not parse.
                    _ => break None,
                },
                _ = ping.tick() => Some(Message::Ping(Default::default())),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(%peer, busy, "served relay: closing an idle connection");
                    break Some(CloseFrame { code: CloseCode::Normal, reason: "idle timeout".into() });
                }
            };
            if busy || self.busy() {
                quiet_since = Instant::now();
            }
            if let Some(m) = outgoing {
                // A client that does not take what it asked for is dropped.
                if !matches!(tokio::time::timeout(idle, to_client.send(m)).await, Ok(Ok(()))) {
                    tracing::debug!(%peer, "served relay: client does not read; dropped");
                    return;
                }
            }
        };
        // Ends the builder session cleanly rather than with a reset pipe.
        let _ = tokio::time::timeout(Duration::from_secs(1), to_relay.close()).await;
        let bye = async {
            match close {
                Some(frame) => to_client.send(Message::Close(Some(frame))).await,
                None => to_client.close().await,
            }
        };
        if !matches!(tokio::time::timeout(Duration::from_secs(1), bye).await, Ok(Ok(()))) {
            return;
        }
        // Unread input (the rest of an oversized message) would make closing
        // the socket send a reset, which can destroy the close frame before
        // the client reads it: stop writing, then drain briefly.
        if let Ok(mut ws) = to_client.reunite(from_client) {
            let tcp = ws.get_mut();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                tcp.shutdown().await?;
                let mut sink = [0u8; 4096];
                while tcp.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
        }
    }

    /// Applies the per-message limits to a client message.
    fn check(&mut self, text: &str) -> Verdict {
        // Unparsable messages go through: the builder answers them.
        let Ok(msg) = ClientMessage::from_json(text) else { return Verdict::Forward };
        match msg {
            ClientMessage::Req { subscription_id, filters } => {
                if filters.len() > self.limits.max_filters {
                    let why = format!("blocked: a REQ may hold at most {} filters", self.limits.max_filters);
                    return Verdict::Answer(RelayMessage::closed(subscription_id.into_owned(), why).as_json());
                }
                self.subs.insert(subscription_id.to_string());
            }
            ClientMessage::Close(id) => {
                self.subs.remove(id.as_str());
            }
            ClientMessage::NegOpen { subscription_id, .. } => {
                let id = subscription_id.to_string();
                if !self.negs.contains(&id) && self.negs.len() >= self.limits.max_negentropy_sessions {
                    let why =
                        format!("blocked: too many negentropy sessions (max {}); NEG-CLOSE one first", self.limits.max_negentropy_sessions);
                    return Verdict::Answer(RelayMessage::NegErr { subscription_id, message: why.into() }.as_json());
                }
                self.negs.insert(id);
            }
            ClientMessage::NegClose { subscription_id } => {
                self.negs.remove(subscription_id.as_str());
            }
            _ => {}
        }
        Verdict::Forward
    }

    /// Notes subscriptions and sessions the builder ended itself.
    fn observe(&mut self, text: &str) {
        if !(text.starts_with("[\"CLOSED\"") || text.starts_with("[\"NEG-ERR\"")) {
            return;
        }
        match RelayMessage::from_json(text) {
            Ok(RelayMessage::Closed { subscription_id, .. }) => {
                self.subs.remove(subscription_id.as_str());
            }
            Ok(RelayMessage::NegErr { subscription_id, .. }) => {
                self.negs.remove(subscription_id.as_str());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(limits: ServedLimits) -> Proxy {
        Proxy { limits: Arc::new(limits), subs: HashSet::new(), negs: HashSet::new() }
    }

    #[test]
    fn counts_connections_in_total_and_per_address() {
        let limits = Arc::new(ServedLimits { max_connections: 3, max_connections_per_ip: 2, ..Default::default() });
        let a = Arc::new(Admission { limits, open: Mutex::default() });
        let (one, two): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::ffff:10.0.0.2".parse().unwrap());
        let s1 = a.admit(one).unwrap();
        let _s2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).err(), Some("max connections per IP"));
        let _s3 = a.admit(two).unwrap();
        assert_eq!(a.admit("10.0.0.2".parse().unwrap()).err(), Some("max connections"));
        drop(s1);
        assert!(a.admit(one).is_ok());
    }

    #[test]
    fn caps_filters_and_negentropy_sessions_and_tracks_closes() {
        let mut p = proxy(ServedLimits { max_filters: 2, max_negentropy_sessions: 1, ..Default::default() });
        assert!(matches!(p.check(r#"["REQ","a",{},{}]"#), Verdict::Forward));
        match p.check(r#"["REQ","b",{},{},{}]"#) {
            Verdict::Answer(a) => assert!(a.starts_with(r#"["CLOSED","b","blocked:"#), "{a}"),
            Verdict::Forward => panic!("three filters forwarded"),
        }
        assert!(p.busy());
        p.observe(r#"["CLOSED","a",""]"#);
        assert!(!p.busy());
        assert!(matches!(p.check(r#"["NEG-OPEN","n1",{},"6100"]"#), Verdict::Forward));
        match p.check(r#"["NEG-OPEN","n2",{},"6100"]"#) {
            Verdict::Answer(a) => assert!(a.starts_with(r#"["NEG-ERR","n2","blocked: too many"#), "{a}"),
            Verdict::Forward => panic!("second session forwarded"),
        }
        assert!(matches!(p.check(r#"["NEG-OPEN","n1",{},"6100"]"#), Verdict::Forward), "reopening the same id is fine");
        assert!(matches!(p.check(r#"["NEG-CLOSE","n1"]"#), Verdict::Forward));
        assert!(matches!(p.check(r#"["NEG-OPEN","n2",{},"6100"]"#), Verdict::Forward));
        assert!(matches!(p.check("not json"), Verdict::Forward));
    }
}

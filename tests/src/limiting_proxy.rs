//! A limiting WebSocket proxy that makes the relay behave like a typical
//! public relay (strfry defaults), and measures every client identically.
//!
//! Per client connection it enforces:
//! - at most `max_subs` concurrent subscriptions: a `REQ` opens one until the
//!   client's `CLOSE` (or the relay's `CLOSED`); a `REQ` re-using an open id
//!   replaces it. The excess is answered
//!   `["CLOSED",<sub>,"error: too many concurrent REQs"]`;
//! - at most `max_neg` concurrent negentropy sessions: `NEG-OPEN` until
//!   `NEG-CLOSE` (or the relay's `NEG-ERR`). The excess is answered
//!   `["NEG-ERR",<sub>,"error: too many concurrent NEG requests"]`.
//!
//! Every refusal is counted, and so are the WebSocket payload bytes in each
//! direction (the "bytes on the wire" of the report). A plain HTTP `GET`
//! with `Accept: application/nostr+json` on the same port gets the NIP-11
//! document advertising those limits.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The limits a public relay imposes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent subscriptions per connection.
    pub max_subs: usize,
    /// Concurrent negentropy sessions per connection.
    pub max_neg: usize,
    /// `limit` cap per filter (enforced by the relay, advertised here).
    pub max_limit: usize,
}

impl Limits {
    /// The NIP-11 document advertising these limits.
    pub fn nip11(&self) -> String {
        format!(
            r#"{{"name":"bench","supported_nips":[1,11,77],"limitation":{{"max_subscriptions":{},"max_limit":{}}}}}"#,
            self.max_subs, self.max_limit
        )
    }
}

/// Traffic of one client connection.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Payload bytes sent to the client (relay frames and our refusals).
    pub to_client: AtomicU64,
    /// Payload bytes received from the client.
    pub from_client: AtomicU64,
    /// REQs refused for too many subscriptions.
    pub sub_refusals: AtomicU64,
    /// NEG-OPENs refused for too many sessions.
    pub neg_refusals: AtomicU64,
}

/// Totals over every connection so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// WebSocket connections.
    pub connections: u64,
    /// Bytes relay → client.
    pub to_client: u64,
    /// Bytes client → relay.
    pub from_client: u64,
    /// Refused REQs.
    pub sub_refusals: u64,
    /// Refused NEG-OPENs.
    pub neg_refusals: u64,
    /// NIP-11 documents served.
    pub nip11: u64,
}

#[derive(Default)]
struct Shared {
    conns: Mutex<Vec<Arc<ConnStats>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    nip11: AtomicU64,
    trace: Option<Trace>,
}

/// `--trace`: one line per frame (ms since start, connection, direction,
/// size, first bytes), for finding where a contender waits.
struct Trace {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
    started: std::time::Instant,
}

impl Trace {
    fn frame(&self, conn: usize, dir: &str, text: &str) {
        let head: String = text.chars().take(160).collect();
        if let Ok(mut out) = self.out.lock() {
            use std::io::Write;
            let _ = writeln!(out, "{:>9.1} c{conn} {dir} {:>7} {head}", self.started.elapsed().as_secs_f64() * 1000.0, text.len());
        }
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Ok(mut out) = self.out.lock() {
            use std::io::Write;
            let _ = out.flush();
        }
    }
}

/// The proxy; stops (and cuts every connection) when dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:`port` in front of `upstream` (a `ws://` URL).
    pub async fn start(port: u16, upstream: &str, limits: Limits, trace: Option<&std::path::Path>) -> Result<Self, String> {
        // The previous run's proxy may still be releasing the port.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("proxy cannot listen on 127.0.0.1:{port}: {e} (use --port to pick another)")),
            }
        };
        let trace = match trace {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
                Some(Trace { out: Mutex::new(std::io::BufWriter::new(f)), started: std::time::Instant::now() })
            }
            None => None,
        };
        let shared = Arc::new(Shared { trace, ..Shared::default() });
        let sh = Arc::clone(&shared);
        let upstream = upstream.to_string();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let sh2 = Arc::clone(&sh);
                let up = upstream.clone();
                let t = tokio::spawn(async move { serve(tcp, up, limits, sh2).await });
                if let Ok(mut tasks) = sh.tasks.lock() {
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(t);
                }
            }
        });
        Ok(Self { shared, accept })
    }

    /// Totals over every connection so far.
    pub fn totals(&self) -> Totals {
        let mut t = Totals { nip11: self.shared.nip11.load(Ordering::SeqCst), ..Totals::default() };
        if let Ok(conns) = self.shared.conns.lock() {
            for c in conns.iter() {
                t.connections += 1;
                t.to_client += c.to_client.load(Ordering::SeqCst);
                t.from_client += c.from_client.load(Ordering::SeqCst);
                t.sub_refusals += c.sub_refusals.load(Ordering::SeqCst);
                t.neg_refusals += c.neg_refusals.load(Ordering::SeqCst);
            }
        }
        t
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut tasks) = self.shared.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// Largest HTTP request head we look at.
const MAX_HEAD: usize = 8192;

/// Peeks the request head; serves NIP-11 or upgrades to a proxied WebSocket.
async fn serve(mut tcp: TcpStream, upstream: String, limits: Limits, shared: Arc<Shared>) {
    let Some(head) = peek_head(&tcp).await else { return };
    let lower = head.to_ascii_lowercase();
    let is_upgrade = lower.lines().any(|l| l.starts_with("upgrade:") && l.contains("websocket"));
    if !is_upgrade {
        // Consume the head we peeked, then answer and close.
        let mut sink = vec![0u8; head.len()];
        let _ = tcp.read_exact(&mut sink).await;
        let response = if lower.lines().any(|l| l.starts_with("accept:") && l.contains("application/nostr+json")) {
            shared.nip11.fetch_add(1, Ordering::SeqCst);
            let body = limits.nip11();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            let body = "bench relay proxy: use a WebSocket, or Accept: application/nostr+json\n";
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
        return;
    }
    let config = WebSocketConfig::default().max_message_size(Some(16 << 20)).max_frame_size(Some(16 << 20));
    let Ok(client) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async_with_config(upstream.as_str(), Some(config), true).await else {
        eprintln!("proxy: cannot connect to the relay at {upstream}");
        return;
    };
    let stats = Arc::new(ConnStats::default());
    let conn = match shared.conns.lock() {
        Ok(mut conns) => {
            conns.push(Arc::clone(&stats));
            conns.len()
        }
        Err(_) => 0,
    };
    let trace = shared.trace.as_ref().map(|t| (t, conn));
    pump(client, up, limits, &stats, trace).await;
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
            // peek returns at once while data is buffered: wait for more.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        last = n;
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;
type UpWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// What a client frame means for the limits.
enum Verdict {
    Forward,
    Refuse(String),
}

/// Open subscriptions and negentropy sessions of one connection.
#[derive(Default)]
struct Open {
    subs: HashSet<String>,
    negs: HashSet<String>,
}

impl Open {
    /// Applies a client frame; a refusal carries the frame to answer with.
    fn client_frame(&mut self, text: &str, limits: &Limits, stats: &ConnStats) -> Verdict {
        let Some((cmd, sub)) = command_and_sub(text) else { return Verdict::Forward };
        match cmd.as_str() {
            "REQ" => {
                if self.subs.contains(&sub) {
                    return Verdict::Forward;
                }
                if self.subs.len() >= limits.max_subs {
                    stats.sub_refusals.fetch_add(1, Ordering::SeqCst);
                    return Verdict::Refuse(serde_json::json!(["CLOSED", sub, "error: too many concurrent REQs"]).to_string());
                }
                self.subs.insert(sub);
            }
            "CLOSE" => {
                self.subs.remove(&sub);
            }
            "NEG-OPEN" => {
                if self.negs.contains(&sub) {
                    return Verdict::Forward;
                }
                if self.negs.len() >= limits.max_neg {
                    stats.neg_refusals.fetch_add(1, Ordering::SeqCst);
                    return Verdict::Refuse(serde_json::json!(["NEG-ERR", sub, "error: too many concurrent NEG requests"]).to_string());
                }
                self.negs.insert(sub);
            }
            "NEG-CLOSE" => {
                self.negs.remove(&sub);
            }
            _ => {}
        }
        Verdict::Forward
    }

    /// Applies a relay frame: `CLOSED` ends a subscription, `NEG-ERR` a session.
    fn relay_frame(&mut self, text: &str) {
        let head = text.trim_start();
        if head.starts_with("[\"CLOSED\"") || head.starts_with("[\"NEG-ERR\"") {
            if let Some((cmd, sub)) = command_and_sub(text) {
                if cmd == "CLOSED" {
                    self.subs.remove(&sub);
                } else {
                    self.negs.remove(&sub);
                }
            }
        }
    }
}

/// `["CMD","sub",...]` → (CMD, sub); `None` for anything else.
fn command_and_sub(text: &str) -> Option<(String, String)> {
    // Only the first two elements matter; NEG-MSG/REQ bodies can be large but
    // parsing a client frame is cheap next to what the relay does with it.
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let arr = v.as_array()?;
    Some((arr.first()?.as_str()?.to_string(), arr.get(1)?.as_str()?.to_string()))
}

/// Frames relay → client forwarded before one flush.
const BATCH: usize = 256;

/// Forwards frames both ways until either side closes.
async fn pump(client: Ws, up: UpWs, limits: Limits, stats: &ConnStats, trace: Option<(&Trace, usize)>) {
    let note = |dir: &str, text: &str| {
        if let Some((t, conn)) = trace {
            t.frame(conn, dir, text);
        }
    };
    let (mut ctx, mut crx) = client.split();
    let (mut utx, mut urx) = up.split();
    let mut open = Open::default();
    loop {
        tokio::select! {
            m = crx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    stats.from_client.fetch_add(t.len() as u64, Ordering::Relaxed);
                    note("->", t.as_str());
                    match open.client_frame(t.as_str(), &limits, stats) {
                        Verdict::Forward => {
                            if utx.send(Message::Text(t)).await.is_err() { break; }
                        }
                        Verdict::Refuse(answer) => {
                            stats.to_client.fetch_add(answer.len() as u64, Ordering::Relaxed);
                            note("<x", &answer);
                            if ctx.send(Message::text(answer)).await.is_err() { break; }
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    stats.from_client.fetch_add(b.len() as u64, Ordering::Relaxed);
                    if utx.send(Message::Binary(b)).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            m = urx.next() => {
                let mut next = Some(m);
                let mut n = 0;
                let mut closed = false;
                while let Some(m) = next.take() {
                    match m {
                        Some(Ok(Message::Text(t))) => {
                            stats.to_client.fetch_add(t.len() as u64, Ordering::Relaxed);
                            note("<-", t.as_str());
                            open.relay_frame(t.as_str());
                            if ctx.feed(Message::Text(t)).await.is_err() { closed = true; break; }
                        }
                        Some(Ok(Message::Binary(b))) => {
                            stats.to_client.fetch_add(b.len() as u64, Ordering::Relaxed);
                            if ctx.feed(Message::Binary(b)).await.is_err() { closed = true; break; }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => { closed = true; break; }
                        Some(Ok(_)) => {}
                    }
                    n += 1;
                    if n < BATCH {
                        next = urx.next().now_or_never();
                    }
                }
                if closed || ctx.flush().await.is_err() { break; }
            }
        }
    }
    let _ = ctx.close().await;
    let _ = utx.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_subs: 2, max_neg: 1, max_limit: 500 }
    }

    #[test]
    fn subscriptions_are_capped_and_replaced() {
        let (l, s, mut o) = (limits(), ConnStats::default(), Open::default());
        assert!(matches!(o.client_frame(r#"["REQ","a",{}]"#, &l, &s), Verdict::Forward));
        assert!(matches!(o.client_frame(r#"["REQ","b",{}]"#, &l, &s), Verdict::Forward));
        assert!(matches!(o.client_frame(r#"["REQ","a",{"kinds":[1]}]"#, &l, &s), Verdict::Forward));
        match o.client_frame(r#"["REQ","c",{}]"#, &l, &s) {
            Verdict::Refuse(f) => assert_eq!(f, r#"["CLOSED","c","error: too many concurrent REQs"]"#),
            Verdict::Forward => panic!("third subscription must be refused"),
        }
        o.client_frame(r#"["CLOSE","a"]"#, &l, &s);
        assert!(matches!(o.client_frame(r#"["REQ","c",{}]"#, &l, &s), Verdict::Forward));
        o.relay_frame(r#"["CLOSED","b","error: shutting down"]"#);
        assert!(matches!(o.client_frame(r#"["REQ","d",{}]"#, &l, &s), Verdict::Forward));
        assert_eq!(s.sub_refusals.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn negentropy_sessions_are_capped() {
        let (l, s, mut o) = (limits(), ConnStats::default(), Open::default());
        assert!(matches!(o.client_frame(r#"["NEG-OPEN","n1",{},"61"]"#, &l, &s), Verdict::Forward));
        assert!(matches!(o.client_frame(r#"["NEG-OPEN","n2",{},"61"]"#, &l, &s), Verdict::Refuse(_)));
        o.relay_frame(r#"["NEG-ERR","n1","blocked"]"#);
        assert!(matches!(o.client_frame(r#"["NEG-OPEN","n2",{},"61"]"#, &l, &s), Verdict::Forward));
        o.client_frame(r#"["NEG-CLOSE","n2"]"#, &l, &s);
        assert!(matches!(o.client_frame(r#"["NEG-OPEN","n3",{},"61"]"#, &l, &s), Verdict::Forward));
        assert_eq!(s.neg_refusals.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn nip11_advertises_the_limits() {
        let v: serde_json::Value = serde_json::from_str(&Limits { max_subs: 20, max_neg: 4, max_limit: 500 }.nip11()).expect("json");
        assert_eq!(v["limitation"]["max_subscriptions"], 20);
        assert_eq!(v["supported_nips"][2], 77);
    }
}

//! Relays for the tests: a full `nostr-relay-builder` relay (NIP-01 + NIP-77)
//! over an in-memory database, and a proxy that makes a relay REQ-only.
//!
//! Why a proxy: `nostr-relay-builder` always answers NEG-OPEN, and the daemon
//! must also be tested against relays that do not speak NIP-77 (SPEC §2: a
//! relay answering NEG-OPEN with a NOTICE is REQ-only). The proxy forwards
//! every frame both ways unchanged, except that it answers NEG-OPEN itself
//! with `NOTICE` — exactly what such relays do — so the REQ+EOSE pagination
//! path runs against real relay code. It can also delay relay→client frames
//! (a slow relay, to kill things mid-sync) and be stopped/restarted on the
//! same port (a relay that goes away).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::Event;
use nostr_database::{MemoryDatabase, MemoryDatabaseOptions, NostrDatabase};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A relay-builder relay on 127.0.0.1 whose database survives restarts.
pub struct TestRelay {
    /// The relay's database (insert directly to plant events, even forged ones).
    pub db: Arc<MemoryDatabase>,
    /// Listening port.
    pub port: u16,
    relay: Option<LocalRelay>,
}

impl TestRelay {
    /// Starts a relay on `port` (0: a free one).
    pub async fn start(port: u16) -> Self {
        let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions { events: true, max_events: None }));
        let port = if port == 0 { crate::free_port() } else { port };
        let mut r = Self { db, port, relay: None };
        r.restart().await;
        r
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Plants events straight into the database (no verification, no live broadcast).
    pub async fn insert(&self, events: &[Event]) {
        for e in events {
            self.db.save_event(e).await.expect("memory database save");
        }
    }

    /// Stops listening and drops every connection.
    pub fn stop(&mut self) {
        if let Some(r) = self.relay.take() {
            r.shutdown();
        }
    }

    /// (Re)starts on the same port with the same database.
    pub async fn restart(&mut self) {
        let builder = RelayBuilder::default()
            .addr([127, 0, 0, 1].into())
            .port(self.port)
            .database(Arc::clone(&self.db))
            .rate_limit(RateLimit { max_reqs: 10_000, notes_per_minute: 100_000 });
        let relay = LocalRelay::new(builder);
        relay.run().await.expect("test relay listens");
        self.relay = Some(relay);
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The NOTICE a relay without NIP-77 sends for NEG-OPEN.
pub const NEG_UNSUPPORTED: &str = r#"["NOTICE","ERROR: negentropy is not supported by this relay"]"#;

/// A WebSocket proxy in front of a relay that refuses NEG-OPEN (see module docs).
pub struct ReqOnlyProxy {
    /// Listening port.
    pub port: u16,
    upstream: String,
    delay_ms: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// NEG-OPEN frames refused so far.
    pub neg_open_refused: Arc<AtomicU64>,
    /// Client connections accepted so far.
    pub connections: Arc<AtomicU64>,
}

impl ReqOnlyProxy {
    /// Starts on `port` (0: a free one) in front of `upstream`.
    pub async fn start(port: u16, upstream: &str) -> Self {
        let port = if port == 0 { crate::free_port() } else { port };
        let p = Self {
            port,
            upstream: upstream.to_string(),
            delay_ms: Arc::new(AtomicU64::new(0)),
            tasks: Arc::new(Mutex::new(Vec::new())),
            neg_open_refused: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicU64::new(0)),
        };
        p.restart().await;
        p
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Delays every relay→client frame by `ms` (a slow relay).
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops listening and cuts every connection (the relay "dies").
    pub fn stop(&self) {
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let upstream = self.upstream.clone();
        let delay = Arc::clone(&self.delay_ms);
        let tasks = Arc::clone(&self.tasks);
        let refused = Arc::clone(&self.neg_open_refused);
        let conns = Arc::clone(&self.connections);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let t = tokio::spawn(proxy_conn(tcp, upstream.clone(), Arc::clone(&delay), Arc::clone(&refused)));
                tasks.lock().expect("tasks").push(t);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }
}

impl Drop for ReqOnlyProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn proxy_conn(tcp: tokio::net::TcpStream, upstream: String, delay: Arc<AtomicU64>, refused: Arc<AtomicU64>) {
    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else { return };
    let (mut ctx, mut crx) = client.split();
    let (mut utx, mut urx) = up.split();
    loop {
        tokio::select! {
            m = crx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t.trim_start().starts_with(r#"["NEG-OPEN""#) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        if ctx.send(Message::text(NEG_UNSUPPORTED)).await.is_err() { break; }
                    } else if utx.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            m = urx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let ms = delay.load(Ordering::SeqCst);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if ctx.send(Message::Text(t)).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

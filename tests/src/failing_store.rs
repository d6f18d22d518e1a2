//! A store relay that fails on demand: a WebSocket proxy in front of a real
//! relay that, while failing, answers every `EVENT` itself with NIP-01's
//! transient `OK false "error: …"` instead of passing it on (a relay whose
//! disk is full). Everything else passes through both ways.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The proxy; dropped, it stops.
pub struct FailingStore {
    /// Listening port.
    pub port: u16,
    failing: Arc<AtomicBool>,
    /// `EVENT`s answered with `error:`.
    pub refused: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FailingStore {
    /// Starts in front of `upstream`, failing from the start when `failing`.
    pub async fn start(upstream: &str, failing: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let flag = Arc::new(AtomicBool::new(failing));
        let refused = Arc::new(AtomicU64::new(0));
        let (f, r, up) = (Arc::clone(&flag), Arc::clone(&refused), upstream.to_string());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(conn(tcp, up.clone(), Arc::clone(&f), Arc::clone(&r)));
            }
        });
        Self { port, failing: flag, refused, accept }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Starts or stops failing.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl Drop for FailingStore {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn conn(tcp: tokio::net::TcpStream, upstream: String, failing: Arc<AtomicBool>, refused: Arc<AtomicU64>) {
    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else { return };
    let (mut ctx, mut crx) = client.split();
    let (mut utx, mut urx) = up.split();
    loop {
        tokio::select! {
            m = crx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let id = failing.load(Ordering::SeqCst).then(|| event_id(t.as_str())).flatten();
                    if let Some(id) = id {
                        refused.fetch_add(1, Ordering::SeqCst);
                        let ok = serde_json::json!(["OK", id, false, "error: no space left on device"]).to_string();
                        if ctx.send(Message::text(ok)).await.is_err() { break; }
                    } else if utx.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            m = urx.next() => match m {
                Some(Ok(Message::Text(t))) => if ctx.send(Message::Text(t)).await.is_err() { break },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The id of an `["EVENT", {…}]` frame.
fn event_id(frame: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    (v.get(0)?.as_str()? == "EVENT").then(|| v.get(1)?.get("id")?.as_str().map(str::to_string)).flatten()
}

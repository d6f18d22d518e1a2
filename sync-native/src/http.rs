//! The operator's HTTP endpoint: `GET /metrics` (Prometheus text), `GET
//! /health` and `GET /status` (the JSON status snapshot).
//!
//! Three read-only GET routes do not justify an HTTP framework: this is a
//! small HTTP/1.1 responder (one request per connection, `Connection:
//! close`), which Prometheus and curl speak happily. It binds to 127.0.0.1
//! by default.
//!
//! [`HttpLimits`] bound it: at most `max_connections` are served at once
//! (more are answered `503` and closed at once, so they cannot pile up), and
//! each must send its request and take its response within `timeout`, so a
//! slow client (slow-loris, or one that never reads) cannot hold a slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::{Metrics, SnapshotSource, CONTENT_TYPE};

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Default of [`HttpLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default of [`HttpLimits::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on the endpoint's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more get `503 Service Unavailable`.
    pub max_connections: usize,
    /// A connection must deliver its request and take the response within this.
    pub timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_connections: DEFAULT_MAX_CONNECTIONS, timeout: DEFAULT_TIMEOUT }
    }
}

/// A response: status line, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// e.g. `200 OK`.
    pub status: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// Routes a request line's method and path.
pub struct Router {
    metrics: Metrics,
    source: SnapshotSource,
}

impl Router {
    /// A router over the snapshot source.
    pub fn new(source: SnapshotSource) -> Self {
        Self { metrics: Metrics::new(Arc::clone(&source)), source }
    }

    /// The response for `method path`.
    pub fn route(&self, method: &str, path: &str) -> Response {
        let path = path.split('?').next().unwrap_or(path);
        if method != "GET" && method != "HEAD" {
            return Response { status: "405 Method Not Allowed", content_type: "text/plain", body: "only GET\n".into() };
        }
        match path {
            "/metrics" => Response { status: "200 OK", content_type: CONTENT_TYPE, body: self.metrics.render() },
            "/status" => {
                let body = serde_json::to_string_pretty(&*(self.source)()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                Response { status: "200 OK", content_type: "application/json", body }
            }
            "/health" => {
                let s = (self.source)();
                // A store that keeps failing is unhealthy: nothing new is kept.
                let store_error = s.totals.store_error.clone();
                let healthy = s.running && store_error.is_none();
                let body = serde_json::json!({
                    "status": if !s.running { "stopped" } else if store_error.is_some() { "store_failing" } else { "ok" },
                    "store_error": store_error,
                    "relays_tracked": s.totals.relays_tracked,
                    "relays_connected": s.totals.relays_connected,
                    "events_synced": s.totals.events_synced,
                })
                .to_string();
                let status = if healthy { "200 OK" } else { "503 Service Unavailable" };
                Response { status, content_type: "application/json", body }
            }
            _ => Response { status: "404 Not Found", content_type: "text/plain", body: "try /metrics, /health or /status\n".into() },
        }
    }
}

/// Binds `addr`; the returned listener is served by [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections forever, within `limits`.
pub async fn serve(listener: TcpListener, router: Arc<Router>, limits: HttpLimits) {
    // `Semaphore::new` panics above MAX_PERMITS (2^61): such a cap is no cap.
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    tracing::debug!(%peer, max = limits.max_connections, "http connection refused: too many open");
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let router = Arc::clone(&router);
                tokio::spawn(async move {
                    match tokio::time::timeout(limits.timeout, handle(stream, &router)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http connection failed"),
                        Err(_) => tracing::debug!(%peer, timeout = ?limits.timeout, "http connection timed out"),
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers `503` without reading the request, then waits briefly for the
/// client to finish sending: closing a socket with unread input makes the
/// kernel send a reset, which can destroy the answer before it is read.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// One request; the caller bounds it with [`HttpLimits::timeout`].
async fn handle(mut stream: TcpStream, router: &Router) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or("/"));
    let resp = if method.is_empty() {
        Response { status: "400 Bad Request", content_type: "text/plain", body: "bad request\n".into() }
    } else {
        router.route(method, path)
    };
    let body = if method == "HEAD" { "" } else { resp.body.as_str() };
    let out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.status,
        resp.content_type,
        resp.body.len(),
        body
    );
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{Millis, SyncStatus};

    fn router(running: bool) -> Router {
        let snap = Arc::new(SyncStatus { now: Millis(1), running, relays: vec![], totals: Default::default(), repositories: vec![] });
        Router::new(Arc::new(move || Arc::clone(&snap)))
    }

    #[test]
    fn routes() {
        let r = router(true);
        assert_eq!(r.route("GET", "/metrics").status, "200 OK");
        assert!(r.route("GET", "/metrics").body.contains("ngit_sync_events_synced_total 0"));
        assert!(r.route("GET", "/status").body.contains("\"running\": true"));
        assert_eq!(r.route("GET", "/health?x=1").status, "200 OK");
        assert_eq!(router(false).route("GET", "/health").status, "503 Service Unavailable");
        let failing = Arc::new(SyncStatus {
            now: Millis(1),
            running: true,
            relays: vec![],
            totals: sync_core::status::Totals { store_error: Some("no space left on device".into()), ..Default::default() },
            repositories: vec![],
        });
        let r2 = Router::new(Arc::new(move || Arc::clone(&failing)));
        let health = r2.route("GET", "/health");
        assert_eq!(health.status, "503 Service Unavailable");
        assert!(health.body.contains("no space left on device"), "{}", health.body);
        assert_eq!(r.route("GET", "/nope").status, "404 Not Found");
        assert_eq!(r.route("POST", "/metrics").status, "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A cap beyond what a semaphore holds must not panic.
        let limits = HttpLimits { max_connections: usize::MAX, ..HttpLimits::default() };
        tokio::spawn(serve(listener, Arc::new(router(true)), limits));
        let out = get(addr).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\"status\":\"ok\"}") || out.contains("\"status\":\"ok\""), "{out}");
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn caps_connections_and_times_out_slow_clients() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = HttpLimits { max_connections: 2, timeout: Duration::from_millis(300) };
        tokio::spawn(serve(listener, Arc::new(router(true)), limits));
        // Two silent clients hold both slots: the third is refused at once.
        let mut held = vec![TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(get(addr).await.starts_with("HTTP/1.1 503 "));
        assert!(started.elapsed() < Duration::from_millis(250));
        // The silent ones are dropped after the timeout, freeing their slots.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), held[0].read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        held.clear();
        assert!(get(addr).await.starts_with("HTTP/1.1 200 OK"));
    }
}

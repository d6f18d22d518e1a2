//! The operator's HTTP endpoint: `GET /metrics` (Prometheus text), `GET
//! /health` and `GET /status` (the JSON status snapshot).
//!
//! Three read-only GET routes do not justify an HTTP framework: this is a
//! small HTTP/1.1 responder (one request per connection, `Connection:
//! close`), which Prometheus and curl speak happily. It binds to 127.0.0.1
//! by default.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{Metrics, SnapshotSource, CONTENT_TYPE};

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

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
                let body = serde_json::json!({
                    "status": if s.running { "ok" } else { "stopped" },
                    "relays_tracked": s.totals.relays_tracked,
                    "relays_connected": s.totals.relays_connected,
                    "events_synced": s.totals.events_synced,
                })
                .to_string();
                let status = if s.running { "200 OK" } else { "503 Service Unavailable" };
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

/// Serves connections forever.
pub async fn serve(listener: TcpListener, router: Arc<Router>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let router = Arc::clone(&router);
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &router).await {
                        tracing::debug!(error = %e, "http connection failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, router: &Router) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.map_err(|_| std::io::Error::other("request head timeout"))??;
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
        assert_eq!(r.route("GET", "/nope").status, "404 Not Found");
        assert_eq!(r.route("POST", "/metrics").status, "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(router(true))));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\"status\":\"ok\"}") || out.contains("\"status\":\"ok\""), "{out}");
    }
}

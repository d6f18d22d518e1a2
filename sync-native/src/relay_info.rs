//! NIP-11 fetch: `GET /` with `Accept: application/nostr+json` on the relay
//! URL's http(s) form, over a plain tokio socket (rustls for `wss://`).
//!
//! Why by hand: one small GET per connection does not justify an HTTP client
//! stack; the socket is opened by [`crate::dial`], like the WebSocket
//! connector's: one DNS lookup, only addresses that pass the private-address
//! rule are dialled, the same TLS configuration. The answer is capped at
//! [`MAX_DOCUMENT`]. The response is read by [`crate::http_response`], which
//! stops at the end of the body: keep-alive servers never close the socket.

use std::time::Duration;

use sync_core::{RelayUrl, TransportError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::dial::{connect_checked, tls_connector, Target};
use crate::http_response::{read_response, HttpResponse};

/// NIP-11 documents are small; anything larger is not one.
pub const MAX_DOCUMENT: usize = 64 * 1024;

fn err(e: impl std::fmt::Display) -> TransportError {
    TransportError(format!("NIP-11: {e}"))
}

/// Fetches the relay's NIP-11 document within `timeout`.
pub async fn fetch(relay: &RelayUrl, allow_private: bool, timeout: Duration) -> Result<String, TransportError> {
    let deadline = Instant::now() + timeout;
    tokio::time::timeout(timeout, fetch_inner(relay, allow_private, deadline)).await.map_err(|_| err("timed out"))?
}

async fn fetch_inner(relay: &RelayUrl, allow_private: bool, deadline: Instant) -> Result<String, TransportError> {
    let url = url::Url::parse(relay.as_str()).map_err(err)?;
    let target = Target::of(relay)?;
    // same rule and same dialling as the WebSocket connection
    let tcp = connect_checked(&target, allow_private, deadline).await.map_err(|e| err(e.0))?;
    let host = url.host_str().ok_or_else(|| err("no host"))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/nostr+json\r\nUser-Agent: grasp-sync\r\nConnection: close\r\n\r\n",
        url.path()
    );
    if target.tls {
        let stream = tls_connector().connect(target.server_name()?, tcp).await.map_err(err)?;
        exchange(stream, &request).await
    } else {
        exchange(tcp, &request).await
    }
}

/// Sends the request and reads one response, stopping at the end of its body
/// (keep-alive servers such as strfry do not close the socket).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Result<String, TransportError> {
    stream.write_all(request.as_bytes()).await.map_err(err)?;
    let response = read_response(&mut stream, MAX_DOCUMENT).await.map_err(err)?;
    document(response)
}

/// Status 200 and a UTF-8 body.
fn document(response: HttpResponse) -> Result<String, TransportError> {
    if response.status != 200 {
        return Err(err(format!("HTTP status {}", response.status)));
    }
    String::from_utf8(response.body).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn only_a_200_with_utf8_is_a_document() {
        let ok = HttpResponse { status: 200, headers: vec![], body: b"{}".to_vec() };
        assert_eq!(document(ok).unwrap(), "{}");
        let missing = HttpResponse { status: 404, headers: vec![], body: vec![] };
        assert!(document(missing).unwrap_err().0.contains("404"));
        let binary = HttpResponse { status: 200, headers: vec![], body: vec![0xff, 0xfe] };
        assert!(document(binary).is_err());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let relay = RelayUrl::parse("ws://127.0.0.1:9").unwrap();
        let e = fetch(&relay, false, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.0.contains("non-public"), "{e}");
    }

    /// A local HTTP server answering like strfry: keep-alive, `Content-Length`,
    /// and the socket left open. The document must arrive at once, not when
    /// the fetch times out. Returns the request the server saw.
    async fn fetch_from_keep_alive_server(response: String) -> (Result<String, TransportError>, Duration, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(response.as_bytes()).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            (request, s) // the socket stays open until the test reads the result
        });
        let relay = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let start = std::time::Instant::now();
        let doc = fetch(&relay, true, Duration::from_secs(3)).await;
        let elapsed = start.elapsed();
        let (request, _socket) = server.await.unwrap();
        (doc, elapsed, request)
    }

    #[tokio::test]
    async fn fetches_from_a_keep_alive_server_without_waiting_for_close() {
        let body = r#"{"limitation":{"max_subscriptions":20}}"#;
        let sized = format!("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let (doc, elapsed, request) = fetch_from_keep_alive_server(sized).await;
        assert!(doc.unwrap().contains("max_subscriptions"));
        assert!(elapsed < Duration::from_secs(1), "waited {elapsed:?} for a keep-alive server to close");
        assert!(request.starts_with("GET / HTTP/1.1\r\n") && request.contains("Accept: application/nostr+json"), "{request}");

        let chunked = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
        let (doc, elapsed, _) = fetch_from_keep_alive_server(chunked).await;
        assert_eq!(doc.unwrap(), body);
        assert!(elapsed < Duration::from_secs(1), "waited {elapsed:?}");
    }

    #[tokio::test]
    async fn an_oversized_document_is_refused() {
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_DOCUMENT + 1);
        let (doc, _, _) = fetch_from_keep_alive_server(huge).await;
        assert!(doc.unwrap_err().0.contains("larger than"));
    }
}

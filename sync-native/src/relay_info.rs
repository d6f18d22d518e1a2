//! NIP-11 fetch: `GET /` with `Accept: application/nostr+json` on the relay
//! URL's http(s) form, over a plain tokio socket (rustls for `wss://`).
//!
//! Why by hand: one small GET per connection does not justify an HTTP client
//! stack; the TLS pieces are the ones the WebSocket connector already uses.
//! The address connected to is the one checked by the private-address rule
//! (one DNS lookup, shared with the connector), and the answer is capped at
//! [`MAX_DOCUMENT`].

use std::time::Duration;

use sync_core::{RelayUrl, TransportError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::connector::{dial, resolve_checked, tls_connector, Target};

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
    let addrs = resolve_checked(&target.host, target.port, allow_private).await.map_err(|e| err(e.0))?;
    let tcp = dial(&addrs, deadline).await.map_err(|e| err(e.0))?;
    let host = url.host_str().ok_or_else(|| err("no host"))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/nostr+json\r\nUser-Agent: grasp-sync\r\nConnection: close\r\n\r\n",
        url.path()
    );
    let raw = if target.tls {
        let stream = tls_connector().connect(target.server_name()?, tcp).await.map_err(err)?;
        exchange(stream, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    parse_response(&raw)
}

/// Sends the request and reads the whole answer (bounded).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, request: &str) -> Result<Vec<u8>, TransportError> {
    stream.write_all(request.as_bytes()).await.map_err(err)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // TLS peers that close without close_notify: what arrived counts
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(err(e)),
        };
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_DOCUMENT + 8192 {
            return Err(err("answer too large"));
        }
    }
}

/// Status 200 and the body (plain, `Content-Length` or chunked).
fn parse_response(raw: &[u8]) -> Result<String, TransportError> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("no HTTP header"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(err(format!("HTTP status `{status}`")));
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let decoded;
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decoded = dechunk(body)?;
        body = &decoded;
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = &body[..len.min(body.len())];
    }
    if body.len() > MAX_DOCUMENT {
        return Err(err("document too large"));
    }
    String::from_utf8(body.to_vec()).map_err(err)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, TransportError> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or_else(|| err("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| err("bad chunk size"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size || out.len() + size > MAX_DOCUMENT {
            return Err(err("truncated or oversized chunk"));
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_length_and_chunked_bodies() {
        let doc = r#"{"supported_nips":[77]}"#;
        let plain = format!("HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\n\r\n{doc}");
        assert_eq!(parse_response(plain.as_bytes()).unwrap(), doc);
        let sized = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{doc}garbage", doc.len());
        assert_eq!(parse_response(sized.as_bytes()).unwrap(), doc);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            &doc[..5],
            doc.len() - 5,
            &doc[5..]
        );
        assert_eq!(parse_response(chunked.as_bytes()).unwrap(), doc);
    }

    #[test]
    fn errors_are_clear() {
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err().0.contains("404"));
        assert!(parse_response(b"garbage").unwrap_err().0.contains("no HTTP header"));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let relay = RelayUrl::parse("ws://127.0.0.1:9").unwrap();
        let e = fetch(&relay, false, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.0.contains("non-public"), "{e}");
    }

    #[tokio::test]
    async fn fetches_from_a_local_http_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = r#"{"limitation":{"max_subscriptions":20}}"#;
            s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
            req
        });
        let relay = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
        let doc = fetch(&relay, true, Duration::from_secs(2)).await.unwrap();
        assert!(doc.contains("max_subscriptions"));
        let req = server.await.unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\n") && req.contains("Accept: application/nostr+json"), "{req}");
    }
}

//! Reads one HTTP/1.1 response from a stream and stops at the end of its body.
//!
//! Why: a client must not wait for the server to close the socket. Servers
//! that answer `Connection: keep-alive` with a `Content-Length` (strfry's
//! NIP-11, for one) keep it open, so "read until EOF" waits for the whole
//! timeout. The body ends where its framing says: `Content-Length`, the last
//! chunk of `Transfer-Encoding: chunked`, or, only when neither is given, the
//! close of the connection. The head is parsed by `httparse`; head and body
//! are bounded so a hostile server cannot make us buffer without limit.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted.
const MAX_HEADERS: usize = 64;

/// A response: status code, headers (names lower-cased), decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// e.g. 200.
    pub status: u16,
    /// `(lower-case name, value)` in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a response could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpReadError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(String),
    /// The connection closed before the response was complete.
    #[error("connection closed before the end of the response")]
    Truncated,
    /// Not an HTTP/1.x response head.
    #[error("not an HTTP response: {0}")]
    Malformed(String),
    /// The head is larger than we accept.
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The body is larger than the caller accepts.
    #[error("response body larger than {0} bytes")]
    BodyTooLarge(usize),
}

/// How the body's end is found (RFC 9112 §6.3, the cases a client meets).
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Bytes read so far, and the stream to read more from.
struct Input<'a, R> {
    stream: &'a mut R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Input<'_, R> {
    /// Reads once more; false at end of stream.
    async fn more(&mut self) -> Result<bool, HttpReadError> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 8192];
        let n = match self.stream.read(&mut chunk).await {
            Ok(n) => n,
            // TLS peers that close without close_notify: what arrived counts
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(HttpReadError::Io(e.to_string())),
        };
        self.eof = n == 0;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Makes at least `n` bytes available.
    async fn need(&mut self, n: usize) -> Result<(), HttpReadError> {
        while self.buf.len() < n {
            if !self.more().await? {
                return Err(HttpReadError::Truncated);
            }
        }
        Ok(())
    }

    /// Takes one CRLF-terminated line (without the CRLF), at most `max` bytes.
    async fn line(&mut self, max: usize) -> Result<Vec<u8>, HttpReadError> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].windows(2).position(|w| w == b"\r\n") {
                let end = searched + i;
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(HttpReadError::Malformed("chunk line too long".into()));
            }
            searched = self.buf.len().saturating_sub(1);
            if !self.more().await? {
                return Err(HttpReadError::Truncated);
            }
        }
    }
}

/// Reads one response from `stream`; the body may be at most `max_body` bytes.
/// Returns as soon as the body is complete, whether or not the server closes.
pub async fn read_response<R: AsyncRead + Unpin>(stream: &mut R, max_body: usize) -> Result<HttpResponse, HttpReadError> {
    let mut input = Input { stream, buf: Vec::new(), eof: false };
    loop {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&input.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string()))
                        .collect::<Vec<_>>();
                    break (parsed.code.unwrap_or(0), headers, len);
                }
                Ok(httparse::Status::Partial) if input.buf.len() > MAX_HEAD => return Err(HttpReadError::HeadTooLarge),
                Ok(httparse::Status::Partial) => {
                    if !input.more().await? {
                        return Err(if input.buf.is_empty() {
                            HttpReadError::Truncated
                        } else {
                            HttpReadError::Malformed("incomplete head".into())
                        });
                    }
                }
                Err(e) => return Err(HttpReadError::Malformed(e.to_string())),
            }
        };
        input.buf.drain(..head_len);
        // 1xx answers (100 Continue, 103 Early Hints) precede the real one
        if (100..200).contains(&status) {
            continue;
        }
        let response = HttpResponse { status, headers, body: Vec::new() };
        let framing = if response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked")) {
            Framing::Chunked
        } else if let Some(len) = response.header("content-length") {
            Framing::Length(len.parse().map_err(|_| HttpReadError::Malformed(format!("bad Content-Length `{len}`")))?)
        } else if status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        };
        let body = read_body(&mut input, framing, max_body).await?;
        return Ok(HttpResponse { body, ..response });
    }
}

async fn read_body<R: AsyncRead + Unpin>(input: &mut Input<'_, R>, framing: Framing, max_body: usize) -> Result<Vec<u8>, HttpReadError> {
    match framing {
        Framing::Length(len) => {
            if len > max_body {
                return Err(HttpReadError::BodyTooLarge(max_body));
            }
            input.need(len).await?;
            Ok(input.buf[..len].to_vec())
        }
        Framing::UntilClose => {
            while input.more().await? {
                if input.buf.len() > max_body {
                    return Err(HttpReadError::BodyTooLarge(max_body));
                }
            }
            if input.buf.len() > max_body {
                return Err(HttpReadError::BodyTooLarge(max_body));
            }
            Ok(std::mem::take(&mut input.buf))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = input.line(1024).await?;
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size =
                    usize::from_str_radix(size_text, 16).map_err(|_| HttpReadError::Malformed(format!("bad chunk size `{size_text}`")))?;
                if size == 0 {
                    // trailers end with an empty line; a server that stops
                    // right after the last chunk has still sent the whole body
                    while input.line(MAX_HEAD).await.is_ok_and(|l| !l.is_empty()) {}
                    return Ok(body);
                }
                if body.len().saturating_add(size) > max_body {
                    return Err(HttpReadError::BodyTooLarge(max_body));
                }
                input.need(size + 2).await?;
                body.extend_from_slice(&input.buf[..size]);
                if &input.buf[size..size + 2] != b"\r\n" {
                    return Err(HttpReadError::Malformed("chunk not followed by CRLF".into()));
                }
                input.buf.drain(..size + 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    async fn read(raw: &[u8], max: usize) -> Result<HttpResponse, HttpReadError> {
        let mut stream = raw;
        read_response(&mut stream, max).await
    }

    #[tokio::test]
    async fn content_length_body_ignores_what_follows() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloNEXT", 100).await.unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("x-a")), (200, &b"hello"[..], Some("b")));
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(read(raw, 100).await.unwrap().body, b"abcde");
    }

    #[tokio::test]
    async fn body_until_close_and_1xx_skipped() {
        let r = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nnope", 100).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"nope"[..]));
    }

    #[tokio::test]
    async fn bounds_and_malformed_input_are_errors() {
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", 100).await, Err(HttpReadError::BodyTooLarge(100)));
        assert_eq!(read(b"HTTP/1.1 200 OK\r\n\r\n0123456789", 5).await, Err(HttpReadError::BodyTooLarge(5)));
        let big_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\n";
        assert_eq!(read(big_chunk, 100).await, Err(HttpReadError::BodyTooLarge(100)));
        assert_eq!(read(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", 100).await, Err(HttpReadError::Truncated));
        assert!(matches!(read(b"garbage\r\n\r\n", 100).await, Err(HttpReadError::Malformed(_))));
        assert!(matches!(read(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 100).await, Err(HttpReadError::Malformed(_))));
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(matches!(read(bad, 100).await, Err(HttpReadError::Malformed(_))));
        let endless_head = [b"HTTP/1.1 200 OK\r\n".as_slice(), &[b'a'; MAX_HEAD + 10]].concat();
        assert_eq!(read(&endless_head, 100).await, Err(HttpReadError::HeadTooLarge));
        assert_eq!(read(b"", 100).await, Err(HttpReadError::Truncated));
    }

    /// The reason this module exists: a keep-alive server that never closes.
    #[tokio::test]
    async fn returns_at_the_end_of_the_body_while_the_server_keeps_the_socket_open() {
        for (head, body) in [
            ("Content-Length: 17\r\nConnection: keep-alive", "{\"name\":\"relay\"}\n".to_string()),
            ("Transfer-Encoding: chunked\r\nConnection: keep-alive", "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n".to_string()),
        ] {
            let (mut client, mut server) = tokio::io::duplex(64);
            let response = format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n{body}");
            let writer = tokio::spawn(async move {
                server.write_all(response.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_secs(30)).await; // never closes in time
                drop(server);
            });
            let r = tokio::time::timeout(Duration::from_secs(2), read_response(&mut client, 1024)).await.expect("did not wait for close");
            assert_eq!(r.unwrap().status, 200);
            writer.abort();
        }
    }
}

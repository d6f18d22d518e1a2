//! [`Connector`] on tokio-tungstenite over a socket opened here (rustls for
//! `wss://`).
//!
//! Besides opening the socket it enforces the relay-URL safety rule a second
//! time, on resolved addresses: an announcement can name a public-looking
//! hostname that resolves to 127.0.0.1 or 10.x, which the URL check alone
//! cannot see. The host is resolved once and the TCP connection goes to an
//! address that was checked (no second lookup a rebinding DNS server could
//! answer differently); TLS SNI and the `Host` header still carry the name.
//! Incoming WebSocket messages and frames are capped at the frame limit, so
//! a relay cannot make us buffer more than that.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::{self, LocalBoxFuture};
use futures::{FutureExt, SinkExt, StreamExt};
use sync_core::relay_url::is_public_ip;
use sync_core::{Connector, FrameSink, FrameStream, RelayUrl, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Opens WebSocket connections to relays.
#[derive(Debug, Clone)]
pub struct WsConnector {
    allow_private: bool,
    trusted: BTreeSet<RelayUrl>,
    max_frame_bytes: usize,
}

impl WsConnector {
    /// A connector; `allow_private` disables the resolved-address check,
    /// which never applies to `trusted` relays (the operator's bootstrap list).
    /// A relay sending a message or frame over `max_frame_bytes` is dropped.
    pub fn new(allow_private: bool, trusted: impl IntoIterator<Item = RelayUrl>, max_frame_bytes: usize) -> Self {
        Self { allow_private, trusted: trusted.into_iter().collect(), max_frame_bytes }
    }
}

impl Connector for WsConnector {
    fn connect(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<(FrameSink, FrameStream), TransportError>> {
        let relay = relay.clone();
        let allow_private = self.allow_private || self.trusted.contains(&relay);
        let max = self.max_frame_bytes;
        async move {
            tokio::time::timeout(timeout, open(&relay, allow_private, Instant::now() + timeout, max))
                .await
                .map_err(|_| TransportError(format!("connect to {relay} timed out")))?
        }
        .boxed_local()
    }

    fn fetch_info(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let relay = relay.clone();
        let allow_private = self.allow_private || self.trusted.contains(&relay);
        async move { crate::relay_info::fetch(&relay, allow_private, timeout).await }.boxed_local()
    }
}

/// The frame limit as tungstenite's read limits (whole message and single frame).
fn ws_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max_frame_bytes)).max_frame_size(Some(max_frame_bytes))
}

/// TCP to a checked address, then TLS (for `wss://`) and the WebSocket handshake over it.
async fn open(
    relay: &RelayUrl,
    allow_private: bool,
    deadline: Instant,
    max_frame_bytes: usize,
) -> Result<(FrameSink, FrameStream), TransportError> {
    let target = Target::of(relay)?;
    let addrs = resolve_checked(&target.host, target.port, allow_private).await?;
    let tcp = dial(&addrs, deadline).await?;
    let config = Some(ws_config(max_frame_bytes));
    let handshake_err = |e: tokio_tungstenite::tungstenite::Error| TransportError(format!("websocket handshake with {relay}: {e}"));
    if target.tls {
        let tls =
            tls_connector().connect(target.server_name()?, tcp).await.map_err(|e| TransportError(format!("TLS with {relay}: {e}")))?;
        // boxed: the handshake future is large
        let (ws, _) = Box::pin(tokio_tungstenite::client_async_with_config(relay.as_str(), tls, config)).await.map_err(handshake_err)?;
        Ok(split(ws))
    } else {
        let (ws, _) = Box::pin(tokio_tungstenite::client_async_with_config(relay.as_str(), tcp, config)).await.map_err(handshake_err)?;
        Ok(split(ws))
    }
}

/// Where a relay URL points: bare host (no IPv6 brackets), port, TLS or not.
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Target {
    pub fn of(relay: &RelayUrl) -> Result<Self, TransportError> {
        let url = url::Url::parse(relay.as_str()).map_err(|e| TransportError(format!("invalid url: {e}")))?;
        let tls = url.scheme() == "wss";
        let host = url.host_str().ok_or_else(|| TransportError("url has no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { host, port, tls })
    }

    /// SNI / certificate name: the host name (or IP literal) from the URL.
    pub fn server_name(&self) -> Result<rustls_pki_types::ServerName<'static>, TransportError> {
        rustls_pki_types::ServerName::try_from(self.host.clone()).map_err(|e| TransportError(format!("bad TLS name {}: {e}", self.host)))
    }
}

/// Resolves `host` once and returns the addresses that may be dialled, in
/// resolver order. Unless `allow_private`, a host with any non-public address
/// is refused outright (a name mixing public and private answers is hostile).
pub async fn resolve_checked(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| TransportError(format!("cannot resolve {host}: {e}")))?.collect();
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
            return Err(TransportError(format!("refusing {host}: resolves to non-public address {}", bad.ip())));
        }
    }
    if addrs.is_empty() {
        return Err(TransportError(format!("{host} has no address")));
    }
    Ok(addrs)
}

/// Opens TCP to the first of `addrs` that accepts, trying them in order and
/// sharing the time left before `deadline` among the remaining ones (so one
/// black-holed address does not use it all). Never dials anything else.
pub async fn dial(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, TransportError> {
    let mut last = TransportError("no address to connect to".into());
    for (i, addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match tokio::time::timeout(budget, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                // small request frames should leave at once
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => last = TransportError(format!("connect {addr}: {e}")),
            Err(_) => last = TransportError(format!("connect {addr}: timed out")),
        }
    }
    Err(last)
}

/// rustls with the webpki roots, shared by the WebSocket and NIP-11 paths.
pub(crate) fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = tokio_rustls::rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(Arc::clone(config))
}

/// Splits a socket into the driver's text-frame sink and stream. Binary,
/// ping and pong frames are dropped (tungstenite answers pings itself); a
/// close frame ends the stream; a read error (e.g. over the size limit) is
/// yielded as a transport error.
fn split<S: AsyncRead + AsyncWrite + Unpin + 'static>(socket: WebSocketStream<S>) -> (FrameSink, FrameStream) {
    let (tx, rx) = socket.split();
    let sink = tx.sink_map_err(|e| TransportError(e.to_string())).with(|text: String| future::ready(Ok(Message::text(text))));
    let stream = rx.take_while(|item| future::ready(!matches!(item, Ok(Message::Close(_))))).filter_map(|item| {
        future::ready(match item {
            Ok(Message::Text(text)) => Some(Ok(text.as_str().to_owned())),
            Ok(_) => None,
            Err(e) => Some(Err(TransportError(e.to_string()))),
        })
    });
    (Box::pin(sink), Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    async fn in_local<F: std::future::Future>(f: F) -> F::Output {
        tokio::task::LocalSet::new().run_until(f).await
    }

    #[tokio::test]
    async fn hostname_resolving_to_loopback_is_refused() {
        let err = resolve_checked("localhost", 9, false).await.unwrap_err();
        assert!(err.0.contains("non-public"), "{err}");
        assert!(resolve_checked("10.1.2.3", 9, false).await.is_err());
        assert!(resolve_checked("::ffff:127.0.0.1", 9, false).await.is_err());
        // allowed: the loopback addresses it resolved to, with the port, are what will be dialled
        let addrs = resolve_checked("localhost", 9, true).await.unwrap();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{addrs:?}");
        assert_eq!(resolve_checked("8.8.8.8", 443, false).await.unwrap(), vec!["8.8.8.8:443".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn dial_connects_to_a_given_address_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        // a closed port first: dial moves on to the next checked address, never elsewhere
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let tcp = dial(&[closed, good], Instant::now() + Duration::from_secs(2)).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), good);
        assert!(dial(&[closed], Instant::now() + Duration::from_secs(2)).await.is_err());
        assert!(dial(&[], Instant::now() + Duration::from_secs(2)).await.is_err());
    }

    #[tokio::test]
    async fn connector_refuses_private_before_connecting() {
        in_local(async {
            let relay = RelayUrl::parse("ws://localhost:9").unwrap();
            let res = WsConnector::new(false, [], 1 << 20).connect(&relay, Duration::from_secs(1)).await;
            assert!(res.err().unwrap().0.contains("non-public"));
            // an operator-chosen (bootstrap) relay is exempt: the attempt gets past the check
            let res = WsConnector::new(false, [relay.clone()], 1 << 20).connect(&relay, Duration::from_secs(1)).await;
            assert!(!res.err().unwrap().0.contains("non-public"));
        })
        .await;
    }

    /// A one-connection WebSocket server on 127.0.0.1: records the `Host`
    /// header, sends `out`, then echoes until the client goes.
    #[allow(clippy::result_large_err)] // the callback's error type is tungstenite's
    async fn server(out: Vec<Message>) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut host = String::new();
            let callback = |req: &Request, resp: Response| {
                host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
                Ok(resp)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await.unwrap();
            for m in out {
                if ws.send(m).await.is_err() {
                    return host;
                }
            }
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && ws.send(m).await.is_err() {
                    break;
                }
            }
            host
        });
        (port, task)
    }

    #[tokio::test]
    async fn connects_by_name_to_a_local_server_with_the_host_header() {
        in_local(async {
            let (port, task) = server(vec![Message::text("hello")]).await;
            let relay = RelayUrl::parse(&format!("ws://localhost:{port}")).unwrap();
            let (mut sink, mut stream) = WsConnector::new(true, [], 1024).connect(&relay, Duration::from_secs(5)).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap(), "hello");
            sink.send(r#"["REQ","x",{}]"#.to_string()).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap(), r#"["REQ","x",{}]"#);
            drop((sink, stream));
            assert_eq!(task.await.unwrap(), format!("localhost:{port}"));
        })
        .await;
    }

    #[tokio::test]
    async fn a_message_over_the_frame_limit_is_a_transport_error() {
        in_local(async {
            let (port, _task) = server(vec![Message::text("small"), Message::text("x".repeat(4096))]).await;
            let relay = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
            let (_sink, mut stream) = WsConnector::new(true, [], 1024).connect(&relay, Duration::from_secs(5)).await.unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap(), "small");
            let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap();
            let err = next.expect("an error, not the end of the stream").unwrap_err();
            assert!(err.0.to_lowercase().contains("too long") || err.0.contains("size"), "{err}");
        })
        .await;
    }

    #[tokio::test]
    async fn a_fragmented_message_over_the_limit_is_a_transport_error() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        in_local(async {
            // every frame is under the limit, the message is not
            let chunk = || "y".repeat(600);
            let frames = vec![
                Message::Frame(Frame::message(chunk(), OpCode::Data(Data::Text), false)),
                Message::Frame(Frame::message(chunk(), OpCode::Data(Data::Continue), false)),
                Message::Frame(Frame::message(chunk(), OpCode::Data(Data::Continue), true)),
            ];
            let (port, _task) = server(frames).await;
            let relay = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).unwrap();
            let (_sink, mut stream) = WsConnector::new(true, [], 1024).connect(&relay, Duration::from_secs(5)).await.unwrap();
            let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap();
            assert!(next.expect("an error, not the end of the stream").is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn wss_to_a_plain_server_fails_in_tls_not_before() {
        in_local(async {
            let (port, _task) = server(vec![]).await;
            let relay = RelayUrl::parse(&format!("wss://localhost:{port}")).unwrap();
            let err = WsConnector::new(true, [], 1024).connect(&relay, Duration::from_secs(5)).await.err().unwrap();
            assert!(err.0.contains("TLS"), "{err}");
        })
        .await;
    }
}

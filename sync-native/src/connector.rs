//! [`Connector`] on tokio-tungstenite over a socket opened by [`crate::dial`]
//! (rustls for `wss://`).
//!
//! The socket goes to an address checked against the relay-URL safety rule
//! (see [`crate::dial`]); TLS SNI and the `Host` header still carry the name.
//! Incoming WebSocket messages and frames are capped at the frame limit, so
//! a relay cannot make us buffer more than that. NIP-11 documents are fetched
//! by [`crate::relay_info`] over the same kind of socket.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::{self, LocalBoxFuture};
use futures::{FutureExt, SinkExt, StreamExt};
use sync_core::{Connector, FrameSink, FrameStream, RelayUrl, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::dial::{connect_checked, tls_connector, Target};

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
    let tcp = connect_checked(&target, allow_private, deadline).await?;
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

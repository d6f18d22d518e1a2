//! [`Connector`] on `async-wsocket` (tokio-tungstenite, rustls for `wss://`).
//!
//! Besides opening the socket it enforces the relay-URL safety rule a second
//! time, on resolved addresses: an announcement can name a public-looking
//! hostname that resolves to 127.0.0.1 or 10.x, which the URL check alone
//! cannot see. (A DNS answer that changes between this lookup and the
//! connect is not covered; operators who need that run behind an egress
//! firewall.)

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use async_wsocket::{ConnectionMode, Message, WebSocket};
use futures::future::{self, LocalBoxFuture};
use futures::{FutureExt, SinkExt, StreamExt};
use sync_core::relay_url::is_public_ip;
use sync_core::{Connector, FrameSink, FrameStream, RelayUrl, TransportError};

/// Opens WebSocket connections to relays.
#[derive(Debug, Clone)]
pub struct WsConnector {
    allow_private: bool,
    trusted: BTreeSet<RelayUrl>,
}

impl WsConnector {
    /// A connector; `allow_private` disables the resolved-address check,
    /// which never applies to `trusted` relays (the operator's bootstrap list).
    pub fn new(allow_private: bool, trusted: impl IntoIterator<Item = RelayUrl>) -> Self {
        Self { allow_private, trusted: trusted.into_iter().collect() }
    }
}

impl Connector for WsConnector {
    fn connect(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<(FrameSink, FrameStream), TransportError>> {
        let relay = relay.clone();
        let allow_private = self.allow_private || self.trusted.contains(&relay);
        async move {
            let url = async_wsocket::Url::parse(relay.as_str()).map_err(|e| TransportError(format!("invalid url: {e}")))?;
            if !allow_private {
                check_resolved(&url).await?;
            }
            let socket = async_wsocket::connect(&url, &ConnectionMode::Direct, timeout).await.map_err(|e| TransportError(e.to_string()))?;
            Ok(split(socket))
        }
        .boxed_local()
    }

    fn fetch_info(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let relay = relay.clone();
        let allow_private = self.allow_private || self.trusted.contains(&relay);
        async move { crate::relay_info::fetch(&relay, allow_private, timeout).await }.boxed_local()
    }
}

/// Refuses URLs whose host resolves to any non-public address.
pub async fn check_resolved(url: &async_wsocket::Url) -> Result<(), TransportError> {
    let host = url.host_str().ok_or_else(|| TransportError("url has no host".into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| TransportError(format!("cannot resolve {host}: {e}")))?.collect();
    if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
        return Err(TransportError(format!("refusing {host}: resolves to non-public address {}", bad.ip())));
    }
    Ok(())
}

/// Splits a socket into the driver's text-frame sink and stream. Binary,
/// ping and pong frames are dropped (tungstenite answers pings itself); a
/// close frame ends the stream.
fn split(socket: WebSocket) -> (FrameSink, FrameStream) {
    let (tx, rx) = socket.split();
    let sink = tx.sink_map_err(|e| TransportError(e.to_string())).with(|text: String| future::ready(Ok(Message::Text(text))));
    let stream = rx.take_while(|item| future::ready(!matches!(item, Ok(Message::Close(_))))).filter_map(|item| {
        future::ready(match item {
            Ok(Message::Text(text)) => Some(Ok(text)),
            Ok(_) => None,
            Err(e) => Some(Err(TransportError(e.to_string()))),
        })
    });
    (Box::pin(sink), Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hostname_resolving_to_loopback_is_refused() {
        let url = async_wsocket::Url::parse("ws://localhost:9").unwrap();
        let err = check_resolved(&url).await.unwrap_err();
        assert!(err.0.contains("non-public"), "{err}");
        let url = async_wsocket::Url::parse("ws://10.1.2.3:9").unwrap();
        assert!(check_resolved(&url).await.is_err());
    }

    #[tokio::test]
    async fn connector_refuses_private_before_connecting() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let relay = RelayUrl::parse("ws://localhost:9").unwrap();
                let res = WsConnector::new(false, []).connect(&relay, Duration::from_secs(1)).await;
                assert!(res.err().unwrap().0.contains("non-public"));
                // an operator-chosen (bootstrap) relay is exempt: the attempt gets past the check
                let res = WsConnector::new(false, [relay.clone()]).connect(&relay, Duration::from_secs(1)).await;
                assert!(!res.err().unwrap().0.contains("non-public"));
            })
            .await;
    }
}

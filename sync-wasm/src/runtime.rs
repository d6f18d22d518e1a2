//! sync-core's platform traits on browser APIs: `Date.now()` and
//! `setTimeout` for the [`Clock`], the browser `WebSocket` (through
//! `async-wsocket`'s wasm side) for the [`Connector`].

use core::time::Duration;

use async_wsocket::{ConnectionMode, Message, Url};
use futures::future::{self, LocalBoxFuture};
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_timers::future::TimeoutFuture;
use sync_core::{Clock, Connector, FrameSink, FrameStream, Millis, RelayUrl, TransportError};

/// Longest single `setTimeout` the browser honours (2^31−1 ms); longer
/// sleeps simply wake early and the driver sleeps again.
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// Wall clock from `Date.now()`, timers from `setTimeout`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserClock;

impl Clock for BrowserClock {
    fn now(&self) -> Millis {
        Millis(js_sys::Date::now().max(0.0) as u64)
    }

    fn sleep_until(&self, deadline: Millis) -> LocalBoxFuture<'static, ()> {
        let delay = deadline.0.saturating_sub(self.now().0).min(MAX_TIMEOUT_MS);
        TimeoutFuture::new(delay as u32).boxed_local()
    }
}

/// Opens relays with the browser's `WebSocket`. Text frames only: binary
/// frames are not nostr and are dropped.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserConnector;

impl Connector for BrowserConnector {
    fn connect(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<(FrameSink, FrameStream), TransportError>> {
        let url = relay.as_str().to_string();
        async move {
            let url = Url::parse(&url).map_err(|e| TransportError(format!("invalid URL {url}: {e}")))?;
            let socket = async_wsocket::connect(&url, &ConnectionMode::Direct, timeout)
                .await
                .map_err(|e| TransportError(format!("connect {url}: {e}")))?;
            let (sink, stream) = socket.split();
            let sink: FrameSink = Box::pin(
                sink.sink_map_err(|e| TransportError(format!("send: {e}")))
                    .with(|text: String| future::ready(Ok::<Message, TransportError>(Message::Text(text)))),
            );
            let stream: FrameStream = Box::pin(stream.filter_map(|item| {
                future::ready(match item {
                    Ok(Message::Text(text)) => Some(Ok(text)),
                    Ok(Message::Binary(_)) => None,
                    Err(e) => Some(Err(TransportError(format!("receive: {e}")))),
                })
            }));
            Ok((sink, stream))
        }
        .boxed_local()
    }
}

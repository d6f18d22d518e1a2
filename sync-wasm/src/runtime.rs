//! sync-core's platform traits on browser APIs: `Date.now()` and
//! `setTimeout` for the [`Clock`], the browser `WebSocket` (through
//! `async-wsocket`'s wasm side) for the [`Connector`], and `fetch` for the
//! relays' NIP-11 documents.

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

    fn fetch_info(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        // NIP-11 lives at the relay URL's http(s) form; relays serve it with
        // `Access-Control-Allow-Origin: *`, and a relay that does not simply
        // leaves the engine on its defaults.
        let url = relay.as_str().replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
        let fetch = async move { fetch_text(&url).await.map_err(|e| TransportError(format!("NIP-11 {url}: {e}"))) };
        let deadline = TimeoutFuture::new(timeout.as_millis().min(MAX_TIMEOUT_MS as u128) as u32);
        async move {
            match future::select(Box::pin(fetch), deadline).await {
                future::Either::Left((result, _)) => result,
                future::Either::Right(_) => Err(TransportError("NIP-11: timed out".into())),
            }
        }
        .boxed_local()
    }
}

/// `GET url` with `Accept: application/nostr+json`; the body of a 2xx answer.
/// Works in a page and in a worker (`fetch` is looked up on the global object).
async fn fetch_text(url: &str) -> Result<String, String> {
    use wasm_bindgen::JsCast;
    let js = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let headers = web_sys::Headers::new().map_err(js)?;
    headers.set("Accept", "application/nostr+json").map_err(js)?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(js)?;
    let global: web_sys::Window = js_sys::global().unchecked_into();
    let response: web_sys::Response =
        wasm_bindgen_futures::JsFuture::from(global.fetch_with_request(&request)).await.map_err(js)?.unchecked_into();
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()));
    }
    let text = wasm_bindgen_futures::JsFuture::from(response.text().map_err(js)?).await.map_err(js)?;
    let text = text.as_string().ok_or("body is not text")?;
    if text.len() > 64 * 1024 {
        return Err("document too large".into());
    }
    Ok(text)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    wasm_bindgen_test_configure!(run_in_browser);

    /// The NIP-11 fetch path (Headers, Request, `fetch`, Response text) in
    /// real Chromium, on a `data:` URL (no server needed).
    #[wasm_bindgen_test]
    async fn fetch_reads_a_relay_information_document() {
        let url =
            "data:application/nostr+json,%7B%22supported_nips%22%3A%5B1%2C77%5D%2C%22limitation%22%3A%7B%22max_subscriptions%22%3A20%7D%7D";
        let doc = super::fetch_text(url).await.expect("fetched");
        let info = sync_core::nip11::RelayInfo::parse(&doc).expect("a NIP-11 document");
        assert_eq!(info.negentropy, Some(true));
        assert_eq!(info.max_subscriptions, Some(20));
        assert!(super::fetch_text("http://127.0.0.1:9/").await.is_err(), "an unreachable relay is an error, not a hang");
    }
}

//! The simulated network: the driver's [`Connector`] over the world's
//! [`SimRelay`](super::relay::SimRelay)s.
//!
//! A connection is a pair of channels through the world's event queue: what
//! the driver writes to its [`SimSink`] reaches the relay after the link's
//! latency, the relay's answers reach the driver's [`SimStream`] after the
//! latency plus the relay's answer delay, each direction in order (like
//! TCP). Connects take a round trip; flaky relays refuse some (after half a
//! round trip) and drop connections in their bad period (the stream yields
//! an error, then ends); an unknown host never answers, so the driver's
//! connect timeout ends the attempt. NIP-11 documents take a round trip.
//! When the driver drops or closes its side, the relay's connection closes.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::LocalBoxFuture;
use futures::{Sink, Stream, StreamExt};
use sync_core::{Connector, FrameSink, FrameStream, RelayUrl, TransportError};

use super::exec::{self, Time};
use super::world::{since, Ev, Shared};

/// What a connect attempt gives the driver.
pub type ConnectResult = Result<(FrameSink, FrameStream), TransportError>;

/// The driver's connector.
pub struct SimConnector {
    pub(super) shared: Rc<RefCell<Shared>>,
    pub(super) time: Time,
}

impl Connector for SimConnector {
    fn connect(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, ConnectResult> {
        let answer = self.shared.borrow_mut().connect(&relay.to_string(), timeout);
        Box::pin(async move {
            match answer {
                // a result the world dropped (a newer attempt) never comes
                Some(rx) => rx.await.unwrap_or(Err(TransportError("superseded".into()))),
                None => std::future::pending().await,
            }
        })
    }

    fn fetch_info(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let url = relay.to_string();
        let (at, document) = {
            let mut s = self.shared.borrow_mut();
            let document = s.relays.get(&url).and_then(|r| r.spec.nip11.clone());
            let rtt = s.latency(&url) * 2;
            (s.now() + rtt.min(timeout), document.filter(|_| rtt <= timeout))
        };
        let sleep = exec::sleep(&self.time, at);
        let shared = Rc::clone(&self.shared);
        Box::pin(async move {
            sleep.await;
            let s = shared.borrow();
            if s.trace {
                eprintln!("{} nip11 {url} {}", since(s.now()), document.as_deref().unwrap_or("(none)"));
            }
            // relays without a document (and unknown hosts) answer 404
            document.ok_or_else(|| TransportError("HTTP 404".into()))
        })
    }
}

impl Shared {
    /// A connect attempt: the answer comes through the returned channel
    /// (`None`: an unknown host, it never answers).
    fn connect(&mut self, url: &str, timeout: Duration) -> Option<oneshot::Receiver<ConnectResult>> {
        let now = self.now();
        let _ = timeout; // the driver enforces it
        *self.connect_attempts.entry(url.to_string()).or_default() += 1;
        let link = self.links.entry(url.to_string()).or_default();
        link.epoch += 1;
        link.open = false;
        let epoch = link.epoch;
        let accepts = self.relays.get_mut(url).map(|r| r.accepts_connection(now))?;
        let (reply, rx) = oneshot::channel();
        let (rtt, ok) = if accepts { (self.latency(url) * 2, true) } else { (self.latency(url), false) };
        self.schedule(now + rtt, Ev::ConnectResult { url: url.to_string(), epoch, ok, reply });
        Some(rx)
    }

    /// A connect attempt ends.
    pub(super) fn connect_result(&mut self, url: String, epoch: u64, ok: bool, reply: oneshot::Sender<ConnectResult>) {
        let now = self.now();
        // a newer attempt replaced it, or the driver timed out and gave up
        if self.links.get(&url).is_none_or(|l| l.epoch != epoch) || reply.is_canceled() {
            return;
        }
        if !ok {
            let _ = reply.send(Err(TransportError("simulated connect failure".into())));
            return;
        }
        let (tx, rx) = mpsc::unbounded();
        let link = self.links.get_mut(&url).expect("checked");
        link.open = true;
        link.last_to_relay = now;
        link.last_to_engine = now;
        link.to_engine = Some(tx);
        let drop_at = self.relays.get_mut(&url).and_then(|r| {
            r.open();
            r.drop_at(now)
        });
        if let Some(at) = drop_at {
            self.schedule(at, Ev::Drop { url: url.clone(), epoch });
        }
        let shared = self.me.upgrade().expect("the world is alive");
        let sink = SimSink { shared: Rc::clone(&shared), url: url.clone(), epoch };
        let stream = SimStream { rx, shared, url, epoch };
        // the receiver is alive (checked above, one thread): this cannot fail
        // and hand the sockets back to be dropped inside this borrow
        let _ = reply.send(Ok((Box::pin(sink), Box::pin(stream))));
    }

    /// A frame the driver wrote reaches the relay after the link's latency.
    fn send_to_relay(&mut self, url: &str, epoch: u64, text: String) {
        self.stats.on_sent(&text);
        let now = self.now();
        let lat = self.latency(url);
        let Some(link) = self.links.get_mut(url) else { return };
        if !link.open || link.epoch != epoch {
            return;
        }
        let at = (now + lat).max(link.last_to_relay);
        link.last_to_relay = at;
        self.note_neg_to_req(url, epoch, &text);
        self.schedule(at, Ev::ToRelay { url: url.to_string(), epoch, text });
    }

    /// The driver closed (or dropped) its side of connection `epoch`.
    fn close_link(&mut self, url: &str, epoch: u64) {
        let Some(link) = self.links.get_mut(url).filter(|l| l.epoch == epoch) else { return };
        link.epoch += 1;
        link.open = false;
        link.to_engine = None;
        if let Some(r) = self.relays.get_mut(url) {
            r.close();
        }
        if self.trace {
            eprintln!("{} closed {url}", since(self.now()));
        }
    }
}

/// The driver's writing side of a connection.
pub struct SimSink {
    shared: Rc<RefCell<Shared>>,
    url: String,
    epoch: u64,
}

impl Sink<String> for SimSink {
    type Error = TransportError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, text: String) -> Result<(), TransportError> {
        // frames written to a closed connection are lost
        self.shared.borrow_mut().send_to_relay(&self.url, self.epoch, text);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        self.shared.borrow_mut().close_link(&self.url, self.epoch);
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimSink {
    fn drop(&mut self) {
        self.shared.borrow_mut().close_link(&self.url, self.epoch);
    }
}

/// The driver's reading side of a connection.
pub struct SimStream {
    rx: mpsc::UnboundedReceiver<Result<String, TransportError>>,
    shared: Rc<RefCell<Shared>>,
    url: String,
    epoch: u64,
}

impl Stream for SimStream {
    type Item = Result<String, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        self.shared.borrow_mut().close_link(&self.url, self.epoch);
    }
}

//! The platform traits the driver runs on: a clock, a WebSocket connector and
//! an event store. `sync-native` implements them with tokio/tokio-tungstenite/LMDB,
//! `sync-wasm` with browser timers/WebSocket/IndexedDB, tests with memory.
//!
//! Futures are `LocalBoxFuture` (no `Send` bound) because browser futures are
//! not `Send`; native front ends run the driver on a single-threaded executor.

use core::pin::Pin;
use core::time::Duration;

use futures::future::LocalBoxFuture;
use futures::{Sink, Stream};
use nostr::{Event, EventId, Filter, Timestamp};

use crate::relay_url::RelayUrl;
use crate::time::Millis;

/// Wall clock and timer.
pub trait Clock {
    /// Current wall-clock time.
    fn now(&self) -> Millis;
    /// Completes at (or soon after) `deadline`.
    fn sleep_until(&self, deadline: Millis) -> LocalBoxFuture<'static, ()>;
}

/// A transport error, reported with enough context to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Outgoing text frames.
pub type FrameSink = Pin<Box<dyn Sink<String, Error = TransportError>>>;
/// Incoming text frames; ends (or yields an error) when the connection is lost.
/// Binary frames are not part of nostr and are dropped by the connector.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<String, TransportError>>>>;

/// Opens WebSocket connections.
pub trait Connector {
    /// Connects to `relay`; the driver enforces `timeout` around this future.
    fn connect(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<(FrameSink, FrameStream), TransportError>>;

    /// The relay's NIP-11 document (HTTP GET of the relay URL's http(s) form
    /// with `Accept: application/nostr+json`), under the same address rules
    /// as `connect`. Platforms without it keep this default: no document,
    /// and the engine goes on with its own defaults.
    fn fetch_info(&self, relay: &RelayUrl, timeout: Duration) -> LocalBoxFuture<'static, Result<String, TransportError>> {
        let _ = (relay, timeout);
        Box::pin(futures::future::ready(Err(TransportError("NIP-11 not supported by this connector".into()))))
    }
}

/// What the store did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Newly stored.
    Saved,
    /// Already stored (same id).
    Duplicate,
    /// An addressable event older than (or equal to) the stored one for its `(kind, pubkey, d)`.
    Stale,
    /// Refused by the store (e.g. a downstream relay's `OK false`), with its reason.
    Rejected(String),
}

impl SaveOutcome {
    /// True when the event is now stored (or already was): nothing to retry.
    pub fn is_settled(&self) -> bool {
        !matches!(self, SaveOutcome::Rejected(_))
    }
}

/// A store failure (I/O, closed database, …). Nothing was confirmed; the
/// engine retries the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store error: {0}")]
pub struct StoreError(pub String);

/// One negentropy item: an event id and its `created_at`.
pub type NegentropyItem = (EventId, Timestamp);

/// Persistent event storage and the engine's sync state.
pub trait EventStore {
    /// Saves verified events; one outcome per event, in order. Addressable
    /// kinds (30000–39999) keep only the newest per `(kind, pubkey, d)`.
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>>;
    /// `(id, created_at)` of every stored event matching `filter`.
    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>>;
    /// Stored events matching `filter` (newest first, honouring `limit`).
    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>>;
    /// The engine's persisted sync state, if any.
    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>>;
    /// Replaces the persisted sync state.
    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>>;
}

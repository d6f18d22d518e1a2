//! Serves the stored events as a read-only nostr relay (NIP-01 `REQ`, NIP-77
//! negentropy) so downstream clients — including the browser build — can
//! sync from this daemon. It is `nostr-relay-builder`'s `LocalRelay` over the
//! same LMDB environment the sync engine writes; a write policy refuses every
//! `EVENT`, so only the engine's accepted, verified events are ever served.

use std::net::{SocketAddr, SocketAddr as PeerAddr};
use std::sync::Arc;

use nostr::Event;
use nostr_lmdb::NostrLMDB;
use nostr_relay_builder::builder::{PolicyResult, RateLimit, WritePolicy};
use nostr_relay_builder::prelude::BoxedFuture;
use nostr_relay_builder::{LocalRelay, RelayBuilder};

/// Refuses all writes: the relay is a mirror of what the engine accepted.
#[derive(Debug)]
struct ReadOnly;

impl WritePolicy for ReadOnly {
    fn admit_event<'a>(&'a self, _event: &'a Event, _addr: &'a PeerAddr) -> BoxedFuture<'a, PolicyResult> {
        Box::pin(async { PolicyResult::Reject("read-only mirror: this relay only serves what grasp-sync synced".to_string()) })
    }
}

/// Why the served relay did not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the relay on {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: nostr_relay_builder::Error,
}

/// Starts the read-only relay on `addr` (must run inside a tokio runtime).
pub async fn serve(db: Arc<NostrLMDB>, addr: SocketAddr) -> Result<LocalRelay, ServeError> {
    let builder = RelayBuilder::default()
        .addr(addr.ip())
        .port(addr.port())
        .database(db)
        .write_policy(ReadOnly)
        .rate_limit(RateLimit { max_reqs: 500, notes_per_minute: 60 });
    let relay = LocalRelay::new(builder);
    relay.run().await.map_err(|source| ServeError { addr, source })?;
    Ok(relay)
}

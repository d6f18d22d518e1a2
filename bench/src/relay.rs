//! The relay under test: a `nostr-relay-builder` [`LocalRelay`] over an
//! in-memory database holding the dataset, on a free 127.0.0.1 port. It is
//! reached only through the limiting proxy ([`crate::proxy`]), which adds a
//! typical public relay's limits in front of it.

use std::sync::Arc;

use nostr::Event;
use nostr_database::{MemoryDatabase, MemoryDatabaseOptions, NostrDatabase};
use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};

/// A running relay loaded with the dataset.
pub struct BenchRelay {
    relay: LocalRelay,
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
}

impl BenchRelay {
    /// Starts a relay with `events` inserted straight into its database.
    pub async fn start(events: &[Event], max_limit: usize) -> Result<Self, String> {
        let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions { events: true, max_events: None }));
        for e in events {
            db.save_event(e).await.map_err(|err| format!("relay database refused event {}: {err}", e.id))?;
        }
        let port = free_port()?;
        let builder = RelayBuilder::default()
            .addr([127, 0, 0, 1].into())
            .port(port)
            .database(db)
            .max_filter_limit(max_limit)
            .rate_limit(RateLimit { max_reqs: 10_000, notes_per_minute: 1_000_000 });
        let relay = LocalRelay::new(builder);
        relay.run().await.map_err(|e| format!("relay cannot listen on 127.0.0.1:{port}: {e}"))?;
        Ok(Self { relay, url: format!("ws://127.0.0.1:{port}") })
    }
}

impl Drop for BenchRelay {
    fn drop(&mut self) {
        self.relay.shutdown();
    }
}

/// A currently free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

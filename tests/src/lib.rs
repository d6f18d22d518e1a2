//! End-to-end test harness for `grasp-sync`: real relays on 127.0.0.1
//! (`nostr-relay-builder`), a REQ-only proxy, a limiting proxy with a public
//! relay's limits (also used by the benchmark), a NIP-34 dataset, a WebSocket
//! client, the real daemon binary run as a child process, and a real
//! Prometheus server scraping it.

#![warn(missing_docs)]

pub mod client;
pub mod daemon;
pub mod dataset;
pub mod failing_store;
pub mod hostile_relay;
pub mod limiting_proxy;
pub mod prometheus;
pub mod relays;

use std::future::Future;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `grasp-sync-bench browser-relay`: the relay for the browser benchmark
//! (`bench/browser/run.mjs`).
//!
//! The same setup as the native benchmark: the cached signed dataset
//! ([`crate::dataset`]) loaded straight into a `nostr-relay-builder` relay's
//! in-memory database (no write rate limit applies), reached through the
//! limiting, byte-counting proxy on `127.0.0.1:<port>` (strfry-like limits;
//! it also serves the NIP-11 document advertising NIP-77, which NDK's
//! `NDKSync` reads before it tries negentropy).
//!
//! Prints one JSON line: the proxy URL, the repository addresses, the
//! engine's own filter set for them (built with `sync_core::filters`, so a
//! peer given these filters asks for exactly what the engine asks for), every
//! expected event id and the address of each addressable event (NDK's Dexie
//! cache keys those by address). Then it serves stdin commands until stdin
//! closes: `stats` prints the proxy's totals as one JSON line.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{EventId, JsonUtil};
use sync_core::filters::{announcements_filter, chunk_repos, chunk_roots};

use crate::dataset;
use crate::relay::BenchRelay;
use grasp_sync_tests::limiting_proxy::{Limits, Proxy};

/// Runs until stdin closes.
pub async fn run(events: usize, port: u16, limits: Limits, data_dir: &std::path::Path) -> Result<(), String> {
    let url = format!("ws://127.0.0.1:{port}");
    let ds = dataset::load_or_generate(events, &url, data_dir)?;
    let relay = BenchRelay::start(&ds.events, limits.max_limit).await?;
    let proxy = Proxy::start(port, &relay.url, limits, None).await?;

    let repos: BTreeSet<String> = ds.events.iter().filter(|e| e.kind.as_u16() == 30617).map(sync_core::nip34::repo_address).collect();
    let roots: BTreeSet<EventId> = ds.events.iter().filter(|e| matches!(e.kind.as_u16(), 1617 | 1618 | 1621)).map(|e| e.id).collect();
    let defaults = sync_core::SyncConfig::default();
    // L1, then L2 (`#a`/`#A`/`#q` per 100 addresses), then L3 (`#e`/`#E`/`#q` per 100 roots).
    let mut filters = vec![announcements_filter()];
    for items in chunk_repos(&repos, defaults.max_addresses_per_filter).into_iter().chain(chunk_roots(&roots, defaults.max_ids_per_filter))
    {
        filters.extend(items.filters());
    }
    let filters: Vec<serde_json::Value> = filters.iter().map(|f| serde_json::from_str(&f.as_json()).unwrap_or_default()).collect();
    let addresses: BTreeMap<String, String> = ds
        .events
        .iter()
        .filter(|e| e.kind.is_addressable())
        .map(|e| (e.id.to_hex(), format!("{}:{}:{}", e.kind.as_u16(), e.pubkey.to_hex(), e.tags.identifier().unwrap_or_default())))
        .collect();
    let info = serde_json::json!({
        "relay": url,
        "upstream": relay.url,
        "events": ds.events.len(),
        "jsonBytes": ds.json_bytes,
        "roots": roots.len(),
        "repositories": repos,
        "filters": filters,
        "ids": ds.events.iter().map(|e| e.id.to_hex()).collect::<Vec<_>>(),
        "addresses": addresses,
    });
    println!("{info}");

    // stdin is read on a plain thread (the workspace's tokio has no io-std).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if line.trim() == "stats" {
            let t = proxy.totals();
            println!(
                "{}",
                serde_json::json!({
                    "stats": {
                        "connections": t.connections,
                        "nip11": t.nip11,
                        "toClient": t.to_client,
                        "fromClient": t.from_client,
                        "subRefusals": t.sub_refusals,
                        "negRefusals": t.neg_refusals,
                    }
                })
            );
        }
    }
    drop(proxy);
    drop(relay);
    Ok(())
}

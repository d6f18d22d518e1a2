//! Contender: `nostr-sdk` 0.44 `Client::sync` (NIP-77 negentropy) into a
//! `nostr-lmdb` database, as its own OS process (the bench binary re-executed
//! as `grasp-sync-bench peer-sdk …`).
//!
//! It syncs layer by layer with the filters the engine uses: L1
//! `{kinds:[30617,30618]}`; L2 `#a`, `#A`, `#q` with the repository
//! addresses found in L1 (100 per filter); L3 `#e`, `#E`, `#q` with the root
//! ids (1617/1618/1621) found in L2, 100 per filter. Syncs run one at a
//! time by default (`--concurrency`), as a plain `for filter { sync }` loop
//! does: with several at once, `nostr-sdk` 0.44 syncs time out under load
//! (10 s `initial_timeout`), never send `NEG-CLOSE` for the timed-out
//! session, and the relay's session limit then refuses the rest.
//!
//! `Client::sync` may return before every event it found is in the
//! database, so when all syncs returned the peer waits until the database
//! holds `--expected` events (or stops growing for 30 s): "done" is "every
//! event stored", as for the daemon. Then it prints one `RESULT {json}` line
//! with the stored count, when the syncs returned, and its own peak RSS and
//! CPU time, read from `/proc/self` right then, so the parent measures it the
//! same way as the daemon.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nostr_lmdb::NostrLMDB;
use nostr_sdk::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::measure;
use crate::report::Measurement;
use grasp_sync_tests::limiting_proxy::Proxy;

/// Addresses / ids per filter, as the engine does.
const PER_FILTER: usize = 100;

/// The `peer-sdk` subcommand: sync everything, print `RESULT {json}`.
pub async fn peer_main(relay: &str, db_dir: &Path, concurrency: usize, expected: u64) -> Result<(), String> {
    let db = NostrLMDB::open(db_dir).map_err(|e| format!("cannot open lmdb at {}: {e}", db_dir.display()))?;
    let client = Client::builder().database(db).build();
    client.add_relay(relay).await.map_err(|e| format!("add relay {relay}: {e}"))?;
    client.try_connect(Duration::from_secs(10)).await;
    let opts = SyncOptions::default();
    let mut failures: Vec<String> = Vec::new();
    let mut syncs = 0usize;
    let started = Instant::now();
    let mut layers: Vec<(String, u64, usize)> = Vec::new();

    // L1
    let l1 = vec![Filter::new().kinds([Kind::from(30617u16), Kind::from(30618u16)])];
    syncs += l1.len();
    failures.extend(sync_all(&client, l1, &opts, concurrency).await);
    layers.push(("L1".into(), started.elapsed().as_millis() as u64, failures.len()));

    // L2: repository addresses from L1.
    let anns = client.database().query(Filter::new().kind(Kind::from(30617u16))).await.map_err(|e| format!("query: {e}"))?;
    let addrs: Vec<String> =
        anns.iter().filter_map(|e| e.tags.identifier().map(|d| format!("30617:{}:{d}", e.pubkey.to_hex()))).collect::<Vec<_>>();
    let l2 = tag_filters(&addrs, &[Alphabet::A], &[Alphabet::A, Alphabet::Q]);
    syncs += l2.len();
    failures.extend(sync_all(&client, l2, &opts, concurrency).await);
    layers.push(("L2".into(), started.elapsed().as_millis() as u64, failures.len()));

    // L3: root ids from L2.
    let roots = client
        .database()
        .query(Filter::new().kinds([Kind::from(1617u16), Kind::from(1618u16), Kind::from(1621u16)]))
        .await
        .map_err(|e| format!("query: {e}"))?;
    let ids: Vec<String> = roots.iter().map(|e| e.id.to_hex()).collect();
    let l3 = tag_filters(&ids, &[Alphabet::E], &[Alphabet::E, Alphabet::Q]);
    syncs += l3.len();
    failures.extend(sync_all(&client, l3, &opts, concurrency).await);
    layers.push(("L3".into(), started.elapsed().as_millis() as u64, failures.len()));

    let returned_ms = started.elapsed().as_millis() as u64;
    let returned_stored = client.database().count(Filter::new()).await.map_err(|e| format!("count: {e}"))?;
    let count = || async { client.database().count(Filter::new()).await.map_err(|e| format!("count: {e}")) };
    let mut stored = count().await?;
    let mut last_progress = Instant::now();
    while (stored as u64) < expected && last_progress.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = count().await?;
        if now > stored {
            last_progress = Instant::now();
        }
        stored = now;
    }
    let s = measure::sample(std::process::id()).unwrap_or_default();
    // Distinct failure messages with counts, for the log.
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for f in &failures {
        match kinds.iter_mut().find(|(k, _)| k == f) {
            Some((_, n)) => *n += 1,
            None => kinds.push((f.clone(), 1)),
        }
    }
    eprintln!("peer-sdk: layers (name, done at ms, failures so far) {layers:?}; failures by message {kinds:?}");
    let result = serde_json::json!({
        "stored": stored,
        "repos": addrs.len(),
        "roots": ids.len(),
        "syncs": syncs,
        "returned_ms": returned_ms,
        "returned_stored": returned_stored,
        "failures": failures.len(),
        "first_failure": failures.first(),
        "peak_rss_kib": s.peak_rss_kib,
        "cpu_ms": s.cpu.as_millis() as u64,
    });
    println!("RESULT {result}");
    eprintln!("peer-sdk: RESULT {result}");
    client.shutdown().await;
    Ok(())
}

/// One filter per chunk of values and per tag: lowercase tags from `lower`,
/// uppercase ones from `upper` (`#a` + `#A` + `#q`, or `#e` + `#E` + `#q`).
fn tag_filters(values: &[String], upper: &[Alphabet], lower: &[Alphabet]) -> Vec<Filter> {
    let mut out = Vec::new();
    for chunk in values.chunks(PER_FILTER) {
        for &l in lower {
            out.push(Filter::new().custom_tags(SingleLetterTag::lowercase(l), chunk.to_vec()));
        }
        for &u in upper {
            out.push(Filter::new().custom_tags(SingleLetterTag::uppercase(u), chunk.to_vec()));
        }
    }
    out
}

/// Runs the syncs, `concurrency` at a time; returns the failures.
async fn sync_all(client: &Client, filters: Vec<Filter>, opts: &SyncOptions, concurrency: usize) -> Vec<String> {
    futures::stream::iter(filters)
        .map(|f| async move {
            match client.sync(f, opts).await {
                Ok(out) => out.failed.into_values().next(),
                Err(e) => Some(e.to_string()),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Parent side: runs the peer process and measures it.
pub async fn run(
    proxy: &Proxy,
    relay_url: &str,
    db_dir: &Path,
    concurrency: usize,
    expected: u64,
    log: PathBuf,
    timeout: Duration,
) -> Result<Measurement, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    // Rebuilt while running: /proc/self/exe reads "<path> (deleted)"; the new binary speaks the same protocol.
    let exe = PathBuf::from(exe.to_string_lossy().trim_end_matches(" (deleted)").to_string());
    let log_file = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["peer-sdk", "--relay", relay_url, "--concurrency", &concurrency.to_string(), "--expected", &expected.to_string(), "--db"])
        .arg(db_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the nostr-sdk peer: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout from the peer")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut m = Measurement { expected, ..Measurement::default() };
    let pid = child.id();
    let mut peak_anon = 0u64;
    let read = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some(json) = line.strip_prefix("RESULT ") {
                            return Some((started.elapsed(), json.to_string()));
                        }
                    }
                    _ => return None,
                },
                _ = tick.tick() => {
                    if let Some(s) = pid.and_then(measure::sample) {
                        peak_anon = peak_anon.max(s.anon_kib);
                    }
                }
            }
        }
    };
    let outcome = tokio::time::timeout(timeout, read).await;
    m.peak_anon_kib = Some(peak_anon).filter(|k| *k > 0);
    let t = proxy.totals();
    m.bytes_received = t.to_client;
    m.bytes_sent = t.from_client;
    m.refusals = t.sub_refusals + t.neg_refusals;
    m.connections = (t.connections, t.nip11);
    match outcome {
        Ok(Some((wall, json))) => {
            m.wall = wall;
            m.connected_after = Some(wall);
            let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| format!("bad RESULT line from the peer: {e}"))?;
            m.stored = v["stored"].as_u64().unwrap_or(0);
            m.peak_rss_kib = v["peak_rss_kib"].as_u64();
            m.cpu = v["cpu_ms"].as_u64().map(Duration::from_millis);
            let returned_ms = v["returned_ms"].as_u64().unwrap_or(0);
            let returned_stored = v["returned_stored"].as_u64().unwrap_or(0);
            if returned_stored < m.stored {
                m.notes.push(format!(
                    "the last sync returned at {:.1}s with {returned_stored} events stored; the rest arrived after",
                    returned_ms as f64 / 1000.0
                ));
            }
            if let Some(roots) = v["roots"].as_u64() {
                m.roots_seen = Some(roots);
            }
            let failures = v["failures"].as_u64().unwrap_or(0);
            if failures > 0 {
                m.notes.push(format!("{failures} of {} syncs failed (first: {})", v["syncs"], v["first_failure"]));
            }
            m.complete = m.stored >= expected;
            if !m.complete {
                m.notes.push(format!("stored {} of {expected}", m.stored));
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        Ok(None) => {
            m.wall = started.elapsed();
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            m.notes.push(format!("peer exited without a result ({status}); see {}", log.display()));
        }
        Err(_) => {
            m.wall = started.elapsed();
            m.notes.push(format!("timeout after {:.0}s; see {}", m.wall.as_secs_f64(), log.display()));
            let _ = child.kill().await;
        }
    }
    Ok(m)
}

//! Kill loop, proving a crash at any moment loses nothing the daemon counted
//! as saved: SIGKILL the daemon at random points of a historic sync, restart
//! it on the same data directory each time, and check that nothing counted
//! as saved is ever lost and that the last run ends with exactly the
//! accepted set.
//!
//! Setup: relay A (NIP-77) and relay B (REQ-only, `ReqOnlyProxy`), both
//! `nostr-relay-builder` behind a pass-through proxy that delays each answer
//! frame by `KILL_LOOP_DELAY_US` (default 1,000 µs) so a sync from scratch
//! takes seconds; `KILL_LOOP_EVENTS` (default 3,000) accepted events spread
//! over them (some on both), plus noise and a forgery that must not be
//! stored. `KILL_LOOP_KILLS` (default 20) runs are each SIGKILLed once the
//! store has grown past a random fill level (above what it holds by up to
//! an even share of what is left per remaining kill, less how far the last
//! kill overshot its level, so the kills are spread over the whole sync),
//! plus up to 30 ms; a quarter of the runs are killed at a random moment of
//! their first 1.5 s instead if that comes first (start-up, state restore,
//! quick reconnect). The RNG is seeded; the seed is printed and
//! `KILL_LOOP_SEED` replays it.
//!
//! Just before each kill the test scrapes `ngit_sync_events_synced_total`
//! and reads every id the served relay holds. After the kill (daemon dead,
//! nothing can re-fetch) it copies `events.lmdb/data.mdb` — the crash image
//! the next run starts from — and opens the copy with `nostr-lmdb`:
//! - every id served before the kill is in the image;
//! - every id of the previous image is still there (nothing lost across runs);
//! - the image holds only accepted events;
//! - the image grew by at least the run's `events_synced_total`.
//!
//! The last run is left to finish: both relays Connected, the served relay
//! holds exactly the accepted set.
//!
//! Run: `cargo build -p sync-native --bin grasp-sync && cargo test -p
//! grasp-sync-tests --test kill_loop_e2e -- --ignored --nocapture`.
//! Default run ≈ 30–60 s on a busy 2-core machine; a long run:
//! `KILL_LOOP_KILLS=200 KILL_LOOP_EVENTS=20000 …`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use grasp_sync_tests::client::query;
use grasp_sync_tests::daemon::{Daemon, DaemonOpts};
use grasp_sync_tests::dataset::{self, announcement, comment, ev};
use grasp_sync_tests::free_port;
use grasp_sync_tests::hostile_relay::{Rng, SlowProxy};
use grasp_sync_tests::relays::{ReqOnlyProxy, TestRelay};
use nostr::{Event, EventId, Filter, Keys, Tag, Timestamp};
use nostr_database::NostrDatabase;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now() -> u64 {
    Timestamp::now().as_secs()
}

/// About `total` accepted events over A and B: repositories (announced on A,
/// half of them also on B, listing the service, A and B), roots tagging
/// them, NIP-22 comments tagging only their root (layer 3), some events on
/// both relays; plus notes and forgeries that must not be stored.
fn build(service: &str, a: &str, b: &str, total: u64, base: u64) -> (Vec<Event>, Vec<Event>, BTreeSet<EventId>) {
    let owners: Vec<Keys> = (0..3).map(|_| Keys::generate()).collect();
    let commenters: Vec<Keys> = (0..5).map(|_| Keys::generate()).collect();
    let (mut on_a, mut on_b, mut expected) = (Vec::new(), Vec::new(), BTreeSet::new());
    let repos = 10u64;
    let comments_per_root = 9u64;
    let roots_per_repo = (total / repos / (comments_per_root + 1)).max(1);
    let mut n = 0u64;
    for r in 0..repos {
        let keys = &owners[(r % 3) as usize];
        let d = format!("kill-loop-{r}");
        let ann = announcement(keys, &d, &[service, a, b], &[], base + r);
        expected.insert(ann.id);
        on_a.push(ann.clone());
        if r % 2 == 0 {
            on_b.push(ann);
        }
        let addr = dataset::address(keys, &d);
        for i in 0..roots_per_repo {
            let at = base + 100 + r * 100_000 + i * 50;
            let kind = if i % 2 == 0 { 1621 } else { 1617 };
            let root = ev(keys, kind, &format!("root {r}/{i}"), vec![Tag::parse(["a", addr.as_str()]).expect("tag")], at);
            expected.insert(root.id);
            match n % 5 {
                0 => {
                    on_a.push(root.clone());
                    on_b.push(root.clone());
                }
                1 | 3 => on_a.push(root.clone()),
                _ => on_b.push(root.clone()),
            }
            n += 1;
            for c in 0..comments_per_root {
                // two per second, so REQ pages end inside a second
                let e = comment(&commenters[(c % 5) as usize], &root.id, &format!("comment {r}/{i}/{c}"), at + 1 + c / 2);
                expected.insert(e.id);
                match n % 7 {
                    0 => {
                        on_a.push(e.clone());
                        on_b.push(e);
                    }
                    1 | 3 | 5 => on_a.push(e),
                    _ => on_b.push(e),
                }
                n += 1;
            }
        }
    }
    let stranger = Keys::generate();
    for i in 0..20u64 {
        on_a.push(ev(&stranger, 1, &format!("note a {i}"), vec![], base + 50 + i));
        on_b.push(ev(&stranger, 1, &format!("note b {i}"), vec![], base + 50 + i));
    }
    let genuine = ev(
        &owners[0],
        1621,
        "forged issue",
        vec![Tag::parse(["a", &dataset::address(&owners[0], "kill-loop-0")]).expect("tag")],
        base + 90,
    );
    on_a.push(dataset::with_altered_content(&genuine));
    (on_a, on_b, expected)
}

/// Every id in a copy of the store's LMDB file (the daemon must be dead).
async fn crash_image(data_dir: &Path, scratch: &Path) -> BTreeSet<EventId> {
    let src = data_dir.join("events.lmdb").join("data.mdb");
    if !src.exists() {
        return BTreeSet::new();
    }
    std::fs::create_dir_all(scratch).expect("scratch dir");
    std::fs::copy(&src, scratch.join("data.mdb")).expect("copy data.mdb");
    let db = nostr_lmdb::NostrLMDB::open(scratch).expect("crash image opens");
    let items = db.negentropy_items(Filter::new()).await.expect("read crash image");
    drop(db);
    items.into_iter().map(|(id, _)| id).collect()
}

/// Every id the served relay holds. It caps a REQ at 500 events, so this
/// pages back with an inclusive `until` (the dataset never has 500 events in
/// one second).
async fn served(d: &Daemon) -> Result<BTreeSet<EventId>, String> {
    let mut ids = BTreeSet::new();
    let mut until: Option<Timestamp> = None;
    loop {
        let mut f = Filter::new().limit(500);
        if let Some(u) = until {
            f = f.until(u);
        }
        let page = query(&d.relay_url(), f).await?;
        let before = ids.len();
        ids.extend(page.iter().map(|e| e.id));
        let oldest = page.iter().map(|e| e.created_at).min();
        if page.len() < 500 {
            return Ok(ids);
        }
        if ids.len() == before {
            return Err(format!("more than 500 events at {oldest:?}"));
        }
        until = oldest;
    }
}

async fn connected(d: &Daemon, relays: &[&str]) -> bool {
    let Some(scrape) = d.metrics().await else { return false };
    relays.iter().all(|r| grasp_sync_tests::client::sample(&scrape, "ngit_sync_relay_connected", &[("relay", r)]) == Some(3.0))
}

/// One kill: when, what the daemon reported, what the crash image held.
struct Kill {
    early: bool,
    after: Duration,
    synced: Option<f64>,
    served: Option<usize>,
    image: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "e2e: needs the daemon binary; ~60-90 s (KILL_LOOP_KILLS / KILL_LOOP_EVENTS for a long run)"]
async fn sigkill_at_random_points_loses_nothing_and_ends_exact() {
    let started = Instant::now();
    let kills = env_u64("KILL_LOOP_KILLS", 20);
    let total = env_u64("KILL_LOOP_EVENTS", 3_000);
    let delay_us = env_u64("KILL_LOOP_DELAY_US", 1_000);
    let seed = env_u64("KILL_LOOP_SEED", now() ^ (u64::from(std::process::id()) << 32));
    eprintln!("kill loop: seed {seed} (KILL_LOOP_SEED={seed} replays), {kills} kills, ~{total} events, {delay_us} us/frame");
    let mut rng = Rng::new(seed);

    let relay_port = free_port();
    let http_port = free_port();
    let service = format!("ws://127.0.0.1:{relay_port}");
    let a_inner = TestRelay::start(0).await;
    let a = SlowProxy::start(&a_inner.url(), delay_us).await;
    let b_inner = TestRelay::start(0).await;
    let b_slow = SlowProxy::start(&b_inner.url(), delay_us).await;
    let b = ReqOnlyProxy::start(0, &b_slow.url()).await;
    let (a_url, b_url) = (a.url(), b.url());
    let (on_a, on_b, expected) = build(&service, &a_url, &b_url, total, now() - 2_000_000);
    a_inner.insert(&on_a).await;
    b_inner.insert(&on_b).await;
    eprintln!("dataset: {} on A (NIP-77), {} on B (REQ-only), {} accepted", on_a.len(), on_b.len(), expected.len());

    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let opts = DaemonOpts {
        service_url: service.clone(),
        bootstrap: vec![a_url.clone()],
        data_dir: data_dir.clone(),
        allow_private: true,
        http_port,
        relay_port,
        extra: vec![],
    };
    let relays = [a_url.as_str(), b_url.as_str()];

    // Where the kills land (see the module docs): a fill level per run, less
    // the last overshoot (the store grows on while the test reads it before
    // the kill), or a random moment of the first 1.5 s for a quarter of them.
    let n = expected.len() as u64;
    let mut prev: BTreeSet<EventId> = BTreeSet::new();
    let mut log: Vec<Kill> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    // how far past its fill level the store got by the kill (last kill)
    let mut overshoot = 0u64;
    for k in 0..kills {
        let have = prev.len() as u64;
        let share = (n.saturating_sub(have) / (kills - k + 1)).saturating_sub(overshoot);
        let target = have + 1 + rng.below(share.max(1));
        let mut d = Daemon::spawn(opts.clone());
        let early = rng.below(4) == 0;
        let deadline = if early { Duration::from_micros(rng.below(1_500_000)) } else { Duration::from_secs(120) };
        let jitter = Duration::from_micros(rng.below(30_000));
        loop {
            if d.started.elapsed() >= deadline {
                break;
            }
            let synced = d.metric("ngit_sync_events_synced_total", &[]).await.unwrap_or(0.0);
            if prev.len() as f64 + synced >= target as f64 || prev.len() == expected.len() {
                if !early {
                    tokio::time::sleep(jitter).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20).min(deadline.saturating_sub(d.started.elapsed()))).await;
        }
        let after = d.started.elapsed();
        if !early && after >= deadline {
            problems.push(format!("kill {k}: no progress to {target} stored in {deadline:?}"));
        }
        let synced = d.metric("ngit_sync_events_synced_total", &[]).await;
        let before = served(&d).await.ok();
        d.sigkill();
        let image = crash_image(&data_dir, &dir.path().join(format!("image-{k}"))).await;
        let lost: Vec<&EventId> = prev.difference(&image).collect();
        if !lost.is_empty() {
            problems.push(format!("kill {k}: {} ids of the previous crash image are gone: {:?}", lost.len(), &lost[..lost.len().min(5)]));
        }
        if let Some(ids) = &before {
            let unsaved: Vec<&EventId> = ids.difference(&image).collect();
            if !unsaved.is_empty() {
                problems.push(format!(
                    "kill {k}: {} ids served before SIGKILL are not in the crash image: {:?}",
                    unsaved.len(),
                    &unsaved[..unsaved.len().min(5)]
                ));
            }
        }
        let foreign: Vec<&EventId> = image.difference(&expected).collect();
        if !foreign.is_empty() {
            problems.push(format!(
                "kill {k}: {} stored ids are not accepted events: {:?}",
                foreign.len(),
                &foreign[..foreign.len().min(5)]
            ));
        }
        let grown = image.difference(&prev).count() as f64;
        if let Some(s) = synced {
            if grown < s {
                problems.push(format!("kill {k}: events_synced_total was {s} before SIGKILL but the store grew by only {grown}"));
            }
        }
        eprintln!(
            "kill {k:>3}: {} after {:>5} ms, synced_total {:>6}, served {:>6}, crash image {:>6} (+{grown})",
            if early { "early         ".to_string() } else { format!("at fill {target:>6}") },
            after.as_millis(),
            synced.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            before.as_ref().map(|s| s.len().to_string()).unwrap_or_else(|| "-".into()),
            image.len()
        );
        if !early {
            overshoot = (image.len() as u64).saturating_sub(target.max(have));
        }
        log.push(Kill { early, after, synced, served: before.as_ref().map(BTreeSet::len), image: image.len() });
        prev = image;
    }

    // The last run finishes.
    let d = Daemon::spawn(opts.clone());
    let limit = Duration::from_secs(300);
    while !connected(&d, &relays).await {
        assert!(d.started.elapsed() < limit, "the last run never finished:\n{}", d.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finish = d.started.elapsed();
    let mut got = served(&d).await.expect("served set");
    let settle = Instant::now();
    while got != expected && settle.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = served(&d).await.expect("served set");
    }
    let missing: Vec<&EventId> = expected.difference(&got).collect();
    let extra: Vec<&EventId> = got.difference(&expected).collect();
    if !missing.is_empty() || !extra.is_empty() {
        problems.push(format!(
            "last run: {} missing {:?}, {} extra {:?}",
            missing.len(),
            &missing[..missing.len().min(5)],
            extra.len(),
            &extra[..extra.len().min(5)]
        ));
    }
    let lost: Vec<&EventId> = prev.difference(&got).collect();
    if !lost.is_empty() {
        problems.push(format!("last run: {} ids of the last crash image are gone", lost.len()));
    }

    let mid = log.iter().filter(|k| k.image < expected.len()).count();
    let early = log.iter().filter(|k| k.early).count();
    let unserved = log.iter().filter(|k| k.served.is_none()).count();
    let synced_sum: f64 = log.iter().filter_map(|k| k.synced).sum();
    let mut at: Vec<u128> = log.iter().map(|k| k.after.as_millis()).collect();
    at.sort_unstable();
    let median_ms = at.get(at.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "FIGURES: seed {seed}; {} SIGKILLs ({early} early in a run, {mid} with the store incomplete, {unserved} before the served relay \
         answered; median {median_ms} ms after start); {synced_sum} events counted saved before kills, none lost; last run Connected after {finish:?}, {} events stored \
         (expected {}); total {:?}",
        log.len(),
        got.len(),
        expected.len(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "kill loop (seed {seed}) found:\n{}\nlast run log:\n{}", problems.join("\n"), d.logs());
}

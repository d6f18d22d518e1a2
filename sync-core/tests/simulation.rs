//! Deterministic simulation sweep of the engine and its production driver.
//!
//! `cargo test -p sync-core --test simulation` sweeps the default seeds;
//! `SIM_SEEDS=N` sweeps N seeds instead, `SIM_FIRST=k` starts at seed k,
//! `SIM_SEED=s` replays one seed (add `SIM_TRACE=1` and `--nocapture` to see
//! every frame, command and status change). A failing seed is printed with the
//! command that replays it. Each run is deterministic (virtual clock, seeded
//! RNG, ordered maps only); seeds are independent, so they are spread over a
//! few threads. `SIM_SLOW_MS=n` prints every seed that took n ms or more
//! (wall clock) with its relay kinds; `SIM_ONLY_KIND=ClosesLive` (any
//! `RelayKind`) runs only the seeds whose world has a relay of that kind.
//!
//! The worlds include hostile relays (about one relay in eight
//! after the first: junk floods, endless negentropy, NOTICE storms, closed
//! live subscriptions, future-dated events, oversized frames; see
//! `sim/dataset.rs`), store outages, slow stores, restarts and small
//! `max_unsaved`, and the checks hold the engine to its bounds against them
//! (`sim/check.rs`).
//!
//! ## The production driver runs under it
//!
//! Each seed runs the real `Driver` (`sync-core/src/driver.rs`), not a
//! stand-in interpreter of the engine's commands: over a virtual clock on a
//! one-task executor that advances virtual time only when the driver is
//! stalled (`sim/exec.rs`), a connector whose sockets are channels to the
//! simulated relays (`sim/net.rs`) and a store over `MemoryStore` with
//! latency and faults (`sim/store.rs`). A restart is `DriverHandle::stop`,
//! the driver's own shutdown, and a new engine and driver on the same store;
//! every run ends with such a shutdown too. The driver's ordering rules are
//! therefore swept with the seeds and checked from the store's side: one
//! save in flight, negentropy loads after the saves asked before them,
//! queries and persisted states after every save, and the shutdown flush
//! (no save after the last persisted state). The driver's `Observer` hook
//! gives the simulation the status transitions and the engine's bounds.
//!
//! ## Long mode
//!
//! The default 1,000 seeds take 10–30 s (debug, 2 loaded cores): 15.4 s,
//! 30.7 ms per seed on average (median 24 ms, p99 122 ms, slowest 262 ms),
//! the same as when the simulation drove the engine directly (16.0 s,
//! 31.9 ms, median 24 ms): the engine's work dominates, the driver and the
//! executor cost little, so the default stays at 1,000 seeds. In release,
//! 5,000 seeds took 65 s and 20,000 took 5.4 minutes (two threads, 16 ms
//! per seed). Before a release, or after touching the engine's state
//! machine or the driver, sweep 100,000:
//!
//! ```text
//! SIM_SEEDS=100000 cargo test -p sync-core --release --test simulation -- --nocapture simulation_sweep
//! ```
//!
//! `--release` is the faster profile here (about 20% less per seed; the
//! dev profile already optimises dependencies, and the release build costs a
//! minute or two): 100,000 seeds took 16 minutes (nice'd, two cores shared
//! with other builds) before the driver ran under the simulation, and would
//! take about 27 minutes at the rate of the 20,000-seed sweep above (its
//! cores shared with other builds too). Split a sweep with `SIM_FIRST` on a
//! bigger machine. Every failing seed is printed as it fails, so a long
//! sweep is worth watching (`--nocapture`); `SIM_ONLY_KIND` re-sweeps just
//! the seeds with one kind.
//! `SIM_FUTURE_RELIABLE=1` also requires every honest event of FutureDated
//! relays (future-dated events took page slots without counting towards
//! pagination until that was fixed; e.g. seed 3245).
//!
//! Engine findings of the 100,000-seed sweep with hostile worlds. Fixed: future-dated
//! events cutting pagination short (3245), stale NOTICE suspects leaving
//! `poll_timeout() <= now` after a cooldown (19776, 45065, 58289, 79231), good
//! events quarantined after failures during an outage (3584, 801), a NOTICE
//! during a rate-limit cooldown taken as the verdict on a NEG-OPEN still
//! waiting in the outbox (REQ-only: 24557, 48105, 51996, 74636, 88528, 90840,
//! 96631), a repository state parked before its announcement lost across a
//! restart when its relay then reconnected quickly (61123: parked states are
//! now persisted).

mod sim;

use sim::stats::Stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Seeds swept by default.
const DEFAULT_SEEDS: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, got `{v}`")))
}

fn report(seed: u64, errs: &[String]) -> String {
    let mut s = format!("seed {seed} failed {} invariant(s):\n", errs.len());
    for e in errs.iter().take(20) {
        s.push_str("  - ");
        s.push_str(e);
        s.push('\n');
    }
    s.push_str(&format!("  replay: SIM_SEED={seed} cargo test -p sync-core --test simulation -- --nocapture\n"));
    s
}

/// Runs `first..first + count` on a few threads; returns failing seeds with
/// their errors (sorted) and the summed coverage counters.
fn sweep(first: u64, count: u64) -> (Vec<(u64, Vec<String>)>, Stats) {
    let next = AtomicU64::new(first);
    let failures = Mutex::new(Vec::new());
    let total = Mutex::new(Stats::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4) as u64;
    let slow_ms = env_u64("SIM_SLOW_MS");
    let only_kind = std::env::var("SIM_ONLY_KIND").ok();
    std::thread::scope(|s| {
        for _ in 0..threads.min(count.max(1)) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                if let Some(kind) = &only_kind {
                    if !sim::dataset::generate(seed).relays.iter().any(|r| format!("{:?}", r.kind) == *kind) {
                        continue;
                    }
                }
                let started = Instant::now();
                let (errs, stats) = sim::run_seed(seed);
                let took = started.elapsed();
                if slow_ms.is_some_and(|ms| took.as_millis() as u64 >= ms) {
                    eprintln!("seed {seed} took {took:.1?}: {:?}", stats.relays_by_kind);
                }
                *total.lock().expect("not poisoned") += &stats;
                if !errs.is_empty() {
                    eprintln!("{}", report(seed, &errs));
                    failures.lock().expect("not poisoned").push((seed, errs));
                }
            });
        }
    });
    let mut f = failures.into_inner().expect("not poisoned");
    f.sort();
    (f, total.into_inner().expect("not poisoned"))
}

#[test]
fn simulation_sweep() {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (env_u64("SIM_FIRST").unwrap_or(0), env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)),
    };
    let started = Instant::now();
    let (failures, stats) = sweep(first, count);
    eprintln!("simulation: {count} seed(s) from {first} in {:.1?}, {} failed", started.elapsed(), failures.len());
    eprintln!("coverage: {stats:?}");
    let seeds: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
    assert!(
        failures.is_empty(),
        "failing seeds: {seeds:?}; replay one with SIM_SEED=<seed> cargo test -p sync-core --test simulation -- --nocapture"
    );
    if count >= 200 && std::env::var_os("SIM_ONLY_KIND").is_none() {
        assert!(stats.gaps().is_empty(), "the sweep never exercised {:?}: {stats:?}", stats.gaps());
    }
}

/// Seeds run twice by [`a_seed_replays_identically`]: enough that some need
/// several negentropy ids at once (their fetch order must not depend on hash
/// iteration order) and meet the limited relay kinds.
const REPLAY_SEEDS: core::ops::Range<u64> = 0..24;

#[test]
fn a_seed_replays_identically() {
    for seed in REPLAY_SEEDS {
        let world_a = sim::dataset::generate(seed);
        let world_b = sim::dataset::generate(seed);
        let ids = |w: &sim::dataset::World| w.universe().keys().copied().collect::<Vec<_>>();
        assert_eq!(ids(&world_a), ids(&world_b), "seed {seed}: datasets differ");
        let a = sim::world::Sim::new(seed, world_a).run();
        let b = sim::world::Sim::new(seed, world_b).run();
        assert_eq!(a.transitions, b.transitions, "seed {seed}: status histories differ");
        assert_eq!(a.saved_outcomes, b.saved_outcomes, "seed {seed}: saves differ");
        assert_eq!(a.relay_obs, b.relay_obs, "seed {seed}: what the relays saw differs");
        assert_eq!(a.status, b.status, "seed {seed}: final snapshots differ");
        assert_eq!(a.polls, b.polls, "seed {seed}: the driver was polled differently");
    }
}

/// The simulated EndlessNeg relay's faster copy of the testkit's endless
/// negentropy message says the same.
#[test]
fn endless_negentropy_message_mirrors_the_testkit() {
    for (round, ids) in [(0, 0), (7, 1), (u64::MAX, 12), (1 << 40, 5)] {
        assert_eq!(
            sim::relay::endless_negentropy_message(round, ids),
            sync_core::testkit::hostile::endless_negentropy_message(round, ids),
            "round {round}, {ids} ids"
        );
    }
}

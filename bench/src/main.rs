//! `grasp-sync-bench`: the release `grasp-sync` daemon syncing over real
//! WebSockets on 127.0.0.1 from a relay with a typical public relay's limits,
//! compared with `nostr-sdk` and the parse+verify floor on the same data in
//! the same run.
//!
//! ```sh
//! cargo build --release -p sync-native
//! cargo run --release -p grasp-sync-bench -- --events 10000 --runs 3 --write BENCHMARKS.md
//! ```
//!
//! Modules: [`dataset`] (signed NIP-34 events, cached as JSONL), [`relay`]
//! (the relay under test; its limits come from the test crate's
//! `grasp_sync_tests::limiting_proxy`, shared with the e2e suite), the contenders
//! [`daemon`], [`sdk_peer`] and [`floor`], [`measure`] (`/proc` sampling) and
//! [`report`] (tables and `BENCHMARKS.md`).

mod browser_relay;
mod daemon;
mod dataset;
mod floor;
mod measure;
mod missing;
mod relay;
mod report;
mod sdk_peer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::relay::BenchRelay;
use crate::report::{Measurement, Report, Row};
use grasp_sync_tests::limiting_proxy::{Limits, Proxy};

#[derive(Parser)]
#[command(
    name = "grasp-sync-bench",
    version,
    about = "Benchmark the release grasp-sync daemon against nostr-sdk and the parse+verify floor",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the dataset events an LMDB store lacks (after an incomplete sync; see --keep-data).
    Missing {
        /// The store: `<daemon data dir>/events.lmdb` or a nostr-sdk peer's directory.
        #[arg(long)]
        db: PathBuf,
        /// Dataset size.
        #[arg(long)]
        events: usize,
        /// Proxy port the dataset was made for.
        #[arg(long, default_value_t = 47_931)]
        port: u16,
    },
    /// The relay for the browser benchmark (bench/browser/run.mjs): the dataset behind the
    /// limiting proxy; prints one JSON line (URL, repositories, the engine's filters, expected
    /// ids), then `stats` on stdin prints the proxy's byte counts; exits when stdin closes.
    BrowserRelay {
        /// Dataset size.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// Proxy port; the relay URL is baked into the cached dataset.
        #[arg(long, default_value_t = 47_931)]
        port: u16,
        #[command(flatten)]
        limits: RelayLimitArgs,
    },
    /// Internal: the nostr-sdk contender process.
    #[command(hide = true)]
    PeerSdk {
        /// Relay to sync from.
        #[arg(long)]
        relay: String,
        /// nostr-lmdb directory.
        #[arg(long)]
        db: PathBuf,
        /// Syncs in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Wait until the database holds this many events.
        #[arg(long, default_value_t = 0)]
        expected: u64,
    },
}

/// The limiting proxy's limits: a typical public relay's (strfry defaults).
#[derive(Args)]
struct RelayLimitArgs {
    /// Concurrent subscriptions per connection (strfry default 20).
    #[arg(long, default_value_t = 20)]
    max_subs: usize,
    /// Concurrent negentropy sessions per connection.
    #[arg(long, default_value_t = 4)]
    max_neg: usize,
    /// Largest `limit` per filter.
    #[arg(long, default_value_t = 500)]
    max_limit: usize,
}

impl RelayLimitArgs {
    fn limits(&self) -> Limits {
        Limits { max_subs: self.max_subs, max_neg: self.max_neg, max_limit: self.max_limit }
    }
}

#[derive(Args)]
struct BenchArgs {
    /// Fail (exit 1) unless every grasp-sync run completed without a single
    /// "too many" refusal from the relay (the CI smoke test uses it).
    #[arg(long)]
    check: bool,
    /// Dataset size (events); 1000 is a CI smoke test.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Runs per contender; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Replace (or append) the `## <N> events` section of this markdown file.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Proxy port; the relay URL `ws://127.0.0.1:<port>` is baked into the dataset's announcements.
    #[arg(long, default_value_t = 47_931)]
    port: u16,
    #[command(flatten)]
    limits: RelayLimitArgs,
    /// Give up on a contender run after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// The daemon binary [default: grasp-sync next to this binary, i.e. target/release/grasp-sync].
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// nostr-sdk syncs in flight at once (1: a plain loop; more exposes nostr-sdk's session leak on timeouts).
    #[arg(long, default_value_t = 1)]
    sdk_concurrency: usize,
    /// Contenders to run.
    #[arg(long, value_delimiter = ',', default_value = "floor,grasp-sync,nostr-sdk")]
    only: Vec<Contender>,
    /// Log every proxied frame (time, direction, size, first bytes) to target/bench-logs/<run>-frames.log.
    #[arg(long)]
    trace: bool,
    /// Keep the data directories under target/bench-tmp.
    #[arg(long)]
    keep_data: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Contender {
    Floor,
    GraspSync,
    NostrSdk,
}

const FLOOR: &str = "floor (parse + verify, 1 core)";
const GS_INITIAL: &str = "grasp-sync initial";
const GS_RESYNC: &str = "grasp-sync re-sync";
const SDK_INITIAL: &str = "nostr-sdk initial";
const SDK_RESYNC: &str = "nostr-sdk re-sync";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::PeerSdk { relay, db, concurrency, expected }) => sdk_peer::peer_main(&relay, &db, concurrency, expected).await,
        Some(Cmd::BrowserRelay { events, port, limits }) => match target_dir() {
            Ok(t) => browser_relay::run(events, port, limits.limits(), &t.join("bench-data")).await,
            Err(e) => Err(e),
        },
        Some(Cmd::Missing { db, events, port }) => match target_dir() {
            Ok(t) => match dataset::load_or_generate(events, &format!("ws://127.0.0.1:{port}"), &t.join("bench-data")) {
                Ok(ds) => missing::run(&db, &ds.events).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        None => bench(cli.bench).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grasp-sync-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `target/` (this binary lives in `target/release/`).
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).ok_or_else(|| format!("unexpected executable path {}", exe.display()))
}

async fn bench(a: BenchArgs) -> Result<(), String> {
    if a.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let target = target_dir()?;
    let daemon_bin = match &a.daemon {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("grasp-sync"),
    };
    let limits = a.limits.limits();
    let relay_url = format!("ws://127.0.0.1:{}", a.port);
    let ds = dataset::load_or_generate(a.events, &relay_url, &target.join("bench-data"))?;
    let expected = ds.expected();
    eprintln!("dataset: {} events, {} roots, {:.1} MB of event JSON", expected, ds.roots, ds.json_bytes as f64 / 1e6);

    let log_dir = target.join("bench-logs");
    let tmp_root = target.join("bench-tmp");
    for d in [&log_dir, &tmp_root] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let dopts = daemon::DaemonOpts { binary: daemon_bin, log_dir: log_dir.clone(), timeout: Duration::from_secs(a.timeout) };
    let timeout = Duration::from_secs(a.timeout);
    let trace = |label: &str| a.trace.then(|| log_dir.join(format!("{label}-frames.log")));
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |label: &str, m: Measurement| {
        eprintln!(
            "  {label}: {:.2}s, {}/{} stored, {:.1} MB received, {} refused, {} connection(s), {} NIP-11 fetch(es){}{}",
            m.wall.as_secs_f64(),
            m.stored,
            m.expected,
            m.bytes_received as f64 / 1e6,
            m.refusals,
            m.connections.0,
            m.connections.1,
            if m.complete { "" } else { " — INCOMPLETE" },
            if m.notes.is_empty() { String::new() } else { format!(" ({})", m.notes.join("; ")) }
        );
        match rows.iter_mut().find(|r| r.label == label) {
            Some(r) => r.runs.push(m),
            None => rows.push(Row { label: label.to_string(), runs: vec![m], events: expected }),
        }
    };

    for run in 1..=a.runs {
        eprintln!("run {run}/{}", a.runs);
        if a.only.contains(&Contender::Floor) {
            push(FLOOR, floor::run(&ds.events)?);
        }
        if a.only.contains(&Contender::GraspSync) {
            let dir = tempdir(&tmp_root, "grasp-sync-")?;
            let label = format!("grasp-sync-{}-run{run}", a.events);
            let env = Fresh::start(&ds, a.port, limits, trace(&format!("{label}-initial"))).await?;
            let m = daemon::run(&dopts, &env.proxy, &relay_url, dir.path(), daemon::Until::Stored(expected), &format!("{label}-initial"))
                .await
                .unwrap_or_else(|e| failed(expected, e));
            drop(env);
            push(GS_INITIAL, m);
            let state = dir.path().join("sync-state.json");
            if let Err(e) = std::fs::remove_file(&state) {
                eprintln!("  note: could not delete {}: {e}", state.display());
            }
            let env = Fresh::start(&ds, a.port, limits, trace(&format!("{label}-resync"))).await?;
            let mut m = daemon::run(&dopts, &env.proxy, &relay_url, dir.path(), daemon::Until::Connected, &format!("{label}-resync"))
                .await
                .unwrap_or_else(|e| failed(expected, e));
            drop(env);
            // Nothing new to store: complete means every relay reached Connected over the full store.
            m.expected = expected;
            m.stored = if m.complete { expected } else { 0 };
            push(GS_RESYNC, m);
            keep_or_drop(dir, a.keep_data);
        }
        if a.only.contains(&Contender::NostrSdk) {
            let dir = tempdir(&tmp_root, "nostr-sdk-")?;
            for (label, phase) in [(SDK_INITIAL, "initial"), (SDK_RESYNC, "resync")] {
                let log = log_dir.join(format!("nostr-sdk-{}-run{run}-{phase}.log", a.events));
                let env = Fresh::start(&ds, a.port, limits, trace(&format!("nostr-sdk-{}-run{run}-{phase}", a.events))).await?;
                let mut m = sdk_peer::run(&env.proxy, &relay_url, dir.path(), a.sdk_concurrency, expected, log, timeout)
                    .await
                    .unwrap_or_else(|e| failed(expected, e));
                if let Some(seen) = m.roots_seen.filter(|r| *r < ds.roots as u64) {
                    m.notes.push(format!(
                        "L3 filters built from {seen} of {} roots (an L2 sync returned before its events were stored)",
                        ds.roots
                    ));
                }
                drop(env);
                push(label, m);
            }
            keep_or_drop(dir, a.keep_data);
        }
    }

    let repos = ds.events.iter().filter(|e| e.kind.as_u16() == 30617).count();
    let limits_line = format!(
        "{} concurrent subscriptions and {} concurrent negentropy sessions per connection, `limit` ≤ {}",
        limits.max_subs, limits.max_neg, limits.max_limit
    );
    let report = Report {
        events: expected,
        roots: ds.roots,
        repos,
        json_bytes: ds.json_bytes,
        runs: a.runs,
        limits: limits_line.clone(),
        machine: machine(),
        revision: format!("{} (daemon binary {})", revision(), binary_info(&dopts.binary)),
        rows,
        floor: FLOOR.into(),
        peers: vec![
            (GS_INITIAL.into(), SDK_INITIAL.into()),
            (SDK_INITIAL.into(), SDK_INITIAL.into()),
            (GS_RESYNC.into(), SDK_RESYNC.into()),
            (SDK_RESYNC.into(), SDK_RESYNC.into()),
        ],
    };
    let failures: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.label == GS_INITIAL || r.label == GS_RESYNC)
        .flat_map(|r| r.runs.iter().map(move |m| (r.label.clone(), m)))
        .filter(|(_, m)| !m.complete || m.refusals > 0)
        .map(|(label, m)| format!("{label}: complete {}, {} refusals", m.complete, m.refusals))
        .collect();
    let section = report.section();
    println!("{section}");
    if a.check && !failures.is_empty() {
        return Err(format!("--check failed: {}", failures.join("; ")));
    }
    if let Some(path) = &a.write {
        report::write_section(path, &section, &report.machine, &limits_line)?;
        eprintln!("wrote section \"## {} events\" to {}", expected, path.display());
    }
    Ok(())
}

/// A fresh relay (loaded with the dataset) behind a fresh proxy, for one contender run.
struct Fresh {
    // Field order is drop order: the proxy goes first, then the relay.
    proxy: Proxy,
    _relay: BenchRelay,
}

impl Fresh {
    async fn start(ds: &dataset::Dataset, port: u16, limits: Limits, trace: Option<PathBuf>) -> Result<Self, String> {
        let relay = BenchRelay::start(&ds.events, limits.max_limit).await?;
        let proxy = Proxy::start(port, &relay.url, limits, trace.as_deref()).await?;
        Ok(Self { proxy, _relay: relay })
    }
}

/// A contender run that could not be measured at all.
fn failed(expected: u64, error: String) -> Measurement {
    Measurement { expected, notes: vec![error], ..Measurement::default() }
}

fn tempdir(root: &Path, prefix: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new().prefix(prefix).tempdir_in(root).map_err(|e| format!("cannot create a directory in {}: {e}", root.display()))
}

fn keep_or_drop(dir: tempfile::TempDir, keep: bool) {
    if keep {
        eprintln!("  kept {}", dir.keep().display());
    }
}

/// `2 cores, <CPU model>, <RAM>`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok()))
        })
        .flatten()
        .map(|kb| format!(", {:.1} GiB RAM", kb as f64 / 1048576.0))
        .unwrap_or_default();
    format!("nproc {cores}, {cpu}{mem}")
}

/// `<path> built <mtime>`: the daemon may be older than the workspace revision.
fn binary_info(path: &Path) -> String {
    let built = std::process::Command::new("date")
        .arg("-u")
        .arg("-r")
        .arg(path)
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "at an unknown time".into());
    format!("built {built}")
}

/// `git describe --always --dirty` of the workspace, or "unknown".
fn revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

//! The real `grasp-sync` binary as a child process.
//!
//! The binary belongs to another package, so `CARGO_BIN_EXE_*` is not
//! available here. [`binary`] asks cargo itself: `cargo build -p sync-native
//! --bin grasp-sync --message-format=json` (a no-op when up to date) and
//! takes the `executable` path from cargo's artifact message, which honours
//! `CARGO_TARGET_DIR`, profiles and whatever target directory CI uses.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::client::{http_get, sample};

/// Path of a freshly built `grasp-sync`.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // `cargo test` exports CARGO_PKG_*/CARGO_MANIFEST_* etc. to the test
        // process; build scripts (ring, via cc) watch some of them, so passing
        // them on would rebuild the TLS stack instead of reusing the build.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CARGO_") && k != "CARGO_TARGET_DIR" && k != "CARGO_HOME" {
                cmd.env_remove(&key);
            }
        }
        let out = cmd
            .current_dir(&workspace)
            .args(["build", "-p", "sync-native", "--bin", "grasp-sync", "--message-format=json-render-diagnostics"])
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build");
        assert!(out.status.success(), "cargo build -p sync-native failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "grasp-sync")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported the grasp-sync executable")
    })
    .clone()
}

/// Short timings so a whole scenario runs in seconds.
pub const FAST: &[&str] = &[
    "--batch-window",
    "300ms",
    "--settle-extra",
    "200ms",
    "--tick-interval",
    "200ms",
    "--backoff-base",
    "1s",
    "--backoff-max",
    "4s",
    "--backoff-jitter",
    "0",
    "--historic-timeout",
    "5s",
    "--negentropy-open-timeout",
    "2s",
];

/// How to start a daemon.
#[derive(Clone, Debug)]
pub struct DaemonOpts {
    /// Our service URL (server policy).
    pub service_url: String,
    /// Bootstrap relays.
    pub bootstrap: Vec<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// `--allow-private-relays`.
    pub allow_private: bool,
    /// HTTP port.
    pub http_port: u16,
    /// Served relay port (the service URL normally points here).
    pub relay_port: u16,
    /// More arguments.
    pub extra: Vec<String>,
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Options it was started with.
    pub opts: DaemonOpts,
    /// Its stderr log file.
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Daemon {
    /// Spawns the binary; logs go to `<data_dir>/../daemon-<n>.log`.
    pub fn spawn(opts: DaemonOpts) -> Daemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = opts.data_dir.with_file_name(format!("daemon-{}-{n}.log", std::process::id()));
        let file = File::create(&log).expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("--service-url")
            .arg(&opts.service_url)
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", opts.http_port))
            .arg("--relay-listen")
            .arg(format!("127.0.0.1:{}", opts.relay_port))
            .args(FAST)
            .args(&opts.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        for b in &opts.bootstrap {
            cmd.arg("--bootstrap-relay").arg(b);
        }
        if opts.allow_private {
            cmd.arg("--allow-private-relays");
        }
        let child = cmd.spawn().expect("spawning grasp-sync");
        Daemon { child, opts, log, started: Instant::now() }
    }

    /// The served relay URL.
    pub fn relay_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.opts.relay_port)
    }

    /// A `/metrics` scrape (None until the endpoint answers).
    pub async fn metrics(&self) -> Option<String> {
        http_get(self.opts.http_port, "/metrics").await.ok().filter(|(c, _)| *c == 200).map(|(_, b)| b)
    }

    /// One metric sample from a fresh scrape.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.metrics().await?, name, labels)
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.opts.http_port, "/status").await.ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Everything logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill -TERM failed");
    }

    /// SIGKILL and reap.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Process figures the soak and kill-loop tests assert on (pid, memory).
impl Daemon {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` and `RssAnon` of the child in KiB (see [`proc_rss_kib`]).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        proc_rss_kib(self.child.id())
    }
}

/// `VmRSS` and `RssAnon` of process `pid` in KiB, from `/proc/<pid>/status`
/// (None once it has exited). VmRSS includes the mmapped LMDB pages the
/// process touched; RssAnon is its heap and stacks only.
pub fn proc_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("RssAnon:").unwrap_or(0)))
}

//! Contender: the release `grasp-sync` daemon, as its own OS process.
//!
//! It runs with server policy for [`crate::dataset::SERVICE_URL`], the proxy
//! as bootstrap relay, private relay URLs allowed (the announcements list the
//! 127.0.0.1 proxy), no served relay, and `/metrics` on a free port, which is
//! polled every 100 ms. An initial sync is done when
//! `ngit_sync_events_synced_total` reaches the dataset size; we then keep
//! polling until every `ngit_sync_relay_connected` gauge shows 3 (Connected,
//! or 4: connected but a historic batch failed). A re-sync (restart on the
//! same data directory without `sync-state.json`, i.e. a fresh start over a
//! full store, as the daily reconciliation does) is done when every relay
//! shows 3 or 4. Logs (`RUST_LOG=info`) go to `target/bench-logs/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::measure;
use crate::relay::free_port;
use crate::report::Measurement;
use grasp_sync_tests::limiting_proxy::Proxy;

/// An initial sync whose relays are all Connected but stores nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);

/// Where the daemon is and where its logs go.
pub struct DaemonOpts {
    /// `target/release/grasp-sync`.
    pub binary: PathBuf,
    /// Directory for `<label>.log`.
    pub log_dir: PathBuf,
    /// Give up after this long.
    pub timeout: Duration,
}

/// When a daemon run is complete.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// `events_synced_total` reached this (initial sync); then wait for Connected too.
    Stored(u64),
    /// Every relay Connected (re-sync of an unchanged set).
    Connected,
}

/// What one scrape of `/metrics` says.
#[derive(Debug, Default, Clone, PartialEq)]
struct Scrape {
    synced: u64,
    /// `(relay, ngit_sync_relay_connected)`.
    relays: Vec<(String, u8)>,
}

impl Scrape {
    fn all_connected(&self) -> bool {
        !self.relays.is_empty() && self.relays.iter().all(|(_, c)| *c >= 3)
    }
    fn degraded(&self) -> Vec<String> {
        self.relays.iter().filter(|(_, c)| *c == 4).map(|(r, _)| r.clone()).collect()
    }
}

/// Runs the daemon on `data_dir` against the proxy at `relay_url` until `until`.
pub async fn run(
    opts: &DaemonOpts,
    proxy: &Proxy,
    relay_url: &str,
    data_dir: &Path,
    until: Until,
    label: &str,
) -> Result<Measurement, String> {
    if !opts.binary.exists() {
        return Err(format!(
            "{} not found: build it first with `cargo build --release -p sync-native` (or pass --daemon)",
            opts.binary.display()
        ));
    }
    std::fs::create_dir_all(&opts.log_dir).map_err(|e| format!("cannot create {}: {e}", opts.log_dir.display()))?;
    let log_path = opts.log_dir.join(format!("{label}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
    let http = format!("127.0.0.1:{}", free_port()?);

    let started = Instant::now();
    let mut child = Command::new(&opts.binary)
        .args(["--service-url", crate::dataset::SERVICE_URL, "--bootstrap-relay", relay_url, "--allow-private-relays", "--data-dir"])
        .arg(data_dir)
        .args(["--http-listen", &http, "--relay-listen", "off"])
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", opts.binary.display()))?;
    let pid = child.id().ok_or("daemon exited at once")?;

    let mut m = Measurement {
        expected: match until {
            Until::Stored(n) => n,
            Until::Connected => 0,
        },
        ..Measurement::default()
    };
    let mut last = Scrape::default();
    let mut last_sample = None;
    let mut done_at: Option<Duration> = None;
    let mut failure = None;
    // (synced count, since when) while every relay shows Connected.
    let mut idle: Option<(u64, Duration)> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Some(status)) = child.try_wait() {
            failure = Some(format!("daemon exited early ({status}); see {}", log_path.display()));
            break;
        }
        if let Some(s) = measure::sample(pid) {
            m.peak_anon_kib = Some(m.peak_anon_kib.unwrap_or(0).max(s.anon_kib));
            last_sample = Some(s);
        }
        let elapsed = started.elapsed();
        if let Ok(s) = scrape(&http).await {
            last = s;
        }
        let stored_now = matches!(until, Until::Stored(n) if last.synced >= n);
        if done_at.is_none() && (stored_now || matches!(until, Until::Connected) && last.all_connected()) {
            done_at = Some(elapsed);
            record(&mut m, elapsed, proxy, last_sample, &last);
        }
        if done_at.is_some() && last.all_connected() {
            m.connected_after = Some(elapsed);
            break;
        }
        // Every relay Connected and nothing stored for a while: it will not finish.
        if done_at.is_none() && last.all_connected() {
            match idle {
                Some((n, since)) if n == last.synced => {
                    if elapsed - since > STALL {
                        record(&mut m, elapsed, proxy, last_sample, &last);
                        failure = Some(format!(
                            "every relay Connected with {} of {} events stored, no progress for {}s; see {}",
                            last.synced,
                            m.expected,
                            STALL.as_secs(),
                            log_path.display()
                        ));
                        break;
                    }
                }
                _ => idle = Some((last.synced, elapsed)),
            }
        } else {
            idle = None;
        }
        if elapsed > opts.timeout {
            if done_at.is_none() {
                record(&mut m, elapsed, proxy, last_sample, &last);
                failure = Some(format!(
                    "timeout after {:.0}s: {} of {} events stored, relays {:?}; see {}",
                    elapsed.as_secs_f64(),
                    last.synced,
                    m.expected,
                    last.relays,
                    log_path.display()
                ));
            } else {
                m.notes.push(format!("relays not all Connected after {:.0}s: {:?}", elapsed.as_secs_f64(), last.relays));
            }
            break;
        }
    }
    // Peak RSS: read just before stopping the daemon.
    if let Some(s) = measure::sample(pid) {
        m.peak_rss_kib = Some(s.peak_rss_kib);
    } else if let Some(s) = last_sample {
        m.peak_rss_kib = Some(s.peak_rss_kib);
    }
    let degraded = last.degraded();
    if !degraded.is_empty() {
        m.notes.push(format!("historic sync failed (gauge 4) on {degraded:?}"));
    }
    measure::terminate(pid);
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        m.notes.push("did not exit within 10s of SIGTERM".into());
        let _ = child.kill().await;
    }
    m.complete = failure.is_none();
    if let Some(f) = failure {
        m.notes.push(f);
    }
    Ok(m)
}

/// Fills the measurement at the moment the run is done.
fn record(m: &mut Measurement, elapsed: Duration, proxy: &Proxy, sample: Option<measure::ProcSample>, scrape: &Scrape) {
    m.wall = elapsed;
    m.stored = scrape.synced;
    let t = proxy.totals();
    m.bytes_received = t.to_client;
    m.bytes_sent = t.from_client;
    m.refusals = t.sub_refusals + t.neg_refusals;
    m.connections = (t.connections, t.nip11);
    if t.nip11 == 0 && t.connections > 0 && !m.notes.iter().any(|n| n.starts_with("no NIP-11")) {
        m.notes.push("no NIP-11 request reached the relay (window not capped by max_subscriptions)".into());
    }
    m.cpu = sample.map(|s| s.cpu);
}

/// `GET /metrics` (HTTP/1.0, so the body is never chunked).
async fn scrape(addr: &str) -> Result<Scrape, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or("no HTTP body")?;
        Ok::<_, String>(parse_metrics(body))
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.map_err(|_| "metrics timeout".to_string())?
}

fn parse_metrics(body: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in body.lines() {
        if let Some(v) = line.strip_prefix("ngit_sync_events_synced_total ") {
            s.synced = v.trim().parse::<f64>().map(|f| f as u64).unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("ngit_sync_relay_connected{") {
            let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
            let relay = labels.split_once("relay=\"").and_then(|(_, r)| r.split_once('"')).map(|(r, _)| r.to_string()).unwrap_or_default();
            let code = value.trim().parse::<f64>().map(|f| f as u8).unwrap_or(0);
            s.relays.push((relay, code));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_metrics_we_need() {
        let body = "# TYPE ngit_sync_events_synced_total counter\nngit_sync_events_synced_total 1234\n\
                    ngit_sync_relay_connected{relay=\"ws://127.0.0.1:1/\"} 3\nngit_sync_relay_connected{relay=\"wss://x.example/\"} 4\n";
        let s = parse_metrics(body);
        assert_eq!(s.synced, 1234);
        assert_eq!(s.relays, vec![("ws://127.0.0.1:1/".to_string(), 3), ("wss://x.example/".to_string(), 4)]);
        assert!(s.all_connected());
        assert_eq!(s.degraded(), vec!["wss://x.example/".to_string()]);
    }
}

//! `grasp-sync status`: what a running daemon is doing, as a compact table.
//!
//! It reads the daemon's `GET /status` (the same snapshot `/metrics` is
//! rendered from) over plain HTTP and prints one row per relay: connection,
//! health, a historic-sync progress bar, events saved and the last error.
//! `--json` passes the document through unchanged, for scripts and `jq`.
//! The endpoint binds to 127.0.0.1 by default; for a remote daemon, point
//! `--url` at its `--http-listen` address (an SSH tunnel keeps it private).

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;
use sync_core::{ConnectionStatus, HealthStatus, RelayStatus, SyncStatus};
use tokio::io::AsyncWriteExt;

use crate::duration::Dur;
use crate::http_response::read_response;

/// `/status` documents are large for hundreds of relays, but not this large.
const MAX_STATUS_BYTES: usize = 64 * 1024 * 1024;
/// Relay URLs and errors longer than this are shortened in the table.
const MAX_RELAY_WIDTH: usize = 44;
const MAX_ERROR_WIDTH: usize = 60;
/// Cells of the progress bar.
const BAR_CELLS: usize = 10;

/// Command line of `grasp-sync status`.
#[derive(Parser, Debug)]
#[command(
    name = "grasp-sync status",
    about = "Print the sync status of a running grasp-sync daemon (its GET /status) as a table",
    after_help = "Exit codes: 0 printed, 1 the daemon could not be read, 2 bad arguments."
)]
pub struct StatusArgs {
    /// The daemon's HTTP endpoint (its --http-listen address), e.g. http://10.0.0.5:9464 or 127.0.0.1:9464.
    #[arg(long, env = "GRASP_SYNC_STATUS_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Print the raw /status JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Give up after this long.
    #[arg(long, default_value = "5s")]
    pub timeout: Dur,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// `--url` is not an http URL with a host.
    #[error("invalid --url `{0}`: {1}")]
    Url(String, String),
    /// The connection or the exchange failed.
    #[error("cannot read {url}: {reason} (is grasp-sync running there? the address is its --http-listen)")]
    Unreachable {
        /// The `/status` URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The daemon answered, but not with a status document.
    #[error("{url} answered {detail}")]
    BadAnswer {
        /// The `/status` URL.
        url: String,
        /// What came back.
        detail: String,
    },
}

/// Where `/status` is: host, port, path.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    fn parse(text: &str) -> Result<Self, StatusError> {
        let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
        let bad = |why: &str| StatusError::Url(text.to_string(), why.to_string());
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// (the endpoint has no TLS; use an SSH tunnel for a remote daemon)"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let base = url.path().trim_end_matches('/');
        let path = if base.ends_with("/status") { base.to_string() } else { format!("{base}/status") };
        Ok(Self { host, port, path })
    }

    fn display(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("http://{host}:{}{}", self.port, self.path)
    }
}

/// Fetches the `/status` body.
async fn fetch(endpoint: &Endpoint) -> Result<String, StatusError> {
    let url = endpoint.display();
    let unreachable = |reason: String| StatusError::Unreachable { url: url.clone(), reason };
    let mut stream =
        tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await.map_err(|e| unreachable(e.to_string()))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nUser-Agent: grasp-sync-status\r\nConnection: close\r\n\r\n",
        endpoint.path, endpoint.host, endpoint.port
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| unreachable(e.to_string()))?;
    let response = read_response(&mut stream, MAX_STATUS_BYTES).await.map_err(|e| unreachable(e.to_string()))?;
    if response.status != 200 {
        let body = String::from_utf8_lossy(&response.body);
        return Err(StatusError::BadAnswer { url, detail: format!("HTTP {}: {}", response.status, body.trim()) });
    }
    String::from_utf8(response.body).map_err(|_| StatusError::BadAnswer { url, detail: "a body that is not UTF-8".into() })
}

/// Reads the status and renders it (or passes the JSON through).
pub async fn run(args: &StatusArgs) -> Result<String, StatusError> {
    let endpoint = Endpoint::parse(&args.url)?;
    let timeout: Duration = args.timeout.into();
    let body = tokio::time::timeout(timeout, fetch(&endpoint))
        .await
        .map_err(|_| StatusError::Unreachable { url: endpoint.display(), reason: format!("no answer within {timeout:?}") })??;
    if args.json {
        return Ok(if body.ends_with('\n') { body } else { body + "\n" });
    }
    let status: SyncStatus = serde_json::from_str(&body).map_err(|e| StatusError::BadAnswer {
        url: endpoint.display(),
        detail: format!("a document that is not a grasp-sync status: {e}"),
    })?;
    Ok(render(&status))
}

/// `grasp-sync status …` from `main`: prints, and returns the exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let args = match StatusArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("grasp-sync status: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("grasp-sync status: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn connection_word(c: ConnectionStatus) -> &'static str {
    match c {
        ConnectionStatus::Disconnected => "disconnected",
        ConnectionStatus::Connecting => "connecting",
        ConnectionStatus::Syncing => "syncing",
        ConnectionStatus::Connected => "connected",
        ConnectionStatus::ConnectedDegraded => "degraded",
    }
}

fn health_word(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Disconnected => "disconnected",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Dead => "dead",
        HealthStatus::RateLimited => "rate-limited",
    }
}

/// `[#####-----]  50%` while connected; blank otherwise (no session).
fn progress_cell(r: &RelayStatus) -> String {
    if !r.connection.is_connected() {
        return String::new();
    }
    let pct = r.progress.percent.min(100) as usize;
    let filled = pct * BAR_CELLS / 100;
    format!("[{}{}] {pct:>3}%", "#".repeat(filled), "-".repeat(BAR_CELLS - filled))
}

/// A short age: `42s`, `5m`, `3h`, `2d`.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Shortens to `max` characters with an ellipsis.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

fn error_cell(r: &RelayStatus, now: u64) -> String {
    match (&r.degraded_reason, &r.last_error) {
        (_, Some(e)) => format!("{} ({} ago)", clip(&e.message, MAX_ERROR_WIDTH), age(now.saturating_sub(e.at.0))),
        (Some(reason), None) => clip(reason, MAX_ERROR_WIDTH),
        (None, None) => "-".into(),
    }
}

/// Thousands separators: `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The table and a totals line.
pub fn render(status: &SyncStatus) -> String {
    let header = ["RELAY", "CONNECTION", "HEALTH", "PROGRESS", "EVENTS", "LAST ERROR"];
    let rows: Vec<[String; 6]> = status
        .relays
        .iter()
        .map(|r| {
            [
                clip(&r.relay, MAX_RELAY_WIDTH),
                connection_word(r.connection).to_string(),
                health_word(r.health).to_string(),
                progress_cell(r),
                thousands(r.counters.events_saved),
                error_cell(r, status.now.0),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            match i {
                4 => write!(text, "{}{cell}  ", " ".repeat(pad)).ok(), // numbers right-aligned
                5 => write!(text, "{cell}").ok(),
                _ => write!(text, "{cell}{}  ", " ".repeat(pad)).ok(),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    let t = &status.totals;
    let store = match &t.store_error {
        Some(e) => format!("store FAILING: {}", clip(e, MAX_ERROR_WIDTH)),
        None => "store ok".into(),
    };
    let _ = writeln!(
        out,
        "\n{} relays: {} connected, {} dead · {} events synced · {} repositories, {} root events · {}{}",
        t.relays_tracked,
        t.relays_connected,
        t.relays_dead,
        thousands(t.events_synced),
        t.repositories,
        t.root_events,
        store,
        if status.running { "" } else { " · daemon stopping" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::status::{HistoricProgress, RelayCounters, RelayError, Totals};

    fn relay(url: &str, connection: ConnectionStatus, health: HealthStatus, percent: u8, saved: u64) -> RelayStatus {
        RelayStatus {
            connection,
            connection_code: connection.code(),
            health,
            health_code: health.code(),
            announcements_synced: true,
            progress: HistoricProgress { percent, ..Default::default() },
            counters: RelayCounters { events_saved: saved, ..Default::default() },
            ..RelayStatus::at_rest(url)
        }
    }

    #[test]
    fn renders_one_aligned_row_per_relay_and_the_totals() {
        let mut down = relay("wss://down.example.com", ConnectionStatus::Disconnected, HealthStatus::Dead, 0, 0);
        down.last_error =
            Some(RelayError { at: sync_core::Millis(1_000_000 - 180_000), message: "connection failed: connection refused".into() });
        let status = SyncStatus {
            now: sync_core::Millis(1_000_000),
            running: true,
            relays: vec![
                relay("wss://a.example.com", ConnectionStatus::Connected, HealthStatus::Healthy, 100, 1_234_567),
                relay("wss://b.example.com", ConnectionStatus::Syncing, HealthStatus::Degraded, 45, 12),
                down,
            ],
            totals: Totals { events_synced: 1_234_579, relays_tracked: 3, relays_connected: 2, relays_dead: 1, ..Default::default() },
            repositories: vec![],
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        let expected = [
            "RELAY                   CONNECTION    HEALTH    PROGRESS              EVENTS  LAST ERROR",
            "wss://a.example.com     connected     healthy   [##########] 100%  1,234,567  -",
            "wss://b.example.com     syncing       degraded  [####------]  45%         12  -",
            "wss://down.example.com  disconnected  dead                                 0  connection failed: connection refused (3m ago)",
            "",
            "3 relays: 2 connected, 1 dead · 1,234,579 events synced · 0 repositories, 0 root events · store ok",
        ];
        assert_eq!(lines, expected, "\n{text}");
    }

    #[test]
    fn long_cells_are_clipped_and_a_failing_store_is_shown() {
        let long = format!("wss://{}.example.com", "x".repeat(80));
        let mut r = relay(&long, ConnectionStatus::ConnectedDegraded, HealthStatus::Healthy, 100, 1);
        r.degraded_reason = Some("historic sync incomplete".into());
        let status = SyncStatus {
            now: sync_core::Millis(0),
            running: false,
            relays: vec![r],
            totals: Totals { store_error: Some("disk full".into()), ..Default::default() },
            repositories: vec![],
        };
        let text = render(&status);
        assert!(text.lines().nth(1).unwrap().starts_with(&format!("{}… ", &long[..MAX_RELAY_WIDTH - 1])), "{text}");
        assert!(text.contains("historic sync incomplete"), "{text}");
        assert!(text.contains("store FAILING: disk full · daemon stopping"), "{text}");
    }

    #[test]
    fn endpoints_parse_with_and_without_scheme_and_refuse_https() {
        let e = Endpoint::parse("127.0.0.1:9464").unwrap();
        assert_eq!(e, Endpoint { host: "127.0.0.1".into(), port: 9464, path: "/status".into() });
        assert_eq!(Endpoint::parse("http://[::1]:9/base/").unwrap().display(), "http://[::1]:9/base/status");
        assert_eq!(Endpoint::parse("http://h:1/status").unwrap().path, "/status");
        assert!(Endpoint::parse("https://h").unwrap_err().to_string().contains("only http://"));
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn ages_and_numbers_read_well() {
        assert_eq!([age(5_000), age(300_000), age(7_200_000), age(172_800_000)], ["5s", "5m", "2h", "2d"]);
        assert_eq!([thousands(0), thousands(999), thousands(1000), thousands(1_234_567)], ["0", "999", "1,000", "1,234,567"]);
    }

    #[tokio::test]
    async fn a_daemon_that_is_not_running_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let args = StatusArgs { url: format!("127.0.0.1:{port}"), json: false, timeout: Dur(Duration::from_secs(2)) };
        let e = run(&args).await.unwrap_err().to_string();
        assert!(e.contains(&format!("cannot read http://127.0.0.1:{port}/status")) && e.contains("is grasp-sync running there?"), "{e}");
    }
}

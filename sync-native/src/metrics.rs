//! Prometheus metrics rendered from the engine's status snapshot.
//!
//! The metric names, labels and value encodings of SPEC §8 are a public
//! contract (operators' dashboards and alerts use them), so each metric is
//! written once, as a row of [`METRICS`]: its name, HELP text, TYPE, label
//! names and a function reading its samples from a [`SyncStatus`]. Everything
//! else reads the table: [`render`] writes it as the Prometheus text format,
//! and the tests check the shipped Grafana dashboard and alert rules, and the
//! README's metrics table, against it.
//!
//! Values are not accumulated in this process: every scrape renders the
//! current snapshot. The engine's counters only grow, so the exported
//! counters are monotonic.
//!
//! The text format (version 0.0.4) is written here rather than through the
//! `prometheus` crate: the crate wants one typed vector per metric behind a
//! registered collector (each metric spelt out again in several places), and
//! it cannot write an `untyped` family. The format itself is small: per
//! family a `# HELP` and a `# TYPE` line, then one `name{label="value",…}
//! value` line per sample. Families come in name order and samples in
//! label-value order with labels in name order, which is what the crate
//! wrote, so a scrape is byte-for-byte what it was (`testdata/*.prom`); a
//! family with no samples (no relays yet, no completed sync) is left out.
//!
//! Note: SPEC §8 fixes three gauge-valued metrics whose names end in `_total`
//! (`ngit_sync_relays_{tracked,connected,dead}_total`). `promtool check
//! metrics` (and the Prometheus naming rules) forbid `_total` on gauges, so
//! these three are exposed with `# TYPE … untyped`: names, labels and values
//! stay exactly as specified (PromQL, dashboards and alerts cannot tell the
//! difference) and the scrape passes promtool.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sync_core::{RelayStatus, SyncStatus};

/// Something that yields the latest snapshot (the driver handle in the daemon).
pub type SnapshotSource = Arc<dyn Fn() -> Arc<SyncStatus> + Send + Sync>;

/// The `# TYPE` of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only grows (the engine's counters since it started).
    Counter,
    /// A SPEC gauge whose name ends in `_total` (see the module docs).
    Untyped,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Untyped => "untyped",
        }
    }
}

/// One sample: label values (in the order of [`Metric::labels`]) and the value.
pub type Sample<'a> = (Vec<&'a str>, f64);

/// One metric: everything `/metrics` says about it.
pub struct Metric {
    /// Metric name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// `# TYPE`.
    pub kind: Kind,
    /// Label names, in alphabetical order (the order they are written in).
    pub labels: &'static [&'static str],
    /// Its samples in a snapshot; none leaves the metric out of the scrape.
    pub samples: for<'a> fn(&'a SyncStatus) -> Vec<Sample<'a>>,
}

/// One sample per relay, labelled `relay`.
fn per_relay(s: &SyncStatus, value: impl Fn(&RelayStatus) -> f64) -> Vec<Sample<'_>> {
    s.relays.iter().map(|r| (vec![r.relay.as_str()], value(r))).collect()
}

/// One sample per relay that has a value (e.g. a completion time).
fn per_relay_if(s: &SyncStatus, value: impl Fn(&RelayStatus) -> Option<f64>) -> Vec<Sample<'_>> {
    s.relays.iter().filter_map(|r| Some((vec![r.relay.as_str()], value(r)?))).collect()
}

/// One sample per relay and reason, from a per-relay count by reason
/// (labels `reason`, `relay`).
fn per_relay_and_reason<'a>(s: &'a SyncStatus, counts: impl Fn(&'a RelayStatus) -> &'a BTreeMap<String, u64>) -> Vec<Sample<'a>> {
    s.relays.iter().flat_map(|r| counts(r).iter().map(move |(reason, n)| (vec![reason.as_str(), r.relay.as_str()], *n as f64))).collect()
}

/// The one sample of an unlabelled metric.
fn single(value: f64) -> Vec<Sample<'static>> {
    vec![(Vec::new(), value)]
}

const RELAY: &[&str] = &["relay"];
const NONE: &[&str] = &[];

/// Every metric of `/metrics` (SPEC §8 first, then the extras). Rows are
/// rendered in name order, whatever their order here.
pub static METRICS: &[Metric] = &[
    // SPEC §8
    Metric {
        name: "ngit_sync_relay_connected",
        help: "Connection status: 0 disconnected, 1 connecting, 2 syncing, 3 connected, 4 connected but historic sync failed",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.connection_code.into()),
    },
    Metric {
        name: "ngit_sync_connection_attempts_total",
        help: "Connection attempts by result",
        kind: Kind::Counter,
        labels: &["relay", "result"],
        samples: |s| {
            let mut out = Vec::new();
            for r in &s.relays {
                out.push((vec![r.relay.as_str(), "success"], r.counters.connect_success as f64));
                out.push((vec![r.relay.as_str(), "failure"], r.counters.connect_failure as f64));
            }
            out
        },
    },
    Metric {
        name: "ngit_sync_relay_status",
        help: "Health: 1 healthy, 2 disconnected, 3 degraded, 4 dead, 5 rate-limited",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.health_code.into()),
    },
    Metric {
        name: "ngit_sync_relay_failures",
        help: "Consecutive failures",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.failures.into()),
    },
    Metric {
        name: "ngit_sync_events_synced_total",
        help: "Events newly saved (not duplicates, not rejected)",
        kind: Kind::Counter,
        labels: NONE,
        samples: |s| single(s.totals.events_synced as f64),
    },
    Metric {
        name: "ngit_sync_relays_tracked_total",
        help: "Relays known",
        kind: Kind::Untyped,
        labels: NONE,
        samples: |s| single(s.totals.relays_tracked as f64),
    },
    Metric {
        name: "ngit_sync_relays_connected_total",
        help: "Relays with connection status >= 2",
        kind: Kind::Untyped,
        labels: NONE,
        samples: |s| single(s.totals.relays_connected as f64),
    },
    Metric {
        name: "ngit_sync_relays_dead_total",
        help: "Relays in Dead health",
        kind: Kind::Untyped,
        labels: NONE,
        samples: |s| single(s.totals.relays_dead as f64),
    },
    // per relay: traffic and rejections
    Metric {
        name: "ngit_sync_events_received_total",
        help: "EVENT frames received",
        kind: Kind::Counter,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.counters.events_received as f64),
    },
    Metric {
        name: "ngit_sync_relay_events_saved_total",
        help: "Events from this relay newly saved",
        kind: Kind::Counter,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.counters.events_saved as f64),
    },
    Metric {
        name: "ngit_sync_events_rejected_total",
        help: "Events not stored, by reason",
        kind: Kind::Counter,
        labels: &["reason", "relay"],
        samples: |s| per_relay_and_reason(s, |r| &r.counters.events_rejected),
    },
    Metric {
        name: "ngit_sync_historic_sync_completed_timestamp_seconds",
        help: "Unix time historic sync last completed (absent if never)",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay_if(s, |r| r.historic_sync_completed_at.map(|at| at.0 as f64 / 1000.0)),
    },
    Metric {
        name: "ngit_sync_historic_sync_duration_seconds",
        help: "Seconds from connect to historic sync completion, last completion",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay_if(s, |r| r.historic_sync_duration_ms.map(|ms| ms as f64 / 1000.0)),
    },
    Metric {
        name: "ngit_sync_pending_batches",
        help: "Historic batches in flight",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.pending_batches as f64),
    },
    Metric {
        name: "ngit_sync_live_filters",
        help: "Live subscriptions open",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.live_filters as f64),
    },
    Metric {
        name: "ngit_sync_received_bytes_total",
        help: "Bytes received in frames",
        kind: Kind::Counter,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.counters.bytes_received as f64),
    },
    Metric {
        name: "ngit_sync_sent_bytes_total",
        help: "Bytes sent in frames",
        kind: Kind::Counter,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.counters.bytes_sent as f64),
    },
    Metric {
        name: "ngit_sync_negentropy_rounds_total",
        help: "NEG-MSG rounds completed",
        kind: Kind::Counter,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.counters.negentropy_rounds as f64),
    },
    // totals: what is synced, refused and waiting for the store
    Metric {
        name: "ngit_sync_repositories",
        help: "Repositories served",
        kind: Kind::Gauge,
        labels: NONE,
        samples: |s| single(s.totals.repositories as f64),
    },
    Metric {
        name: "ngit_sync_root_events",
        help: "Root events (patches, PRs, issues) known",
        kind: Kind::Gauge,
        labels: NONE,
        samples: |s| single(s.totals.root_events as f64),
    },
    Metric {
        name: "ngit_sync_relay_urls_refused",
        help: "Distinct relay URLs refused, by reason (safety rule and bounds)",
        kind: Kind::Gauge,
        labels: &["reason"],
        samples: |s| s.totals.relay_urls_refused.iter().map(|(reason, n)| (vec![reason.as_str()], *n as f64)).collect(),
    },
    Metric {
        name: "ngit_sync_unsaved_events",
        help: "Accepted events waiting for the store",
        kind: Kind::Gauge,
        labels: NONE,
        samples: |s| single(s.totals.unsaved_events as f64),
    },
    Metric {
        name: "ngit_sync_store_healthy",
        help: "1 while saves succeed, 0 while the store keeps failing",
        kind: Kind::Gauge,
        labels: NONE,
        samples: |s| single(if s.totals.store_error.is_none() { 1.0 } else { 0.0 }),
    },
    Metric {
        name: "ngit_sync_store_errors_total",
        help: "Failed saves",
        kind: Kind::Counter,
        labels: NONE,
        samples: |s| single(s.totals.store_errors as f64),
    },
    Metric {
        name: "ngit_sync_events_quarantined_total",
        help: "Events the store could not save on their own (dropped, logged)",
        kind: Kind::Counter,
        labels: NONE,
        samples: |s| single(s.totals.events_quarantined as f64),
    },
    Metric {
        name: "ngit_sync_events_forgotten_total",
        help: "Accepted events not held while the store was down (fetched again on recovery)",
        kind: Kind::Counter,
        labels: NONE,
        samples: |s| single(s.totals.events_forgotten as f64),
    },
    // historic progress of each relay's current connection (SPEC §5 flow control)
    Metric {
        name: "ngit_sync_historic_ids_needed",
        help: "Ids negentropy reported as needed on the current connection",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.ids_needed as f64),
    },
    Metric {
        name: "ngit_sync_historic_ids_fetched",
        help: "Needed ids received on the current connection",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.ids_fetched as f64),
    },
    Metric {
        name: "ngit_sync_historic_progress_percent",
        help: "Rough historic sync completion (100 once Connected)",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.percent.into()),
    },
    Metric {
        name: "ngit_sync_requests_in_flight",
        help: "Historic requests in flight",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.requests_in_flight as f64),
    },
    Metric {
        name: "ngit_sync_request_window",
        help: "Historic requests allowed in flight (shrinks on refusals)",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.window as f64),
    },
    Metric {
        name: "ngit_sync_relay_refusals",
        help: "'Too many' refusals from the relay on the current connection",
        kind: Kind::Gauge,
        labels: RELAY,
        samples: |s| per_relay(s, |r| r.progress.refusals as f64),
    },
    Metric {
        name: "ngit_sync_relay_refusals_total",
        help: "Work the relay refused (CLOSED, NEG-ERR, or a NOTICE that refuses), by reason",
        kind: Kind::Counter,
        labels: &["reason", "relay"],
        samples: |s| per_relay_and_reason(s, |r| &r.counters.refusals),
    },
];

/// `status` in the Prometheus text format.
pub fn render(status: &SyncStatus) -> String {
    let mut rows: Vec<&Metric> = METRICS.iter().collect();
    rows.sort_by_key(|m| m.name);
    let mut out = String::new();
    for m in rows {
        let mut samples = (m.samples)(status);
        if samples.is_empty() {
            continue;
        }
        samples.sort_by(|a, b| a.0.cmp(&b.0));
        // writing to a String cannot fail
        let _ = writeln!(out, "# HELP {} {}", m.name, escape(m.help, false));
        let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
        for (values, value) in samples {
            out.push_str(m.name);
            for (i, (label, v)) in m.labels.iter().zip(&values).enumerate() {
                let _ = write!(out, "{}{label}=\"{}\"", if i == 0 { '{' } else { ',' }, escape(v, true));
            }
            if !m.labels.is_empty() {
                out.push('}');
            }
            // f64's Display: integers without a fraction, no exponent
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

/// Text-format escaping: `\` and line feeds always, `"` in label values.
fn escape(text: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    let needs_escape = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !text.contains(needs_escape) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.into()
}

/// Renders the latest snapshot of its source on every scrape.
pub struct Metrics {
    source: SnapshotSource,
}

impl Metrics {
    /// Metrics of the snapshots `source` yields.
    pub fn new(source: SnapshotSource) -> Self {
        Self { source }
    }

    /// The Prometheus text exposition of the current snapshot.
    pub fn render(&self) -> String {
        render(&(self.source)())
    }
}

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use sync_core::status::{RelayCounters, RelayStatus, Totals};
    use sync_core::{ConnectionStatus, HealthStatus, Millis};

    /// The row of `name`, if it is a metric of ours.
    fn metric(name: &str) -> Option<&'static Metric> {
        METRICS.iter().find(|m| m.name == name)
    }

    fn snapshot(synced: u64) -> SyncStatus {
        let relay = RelayStatus {
            relay: "wss://relay.example.com".into(),
            bootstrap: true,
            connection: ConnectionStatus::Connected,
            degraded_reason: None,
            last_error: None,
            connection_code: 3,
            health: HealthStatus::Degraded,
            health_code: 3,
            failures: 2,
            last_connected: Some(Millis(1_000)),
            disconnected_at: None,
            announcements_synced: true,
            historic_sync_completed: true,
            historic_sync_completed_at: Some(Millis(1_700_000_000_500)),
            historic_sync_duration_ms: Some(1500),
            next_attempt_at: None,
            rate_limited_until: None,
            req_only: false,
            negentropy: Some(true),
            resumed: false,
            progress: sync_core::status::HistoricProgress {
                ids_needed: 40,
                ids_fetched: 30,
                percent: 100,
                window: 8,
                ..Default::default()
            },
            pending_batches: 1,
            live_filters: 3,
            confirmed_repos: 1,
            confirmed_roots: 2,
            counters: RelayCounters {
                connect_success: 4,
                connect_failure: 1,
                events_received: 10,
                events_saved: synced,
                events_rejected: BTreeMap::from([("invalid_signature".to_string(), 2)]),
                ..Default::default()
            },
        };
        SyncStatus {
            now: Millis(5_000),
            running: true,
            relays: vec![relay],
            totals: Totals { events_synced: synced, relays_tracked: 1, relays_connected: 1, relays_dead: 0, ..Default::default() },
            repositories: vec![],
        }
    }

    #[test]
    fn spec_names_labels_and_encodings() {
        let snap = Arc::new(snapshot(7));
        let m = Metrics::new(Arc::new(move || Arc::clone(&snap)));
        let text = m.render();
        for line in [
            "# TYPE ngit_sync_relay_connected gauge",
            "ngit_sync_relay_connected{relay=\"wss://relay.example.com\"} 3",
            "# TYPE ngit_sync_connection_attempts_total counter",
            "ngit_sync_connection_attempts_total{relay=\"wss://relay.example.com\",result=\"success\"} 4",
            "ngit_sync_connection_attempts_total{relay=\"wss://relay.example.com\",result=\"failure\"} 1",
            "# TYPE ngit_sync_relay_status gauge",
            "ngit_sync_relay_status{relay=\"wss://relay.example.com\"} 3",
            "ngit_sync_relay_failures{relay=\"wss://relay.example.com\"} 2",
            "# TYPE ngit_sync_events_synced_total counter",
            "ngit_sync_events_synced_total 7",
            "# TYPE ngit_sync_relays_tracked_total untyped",
            "# TYPE ngit_sync_relays_connected_total untyped",
            "# TYPE ngit_sync_relays_dead_total untyped",
            "ngit_sync_relays_tracked_total 1",
            "ngit_sync_relays_connected_total 1",
            "ngit_sync_relays_dead_total 0",
            "ngit_sync_events_rejected_total{reason=\"invalid_signature\",relay=\"wss://relay.example.com\"} 2",
            "ngit_sync_historic_sync_completed_timestamp_seconds{relay=\"wss://relay.example.com\"} 1700000000.5",
            "ngit_sync_pending_batches{relay=\"wss://relay.example.com\"} 1",
            "ngit_sync_historic_ids_needed{relay=\"wss://relay.example.com\"} 40",
            "ngit_sync_historic_ids_fetched{relay=\"wss://relay.example.com\"} 30",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }

    /// A relay row with every field at rest; tests change what they need.
    fn relay(url: &str) -> RelayStatus {
        RelayStatus::at_rest(url)
    }

    /// Several relays (listed out of order) in every state, rejections by
    /// reason (one needing escapes), refused URLs by reason, a failing
    /// store, fractional seconds and a counter beyond 2^53.
    fn rich_snapshot() -> SyncStatus {
        let mut done = relay("wss://relay.example.com");
        done.bootstrap = true;
        (done.connection, done.connection_code, done.health, done.health_code) = (ConnectionStatus::Connected, 3, HealthStatus::Healthy, 1);
        done.historic_sync_completed_at = Some(Millis(1_700_000_000_123));
        done.historic_sync_duration_ms = Some(1234);
        done.live_filters = 7;
        done.progress =
            sync_core::status::HistoricProgress { ids_needed: 9050, ids_fetched: 9050, percent: 100, window: 8, ..Default::default() };
        done.counters = RelayCounters {
            connect_success: 4,
            connect_failure: 1,
            events_received: 12_345,
            events_saved: 12_000,
            events_rejected: BTreeMap::from([
                ("invalid_signature".to_string(), 2),
                ("not_accepted".to_string(), 340),
                ("store:disk \"full\" \\ at\nnight".to_string(), 3),
            ]),
            bytes_received: 9_876_543_210,
            bytes_sent: 123_456,
            negentropy_rounds: 42,
            refusals: BTreeMap::from([("too_many".to_string(), 5), ("unknown_message".to_string(), 1)]),
            ..Default::default()
        };
        let mut syncing = relay("wss://a.example.org");
        (syncing.connection, syncing.connection_code, syncing.health, syncing.health_code, syncing.failures) =
            (ConnectionStatus::Syncing, 2, HealthStatus::Degraded, 3, 2);
        syncing.pending_batches = 3;
        syncing.live_filters = 2;
        syncing.progress = sync_core::status::HistoricProgress {
            ids_needed: 4000,
            ids_fetched: 1800,
            requests_in_flight: 4,
            window: 4,
            refusals: 2,
            percent: 45,
            ..Default::default()
        };
        syncing.counters = RelayCounters {
            connect_success: 1,
            events_received: 1800,
            events_saved: 1700,
            events_rejected: BTreeMap::from([("invalid_signature".to_string(), 1)]),
            bytes_received: 2_000_000,
            bytes_sent: 5_000,
            negentropy_rounds: 3,
            ..Default::default()
        };
        let mut degraded = relay("wss://nos.lol/path?x=1");
        (degraded.connection, degraded.connection_code, degraded.health, degraded.health_code) =
            (ConnectionStatus::ConnectedDegraded, 4, HealthStatus::RateLimited, 5);
        degraded.historic_sync_completed_at = Some(Millis(1_700_000_100_000));
        degraded.historic_sync_duration_ms = Some(60_000);
        let mut dead = relay("ws://127.0.0.1:7777");
        (dead.health, dead.health_code, dead.failures) = (HealthStatus::Dead, 4, 31);
        dead.counters.connect_failure = 31;
        SyncStatus {
            now: Millis(1_700_000_200_000),
            running: true,
            relays: vec![done, syncing, degraded, dead],
            totals: Totals {
                events_synced: (1 << 53) + 1,
                relays_tracked: 4,
                relays_connected: 3,
                relays_dead: 1,
                repositories: 41,
                root_events: 950,
                unsaved_events: 12,
                relays_refused: 6,
                relay_urls_refused: BTreeMap::from([("private".to_string(), 3), ("per_host".to_string(), 1), ("too_long".to_string(), 2)]),
                store_error: Some("disk full".into()),
                store_errors: 3,
                events_quarantined: 1,
                events_forgotten: 7,
                ..Default::default()
            },
            repositories: vec![],
        }
    }

    /// The scrape of `snapshot`, compared with `testdata/<name>`: the exact
    /// bytes operators' dashboards, alerts and scrapers have been reading.
    /// `UPDATE_GOLDEN=1` rewrites the file (only for an intended change).
    fn assert_golden(snapshot: SyncStatus, name: &str) {
        let snap = Arc::new(snapshot);
        let text = Metrics::new(Arc::new(move || Arc::clone(&snap))).render();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some((i, (got, want))) = text.lines().zip(golden.lines()).enumerate().find(|(_, (a, b))| a != b) {
            panic!("{name} line {}: got\n  {got}\nwant\n  {want}", i + 1);
        }
        assert_eq!(text, golden, "{name}: same lines, different length or line ends");
    }

    #[test]
    fn a_rich_snapshot_renders_byte_for_byte_as_before() {
        assert_golden(rich_snapshot(), "metrics-rich.prom");
    }

    #[test]
    fn a_snapshot_without_relays_renders_only_the_totals() {
        let s = SyncStatus { now: Millis(0), running: true, relays: vec![], totals: Totals::default(), repositories: vec![] };
        assert_golden(s, "metrics-empty.prom");
    }

    #[test]
    fn every_scrape_renders_the_latest_snapshot() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let n2 = Arc::clone(&n);
        let m = Metrics::new(Arc::new(move || Arc::new(snapshot(n2.load(std::sync::atomic::Ordering::SeqCst)))));
        assert!(m.render().contains("ngit_sync_events_synced_total 1\n"));
        n.store(5, std::sync::atomic::Ordering::SeqCst);
        assert!(m.render().contains("ngit_sync_events_synced_total 5\n"));
    }

    #[test]
    fn table_rows_are_well_formed() {
        let rich = rich_snapshot();
        for (i, m) in METRICS.iter().enumerate() {
            assert!(METRICS[..i].iter().all(|o| o.name != m.name), "{} twice", m.name);
            assert!(m.name.starts_with("ngit_sync_") && !m.help.is_empty(), "{}", m.name);
            assert!(m.labels.windows(2).all(|w| w[0] < w[1]), "{}: labels must be sorted (the order they are written in)", m.name);
            match m.kind {
                Kind::Counter => assert!(m.name.ends_with("_total"), "counter {} must end in _total", m.name),
                Kind::Gauge => assert!(!m.name.ends_with("_total"), "gauge {} ends in _total: promtool refuses it", m.name),
                Kind::Untyped => {}
            }
            let samples = (m.samples)(&rich);
            assert!(!samples.is_empty(), "the rich snapshot has no {} sample", m.name);
            assert!(
                samples.iter().all(|(values, _)| values.len() == m.labels.len()),
                "{}: label values do not match {:?}",
                m.name,
                m.labels
            );
        }
        let untyped: Vec<&str> = METRICS.iter().filter(|m| m.kind == Kind::Untyped).map(|m| m.name).collect();
        assert_eq!(untyped, ["ngit_sync_relays_tracked_total", "ngit_sync_relays_connected_total", "ngit_sync_relays_dead_total"]);
    }

    // ---- the deploy files and the README read the table ----

    /// Labels Prometheus itself adds or uses, valid on every metric.
    const SCRAPE_LABELS: [&str; 3] = ["job", "instance", "le"];

    fn repo_file(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A PromQL token: enough of the language to find metric names and the
    /// label names of matchers, `by (…)` clauses and `label_values(…)`.
    #[derive(Debug, PartialEq)]
    enum Tok<'a> {
        Ident(&'a str),
        Str,
        Punct(char),
    }

    fn lex(expr: &str) -> Vec<Tok<'_>> {
        let mut out = Vec::new();
        let mut chars = expr.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if c.is_whitespace() {
                continue;
            }
            if matches!(c, '"' | '\'' | '`') {
                let mut escaped = false;
                for (_, d) in chars.by_ref() {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = !escaped && d == '\\';
                }
                out.push(Tok::Str);
            } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                let mut end = start + c.len_utf8();
                while let Some((i, d)) = chars.peek().copied() {
                    if !(d.is_ascii_alphanumeric() || d == '_' || d == ':') {
                        break;
                    }
                    end = i + d.len_utf8();
                    chars.next();
                }
                // numbers and durations (`5m`, `0`) are not identifiers
                if !c.is_ascii_digit() {
                    out.push(Tok::Ident(&expr[start..end]));
                }
            } else {
                out.push(Tok::Punct(c));
            }
        }
        out
    }

    /// What is wrong with `expr` against the table: unknown `ngit_sync_*`
    /// names, and label names a metric does not have (in its matchers, in
    /// `by`/`without`/`on`/`ignoring` clauses, in `label_values`).
    fn check_expr(expr: &str) -> Vec<String> {
        let toks = lex(expr);
        let mut problems = Vec::new();
        let metrics: Vec<&str> = toks
            .iter()
            .filter_map(|t| if let Tok::Ident(n) = t { Some(*n) } else { None })
            .filter(|n| n.starts_with("ngit_sync_"))
            .collect();
        for name in &metrics {
            if metric(name).is_none() {
                problems.push(format!("no metric `{name}` in metrics::METRICS"));
            }
        }
        let mut check_label = |name: &str, label: &str, context: &str| {
            if SCRAPE_LABELS.contains(&label) {
                return;
            }
            if let Some(m) = metric(name) {
                if !m.labels.contains(&label) {
                    problems.push(format!("{context}: `{name}` has no label `{label}` (it has {:?})", m.labels));
                }
            }
        };
        for (i, tok) in toks.iter().enumerate() {
            match tok {
                // name{label op "value", …}
                Tok::Ident(name) if name.starts_with("ngit_sync_") && toks.get(i + 1) == Some(&Tok::Punct('{')) => {
                    let mut j = i + 2;
                    while let Some(Tok::Ident(label)) = toks.get(j) {
                        check_label(name, label, "matcher");
                        j += 1;
                        while !matches!(toks.get(j), None | Some(Tok::Punct(',' | '}'))) {
                            j += 1;
                        }
                        j += 1;
                    }
                }
                // by (l, …): every metric aggregated must have the labels
                Tok::Ident(kw @ ("by" | "without" | "on" | "ignoring" | "group_left" | "group_right"))
                    if toks.get(i + 1) == Some(&Tok::Punct('(')) =>
                {
                    for t in toks[i + 2..].iter().take_while(|t| **t != Tok::Punct(')')) {
                        if let Tok::Ident(label) = t {
                            for name in &metrics {
                                check_label(name, label, kw);
                            }
                        }
                    }
                }
                // label_values(name{…}, label)
                Tok::Ident("label_values") => {
                    let args: Vec<&Tok> = toks[i + 1..].iter().take_while(|t| **t != Tok::Punct(')')).collect();
                    if let (Some(Tok::Ident(name)), Some(Tok::Ident(label))) = (args.get(1), args.last()) {
                        check_label(name, label, "label_values");
                    }
                }
                _ => {}
            }
        }
        problems
    }

    /// Every PromQL expression of the Grafana dashboard: panel targets
    /// (`expr`) and template variable queries (`query`), at any depth.
    fn dashboard_exprs() -> Vec<String> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        match (k.as_str(), v.as_str()) {
                            ("expr" | "query", Some(e)) => out.push(e.to_string()),
                            _ => walk(v, out),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let json: serde_json::Value = serde_json::from_str(&repo_file("deploy/grafana-dashboard.json")).expect("dashboard is JSON");
        let mut out = Vec::new();
        walk(&json, &mut out);
        out
    }

    /// The values of `key:` in a YAML file, also block scalars (`key: |`).
    fn yaml_exprs(path: &str, key: &str) -> Vec<String> {
        let text = repo_file(path);
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some(value) = trimmed.strip_prefix(key).and_then(|v| v.strip_prefix(':')) else { continue };
            let value = value.trim();
            if value.starts_with(['|', '>']) {
                let indent = line.len() - line.trim_start().len();
                let block = lines[i + 1..].iter().take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent);
                out.push(block.map(|l| l.trim()).collect::<Vec<_>>().join(" "));
            } else {
                out.push(value.trim_matches(|c| c == '\'' || c == '"').to_string());
            }
        }
        out
    }

    fn assert_exprs_match_the_table(file: &str, exprs: &[String]) {
        let problems: Vec<String> =
            exprs.iter().flat_map(|e| check_expr(e).into_iter().map(move |p| format!("{file}: `{e}`: {p}"))).collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn the_checker_finds_unknown_names_and_labels() {
        assert!(check_expr(r#"sum by (relay) (rate(ngit_sync_events_rejected_total{instance=~"$instance", reason!="x"}[5m]))"#).is_empty());
        assert!(check_expr("label_values(ngit_sync_relays_tracked_total, instance)").is_empty());
        assert_eq!(check_expr("ngit_sync_relay_conected == 2").len(), 1);
        assert_eq!(check_expr(r#"ngit_sync_relay_status{relay="a", result="b"}"#).len(), 1);
        assert_eq!(check_expr("count by (instance, reason) (ngit_sync_relay_status == 3)").len(), 1);
        assert_eq!(check_expr("label_values(ngit_sync_repositories, relay)").len(), 1);
        assert_eq!(check_expr(r#"ngit_sync_relay_status{relay="a,}b", reason=~"x"}"#).len(), 1, "quoted commas and braces are skipped");
    }

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_and_labels_of_the_table() {
        let exprs = dashboard_exprs();
        assert!(exprs.iter().filter(|e| e.contains("ngit_sync_")).count() >= 15, "few queries found: {exprs:?}");
        assert_exprs_match_the_table("deploy/grafana-dashboard.json", &exprs);
    }

    #[test]
    fn the_alert_rules_and_their_tests_use_only_metrics_and_labels_of_the_table() {
        let rules = yaml_exprs("deploy/grasp-sync-alerts.yml", "expr");
        assert!(rules.iter().filter(|e| e.contains("ngit_sync_")).count() >= 4, "few rules found: {rules:?}");
        assert_exprs_match_the_table("deploy/grasp-sync-alerts.yml", &rules);
        // the series the promtool unit tests feed them must be real too
        let series = yaml_exprs("deploy/grasp-sync-alerts.test.yml", "series");
        assert!(series.len() >= 10, "few input series found: {series:?}");
        assert_exprs_match_the_table("deploy/grasp-sync-alerts.test.yml", &series);
    }

    /// The README's metrics table, generated from [`METRICS`].
    fn readme_table() -> String {
        // blank lines around it: the markers are HTML blocks, the table its own block
        let mut out = String::from("\n| name | type | labels | meaning |\n|---|---|---|---|\n");
        for m in METRICS {
            let kind = match m.kind {
                Kind::Untyped => "gauge (exposed `untyped`, see below)",
                k => k.as_str(),
            };
            let labels = if m.labels.is_empty() { "—".to_string() } else { m.labels.join(", ") };
            out.push_str(&format!("| `{}` | {kind} | {labels} | {} |\n", m.name, m.help));
        }
        out.push('\n');
        out
    }

    const README_BEGIN: &str =
        "<!-- metrics table: generated from sync-native/src/metrics.rs; UPDATE_README=1 cargo test -p sync-native readme rewrites it -->\n";
    const README_END: &str = "<!-- end of metrics table -->\n";

    #[test]
    fn the_readme_lists_exactly_the_metrics_of_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = repo_file("README.md");
        let (Some(begin), Some(end)) = (readme.find(README_BEGIN), readme.find(README_END)) else {
            panic!("README.md lacks the metrics table markers:\n{README_BEGIN}{README_END}");
        };
        let current = &readme[begin + README_BEGIN.len()..end];
        let table = readme_table();
        if current != table && std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{table}{}", &readme[..begin + README_BEGIN.len()], &readme[end..]);
            std::fs::write(&path, updated).unwrap();
            return;
        }
        assert_eq!(current, table, "README.md's metrics table is not metrics::METRICS (UPDATE_README=1 rewrites it)");
        // and any metric named elsewhere in the README exists
        let mut rest = readme.as_str();
        while let Some(at) = rest.find("ngit_sync_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(metric(&name).is_some(), "README.md names `{name}`, which is not in metrics::METRICS");
            rest = &rest[at + name.len()..];
        }
    }
}

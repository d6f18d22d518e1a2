//! Prometheus metrics rendered from the engine's status snapshot.
//!
//! The metric names, labels and value encodings of SPEC §8 are a public
//! contract (operators' dashboards and alerts use them), so they are spelled
//! out here once. Values are not accumulated in this process: every scrape
//! renders the current [`SyncStatus`] through a custom [`Collector`]. The
//! engine's counters only grow, so the exported counters are monotonic.
//!
//! Note: SPEC §8 fixes three gauge-valued metrics whose names end in `_total`
//! (`ngit_sync_relays_{tracked,connected,dead}_total`). `promtool check
//! metrics` (and the Prometheus naming rules) forbid `_total` on gauges, so
//! these three are exposed with `# TYPE … untyped`: names, labels and values
//! stay exactly as specified (PromQL, dashboards and alerts cannot tell the
//! difference) and the scrape passes promtool.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use sync_core::SyncStatus;

/// Label values of the unlabelled SPEC totals.
const NO_LABELS: &[&str] = &[];

/// Something that yields the latest snapshot (the driver handle in the daemon).
pub type SnapshotSource = Arc<dyn Fn() -> Arc<SyncStatus> + Send + Sync>;

/// A family of metrics, rebuilt on every scrape.
struct Families {
    relay_connected: IntGaugeVec,
    connection_attempts: IntCounterVec,
    relay_status: IntGaugeVec,
    relay_failures: IntGaugeVec,
    events_synced: IntCounterVec,
    relays_tracked: IntGaugeVec,
    relays_connected: IntGaugeVec,
    relays_dead: IntGaugeVec,
    // extras
    events_received: IntCounterVec,
    events_saved: IntCounterVec,
    events_rejected: IntCounterVec,
    historic_completed_at: GaugeVec,
    historic_duration: GaugeVec,
    pending_batches: IntGaugeVec,
    live_filters: IntGaugeVec,
    bytes_received: IntCounterVec,
    bytes_sent: IntCounterVec,
    negentropy_rounds: IntCounterVec,
    repositories: IntGaugeVec,
    root_events: IntGaugeVec,
    relays_refused: IntGaugeVec,
    unsaved_events: IntGaugeVec,
    store_healthy: IntGaugeVec,
    store_errors: IntCounterVec,
    events_quarantined: IntCounterVec,
    events_forgotten: IntCounterVec,
    // historic progress of the current connection (SPEC §5 flow control)
    ids_needed: IntGaugeVec,
    ids_fetched: IntGaugeVec,
    progress_percent: IntGaugeVec,
    requests_in_flight: IntGaugeVec,
    request_window: IntGaugeVec,
    refusals: IntGaugeVec,
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn fgauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

impl Families {
    fn new() -> Self {
        Self {
            relay_connected: gauge(
                "ngit_sync_relay_connected",
                "Connection status: 0 disconnected, 1 connecting, 2 syncing, 3 connected, 4 connected but historic sync failed",
                &["relay"],
            ),
            connection_attempts: counter("ngit_sync_connection_attempts_total", "Connection attempts by result", &["relay", "result"]),
            relay_status: gauge(
                "ngit_sync_relay_status",
                "Health: 1 healthy, 2 disconnected, 3 degraded, 4 dead, 5 rate-limited",
                &["relay"],
            ),
            relay_failures: gauge("ngit_sync_relay_failures", "Consecutive failures", &["relay"]),
            events_synced: counter("ngit_sync_events_synced_total", "Events newly saved (not duplicates, not rejected)", &[]),
            relays_tracked: gauge("ngit_sync_relays_tracked_total", "Relays known", &[]),
            relays_connected: gauge("ngit_sync_relays_connected_total", "Relays with connection status >= 2", &[]),
            relays_dead: gauge("ngit_sync_relays_dead_total", "Relays in Dead health", &[]),
            events_received: counter("ngit_sync_events_received_total", "EVENT frames received", &["relay"]),
            events_saved: counter("ngit_sync_relay_events_saved_total", "Events from this relay newly saved", &["relay"]),
            events_rejected: counter("ngit_sync_events_rejected_total", "Events not stored, by reason", &["relay", "reason"]),
            historic_completed_at: fgauge(
                "ngit_sync_historic_sync_completed_timestamp_seconds",
                "Unix time historic sync last completed (absent if never)",
                &["relay"],
            ),
            historic_duration: fgauge(
                "ngit_sync_historic_sync_duration_seconds",
                "Seconds from connect to historic sync completion, last completion",
                &["relay"],
            ),
            pending_batches: gauge("ngit_sync_pending_batches", "Historic batches in flight", &["relay"]),
            live_filters: gauge("ngit_sync_live_filters", "Live subscriptions open", &["relay"]),
            bytes_received: counter("ngit_sync_received_bytes_total", "Bytes received in frames", &["relay"]),
            bytes_sent: counter("ngit_sync_sent_bytes_total", "Bytes sent in frames", &["relay"]),
            negentropy_rounds: counter("ngit_sync_negentropy_rounds_total", "NEG-MSG rounds completed", &["relay"]),
            repositories: gauge("ngit_sync_repositories", "Repositories served", &[]),
            root_events: gauge("ngit_sync_root_events", "Root events (patches, PRs, issues) known", &[]),
            relays_refused: gauge(
                "ngit_sync_relay_urls_refused",
                "Distinct relay URLs refused, by reason (safety rule and bounds)",
                &["reason"],
            ),
            unsaved_events: gauge("ngit_sync_unsaved_events", "Accepted events waiting for the store", &[]),
            store_healthy: gauge("ngit_sync_store_healthy", "1 while saves succeed, 0 while the store keeps failing", &[]),
            store_errors: counter("ngit_sync_store_errors_total", "Failed saves", &[]),
            events_quarantined: counter(
                "ngit_sync_events_quarantined_total",
                "Events the store could not save on their own (dropped, logged)",
                &[],
            ),
            events_forgotten: counter(
                "ngit_sync_events_forgotten_total",
                "Accepted events not held while the store was down (fetched again on recovery)",
                &[],
            ),
            ids_needed: gauge("ngit_sync_historic_ids_needed", "Ids negentropy reported as needed on the current connection", &["relay"]),
            ids_fetched: gauge("ngit_sync_historic_ids_fetched", "Needed ids received on the current connection", &["relay"]),
            progress_percent: gauge(
                "ngit_sync_historic_progress_percent",
                "Rough historic sync completion (100 once Connected)",
                &["relay"],
            ),
            requests_in_flight: gauge("ngit_sync_requests_in_flight", "Historic requests in flight", &["relay"]),
            request_window: gauge("ngit_sync_request_window", "Historic requests allowed in flight (shrinks on refusals)", &["relay"]),
            refusals: gauge("ngit_sync_relay_refusals", "'Too many' refusals from the relay on the current connection", &["relay"]),
        }
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        vec![
            &self.relay_connected,
            &self.connection_attempts,
            &self.relay_status,
            &self.relay_failures,
            &self.events_synced,
            &self.relays_tracked,
            &self.relays_connected,
            &self.relays_dead,
            &self.events_received,
            &self.events_saved,
            &self.events_rejected,
            &self.historic_completed_at,
            &self.historic_duration,
            &self.pending_batches,
            &self.live_filters,
            &self.bytes_received,
            &self.bytes_sent,
            &self.negentropy_rounds,
            &self.repositories,
            &self.root_events,
            &self.relays_refused,
            &self.unsaved_events,
            &self.store_healthy,
            &self.store_errors,
            &self.events_quarantined,
            &self.events_forgotten,
            &self.ids_needed,
            &self.ids_fetched,
            &self.progress_percent,
            &self.requests_in_flight,
            &self.request_window,
            &self.refusals,
        ]
    }

    /// Fills every family from the snapshot.
    fn fill(&self, s: &SyncStatus) {
        for r in &s.relays {
            let l = [r.relay.as_str()];
            self.relay_connected.with_label_values(&l).set(r.connection_code.into());
            self.relay_status.with_label_values(&l).set(r.health_code.into());
            self.relay_failures.with_label_values(&l).set(r.failures.into());
            let c = &r.counters;
            self.connection_attempts.with_label_values(&[r.relay.as_str(), "success"]).inc_by(c.connect_success);
            self.connection_attempts.with_label_values(&[r.relay.as_str(), "failure"]).inc_by(c.connect_failure);
            self.events_received.with_label_values(&l).inc_by(c.events_received);
            self.events_saved.with_label_values(&l).inc_by(c.events_saved);
            for (reason, n) in &c.events_rejected {
                self.events_rejected.with_label_values(&[r.relay.as_str(), reason.as_str()]).inc_by(*n);
            }
            if let Some(at) = r.historic_sync_completed_at {
                self.historic_completed_at.with_label_values(&l).set(at.0 as f64 / 1000.0);
            }
            if let Some(ms) = r.historic_sync_duration_ms {
                self.historic_duration.with_label_values(&l).set(ms as f64 / 1000.0);
            }
            self.pending_batches.with_label_values(&l).set(r.pending_batches as i64);
            self.live_filters.with_label_values(&l).set(r.live_filters as i64);
            self.bytes_received.with_label_values(&l).inc_by(c.bytes_received);
            self.bytes_sent.with_label_values(&l).inc_by(c.bytes_sent);
            self.negentropy_rounds.with_label_values(&l).inc_by(c.negentropy_rounds);
            let p = &r.progress;
            self.ids_needed.with_label_values(&l).set(p.ids_needed as i64);
            self.ids_fetched.with_label_values(&l).set(p.ids_fetched as i64);
            self.progress_percent.with_label_values(&l).set(p.percent.into());
            self.requests_in_flight.with_label_values(&l).set(p.requests_in_flight as i64);
            self.request_window.with_label_values(&l).set(p.window as i64);
            self.refusals.with_label_values(&l).set(p.refusals as i64);
        }
        let t = &s.totals;
        self.events_synced.with_label_values(NO_LABELS).inc_by(t.events_synced);
        self.relays_tracked.with_label_values(NO_LABELS).set(t.relays_tracked as i64);
        self.relays_connected.with_label_values(NO_LABELS).set(t.relays_connected as i64);
        self.relays_dead.with_label_values(NO_LABELS).set(t.relays_dead as i64);
        self.repositories.with_label_values(NO_LABELS).set(t.repositories as i64);
        self.root_events.with_label_values(NO_LABELS).set(t.root_events as i64);
        for (reason, n) in &t.relay_urls_refused {
            self.relays_refused.with_label_values(&[reason.as_str()]).set(*n as i64);
        }
        self.unsaved_events.with_label_values(NO_LABELS).set(t.unsaved_events as i64);
        self.store_healthy.with_label_values(NO_LABELS).set(i64::from(t.store_error.is_none()));
        self.store_errors.with_label_values(NO_LABELS).inc_by(t.store_errors);
        self.events_quarantined.with_label_values(NO_LABELS).inc_by(t.events_quarantined);
        self.events_forgotten.with_label_values(NO_LABELS).inc_by(t.events_forgotten);
    }
}

/// A [`Collector`] that renders the latest snapshot on every scrape.
pub struct SnapshotCollector {
    source: SnapshotSource,
    descs: Families,
}

impl SnapshotCollector {
    /// A collector reading snapshots from `source`.
    pub fn new(source: SnapshotSource) -> Self {
        Self { source, descs: Families::new() }
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.collectors().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let fresh = Families::new();
        fresh.fill(&(self.source)());
        fresh.collectors().into_iter().flat_map(|c| c.collect()).filter(|mf| !mf.get_metric().is_empty()).collect()
    }
}

/// SPEC §8 gauges whose names end in `_total`, exposed as `untyped`.
pub const SPEC_TOTAL_GAUGES: [&str; 3] =
    ["ngit_sync_relays_tracked_total", "ngit_sync_relays_connected_total", "ngit_sync_relays_dead_total"];

/// A registry holding the snapshot collector, ready to encode.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// Registers the collector.
    pub fn new(source: SnapshotSource) -> Self {
        let registry = Registry::new();
        registry.register(Box::new(SnapshotCollector::new(source))).expect("first registration of a fresh registry");
        Self { registry }
    }

    /// The Prometheus text exposition of the current snapshot.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        let mut text = String::from_utf8(buf).unwrap_or_default();
        // The `prometheus` crate cannot encode untyped families, so the TYPE
        // line of the SPEC's `_total` gauges is rewritten (see module docs).
        for name in SPEC_TOTAL_GAUGES {
            text = text.replace(&format!("# TYPE {name} gauge\n"), &format!("# TYPE {name} untyped\n"));
        }
        text
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
        RelayStatus {
            relay: url.into(),
            bootstrap: false,
            connection: ConnectionStatus::Disconnected,
            degraded_reason: None,
            last_error: None,
            connection_code: 0,
            health: HealthStatus::Disconnected,
            health_code: 2,
            failures: 0,
            last_connected: None,
            disconnected_at: None,
            announcements_synced: false,
            historic_sync_completed: false,
            historic_sync_completed_at: None,
            historic_sync_duration_ms: None,
            next_attempt_at: None,
            rate_limited_until: None,
            req_only: false,
            negentropy: None,
            resumed: false,
            progress: Default::default(),
            pending_batches: 0,
            live_filters: 0,
            confirmed_repos: 0,
            confirmed_roots: 0,
            counters: RelayCounters::default(),
        }
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
}

//! Progress an operator can read in the log.
//!
//! An operator watching the daemon in a terminal (or `journalctl -f`) should
//! see a long historic sync move without scraping `/metrics`. [`ProgressLog`]
//! watches the status snapshots the engine already publishes and turns them
//! into log lines:
//!
//! - per relay, while it is Syncing, at most one line every
//!   `--progress-interval` (default [`DEFAULT_INTERVAL`]; the first after it has synced that long, so quick
//!   syncs stay quiet): ids needed and fetched, percent, events per second;
//! - one summary when the last relay reaches Connected: events, time, rate.
//!
//! It is pure (times come from the snapshot), so its rules are unit-tested.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use sync_core::{ConnectionStatus, RelayStatus, SyncStatus};

/// At most one progress line per relay this often, by default
/// (`--progress-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// How often the daemon feeds snapshots to [`ProgressLog`].
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One line to log.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressLine {
    /// A relay's historic sync is under way.
    Relay {
        /// Relay URL.
        relay: String,
        /// Negentropy ids needed so far.
        ids_needed: u64,
        /// Of those, received.
        ids_fetched: u64,
        /// REQ pages done (REQ-only relays).
        pages_done: u64,
        /// Rough completion.
        percent: u8,
        /// Events received from the relay per second since the last line.
        events_per_second: f64,
    },
    /// No relay is syncing any more (the last one reached Connected).
    Summary {
        /// Relays connected.
        connected: usize,
        /// Of those, ConnectedDegraded (a historic batch failed).
        degraded: usize,
        /// Relays that could not be reached.
        unreachable: usize,
        /// Events newly saved during this sync.
        events: u64,
        /// From the first relay syncing to the last one done.
        elapsed: Duration,
    },
}

impl ProgressLine {
    /// Events per second of a summary.
    pub fn summary_rate(events: u64, elapsed: Duration) -> f64 {
        events as f64 / elapsed.as_secs_f64().max(0.001)
    }
}

impl fmt::Display for ProgressLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgressLine::Relay { relay, ids_needed, ids_fetched, pages_done, percent, events_per_second } => {
                write!(
                    f,
                    "historic sync {relay}: {percent}%, ids fetched {ids_fetched}/{ids_needed}, pages {pages_done}, {events_per_second:.0} events/s"
                )
            }
            ProgressLine::Summary { connected, degraded, unreachable, events, elapsed } => {
                let rate = ProgressLine::summary_rate(*events, *elapsed);
                write!(
                    f,
                    "historic sync done: {events} events in {:.1} s ({rate:.0} events/s); {connected} relays connected ({degraded} degraded), {unreachable} unreachable",
                    elapsed.as_secs_f64()
                )
            }
        }
    }
}

/// Where one relay's last progress line left off.
#[derive(Debug, Clone)]
struct RelayMark {
    /// When its last line was logged (or when it was first seen Syncing).
    last_line_at: u64,
    /// Its `events_received` counter then.
    received_then: u64,
}

/// A sync phase: from the first relay Syncing to none.
#[derive(Debug, Clone)]
struct Phase {
    started_at: u64,
    synced_at_start: u64,
}

/// Turns status snapshots into progress lines (see the module doc).
#[derive(Debug)]
pub struct ProgressLog {
    /// None: per-relay lines off, summaries only.
    interval: Option<Duration>,
    relays: BTreeMap<String, RelayMark>,
    phase: Option<Phase>,
    /// The first snapshot's time, until the first sync phase takes it.
    started: Option<u64>,
    /// Whether a snapshot was seen yet.
    seen: bool,
}

/// A relay that is still on its way to Connected: syncing, dialling, or
/// admitted but not yet dialled (new relays wait for the next tick).
fn on_its_way(r: &RelayStatus) -> bool {
    match r.connection {
        ConnectionStatus::Connecting | ConnectionStatus::Syncing => true,
        ConnectionStatus::Disconnected => r.failures == 0 && r.last_connected.is_none(),
        ConnectionStatus::Connected | ConnectionStatus::ConnectedDegraded => false,
    }
}

impl ProgressLog {
    /// Per-relay lines at most every `interval` (None: summaries only).
    pub fn new(interval: Option<Duration>) -> Self {
        Self { interval, relays: BTreeMap::new(), phase: None, started: None, seen: false }
    }

    /// Feeds one snapshot; returns what to log now.
    pub fn observe(&mut self, status: &SyncStatus) -> Vec<ProgressLine> {
        let now = status.now.0;
        if !self.seen {
            self.seen = true;
            self.started = Some(now);
        }
        let interval = self.interval.map_or(u64::MAX, |d| d.as_millis() as u64);
        let mut lines = Vec::new();
        self.relays.retain(|url, _| status.relays.iter().any(|r| &r.relay == url && r.connection == ConnectionStatus::Syncing));
        for r in status.relays.iter().filter(|r| r.connection == ConnectionStatus::Syncing) {
            let mark =
                self.relays.entry(r.relay.clone()).or_insert(RelayMark { last_line_at: now, received_then: r.counters.events_received });
            if now.saturating_sub(mark.last_line_at) < interval {
                continue;
            }
            let seconds = (now - mark.last_line_at) as f64 / 1000.0;
            lines.push(ProgressLine::Relay {
                relay: r.relay.clone(),
                ids_needed: r.progress.ids_needed,
                ids_fetched: r.progress.ids_fetched,
                pages_done: r.progress.pages_done,
                percent: r.progress.percent,
                events_per_second: r.counters.events_received.saturating_sub(mark.received_then) as f64 / seconds,
            });
            mark.last_line_at = now;
            mark.received_then = r.counters.events_received;
        }
        let syncing = status.relays.iter().any(|r| r.connection == ConnectionStatus::Syncing);
        match &self.phase {
            None if syncing => {
                // The first sync is timed and counted from start-up (the
                // first snapshot), so nothing saved before the first poll is
                // left out; later ones (reconnects, daily reconciliation)
                // from when they were first seen.
                self.phase = Some(match self.started.take() {
                    Some(started_at) => Phase { started_at, synced_at_start: 0 },
                    None => Phase { started_at: now, synced_at_start: status.totals.events_synced },
                });
            }
            Some(phase) if !status.relays.iter().any(on_its_way) => {
                let count = |pred: fn(&RelayStatus) -> bool| status.relays.iter().filter(|r| pred(r)).count();
                lines.push(ProgressLine::Summary {
                    connected: count(|r| r.connection.is_connected()),
                    degraded: count(|r| r.connection == ConnectionStatus::ConnectedDegraded),
                    unreachable: count(|r| r.connection == ConnectionStatus::Disconnected),
                    events: status.totals.events_synced.saturating_sub(phase.synced_at_start),
                    elapsed: Duration::from_millis(now.saturating_sub(phase.started_at)),
                });
                self.phase = None;
            }
            _ => {}
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::status::{HealthStatus, HistoricProgress, RelayCounters, Totals};

    fn relay(url: &str, connection: ConnectionStatus, received: u64, percent: u8) -> RelayStatus {
        RelayStatus {
            connection,
            connection_code: connection.code(),
            health: HealthStatus::Healthy,
            health_code: 1,
            last_connected: Some(sync_core::Millis(1)),
            negentropy: Some(true),
            progress: HistoricProgress { ids_needed: 1000, ids_fetched: received, percent, ..Default::default() },
            pending_batches: 1,
            counters: RelayCounters { events_received: received, ..Default::default() },
            ..RelayStatus::at_rest(url)
        }
    }

    fn snapshot(now: u64, synced: u64, relays: Vec<RelayStatus>) -> SyncStatus {
        SyncStatus {
            now: sync_core::Millis(now),
            running: true,
            relays,
            totals: Totals { events_synced: synced, ..Default::default() },
            repositories: vec![],
        }
    }

    use ConnectionStatus::*;

    #[test]
    fn a_relay_logs_at_most_every_ten_seconds_and_not_before_ten_seconds_of_syncing() {
        let mut log = ProgressLog::new(Some(DEFAULT_INTERVAL));
        let mut logged = Vec::new();
        for second in 0..=35u64 {
            let lines = log.observe(&snapshot(second * 1000, 0, vec![relay("wss://a", Syncing, second * 100, second as u8)]));
            logged.extend(lines.into_iter().map(|l| (second, l)));
        }
        let seconds: Vec<u64> = logged.iter().map(|(s, _)| *s).collect();
        assert_eq!(seconds, vec![10, 20, 30]);
        let ProgressLine::Relay { events_per_second, ids_fetched, percent, .. } = &logged[1].1 else { panic!("{logged:?}") };
        assert_eq!((*events_per_second, *ids_fetched, *percent), (100.0, 2000, 20));
        assert!(logged[0].1.to_string().contains("wss://a: 10%, ids fetched 1000/1000"), "{}", logged[0].1);
    }

    #[test]
    fn a_quick_sync_logs_only_the_summary_when_the_last_relay_is_connected() {
        let mut log = ProgressLog::new(Some(DEFAULT_INTERVAL));
        assert!(log.observe(&snapshot(0, 0, vec![relay("wss://a", Connecting, 0, 0), relay("wss://b", Disconnected, 0, 0)])).is_empty());
        assert!(log.observe(&snapshot(1000, 0, vec![relay("wss://a", Syncing, 10, 5), relay("wss://b", Syncing, 0, 0)])).is_empty());
        assert!(log.observe(&snapshot(3000, 40, vec![relay("wss://a", Connected, 50, 100), relay("wss://b", Syncing, 9, 50)])).is_empty());
        let done =
            log.observe(&snapshot(5000, 70, vec![relay("wss://a", Connected, 50, 100), relay("wss://b", ConnectedDegraded, 9, 100)]));
        assert_eq!(
            done,
            vec![ProgressLine::Summary { connected: 2, degraded: 1, unreachable: 0, events: 70, elapsed: Duration::from_secs(5) }]
        );
        assert!(done[0].to_string().contains("70 events in 5.0 s (14 events/s)"), "{}", done[0]);
        // once per phase: nothing more while all stay connected
        assert!(log
            .observe(&snapshot(6000, 70, vec![relay("wss://a", Connected, 50, 100), relay("wss://b", Connected, 9, 100)]))
            .is_empty());
    }

    #[test]
    fn the_summary_waits_for_relays_admitted_but_not_yet_dialled_and_ignores_unreachable_ones() {
        let mut log = ProgressLog::new(Some(DEFAULT_INTERVAL));
        log.observe(&snapshot(0, 0, vec![relay("wss://a", Syncing, 0, 0)]));
        let mut fresh = relay("wss://new", Disconnected, 0, 0);
        fresh.last_connected = None;
        let mut failing = relay("wss://down", Disconnected, 0, 0);
        failing.failures = 3;
        let waiting = log.observe(&snapshot(2000, 5, vec![relay("wss://a", Connected, 5, 100), fresh.clone(), failing.clone()]));
        assert!(waiting.is_empty(), "a relay about to be dialled is still on its way: {waiting:?}");
        let done =
            log.observe(&snapshot(4000, 9, vec![relay("wss://a", Connected, 5, 100), relay("wss://new", Connected, 4, 100), failing]));
        assert!(matches!(done.as_slice(), [ProgressLine::Summary { connected: 2, unreachable: 1, events: 9, .. }]), "{done:?}");
    }

    #[test]
    fn the_first_summary_counts_from_start_up() {
        let mut log = ProgressLog::new(Some(DEFAULT_INTERVAL));
        log.observe(&snapshot(0, 0, vec![relay("wss://a", Connecting, 0, 0)]));
        log.observe(&snapshot(1000, 5, vec![relay("wss://a", Syncing, 5, 10)]));
        let done = log.observe(&snapshot(2500, 9, vec![relay("wss://a", Connected, 9, 100)]));
        assert!(matches!(done.as_slice(), [ProgressLine::Summary { events: 9, .. }]), "{done:?}");
        let ProgressLine::Summary { elapsed, .. } = &done[0] else { unreachable!() };
        assert_eq!(*elapsed, Duration::from_millis(2500));
    }

    #[test]
    fn without_an_interval_only_summaries_are_logged() {
        let mut log = ProgressLog::new(None);
        for second in 0..100u64 {
            assert!(log.observe(&snapshot(second * 1000, 0, vec![relay("wss://a", Syncing, second, 1)])).is_empty());
        }
        assert_eq!(log.observe(&snapshot(100_000, 5, vec![relay("wss://a", Connected, 100, 100)])).len(), 1);
    }

    #[test]
    fn a_later_sync_daily_reconciliation_gets_its_own_summary() {
        let mut log = ProgressLog::new(Some(DEFAULT_INTERVAL));
        log.observe(&snapshot(0, 0, vec![relay("wss://a", Syncing, 0, 0)]));
        assert_eq!(log.observe(&snapshot(1000, 3, vec![relay("wss://a", Connected, 3, 100)])).len(), 1);
        log.observe(&snapshot(100_000, 3, vec![relay("wss://a", Syncing, 3, 0)]));
        let again = log.observe(&snapshot(130_000, 4, vec![relay("wss://a", Connected, 4, 100)]));
        assert!(matches!(again.as_slice(), [ProgressLine::Summary { events: 1, .. }]), "{again:?}");
    }
}

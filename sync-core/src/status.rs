//! The serialisable status snapshot (SPEC §8): the daemon's Prometheus metrics
//! and the browser's JS state are both rendered from it, so they cannot disagree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// Per-relay connection status (SPEC §6). `code()` (the status's `connection_code`,
/// the `ngit_sync_relay_connected` value): 0 Disconnected, 1 Connecting,
/// 2 Syncing, 3 Connected, 4 ConnectedDegraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum ConnectionStatus {
    /// Not connected.
    Disconnected,
    /// Connection attempt in progress.
    Connecting,
    /// Connected, historic sync in progress.
    Syncing,
    /// Connected, historic sync complete, live sync active.
    Connected,
    /// Connected, but a historic batch failed (e.g. withheld negentropy ids).
    ConnectedDegraded,
}

impl ConnectionStatus {
    /// Metric encoding: 0 disconnected, 1 connecting, 2 syncing, 3 connected, 4 degraded.
    pub fn code(self) -> u8 {
        match self {
            ConnectionStatus::Disconnected => 0,
            ConnectionStatus::Connecting => 1,
            ConnectionStatus::Syncing => 2,
            ConnectionStatus::Connected => 3,
            ConnectionStatus::ConnectedDegraded => 4,
        }
    }

    /// True for Syncing, Connected and ConnectedDegraded (a live socket).
    pub fn is_connected(self) -> bool {
        self.code() >= 2
    }

    /// SPEC §6 state machine: is `self → next` a legal transition?
    pub fn can_become(self, next: ConnectionStatus) -> bool {
        use ConnectionStatus::*;
        matches!(
            (self, next),
            (Disconnected, Connecting)
                | (Connecting, Syncing)
                | (Connecting, Disconnected)
                | (Syncing, Connected)
                | (Syncing, ConnectedDegraded)
                | (Syncing, Disconnected)
                | (Connected, Disconnected)
                | (Connected, Syncing)
                | (Connected, ConnectedDegraded)
                | (ConnectedDegraded, Connected)
                | (ConnectedDegraded, Disconnected)
                | (ConnectedDegraded, Syncing)
        )
    }
}

/// Per-relay health (SPEC §7). `code()` (the status's `health_code`, the
/// `ngit_sync_relay_status` value): 1 Healthy, 2 Disconnected, 3 Degraded,
/// 4 Dead, 5 RateLimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub enum HealthStatus {
    /// Connection stable (5 min), or connected with no failure history.
    Healthy,
    /// Not connected, no known problem.
    Disconnected,
    /// Failing, or recovered but not yet stable.
    Degraded,
    /// 24 h of continuous failures; tried once a day.
    Dead,
    /// A `rate-limited:` answer; nothing is sent until the cooldown ends.
    RateLimited,
}

impl HealthStatus {
    /// Metric encoding: 1 healthy, 2 disconnected, 3 degraded, 4 dead, 5 rate-limited.
    pub fn code(self) -> u8 {
        match self {
            HealthStatus::Healthy => 1,
            HealthStatus::Disconnected => 2,
            HealthStatus::Degraded => 3,
            HealthStatus::Dead => 4,
            HealthStatus::RateLimited => 5,
        }
    }
}

/// Counters kept per relay (since the engine started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RelayCounters {
    /// Successful connection attempts.
    pub connect_success: u64,
    /// Failed connection attempts.
    pub connect_failure: u64,
    /// EVENT frames received.
    pub events_received: u64,
    /// Events from this relay newly saved.
    pub events_saved: u64,
    /// Events already known (seen or stored).
    pub events_duplicate: u64,
    /// Rejected events by reason (`not_accepted`, `invalid_signature`, `malformed`, `oversized`, `store:…`).
    pub events_rejected: BTreeMap<String, u64>,
    /// Frames received (all types).
    pub frames_received: u64,
    /// Bytes received in frames.
    pub bytes_received: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// NEG-MSG rounds completed.
    pub negentropy_rounds: u64,
    /// `rate-limited:` answers seen.
    pub rate_limited: u64,
    /// Historic batches that failed.
    pub batches_failed: u64,
    /// NOTICE frames received.
    pub notices: u64,
    /// Work the relay refused (a CLOSED, a NEG-ERR, or a NOTICE that
    /// refuses), by reason: `too_many`, `rate_limited`, `rejected`,
    /// `blocked`, `auth_required`, `restricted`, `invalid`, `error`,
    /// `unsupported`, `pow`, `unknown_message`, `closed` (a CLOSED saying
    /// nothing we recognise), `neg_err` (likewise for NEG-ERR).
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
}

/// One relay's row of the snapshot. Times are unix milliseconds; `null` when
/// the event has not happened (yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RelayStatus {
    /// Normalised relay URL.
    pub relay: String,
    /// Configured bootstrap relay (never dropped).
    pub bootstrap: bool,
    /// Connection status.
    pub connection: ConnectionStatus,
    /// Why the relay is ConnectedDegraded (or will be when its sync ends);
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "typescript", ts(optional))]
    pub degraded_reason: Option<String>,
    /// The most recent problem with this relay (a failed connection, a lost
    /// one, a rate limit, a degraded sync); kept after it recovers, so an
    /// operator can see what last went wrong and when. Null if none yet.
    #[serde(default)]
    pub last_error: Option<RelayError>,
    /// `ngit_sync_relay_connected` value of `connection` (0–4).
    pub connection_code: u8,
    /// Health status.
    pub health: HealthStatus,
    /// `ngit_sync_relay_status` value of `health` (1–5).
    pub health_code: u8,
    /// Consecutive connection failures.
    pub failures: u32,
    /// When the relay was last seen connected.
    pub last_connected: Option<Millis>,
    /// When the relay last disconnected.
    pub disconnected_at: Option<Millis>,
    /// L1 historic sync done on this connection lineage.
    pub announcements_synced: bool,
    /// All historic batches completed (status reached Connected).
    pub historic_sync_completed: bool,
    /// When historic sync completed.
    pub historic_sync_completed_at: Option<Millis>,
    /// Milliseconds from connect to historic completion, for the last completion.
    pub historic_sync_duration_ms: Option<u64>,
    /// Next connection attempt, if disconnected.
    pub next_attempt_at: Option<Millis>,
    /// End of the rate-limit cooldown, if active.
    pub rate_limited_until: Option<Millis>,
    /// Known not to speak NIP-77 this session.
    pub req_only: bool,
    /// NIP-77 as far as known: true when negentropy worked here, false when the
    /// relay refused it, null (`None`) while not yet known.
    pub negentropy: Option<bool>,
    /// The current connection resumed with `since` (a quick reconnect after a
    /// short disconnection or restart) instead of a fresh sync.
    pub resumed: bool,
    /// Historic sync progress of the current connection.
    pub progress: HistoricProgress,
    /// Batches in flight.
    pub pending_batches: usize,
    /// Live subscriptions open.
    pub live_filters: usize,
    /// Repositories confirmed synced here.
    pub confirmed_repos: usize,
    /// Root events confirmed synced here.
    pub confirmed_roots: usize,
    /// Counters since the engine started.
    pub counters: RelayCounters,
}

/// Why a connected relay is (or will end its sync) ConnectedDegraded. The
/// status shows it as text (`RelayStatus::degraded_reason`, `/status`,
/// the JS status), in the words below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DegradedReason {
    /// A historic batch failed (withheld ids, a request that never
    /// finished, a bound hit) or was cut short.
    HistoricIncomplete,
    /// The relay closed live subscriptions this many times in a row; its
    /// last reason. Cleared after a quiet stability period.
    LiveClosed {
        /// Closes in a row.
        closes: u32,
        /// The relay's last CLOSED message.
        message: String,
    },
}

impl core::fmt::Display for DegradedReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DegradedReason::HistoricIncomplete => {
                f.write_str("historic sync incomplete: some batches failed or were cut short (see the log)")
            }
            DegradedReason::LiveClosed { closes, message } => {
                write!(f, "relay keeps closing live subscriptions ({closes} in a row): {message}")
            }
        }
    }
}

impl RelayStatus {
    /// The row of a relay just tracked: disconnected, nothing happened yet
    /// (front ends and tests build rows from it).
    pub fn at_rest(relay: impl Into<String>) -> Self {
        RelayStatus {
            relay: relay.into(),
            bootstrap: false,
            connection: ConnectionStatus::Disconnected,
            degraded_reason: None,
            last_error: None,
            connection_code: ConnectionStatus::Disconnected.code(),
            health: HealthStatus::Disconnected,
            health_code: HealthStatus::Disconnected.code(),
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
            progress: HistoricProgress::default(),
            pending_batches: 0,
            live_filters: 0,
            confirmed_repos: 0,
            confirmed_roots: 0,
            counters: RelayCounters::default(),
        }
    }
}

/// A problem seen with a relay, and when (`RelayStatus::last_error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RelayError {
    /// When it happened (unix milliseconds).
    pub at: Millis,
    /// What happened, e.g. `connection failed: connection refused`.
    pub message: String,
}

/// Historic sync progress of one connection (SPEC §5 flow control; the demo's
/// progress bars and `ngit_sync_historic_ids_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct HistoricProgress {
    /// Ids negentropy reported as needed (known ones excluded).
    pub ids_needed: u64,
    /// Needed ids received so far.
    pub ids_fetched: u64,
    /// REQ pages completed.
    pub pages_done: u64,
    /// Historic requests in flight now.
    pub requests_in_flight: usize,
    /// Current in-flight window (shrinks when the relay says too many).
    pub window: usize,
    /// "Too many" refusals from the relay on this connection.
    pub refusals: u64,
    /// Batches created on this connection.
    pub batches_total: u64,
    /// Batches still pending.
    pub batches_pending: usize,
    /// Rough overall completion, 0–100 (100 once Connected).
    pub percent: u8,
}

/// A repository the engine serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct RepoStatus {
    /// `30617:<pubkey>:<d>`.
    pub address: String,
    /// `name` tag, null if none.
    pub name: Option<String>,
    /// Relays the announcement lists.
    pub relays: Vec<String>,
    /// Root events (patches, PRs, issues) known.
    pub root_events: usize,
}

/// Totals of SPEC §8.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct Totals {
    /// `ngit_sync_events_synced_total`: events newly saved.
    pub events_synced: u64,
    /// `ngit_sync_relays_tracked_total`.
    pub relays_tracked: usize,
    /// `ngit_sync_relays_connected_total`: relays with status ≥ 2.
    pub relays_connected: usize,
    /// `ngit_sync_relays_dead_total`.
    pub relays_dead: usize,
    /// Events received over all relays.
    pub events_received: u64,
    /// Rejections by reason over all relays.
    pub events_rejected: BTreeMap<String, u64>,
    /// Repositories served.
    pub repositories: usize,
    /// Root events known.
    pub root_events: usize,
    /// Batches in flight over all relays.
    pub pending_batches: usize,
    /// Events accepted and waiting for the store.
    pub unsaved_events: usize,
    /// Distinct relay URLs refused (safety rule and bounds).
    pub relays_refused: usize,
    /// The same by reason: `private`, `scheme`, `invalid`, `too_long`,
    /// `per_announcement`, `per_host`, `total`.
    #[serde(default)]
    pub relay_urls_refused: BTreeMap<String, u64>,
    /// The store's error while it keeps failing (`/health` answers 503);
    /// null when the store is healthy.
    #[serde(default)]
    pub store_error: Option<String>,
    /// Failed saves, ever.
    #[serde(default)]
    pub store_errors: u64,
    /// Events the store could not save on their own, dropped (logged).
    #[serde(default)]
    pub events_quarantined: u64,
    /// Accepted events forgotten while the store was down (fetched again on recovery).
    #[serde(default)]
    pub events_forgotten: u64,
}

/// The whole snapshot: the daemon's `GET /status`, and in JavaScript what
/// `status()` returns and `onStatus` callbacks receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "typescript", derive(ts_rs::TS))]
pub struct SyncStatus {
    /// When the snapshot was taken (unix milliseconds).
    pub now: Millis,
    /// Whether the engine is running (false after shutdown).
    pub running: bool,
    /// Per relay, sorted by URL.
    pub relays: Vec<RelayStatus>,
    /// Totals over all relays (SPEC §8).
    pub totals: Totals,
    /// Repositories, sorted by address.
    pub repositories: Vec<RepoStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/status`, dashboards and the TypeScript types see these exact words.
    #[test]
    fn degraded_reasons_keep_their_words() {
        assert_eq!(
            DegradedReason::HistoricIncomplete.to_string(),
            "historic sync incomplete: some batches failed or were cut short (see the log)"
        );
        let live = DegradedReason::LiveClosed { closes: 5, message: "error: shutting down".into() };
        assert_eq!(live.to_string(), "relay keeps closing live subscriptions (5 in a row): error: shutting down");
    }
}

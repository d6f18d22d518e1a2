//! Every timing and threshold of SPEC.md in one place, with SPEC's defaults.

use core::time::Duration;

use serde::{Deserialize, Serialize};

/// Engine configuration. `SyncConfig::default()` is SPEC.md's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Newly accepted repositories/root events are collected this long before
    /// new filters are sent (SPEC §5: 5 s).
    pub batch_window: Duration,
    /// Extra quiet time after the batch window before `Syncing → Connected`
    /// (SPEC §6: settle window = batch window + 1 s).
    pub settle_extra: Duration,
    /// A reconnect within this long of the disconnect keeps confirmed state (SPEC §5: 15 min).
    pub quick_reconnect_window: Duration,
    /// Quick-reconnect historic sync asks `since = last_connected - margin`.
    pub since_safety_margin: Duration,
    /// More live filters than this on one relay triggers consolidation (SPEC §5: 70).
    pub max_live_filters: usize,
    /// Daily reconciliation interval lower bound (SPEC §5: 23 h).
    pub reconcile_min: Duration,
    /// Daily reconciliation interval upper bound (SPEC §5: 25 h).
    pub reconcile_max: Duration,
    /// Reconnect backoff base: `base × 2^(failures−1)` (SPEC §7: 5 s).
    pub backoff_base: Duration,
    /// Reconnect backoff cap (SPEC §7: 1 h).
    pub backoff_max: Duration,
    /// Jitter added to each backoff, as a fraction of it (0.0–1.0).
    pub backoff_jitter: f64,
    /// Continuous failure for this long makes a relay Dead (SPEC §7: 24 h).
    pub dead_after: Duration,
    /// A Dead relay is tried once per this interval (SPEC §7: 24 h).
    pub dead_retry_interval: Duration,
    /// Stop sending to a relay this long after `rate-limited:` (SPEC §7: 65 s).
    pub rate_limit_cooldown: Duration,
    /// A connection up this long is stable: Healthy, failures reset (SPEC §7: 5 min).
    pub stability_period: Duration,
    /// Health and metrics tick (SPEC §7: 2 s).
    pub tick_interval: Duration,
    /// A REQ page with at least this many events asks for the next page (SPEC §3: 75).
    pub pagination_threshold: usize,
    /// `limit` sent with each historic REQ page.
    pub page_limit: usize,
    /// Repository addresses per L2 filter (SPEC §3: 100).
    pub max_addresses_per_filter: usize,
    /// Root event ids per L3 filter (SPEC §3: 100).
    pub max_ids_per_filter: usize,
    /// Ids per `REQ {ids}` when fetching what negentropy said we need.
    pub fetch_chunk: usize,
    /// How often a withheld fetch is asked again before the batch fails (SPEC §6: asked twice).
    pub fetch_retries: u32,
    /// A historic request without progress for this long is retried, then failed
    /// (protects against relays that never send EOSE).
    pub historic_timeout: Duration,
    /// No answer to NEG-OPEN within this long marks the relay REQ-only.
    pub negentropy_open_timeout: Duration,
    /// Negentropy frame size limit in bytes.
    pub negentropy_frame_limit: u64,
    /// Frames larger than this are refused unparsed.
    pub max_frame_bytes: usize,
    /// How long a policy rejection is remembered.
    pub rejection_ttl: Duration,
    /// At most this many rejections are remembered (oldest forgotten first).
    pub rejection_capacity: usize,
    /// Ids of recently seen (verified or stored) events kept to skip re-verification.
    pub seen_capacity: usize,
    /// Historic requests (REQ pages, `REQ {ids}`, negentropy sessions) in
    /// flight per relay (SPEC §5: 8); halved when the relay says too many.
    pub max_in_flight: usize,
    /// Negentropy sessions open at once per relay (relays limit them
    /// separately from subscriptions, often to a handful).
    pub max_negentropy_sessions: usize,
    /// Stop starting historic requests while this many accepted events are
    /// not yet confirmed saved (SPEC §5: 5,000).
    pub max_unsaved: usize,
    /// Needed ids waiting to be fetched per batch before the next negentropy
    /// round is held back (fetch while reconciling, bounded).
    pub fetch_queue_max: usize,
    /// A live REQ carries several items' filters, up to this many bytes of
    /// filter JSON (relays cap frame sizes; strfry's default is 128 KiB).
    pub live_req_max_bytes: usize,
    /// After a relay says "too many", nothing new is sent to it for this long.
    pub refusal_pause: Duration,
    /// Historic work on a new connection waits at most this long for the
    /// relay's NIP-11 document (its limits and NIPs); zero: never fetch it.
    pub relay_info_timeout: Duration,
    /// Allow loopback/private/link-local relay URLs (tests, private deployments).
    pub allow_private_relays: bool,
    /// Relay URLs longer than this (bytes) are refused.
    pub max_relay_url_len: usize,
    /// Relays taken from one announcement (the first ones listed); the rest
    /// are refused: announcements are attacker-controlled input.
    pub max_relays_per_announcement: usize,
    /// Relays tracked per host name (paths on one host are one operator).
    pub max_relays_per_host: usize,
    /// Relays tracked in total, bootstrap relays included.
    pub max_tracked_relays: usize,
    /// New connections started per health tick.
    pub max_connects_per_tick: usize,
    /// Negentropy rounds per session before it is given up as endless.
    pub max_negentropy_rounds: u32,
    /// Ids one negentropy session may report (have + need) before it is given up.
    pub max_negentropy_ids: usize,
    /// REQ pages per historic job before it is given up (a page counts when
    /// it brought events that verify and match the filter).
    pub max_pages_per_job: u32,
    /// Events dated further than this into the future are refused
    /// (`invalid_created_at`).
    pub max_future_skew: Duration,
    /// A live subscription the relay closes is reopened with backoff; after
    /// this many closes in a row the relay is marked degraded.
    pub live_reopen_max: u32,
    /// Failed saves are retried with backoff up to this interval.
    pub store_retry_max: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch_window: Duration::from_secs(5),
            settle_extra: Duration::from_secs(1),
            quick_reconnect_window: Duration::from_secs(15 * 60),
            since_safety_margin: Duration::from_secs(5 * 60),
            max_live_filters: 70,
            reconcile_min: Duration::from_secs(23 * 3600),
            reconcile_max: Duration::from_secs(25 * 3600),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
            backoff_jitter: 0.1,
            dead_after: Duration::from_secs(24 * 3600),
            dead_retry_interval: Duration::from_secs(24 * 3600),
            rate_limit_cooldown: Duration::from_secs(65),
            stability_period: Duration::from_secs(5 * 60),
            tick_interval: Duration::from_secs(2),
            pagination_threshold: 75,
            page_limit: 500,
            max_addresses_per_filter: 100,
            max_ids_per_filter: 100,
            fetch_chunk: 100,
            fetch_retries: 1,
            historic_timeout: Duration::from_secs(60),
            negentropy_open_timeout: Duration::from_secs(10),
            negentropy_frame_limit: 60_000,
            max_frame_bytes: 1024 * 1024,
            rejection_ttl: Duration::from_secs(6 * 3600),
            rejection_capacity: 200_000,
            seen_capacity: 200_000,
            max_in_flight: 8,
            max_negentropy_sessions: 4,
            max_unsaved: 5_000,
            fetch_queue_max: 2_000,
            relay_info_timeout: Duration::from_secs(3),
            live_req_max_bytes: 65_536,
            refusal_pause: Duration::from_secs(1),
            allow_private_relays: false,
            max_relay_url_len: 256,
            max_relays_per_announcement: 20,
            max_relays_per_host: 4,
            max_tracked_relays: 500,
            max_connects_per_tick: 20,
            max_negentropy_rounds: 100,
            max_negentropy_ids: 100_000,
            max_pages_per_job: 1_000,
            max_future_skew: Duration::from_secs(15 * 60),
            live_reopen_max: 5,
            store_retry_max: Duration::from_secs(60),
        }
    }
}

impl SyncConfig {
    /// SPEC §6 settle window: batch window + 1 s.
    pub fn settle_window(&self) -> Duration {
        self.batch_window + self.settle_extra
    }

    /// Checks the values are usable; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("batch_window", self.batch_window),
            ("backoff_base", self.backoff_base),
            ("tick_interval", self.tick_interval),
            ("historic_timeout", self.historic_timeout),
            ("negentropy_open_timeout", self.negentropy_open_timeout),
            ("store_retry_max", self.store_retry_max),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.backoff_max < self.backoff_base {
            return Err("backoff_max must be at least backoff_base".into());
        }
        if self.reconcile_max < self.reconcile_min {
            return Err("reconcile_max must be at least reconcile_min".into());
        }
        if !(0.0..=1.0).contains(&self.backoff_jitter) {
            return Err("backoff_jitter must be between 0 and 1".into());
        }
        let counts = [
            ("max_live_filters", self.max_live_filters),
            ("pagination_threshold", self.pagination_threshold),
            ("max_addresses_per_filter", self.max_addresses_per_filter),
            ("max_ids_per_filter", self.max_ids_per_filter),
            ("fetch_chunk", self.fetch_chunk),
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_in_flight", self.max_in_flight),
            ("max_unsaved", self.max_unsaved),
            ("max_negentropy_sessions", self.max_negentropy_sessions),
            ("fetch_queue_max", self.fetch_queue_max),
            ("live_req_max_bytes", self.live_req_max_bytes),
            ("max_relay_url_len", self.max_relay_url_len),
            ("max_relays_per_announcement", self.max_relays_per_announcement),
            ("max_relays_per_host", self.max_relays_per_host),
            ("max_tracked_relays", self.max_tracked_relays),
            ("max_connects_per_tick", self.max_connects_per_tick),
            ("max_negentropy_ids", self.max_negentropy_ids),
            ("max_negentropy_rounds", self.max_negentropy_rounds as usize),
            ("max_pages_per_job", self.max_pages_per_job as usize),
            ("live_reopen_max", self.live_reopen_max as usize),
        ];
        for (name, n) in counts {
            if n == 0 {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.page_limit < self.pagination_threshold {
            return Err("page_limit must be at least pagination_threshold".into());
        }
        if self.negentropy_frame_limit != 0 && self.negentropy_frame_limit < 4096 {
            return Err("negentropy_frame_limit must be 0 (unlimited) or at least 4096".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let c = SyncConfig::default();
        assert_eq!(c.batch_window, Duration::from_secs(5));
        assert_eq!(c.settle_window(), Duration::from_secs(6));
        assert_eq!(c.quick_reconnect_window, Duration::from_secs(900));
        assert_eq!(c.max_live_filters, 70);
        assert_eq!(c.reconcile_min, Duration::from_secs(23 * 3600));
        assert_eq!(c.reconcile_max, Duration::from_secs(25 * 3600));
        assert_eq!(c.backoff_base, Duration::from_secs(5));
        assert_eq!(c.backoff_max, Duration::from_secs(3600));
        assert_eq!(c.dead_after, Duration::from_secs(86400));
        assert_eq!(c.rate_limit_cooldown, Duration::from_secs(65));
        assert_eq!(c.stability_period, Duration::from_secs(300));
        assert_eq!(c.tick_interval, Duration::from_secs(2));
        assert_eq!(c.pagination_threshold, 75);
        assert_eq!(c.max_addresses_per_filter, 100);
        assert_eq!(c.max_ids_per_filter, 100);
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(c.max_unsaved, 5_000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let c = SyncConfig { backoff_base: Duration::ZERO, ..Default::default() };
        assert!(c.validate().unwrap_err().contains("backoff_base"));
        let c = SyncConfig { page_limit: 10, ..Default::default() };
        assert!(c.validate().unwrap_err().contains("page_limit"));
    }
}

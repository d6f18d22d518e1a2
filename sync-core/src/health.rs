//! Per-relay health (SPEC §7): failures, backoff, Dead, rate limiting, stability.
//!
//! Pure bookkeeping with time passed in; the engine asks `next_attempt_at`
//! to decide when to connect and `status` for the metric.

use core::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::SyncConfig;
use crate::rng::SplitMix64;
use crate::status::HealthStatus;
use crate::time::Millis;

/// Health bookkeeping for one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Consecutive failures (connect failures and unstable connection losses).
    pub failures: u32,
    /// Start of the current run of failures.
    pub failing_since: Option<Millis>,
    /// Earliest next connection attempt.
    pub next_attempt_at: Millis,
    /// Nothing is sent before this time (`rate-limited:` cooldown).
    pub rate_limited_until: Option<Millis>,
    /// When the current connection was established.
    pub connected_since: Option<Millis>,
    /// 24 h of continuous failures.
    pub dead: bool,
}

/// Backoff before attempt number `failures + 1`: `base × 2^(failures−1)`, capped.
pub fn backoff_delay(config: &SyncConfig, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(30);
    let delay = config.backoff_base.saturating_mul(1u32 << exp);
    delay.min(config.backoff_max)
}

impl Health {
    /// Current health state.
    pub fn status(&self, now: Millis) -> HealthStatus {
        if self.rate_limited_until.is_some_and(|t| now < t) {
            return HealthStatus::RateLimited;
        }
        if self.dead {
            return HealthStatus::Dead;
        }
        match (self.connected_since.is_some(), self.failures) {
            (true, 0) => HealthStatus::Healthy,
            (_, n) if n > 0 => HealthStatus::Degraded,
            _ => HealthStatus::Disconnected,
        }
    }

    /// May we start a connection attempt now?
    pub fn may_attempt(&self, now: Millis) -> bool {
        now >= self.next_attempt_at && self.rate_limited_until.is_none_or(|t| now >= t)
    }

    /// Connect timeout for the next attempt: the base backoff, growing with the
    /// backoff so a slow relay gets longer each time (SPEC §7 "connect timeout = base backoff").
    pub fn connect_timeout(&self, config: &SyncConfig) -> Duration {
        backoff_delay(config, self.failures.max(1)).max(config.backoff_base)
    }

    /// A connection attempt or an unstable connection failed at `now`.
    pub fn record_failure(&mut self, config: &SyncConfig, now: Millis, rng: &mut SplitMix64) {
        self.connected_since = None;
        self.failures = self.failures.saturating_add(1);
        let since = *self.failing_since.get_or_insert(now);
        if now.since(since) >= config.dead_after {
            self.dead = true;
        }
        let delay = if self.dead {
            config.dead_retry_interval
        } else {
            let d = backoff_delay(config, self.failures);
            let jitter_ms = (d.as_millis() as f64 * config.backoff_jitter) as u64;
            d + Duration::from_millis(rng.range(0, jitter_ms))
        };
        self.next_attempt_at = now + delay;
    }

    /// The connection was established at `now`.
    pub fn record_connected(&mut self, now: Millis) {
        self.connected_since = Some(now);
    }

    /// The connection was lost at `now`: a failure (it may be a flapping relay).
    pub fn record_disconnected(&mut self, config: &SyncConfig, now: Millis, rng: &mut SplitMix64) {
        self.record_failure(config, now, rng);
    }

    /// Called on every tick while connected: after the stability period the
    /// relay is Healthy again and its failure history is forgotten.
    pub fn check_stable(&mut self, config: &SyncConfig, now: Millis) -> bool {
        match self.connected_since {
            Some(since) if now.since(since) >= config.stability_period && (self.failures > 0 || self.dead) => {
                self.failures = 0;
                self.failing_since = None;
                self.dead = false;
                true
            }
            _ => false,
        }
    }

    /// A `rate-limited:` answer: stop sending until `now + cooldown`.
    pub fn record_rate_limited(&mut self, config: &SyncConfig, now: Millis) {
        let until = now + config.rate_limit_cooldown;
        self.rate_limited_until = Some(self.rate_limited_until.map_or(until, |t| t.max(until)));
        self.next_attempt_at = self.next_attempt_at.max(until);
    }

    /// True when a rate-limit cooldown is active at `now`.
    pub fn is_rate_limited(&self, now: Millis) -> bool {
        self.rate_limited_until.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SyncConfig {
        SyncConfig { backoff_jitter: 0.0, ..Default::default() }
    }

    #[test]
    fn backoff_schedule_values() {
        let c = cfg();
        let secs: Vec<u64> = (1..=12).map(|n| backoff_delay(&c, n).as_secs()).collect();
        assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]);
        assert_eq!(backoff_delay(&c, 0), Duration::ZERO);
        assert_eq!(backoff_delay(&c, 1000).as_secs(), 3600);
    }

    #[test]
    fn backoff_jitter_stays_within_fraction() {
        let c = SyncConfig::default();
        let mut rng = SplitMix64::new(3);
        for _ in 0..200 {
            let mut h = Health::default();
            h.record_failure(&c, Millis(0), &mut rng);
            let d = h.next_attempt_at.0;
            assert!((5000..=5500).contains(&d), "{d}");
        }
    }

    #[test]
    fn dead_after_24h_of_failures_then_daily_tries() {
        let c = cfg();
        let mut rng = SplitMix64::new(1);
        let mut h = Health::default();
        let mut now = Millis(0);
        h.record_failure(&c, now, &mut rng);
        while !h.dead {
            now = h.next_attempt_at;
            assert!(now.0 <= 25 * 3600 * 1000, "dead too late");
            h.record_failure(&c, now, &mut rng);
        }
        assert!(now.since(Millis(0)) >= Duration::from_secs(24 * 3600));
        assert_eq!(h.status(now), HealthStatus::Dead);
        assert_eq!(h.next_attempt_at, now + Duration::from_secs(24 * 3600));
        // just before 24h it is not dead
        let mut h2 = Health::default();
        h2.record_failure(&c, Millis(0), &mut rng);
        h2.record_failure(&c, Millis(0) + Duration::from_secs(24 * 3600 - 1), &mut rng);
        assert!(!h2.dead);
        h2.record_failure(&c, Millis(0) + Duration::from_secs(24 * 3600), &mut rng);
        assert!(h2.dead);
    }

    #[test]
    fn rate_limited_cooldown_is_65s() {
        let c = cfg();
        let mut h = Health::default();
        h.record_rate_limited(&c, Millis(1000));
        assert_eq!(h.status(Millis(1000)), HealthStatus::RateLimited);
        assert!(h.is_rate_limited(Millis(65_999)));
        assert!(!h.is_rate_limited(Millis(66_000)));
        assert!(!h.may_attempt(Millis(65_000)));
        assert!(h.may_attempt(Millis(66_000)));
    }

    #[test]
    fn healthy_only_after_five_minutes_stable_when_recovering() {
        let c = cfg();
        let mut rng = SplitMix64::new(1);
        let mut h = Health::default();
        assert_eq!(h.status(Millis(0)), HealthStatus::Disconnected);
        h.record_failure(&c, Millis(0), &mut rng);
        assert_eq!(h.status(Millis(0)), HealthStatus::Degraded);
        h.record_connected(Millis(10_000));
        assert_eq!(h.status(Millis(10_000)), HealthStatus::Degraded);
        assert!(!h.check_stable(&c, Millis(10_000 + 299_999)));
        assert!(h.check_stable(&c, Millis(10_000 + 300_000)));
        assert_eq!(h.status(Millis(310_000)), HealthStatus::Healthy);
        assert_eq!(h.failures, 0);
    }

    #[test]
    fn connect_timeout_is_base_backoff_growing_with_failures() {
        let c = cfg();
        let mut h = Health::default();
        assert_eq!(h.connect_timeout(&c), Duration::from_secs(5));
        h.failures = 3;
        assert_eq!(h.connect_timeout(&c), Duration::from_secs(20));
    }
}

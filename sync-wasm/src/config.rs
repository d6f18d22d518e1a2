//! The configuration object JavaScript passes to `new GraspSync(config)`,
//! turned into sync-core's config, policy and bootstrap list with messages
//! that name the offending field.

use core::time::Duration;

use serde::Deserialize;
use sync_core::policy::PolicyError;
use sync_core::{AcceptancePolicy, RelayUrl, SyncConfig};

/// Database name when the config does not give one.
pub const DEFAULT_DATABASE: &str = "grasp-sync";

/// Configuration for `new GraspSync(config)`: give `interest` (client policy)
/// or `server` (GRASP policy), not both. Unknown fields are refused.
// TypeScript: `GraspSyncConfig` in `js/types.d.ts`, generated from these types
// by `typescript::tests`; fields that may be absent (serde default) are `?:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "GraspSyncConfig", optional_fields))]
pub struct JsConfig {
    /// Relays always contacted (`ws://` / `wss://`); at least one.
    pub bootstrap_relays: Vec<String>,
    /// Client policy: what the user is interested in.
    #[serde(default)]
    pub interest: Option<JsInterest>,
    /// Server (GRASP) policy: repositories that list this service.
    #[serde(default)]
    pub server: Option<JsServer>,
    /// IndexedDB database name (default `grasp-sync`).
    #[serde(default)]
    pub database_name: Option<String>,
    /// Allow loopback/private relay URLs from announcements (tests, private
    /// deployments); default false.
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<bool>"))]
    pub allow_private_relays: bool,
    /// Seed for jitter and reconciliation intervals (random when absent).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Timings in milliseconds; absent ones keep SPEC defaults.
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<JsTimings>"))]
    pub timings: JsTimings,
}

/// Client policy, the interest set: events of these repositories (and of
/// every repository of these maintainers, or of all) are synced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "GraspSyncInterest", optional_fields))]
pub struct JsInterest {
    /// `30617:<pubkey-hex>:<d>` addresses.
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<Vec<String>>"))]
    pub repositories: Vec<String>,
    /// Maintainer pubkeys (hex): all their repositories.
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<Vec<String>>"))]
    pub maintainers: Vec<String>,
    /// Every announcement seen (default false).
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<bool>"))]
    pub all: bool,
}

/// Server (GRASP) policy: repositories whose announcement lists one of these
/// relay URLs, or a clone URL on one of these domains. At least one entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "GraspSyncServer", optional_fields))]
pub struct JsServer {
    /// This service's relay URLs.
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<Vec<String>>"))]
    pub relay_urls: Vec<String>,
    /// This service's domains (for `clone` URLs).
    #[serde(default)]
    #[cfg_attr(test, ts(as = "Option<Vec<String>>"))]
    pub domains: Vec<String>,
}

/// Timing overrides in milliseconds (see sync-core's `SyncConfig`); the
/// SPEC default is in parentheses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "GraspSyncTimings", optional_fields))]
pub struct JsTimings {
    /// New repositories/roots are batched this long before filters are sent (5000).
    pub batch_window_ms: Option<u64>,
    /// Quiet time after the batch window before Connected (1000).
    pub settle_extra_ms: Option<u64>,
    /// Reconnect backoff base (5000).
    pub backoff_base_ms: Option<u64>,
    /// Reconnect backoff cap (3600000).
    pub backoff_max_ms: Option<u64>,
    /// Health/status tick (2000).
    pub tick_interval_ms: Option<u64>,
    /// Historic request without progress is retried after this long (60000).
    pub historic_timeout_ms: Option<u64>,
    /// No answer to NEG-OPEN within this long marks a relay REQ-only (10000).
    pub negentropy_open_timeout_ms: Option<u64>,
    /// Reconnects within this long keep confirmed state (900000).
    pub quick_reconnect_window_ms: Option<u64>,
    /// A connection up this long is stable (300000).
    pub stability_period_ms: Option<u64>,
    /// Cooldown after `rate-limited:` (65000).
    pub rate_limit_cooldown_ms: Option<u64>,
}

/// Everything `GraspSync` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Engine configuration.
    pub sync: SyncConfig,
    /// Acceptance policy.
    pub policy: AcceptancePolicy,
    /// Bootstrap relay URLs (parsed once, here).
    pub bootstrap: Vec<RelayUrl>,
    /// IndexedDB database name.
    pub database_name: String,
    /// Fixed seed, if given.
    pub seed: Option<u64>,
}

impl JsConfig {
    /// Validates and converts; the error names the field.
    pub fn into_settings(self) -> Result<Settings, String> {
        if self.bootstrap_relays.is_empty() {
            return Err("bootstrapRelays must list at least one ws:// or wss:// relay".into());
        }
        let bootstrap = self
            .bootstrap_relays
            .iter()
            .map(|url| RelayUrl::parse(url).map_err(|e| format!("bootstrapRelays: `{url}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = match (self.interest, self.server) {
            (Some(_), Some(_)) => return Err("give either `interest` (client policy) or `server` (GRASP policy), not both".into()),
            (None, None) => return Err("config needs `interest` (client policy) or `server` (GRASP policy)".into()),
            // built by sync-core, as in the daemon: the error names the value, this the field
            (Some(i), None) => AcceptancePolicy::client(&i.repositories, &i.maintainers, i.all).map_err(policy_err)?,
            (None, Some(s)) => AcceptancePolicy::server(&s.relay_urls, &s.domains).map_err(policy_err)?,
        };
        let database_name = self.database_name.unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        if database_name.trim().is_empty() {
            return Err("databaseName must not be empty".into());
        }
        let mut sync = SyncConfig { allow_private_relays: self.allow_private_relays, ..SyncConfig::default() };
        self.timings.apply(&mut sync);
        sync.validate().map_err(|e| format!("timings: {e}"))?;
        Ok(Settings { sync, policy, bootstrap, database_name, seed: self.seed })
    }
}

/// A policy error, naming the config field its value came from.
fn policy_err(e: PolicyError) -> String {
    match &e {
        PolicyError::RelayUrl { .. } => format!("server.relayUrls: {e}"),
        PolicyError::Domain(_) => format!("server.domains: {e}"),
        PolicyError::EmptyServer => "server needs at least one of relayUrls or domains".into(),
        PolicyError::RepoAddress(_) => format!("interest.repositories: {e}"),
        PolicyError::Maintainer { .. } => format!("interest.maintainers: {e}"),
    }
}

impl JsTimings {
    fn apply(&self, c: &mut SyncConfig) {
        let set = |target: &mut Duration, ms: Option<u64>| {
            if let Some(ms) = ms {
                *target = Duration::from_millis(ms);
            }
        };
        set(&mut c.batch_window, self.batch_window_ms);
        set(&mut c.settle_extra, self.settle_extra_ms);
        set(&mut c.backoff_base, self.backoff_base_ms);
        set(&mut c.backoff_max, self.backoff_max_ms);
        set(&mut c.tick_interval, self.tick_interval_ms);
        set(&mut c.historic_timeout, self.historic_timeout_ms);
        set(&mut c.negentropy_open_timeout, self.negentropy_open_timeout_ms);
        set(&mut c.quick_reconnect_window, self.quick_reconnect_window_ms);
        set(&mut c.stability_period, self.stability_period_ms);
        set(&mut c.rate_limit_cooldown, self.rate_limit_cooldown_ms);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, String> {
        serde_json::from_str::<JsConfig>(json).map_err(|e| e.to_string())?.into_settings()
    }

    #[test]
    fn minimal_client_config_uses_spec_defaults() {
        let s = parse(r#"{"bootstrapRelays":["wss://relay.example.com"],"interest":{"all":true}}"#).unwrap();
        assert_eq!(s.database_name, DEFAULT_DATABASE);
        assert_eq!(s.sync, SyncConfig::default());
        assert!(matches!(s.policy, AcceptancePolicy::Client(ref i) if i.all));
    }

    #[test]
    fn timings_override_defaults() {
        let s = parse(r#"{"bootstrapRelays":["ws://127.0.0.1:1"],"interest":{"all":true},"timings":{"batchWindowMs":500}}"#).unwrap();
        assert_eq!(s.sync.batch_window, Duration::from_millis(500));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(parse(r#"{"bootstrapRelays":[],"interest":{"all":true}}"#).unwrap_err().contains("bootstrapRelays"));
        assert!(parse(r#"{"bootstrapRelays":["http://x"],"interest":{"all":true}}"#).unwrap_err().contains("bootstrapRelays"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"]}"#).unwrap_err().contains("interest"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"],"interest":{"repositories":["nope"]}}"#)
            .unwrap_err()
            .contains("interest.repositories"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"],"interest":{"all":true},"timings":{"backoffBaseMs":0}}"#)
            .unwrap_err()
            .contains("backoff_base"));
        assert!(parse(r#"{"bootstrapRelay":["wss://x.org"]}"#).unwrap_err().contains("unknown field"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"],"server":{"relayUrls":["http://g.org"]}}"#)
            .unwrap_err()
            .starts_with("server.relayUrls: `http://g.org`"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"],"server":{"domains":["g.org/x"]}}"#)
            .unwrap_err()
            .starts_with("server.domains: `g.org/x`"));
        assert!(parse(r#"{"bootstrapRelays":["wss://x.org"],"server":{}}"#).unwrap_err().contains("relayUrls or domains"));
    }

    /// The same policy as the daemon's for the same values: sync-core
    /// normalises both (a trailing dot on a domain used to match only there).
    #[test]
    fn server_policy_is_normalised_like_the_daemons() {
        let s = parse(
            r#"{"bootstrapRelays":["wss://x.org"],"server":{"relayUrls":["wss://GIT.example.com./"],"domains":["Git.Example.com."]}}"#,
        )
        .unwrap();
        assert_eq!(s.policy, AcceptancePolicy::server(["wss://git.example.com"], ["git.example.com"]).unwrap());
    }
}

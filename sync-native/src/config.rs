//! Daemon configuration: flags, `GRASP_SYNC_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, over the
//! defaults of SPEC.md (`SyncConfig::default()`).
//!
//! Every option is an `Option`/`Vec` in [`Options`] so "not given" can be
//! told apart from "given the default"; TOML keys are the long flag names
//! with `_` instead of `-`. Errors name the offending option.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser};
use serde::Deserialize;
use sync_core::policy::PolicyError;
use sync_core::{AcceptancePolicy, RelayUrl, SyncConfig};

use crate::duration::Dur;
use crate::http::HttpLimits;
use crate::served_relay::ServedLimits;

/// A configuration error; its text names the option.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(option: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid value for --{option}: {msg}"))
}

/// A policy error, naming the option its value came from.
fn policy_err(e: PolicyError) -> ConfigError {
    let option = match &e {
        PolicyError::RelayUrl { .. } | PolicyError::EmptyServer => "service-url",
        PolicyError::Domain(_) => "service-domain",
        PolicyError::RepoAddress(_) => "repo",
        PolicyError::Maintainer { .. } => "maintainer",
    };
    err(option, e)
}

/// Declares every engine tuning knob once: its flag, env var, documented
/// default and help, and how it is applied to [`SyncConfig`].
macro_rules! tuning {
    ($( $field:ident : $ty:ty = $env:literal, $default:literal, $help:literal; )*) => {
        /// Engine timings and limits (SPEC defaults).
        #[derive(Args, Debug, Default, Clone, Deserialize)]
        #[serde(default)]
        pub struct Tuning {
            $(
                #[arg(long, env = $env, help_heading = "Timings and limits", help = concat!($help, " [default: ", $default, "]"))]
                #[doc = $help]
                pub $field: Option<$ty>,
            )*
        }

        impl Tuning {
            /// Values set here win over `other`'s.
            pub fn or(self, other: Tuning) -> Tuning {
                Tuning { $( $field: self.$field.or(other.$field), )* }
            }

            /// Writes the values that are set into `config`.
            pub fn apply(&self, config: &mut SyncConfig) {
                $( if let Some(v) = self.$field.clone() { config.$field = v.into(); } )*
            }

            /// `(flag, documented default)` of every knob.
            pub const DEFAULTS: &'static [(&'static str, &'static str)] = &[ $( (stringify!($field), $default), )* ];
        }
    };
}

tuning! {
    batch_window: Dur = "GRASP_SYNC_BATCH_WINDOW", "5s", "Collect newly accepted repositories/root events this long before sending new filters";
    settle_extra: Dur = "GRASP_SYNC_SETTLE_EXTRA", "1s", "Extra quiet time after the batch window before Syncing -> Connected";
    quick_reconnect_window: Dur = "GRASP_SYNC_QUICK_RECONNECT_WINDOW", "15m", "A reconnect within this long keeps confirmed state (quick reconnect)";
    since_safety_margin: Dur = "GRASP_SYNC_SINCE_SAFETY_MARGIN", "5m", "Quick-reconnect historic sync asks since = last connection minus this";
    max_live_filters: usize = "GRASP_SYNC_MAX_LIVE_FILTERS", "70", "More live filters than this on one relay triggers consolidation";
    reconcile_min: Dur = "GRASP_SYNC_RECONCILE_MIN", "23h", "Daily reconciliation interval, lower bound";
    reconcile_max: Dur = "GRASP_SYNC_RECONCILE_MAX", "25h", "Daily reconciliation interval, upper bound";
    backoff_base: Dur = "GRASP_SYNC_BACKOFF_BASE", "5s", "Reconnect backoff base (base x 2^(failures-1)); also the connect timeout";
    backoff_max: Dur = "GRASP_SYNC_BACKOFF_MAX", "1h", "Reconnect backoff cap";
    backoff_jitter: f64 = "GRASP_SYNC_BACKOFF_JITTER", "0.1", "Jitter added to each backoff, as a fraction of it (0-1)";
    dead_after: Dur = "GRASP_SYNC_DEAD_AFTER", "1d", "Continuous failure for this long makes a relay Dead";
    dead_retry_interval: Dur = "GRASP_SYNC_DEAD_RETRY_INTERVAL", "1d", "A Dead relay is tried once per this interval";
    rate_limit_cooldown: Dur = "GRASP_SYNC_RATE_LIMIT_COOLDOWN", "65s", "Stop sending to a relay this long after rate-limited:";
    stability_period: Dur = "GRASP_SYNC_STABILITY_PERIOD", "5m", "A connection up this long is stable (Healthy, failures reset)";
    tick_interval: Dur = "GRASP_SYNC_TICK_INTERVAL", "2s", "Health and metrics tick";
    pagination_threshold: usize = "GRASP_SYNC_PAGINATION_THRESHOLD", "75", "A REQ page with at least this many events asks for the next page";
    page_limit: usize = "GRASP_SYNC_PAGE_LIMIT", "500", "limit sent with each historic REQ page";
    max_addresses_per_filter: usize = "GRASP_SYNC_MAX_ADDRESSES_PER_FILTER", "100", "Repository addresses per L2 filter";
    max_ids_per_filter: usize = "GRASP_SYNC_MAX_IDS_PER_FILTER", "100", "Root event ids per L3 filter";
    fetch_chunk: usize = "GRASP_SYNC_FETCH_CHUNK", "100", "Ids per REQ {ids} when fetching what negentropy found missing";
    fetch_retries: u32 = "GRASP_SYNC_FETCH_RETRIES", "1", "How often withheld ids are asked again before the batch fails";
    historic_timeout: Dur = "GRASP_SYNC_HISTORIC_TIMEOUT", "60s", "A historic request without progress for this long is retried, then failed";
    negentropy_open_timeout: Dur = "GRASP_SYNC_NEGENTROPY_OPEN_TIMEOUT", "10s", "No answer to NEG-OPEN within this long marks the relay REQ-only";
    negentropy_frame_limit: u64 = "GRASP_SYNC_NEGENTROPY_FRAME_LIMIT", "60000", "Negentropy frame size limit in bytes (0 = unlimited)";
    max_frame_bytes: usize = "GRASP_SYNC_MAX_FRAME_BYTES", "1048576", "Frames larger than this are ignored unparsed";
    rejection_ttl: Dur = "GRASP_SYNC_REJECTION_TTL", "6h", "How long a policy rejection is remembered";
    rejection_capacity: usize = "GRASP_SYNC_REJECTION_CAPACITY", "200000", "How many rejections are remembered";
    seen_capacity: usize = "GRASP_SYNC_SEEN_CAPACITY", "200000", "Recently seen event ids kept to skip re-verification";
    max_in_flight: usize = "GRASP_SYNC_MAX_IN_FLIGHT", "8", "Historic requests (REQ pages, id fetches, negentropy sessions) in flight per relay; halved when the relay says too many";
    max_negentropy_sessions: usize = "GRASP_SYNC_MAX_NEGENTROPY_SESSIONS", "4", "Negentropy sessions open at once per relay";
    max_unsaved: usize = "GRASP_SYNC_MAX_UNSAVED", "5000", "Stop starting historic requests while this many events wait for the store";
    fetch_queue_max: usize = "GRASP_SYNC_FETCH_QUEUE_MAX", "2000", "Needed ids queued per batch before the next negentropy round is held back";
    live_req_max_bytes: usize = "GRASP_SYNC_LIVE_REQ_MAX_BYTES", "65536", "Live REQs pack several filters, up to this many bytes of filter JSON";
    refusal_pause: Dur = "GRASP_SYNC_REFUSAL_PAUSE", "1s", "After a relay says too many, send nothing new to it for this long";
    relay_info_timeout: Dur = "GRASP_SYNC_RELAY_INFO_TIMEOUT", "3s", "Wait at most this long for a relay's NIP-11 document before historic sync (0 = never fetch it)";
    max_relay_url_len: usize = "GRASP_SYNC_MAX_RELAY_URL_LEN", "256", "Relay URLs longer than this (bytes) are refused";
    max_relays_per_announcement: usize = "GRASP_SYNC_MAX_RELAYS_PER_ANNOUNCEMENT", "20", "Relays taken from one announcement (the first listed); the rest are refused";
    max_relays_per_host: usize = "GRASP_SYNC_MAX_RELAYS_PER_HOST", "4", "Relays tracked per host name";
    max_tracked_relays: usize = "GRASP_SYNC_MAX_TRACKED_RELAYS", "500", "Relays tracked in total (bootstrap relays included)";
    max_connects_per_tick: usize = "GRASP_SYNC_MAX_CONNECTS_PER_TICK", "20", "New connections started per 2 s tick";
    max_negentropy_rounds: u32 = "GRASP_SYNC_MAX_NEGENTROPY_ROUNDS", "100", "Negentropy rounds per session before the batch fails";
    max_negentropy_ids: usize = "GRASP_SYNC_MAX_NEGENTROPY_IDS", "100000", "Ids one negentropy session may report before the batch fails";
    max_pages_per_job: u32 = "GRASP_SYNC_MAX_PAGES_PER_JOB", "1000", "REQ pages per historic filter before the batch fails";
    max_future_skew: Dur = "GRASP_SYNC_MAX_FUTURE_SKEW", "15m", "Events dated further ahead than this are refused (invalid_created_at)";
    live_reopen_max: u32 = "GRASP_SYNC_LIVE_REOPEN_MAX", "5", "Live subscriptions closed by a relay this many times in a row make it ConnectedDegraded";
    store_retry_max: Dur = "GRASP_SYNC_STORE_RETRY_MAX", "1m", "Failed saves are retried with backoff up to this interval";
}

/// Declares the limits of what the daemon serves, like [`tuning!`]: flag,
/// env var, documented default and help once; [`Serving::limits`] applies them.
macro_rules! serving {
    ($( $field:ident : $ty:ty = $env:literal, $default:literal, $help:literal; )*) => {
        /// Limits of the served relay and the HTTP endpoint.
        #[derive(Args, Debug, Default, Clone, Deserialize)]
        #[serde(default)]
        pub struct Serving {
            $(
                #[arg(long, env = $env, help_heading = "Serving limits", help = concat!($help, " [default: ", $default, "]"))]
                #[doc = $help]
                pub $field: Option<$ty>,
            )*
        }

        impl Serving {
            /// Values set here win over `other`'s.
            pub fn or(self, other: Serving) -> Serving {
                Serving { $( $field: self.$field.or(other.$field), )* }
            }

            /// `(flag, documented default)` of every limit.
            pub const DEFAULTS: &'static [(&'static str, &'static str)] = &[ $( (stringify!($field), $default), )* ];
        }
    };
}

serving! {
    served_max_connections: usize = "GRASP_SYNC_SERVED_MAX_CONNECTIONS", "256", "Served relay: open connections in total; more are answered HTTP 503";
    served_max_connections_per_ip: usize = "GRASP_SYNC_SERVED_MAX_CONNECTIONS_PER_IP", "0", "Served relay: open connections from one IP address (0 = no per-address cap; behind a reverse proxy every client has its address)";
    served_max_limit: usize = "GRASP_SYNC_SERVED_MAX_LIMIT", "500", "Served relay: a filter's limit is clamped to this (also the limit of a filter without one)";
    served_max_filters: usize = "GRASP_SYNC_SERVED_MAX_FILTERS", "200", "Served relay: filters in one REQ; a REQ with more is answered CLOSED";
    served_max_subscriptions: usize = "GRASP_SYNC_SERVED_MAX_SUBSCRIPTIONS", "20", "Served relay: open subscriptions per connection; more are answered CLOSED";
    served_max_negentropy_sessions: usize = "GRASP_SYNC_SERVED_MAX_NEGENTROPY_SESSIONS", "8", "Served relay: open negentropy sessions per connection; more NEG-OPENs are answered NEG-ERR";
    served_max_message_bytes: usize = "GRASP_SYNC_SERVED_MAX_MESSAGE_BYTES", "1048576", "Served relay: largest client message in bytes (at least 1024); a larger one closes the connection (code 1009)";
    served_idle_timeout: Dur = "GRASP_SYNC_SERVED_IDLE_TIMEOUT", "5m", "Served relay: close a connection with nothing open that sends nothing, or one that answers no ping, for this long";
    http_max_connections: usize = "GRASP_SYNC_HTTP_MAX_CONNECTIONS", "64", "HTTP endpoint: connections served at once; more are answered 503";
    http_timeout: Dur = "GRASP_SYNC_HTTP_TIMEOUT", "10s", "HTTP endpoint: a connection must send its request and take the answer within this";
}

impl Serving {
    /// The validated limits; errors name the option.
    pub fn limits(&self) -> Result<(ServedLimits, HttpLimits), ConfigError> {
        let positive = |option: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(err(option, "must be greater than zero")),
            v => Ok(v.unwrap_or(default)),
        };
        let duration = |option: &str, v: Option<Dur>, default| match v {
            Some(d) if d.0.is_zero() => Err(err(option, "must be greater than zero")),
            v => Ok(v.map_or(default, |d| d.0)),
        };
        let (s, h) = (ServedLimits::default(), HttpLimits::default());
        let served = ServedLimits {
            max_connections: positive("served-max-connections", self.served_max_connections, s.max_connections)?,
            max_connections_per_ip: self.served_max_connections_per_ip.unwrap_or(s.max_connections_per_ip),
            max_limit: positive("served-max-limit", self.served_max_limit, s.max_limit)?,
            max_filters: positive("served-max-filters", self.served_max_filters, s.max_filters)?,
            max_subscriptions: positive("served-max-subscriptions", self.served_max_subscriptions, s.max_subscriptions)?,
            max_negentropy_sessions: positive(
                "served-max-negentropy-sessions",
                self.served_max_negentropy_sessions,
                s.max_negentropy_sessions,
            )?,
            max_message_bytes: match self.served_max_message_bytes {
                Some(n) if n < 1024 => return Err(err("served-max-message-bytes", format!("{n} is below the minimum of 1024"))),
                n => n.unwrap_or(s.max_message_bytes),
            },
            idle_timeout: duration("served-idle-timeout", self.served_idle_timeout, s.idle_timeout)?,
        };
        let http = HttpLimits {
            max_connections: positive("http-max-connections", self.http_max_connections, h.max_connections)?,
            timeout: duration("http-timeout", self.http_timeout, h.timeout)?,
        };
        Ok((served, http))
    }
}

/// Default HTTP address for /metrics, /health, /status.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9464";
/// Default address of the served read-only relay.
pub const DEFAULT_RELAY_LISTEN: &str = "127.0.0.1:7780";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "grasp-sync-data";

/// Every option (flags/env/TOML). See `grasp-sync --help`.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Server (GRASP) policy: our relay URL(s); announcements listing one in `relays` are served. Repeatable or comma-separated.
    #[arg(long, env = "GRASP_SYNC_SERVICE_URL", value_delimiter = ',', help_heading = "Policy")]
    pub service_url: Vec<String>,
    /// Server policy: our domain(s); announcements with a `clone` URL on one are served.
    #[arg(long, env = "GRASP_SYNC_SERVICE_DOMAIN", value_delimiter = ',', help_heading = "Policy")]
    pub service_domain: Vec<String>,
    /// Client policy: a repository address `30617:<pubkey-hex>:<d>` to sync.
    #[arg(long, env = "GRASP_SYNC_REPO", value_delimiter = ',', help_heading = "Policy")]
    pub repo: Vec<String>,
    /// Client policy: sync every repository of this maintainer (hex pubkey).
    #[arg(long, env = "GRASP_SYNC_MAINTAINER", value_delimiter = ',', help_heading = "Policy")]
    pub maintainer: Vec<String>,
    /// Client policy: sync every repository announcement seen.
    #[arg(long, env = "GRASP_SYNC_ALL_REPOS", num_args = 0..=1, default_missing_value = "true", help_heading = "Policy")]
    pub all_repos: Option<bool>,

    /// Relay(s) to start from (never dropped). At least one is required.
    #[arg(long, env = "GRASP_SYNC_BOOTSTRAP_RELAY", value_delimiter = ',', help_heading = "Relays")]
    pub bootstrap_relay: Vec<String>,
    /// Allow loopback/private/link-local relay URLs from announcements (tests, private deployments). [default: false]
    #[arg(long, env = "GRASP_SYNC_ALLOW_PRIVATE_RELAYS", num_args = 0..=1, default_missing_value = "true", help_heading = "Relays")]
    pub allow_private_relays: Option<bool>,
    /// Seed for backoff jitter and reconciliation intervals [default: random]
    #[arg(long, env = "GRASP_SYNC_SEED", help_heading = "Relays")]
    pub seed: Option<u64>,

    /// Data directory: LMDB event store and sync state [default: grasp-sync-data]
    #[arg(long, env = "GRASP_SYNC_DATA_DIR", help_heading = "Storage")]
    pub data_dir: Option<PathBuf>,
    /// Write events into this relay (publish with EVENT) instead of the embedded store; disables the served relay.
    #[arg(long, env = "GRASP_SYNC_STORE_RELAY", help_heading = "Storage")]
    pub store_relay: Option<String>,

    /// Address for /metrics, /health and /status [default: 127.0.0.1:9464]
    #[arg(long, env = "GRASP_SYNC_HTTP_LISTEN", help_heading = "Serving")]
    pub http_listen: Option<String>,
    /// Address of the served read-only relay (NIP-01 + NIP-77), or `off` [default: 127.0.0.1:7780]
    #[arg(long, env = "GRASP_SYNC_RELAY_LISTEN", help_heading = "Serving")]
    pub relay_listen: Option<String>,
    /// Log each syncing relay's historic progress at most this often (`0`: no progress lines; the end-of-sync summary stays) [default: 10s]
    #[arg(long, env = "GRASP_SYNC_PROGRESS_INTERVAL", help_heading = "Logging")]
    pub progress_interval: Option<Dur>,

    #[command(flatten)]
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub serving: Serving,

    #[command(flatten)]
    #[serde(flatten)]
    #[allow(missing_docs)]
    pub tuning: Tuning,
}

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "grasp-sync",
    version,
    about = "GRASP-02 proactive sync daemon: keeps a complete copy of the NIP-34 events of the repositories that list this service",
    after_help = "Durations accept ms, s, m, h, d (e.g. 500ms, 15m). Every option can also be set with its GRASP_SYNC_* environment variable or in the TOML file given with --config (keys are the option names with `_`, e.g. batch_window = \"5s\"). Precedence: flag > env > file > default. Logs: RUST_LOG (default info).\n\nTo see what a running daemon is doing: grasp-sync status [--url http://127.0.0.1:9464] [--json] (see grasp-sync status --help)."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "GRASP_SYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub options: Options,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreMode {
    /// Embedded LMDB in the data directory.
    Embedded,
    /// Publish into this relay.
    Relay(url::Url),
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Engine configuration.
    pub sync: SyncConfig,
    /// Acceptance policy.
    pub policy: AcceptancePolicy,
    /// Bootstrap relays (normalised).
    pub bootstrap: Vec<RelayUrl>,
    /// RNG seed.
    pub seed: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Store mode.
    pub store: StoreMode,
    /// HTTP address.
    pub http_listen: SocketAddr,
    /// Served relay address (None: off).
    pub relay_listen: Option<SocketAddr>,
    /// Limits of the served relay.
    pub served: ServedLimits,
    /// Limits of the HTTP endpoint.
    pub http: HttpLimits,
    /// How often a syncing relay's progress may be logged (None: never).
    pub progress_interval: Option<Duration>,
}

impl Options {
    /// Values set here win over `file`'s.
    pub fn or(self, file: Options) -> Options {
        fn v(a: Vec<String>, b: Vec<String>) -> Vec<String> {
            if a.is_empty() {
                b
            } else {
                a
            }
        }
        Options {
            service_url: v(self.service_url, file.service_url),
            service_domain: v(self.service_domain, file.service_domain),
            repo: v(self.repo, file.repo),
            maintainer: v(self.maintainer, file.maintainer),
            all_repos: self.all_repos.or(file.all_repos),
            bootstrap_relay: v(self.bootstrap_relay, file.bootstrap_relay),
            allow_private_relays: self.allow_private_relays.or(file.allow_private_relays),
            seed: self.seed.or(file.seed),
            data_dir: self.data_dir.or(file.data_dir),
            store_relay: self.store_relay.or(file.store_relay),
            http_listen: self.http_listen.or(file.http_listen),
            relay_listen: self.relay_listen.or(file.relay_listen),
            progress_interval: self.progress_interval.or(file.progress_interval),
            serving: self.serving.or(file.serving),
            tuning: self.tuning.or(file.tuning),
        }
    }
}

/// Reads the TOML file.
pub fn load_file(path: &Path) -> Result<Options, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| err("config", format!("{}: {}", path.display(), e.message())))?;
    // serde cannot deny unknown fields through `flatten`, so keys are checked here.
    for key in table.keys() {
        let known = |defaults: &[(&str, &str)]| defaults.iter().any(|(k, _)| k == key);
        if !OPTION_KEYS.contains(&key.as_str()) && !known(Tuning::DEFAULTS) && !known(Serving::DEFAULTS) {
            return Err(err("config", format!("{}: unknown option `{key}`", path.display())));
        }
    }
    Options::deserialize(table.clone()).map_err(|e| {
        // serde's message does not say which key: find it, to name the option.
        let bad = table.iter().find_map(|(k, v)| {
            let one = toml::Table::from_iter([(k.clone(), v.clone())]);
            Options::deserialize(one).err().map(|e| (k.replace('_', "-"), e))
        });
        match bad {
            Some((option, e)) => err(&option, format!("{} (in {})", e.message(), path.display())),
            None => err("config", format!("{}: {}", path.display(), e.message())),
        }
    })
}

/// TOML keys of [`Options`] besides the tuning knobs.
const OPTION_KEYS: &[&str] = &[
    "service_url",
    "service_domain",
    "repo",
    "maintainer",
    "all_repos",
    "bootstrap_relay",
    "allow_private_relays",
    "seed",
    "data_dir",
    "store_relay",
    "http_listen",
    "relay_listen",
    "progress_interval",
];

/// Merges flags/env over the file and validates everything.
pub fn resolve(cli: Cli) -> Result<DaemonConfig, ConfigError> {
    let file = match &cli.config {
        Some(p) => load_file(p)?,
        None => Options::default(),
    };
    build(cli.options.or(file))
}

fn build(o: Options) -> Result<DaemonConfig, ConfigError> {
    let mut sync = SyncConfig::default();
    o.tuning.apply(&mut sync);
    sync.allow_private_relays = o.allow_private_relays.unwrap_or(false);
    sync.validate().map_err(|m| {
        let field = m.split_whitespace().next().unwrap_or_default().replace('_', "-");
        ConfigError(format!("invalid value for --{field}: {m}"))
    })?;

    // The policy is built by sync-core (the browser's config goes through
    // the same constructors); its error names the value, this the option.
    let server = !o.service_url.is_empty() || !o.service_domain.is_empty();
    let client = o.all_repos.unwrap_or(false) || !o.repo.is_empty() || !o.maintainer.is_empty();
    let policy = match (server, client) {
        (true, false) => AcceptancePolicy::server(&o.service_url, &o.service_domain).map_err(policy_err)?,
        (false, true) => AcceptancePolicy::client(&o.repo, &o.maintainer, o.all_repos.unwrap_or(false)).map_err(policy_err)?,
        (true, true) => {
            return Err(ConfigError(
                "invalid value for --service-url: choose either the server policy (--service-url/--service-domain) or the client policy (--repo/--maintainer/--all-repos), not both".into(),
            ))
        }
        (false, false) => {
            return Err(ConfigError(
                "missing --service-url: set the server policy (--service-url/--service-domain) or a client policy (--repo/--maintainer/--all-repos)".into(),
            ))
        }
    };

    if o.bootstrap_relay.is_empty() {
        return Err(ConfigError("missing --bootstrap-relay: at least one bootstrap relay is required".into()));
    }
    let mut bootstrap = Vec::new();
    for b in &o.bootstrap_relay {
        bootstrap.push(RelayUrl::parse(b).map_err(|e| err("bootstrap-relay", format!("`{b}`: {e}")))?);
    }

    let store = match &o.store_relay {
        None => StoreMode::Embedded,
        Some(s) => {
            let u = url::Url::parse(s).map_err(|e| err("store-relay", format!("`{s}`: {e}")))?;
            if u.scheme() != "ws" && u.scheme() != "wss" {
                return Err(err("store-relay", format!("`{s}` is not a ws:// or wss:// URL")));
            }
            StoreMode::Relay(u)
        }
    };
    let http = o.http_listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN);
    let http_listen: SocketAddr = http.parse().map_err(|e| err("http-listen", format!("`{http}`: {e}")))?;
    let relay = o.relay_listen.as_deref().unwrap_or(DEFAULT_RELAY_LISTEN);
    let relay_listen = if relay.eq_ignore_ascii_case("off") || store != StoreMode::Embedded {
        None
    } else {
        Some(relay.parse().map_err(|e| err("relay-listen", format!("`{relay}`: {e}")))?)
    };
    let (served, http) = o.serving.limits()?;
    let seed = o.seed.unwrap_or_else(|| {
        let t = crate::clock::now_millis().0;
        t ^ (u64::from(std::process::id()) << 32)
    });
    Ok(DaemonConfig {
        sync,
        policy,
        bootstrap,
        seed,
        data_dir: o.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        store,
        http_listen,
        relay_listen,
        served,
        http,
        progress_interval: Some(o.progress_interval.map_or(crate::progress_log::DEFAULT_INTERVAL, Duration::from)).filter(|d| !d.is_zero()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<DaemonConfig, String> {
        let mut v = vec!["grasp-sync"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        resolve(cli).map_err(|e| e.to_string())
    }

    const BASE: &[&str] = &["--service-url", "wss://git.example.com", "--bootstrap-relay", "wss://relay.example.com"];

    #[test]
    fn defaults_are_spec_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.sync, SyncConfig::default());
        assert_eq!(c.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(c.relay_listen.unwrap().to_string(), DEFAULT_RELAY_LISTEN);
        assert_eq!(c.store, StoreMode::Embedded);
        assert!(matches!(c.policy, AcceptancePolicy::Server { .. }));
    }

    #[test]
    fn documented_defaults_match_the_engine_defaults() {
        let mut args: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
        for (field, default) in Tuning::DEFAULTS {
            args.push(format!("--{}", field.replace('_', "-")));
            args.push(default.to_string());
        }
        let mut v = vec!["grasp-sync".to_string()];
        v.extend(args);
        let cli = Cli::try_parse_from(v).unwrap();
        assert_eq!(resolve(cli).unwrap().sync, SyncConfig::default());
    }

    #[test]
    fn flags_set_timings() {
        let mut a = BASE.to_vec();
        a.extend(["--batch-window", "500ms", "--backoff-base", "1s", "--allow-private-relays"]);
        let c = parse(&a).unwrap();
        assert_eq!(c.sync.batch_window, std::time::Duration::from_millis(500));
        assert_eq!(c.sync.backoff_base, std::time::Duration::from_secs(1));
        assert!(c.sync.allow_private_relays);
    }

    #[test]
    fn errors_name_the_option() {
        let mut a = BASE.to_vec();
        a.extend(["--backoff-base", "0s"]);
        assert!(parse(&a).unwrap_err().contains("--backoff-base"));
        let mut a = BASE.to_vec();
        a.extend(["--backoff-max", "1s"]);
        assert!(parse(&a).unwrap_err().contains("--backoff-max"));
        assert!(parse(&["--bootstrap-relay", "wss://r.example.com"]).unwrap_err().contains("--service-url"));
        assert!(parse(&["--service-url", "wss://a.example.com"]).unwrap_err().contains("--bootstrap-relay"));
        assert!(parse(&["--service-url", "http://a.example.com", "--bootstrap-relay", "wss://r.example.com"])
            .unwrap_err()
            .contains("--service-url"));
        let mut a = BASE.to_vec();
        a.extend(["--http-listen", "nowhere"]);
        assert!(parse(&a).unwrap_err().contains("--http-listen"));
        let mut a = BASE.to_vec();
        a.extend(["--repo", "30617:zz:x"]);
        assert!(parse(&a).unwrap_err().contains("--repo"));
    }

    #[test]
    fn policy_values_are_normalised_by_sync_core_and_errors_name_option_and_value() {
        let policy = |extra: &[&str]| {
            let mut a = vec!["--bootstrap-relay", "wss://relay.example.com"];
            a.extend_from_slice(extra);
            parse(&a).map(|c| c.policy)
        };
        let want = AcceptancePolicy::server(["wss://git.example.com"], ["git.example.com"]).unwrap();
        assert_eq!(policy(&["--service-url", "wss://GIT.example.com./", "--service-domain", "Git.Example.com."]).unwrap(), want);
        let e = policy(&["--service-url", "http://a.example.com"]).unwrap_err();
        assert!(e.starts_with("invalid value for --service-url: `http://a.example.com`"), "{e}");
        let e = policy(&["--service-url", "wss://a.example.com", "--service-domain", "https://a.example.com"]).unwrap_err();
        assert!(e.starts_with("invalid value for --service-domain: `https://a.example.com`"), "{e}");
        let e = policy(&["--maintainer", "zz"]).unwrap_err();
        assert!(e.starts_with("invalid value for --maintainer: invalid maintainer pubkey `zz`"), "{e}");
        let e = policy(&["--repo", "30617:zz:x"]).unwrap_err();
        assert!(e.starts_with("invalid value for --repo: invalid repository address `30617:zz:x`"), "{e}");
    }

    #[test]
    fn serving_limits_default_flags_and_documented_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.served, ServedLimits::default());
        assert_eq!(c.http, HttpLimits::default());
        // What `--help` shows as the default is the default.
        let mut v: Vec<String> = ["grasp-sync"].iter().chain(BASE).map(|s| s.to_string()).collect();
        for (field, default) in Serving::DEFAULTS {
            v.push(format!("--{}", field.replace('_', "-")));
            v.push(default.to_string());
        }
        let c = resolve(Cli::try_parse_from(v).unwrap()).unwrap();
        assert_eq!((c.served, c.http), (ServedLimits::default(), HttpLimits::default()));
        let mut a = BASE.to_vec();
        a.extend([
            "--served-max-connections",
            "3",
            "--served-max-connections-per-ip",
            "2",
            "--served-max-limit",
            "10",
            "--served-max-filters",
            "4",
            "--served-max-subscriptions",
            "5",
            "--served-max-negentropy-sessions",
            "6",
            "--served-max-message-bytes",
            "4096",
            "--served-idle-timeout",
            "1500ms",
            "--http-max-connections",
            "7",
            "--http-timeout",
            "2s",
        ]);
        let c = parse(&a).unwrap();
        let want = ServedLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_limit: 10,
            max_filters: 4,
            max_subscriptions: 5,
            max_negentropy_sessions: 6,
            max_message_bytes: 4096,
            idle_timeout: std::time::Duration::from_millis(1500),
        };
        assert_eq!(c.served, want);
        assert_eq!(c.http, HttpLimits { max_connections: 7, timeout: std::time::Duration::from_secs(2) });
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("--served-max-limit") && help.contains("[default: 500]"), "{help}");
    }

    #[test]
    fn bad_serving_limits_name_the_option() {
        for (flag, value) in [
            ("--served-max-connections", "0"),
            ("--served-max-limit", "0"),
            ("--served-max-subscriptions", "0"),
            ("--served-max-negentropy-sessions", "0"),
            ("--served-max-filters", "0"),
            ("--served-max-message-bytes", "100"),
            ("--served-idle-timeout", "0s"),
            ("--served-idle-timeout", "400d"),
            ("--http-max-connections", "0"),
            ("--http-timeout", "0"),
            ("--served-max-limit", "99999999999999999999999"),
        ] {
            let mut a = BASE.to_vec();
            a.extend([flag, value]);
            let e = parse(&a).unwrap_err();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
    }

    /// `--backoff-base 99999999999999999999d` used to panic (exit 101);
    /// every duration option, from flag, env or file, is now an error
    /// naming the option (main turns it into exit 2).
    #[test]
    fn overflowing_durations_are_errors_naming_the_option() {
        for (field, _) in Tuning::DEFAULTS.iter().chain(Serving::DEFAULTS) {
            let flag = format!("--{}", field.replace('_', "-"));
            let mut a = BASE.to_vec();
            a.extend([flag.as_str(), "99999999999999999999d"]);
            match parse(&a) {
                Err(e) => assert!(e.contains(&flag), "{flag}: {e}"),
                Ok(_) => panic!("{flag} accepted 99999999999999999999d"),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "dead_after = \"99999999999999999999d\"\n").unwrap();
        let e = parse(&["--config", p.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("--dead-after") && e.contains("365d"), "{e}");
        std::fs::write(&p, "backoff_max = 9223372036854775807\n").unwrap();
        let e = parse(&["--config", p.to_str().unwrap()]).unwrap_err();
        assert!(e.contains("--backoff-max") && e.contains("365d"), "{e}");
    }

    #[test]
    fn toml_file_is_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "service_url = [\"wss://git.example.com\"]\nbootstrap_relay = [\"wss://relay.example.com\"]\nbatch_window = \"2s\"\nbackoff_base = 7\nrelay_listen = \"off\"\n",
        )
        .unwrap();
        let c = parse(&["--config", p.to_str().unwrap(), "--batch-window", "3s"]).unwrap();
        assert_eq!(c.sync.batch_window, std::time::Duration::from_secs(3));
        assert_eq!(c.sync.backoff_base, std::time::Duration::from_secs(7));
        assert_eq!(c.relay_listen, None);
        std::fs::write(&p, "no_such_option = 1\n").unwrap();
        assert!(parse(&["--config", p.to_str().unwrap()]).unwrap_err().contains("--config"));
    }
}

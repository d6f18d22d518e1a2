// TypeScript declarations of the objects `GraspSync` takes and returns.
// GENERATED from the Rust types by sync-wasm/src/typescript.rs (ts-rs): do not
// edit; change the Rust types and their doc comments, then run
//   UPDATE_TYPES=1 cargo test -p sync-wasm typescript
// `cargo test` fails while this file differs from what the types give.

// ---- Configuration: `new GraspSync(config)` (sync-wasm/src/config.rs) ----

/**
 * Configuration for `new GraspSync(config)`: give `interest` (client policy)
 * or `server` (GRASP policy), not both. Unknown fields are refused.
 */
export interface GraspSyncConfig {
    /** Relays always contacted (`ws://` / `wss://`); at least one. */
    bootstrapRelays: Array<string>;
    /** Client policy: what the user is interested in. */
    interest?: GraspSyncInterest;
    /** Server (GRASP) policy: repositories that list this service. */
    server?: GraspSyncServer;
    /** IndexedDB database name (default `grasp-sync`). */
    databaseName?: string;
    /**
     * Allow loopback/private relay URLs from announcements (tests, private
     * deployments); default false.
     */
    allowPrivateRelays?: boolean;
    /** Seed for jitter and reconciliation intervals (random when absent). */
    seed?: number;
    /** Timings in milliseconds; absent ones keep SPEC defaults. */
    timings?: GraspSyncTimings;
}

/**
 * Client policy, the interest set: events of these repositories (and of
 * every repository of these maintainers, or of all) are synced.
 */
export interface GraspSyncInterest {
    /** `30617:<pubkey-hex>:<d>` addresses. */
    repositories?: Array<string>;
    /** Maintainer pubkeys (hex): all their repositories. */
    maintainers?: Array<string>;
    /** Every announcement seen (default false). */
    all?: boolean;
}

/**
 * Server (GRASP) policy: repositories whose announcement lists one of these
 * relay URLs, or a clone URL on one of these domains. At least one entry.
 */
export interface GraspSyncServer {
    /** This service's relay URLs. */
    relayUrls?: Array<string>;
    /** This service's domains (for `clone` URLs). */
    domains?: Array<string>;
}

/**
 * Timing overrides in milliseconds (see sync-core's `SyncConfig`); the
 * SPEC default is in parentheses.
 */
export interface GraspSyncTimings {
    /** New repositories/roots are batched this long before filters are sent (5000). */
    batchWindowMs?: number;
    /** Quiet time after the batch window before Connected (1000). */
    settleExtraMs?: number;
    /** Reconnect backoff base (5000). */
    backoffBaseMs?: number;
    /** Reconnect backoff cap (3600000). */
    backoffMaxMs?: number;
    /** Health/status tick (2000). */
    tickIntervalMs?: number;
    /** Historic request without progress is retried after this long (60000). */
    historicTimeoutMs?: number;
    /** No answer to NEG-OPEN within this long marks a relay REQ-only (10000). */
    negentropyOpenTimeoutMs?: number;
    /** Reconnects within this long keep confirmed state (900000). */
    quickReconnectWindowMs?: number;
    /** A connection up this long is stable (300000). */
    stabilityPeriodMs?: number;
    /** Cooldown after `rate-limited:` (65000). */
    rateLimitCooldownMs?: number;
}

// ---- Status: `status()`, `onStatus(callback)`, the daemon's GET /status (sync-core/src/status.rs) ----

/**
 * The whole snapshot: the daemon's `GET /status`, and in JavaScript what
 * `status()` returns and `onStatus` callbacks receive.
 */
export interface SyncStatus {
    /** When the snapshot was taken (unix milliseconds). */
    now: number;
    /** Whether the engine is running (false after shutdown). */
    running: boolean;
    /** Per relay, sorted by URL. */
    relays: Array<RelayStatus>;
    /** Totals over all relays (SPEC §8). */
    totals: Totals;
    /** Repositories, sorted by address. */
    repositories: Array<RepoStatus>;
}

/**
 * One relay's row of the snapshot. Times are unix milliseconds; `null` when
 * the event has not happened (yet).
 */
export interface RelayStatus {
    /** Normalised relay URL. */
    relay: string;
    /** Configured bootstrap relay (never dropped). */
    bootstrap: boolean;
    /** Connection status. */
    connection: ConnectionStatus;
    /**
     * Why the relay is ConnectedDegraded (or will be when its sync ends);
     * absent otherwise.
     */
    degraded_reason?: string;
    /**
     * The most recent problem with this relay (a failed connection, a lost
     * one, a rate limit, a degraded sync); kept after it recovers, so an
     * operator can see what last went wrong and when. Null if none yet.
     */
    last_error: RelayError | null;
    /** `ngit_sync_relay_connected` value of `connection` (0–4). */
    connection_code: number;
    /** Health status. */
    health: HealthStatus;
    /** `ngit_sync_relay_status` value of `health` (1–5). */
    health_code: number;
    /** Consecutive connection failures. */
    failures: number;
    /** When the relay was last seen connected. */
    last_connected: number | null;
    /** When the relay last disconnected. */
    disconnected_at: number | null;
    /** L1 historic sync done on this connection lineage. */
    announcements_synced: boolean;
    /** All historic batches completed (status reached Connected). */
    historic_sync_completed: boolean;
    /** When historic sync completed. */
    historic_sync_completed_at: number | null;
    /** Milliseconds from connect to historic completion, for the last completion. */
    historic_sync_duration_ms: number | null;
    /** Next connection attempt, if disconnected. */
    next_attempt_at: number | null;
    /** End of the rate-limit cooldown, if active. */
    rate_limited_until: number | null;
    /** Known not to speak NIP-77 this session. */
    req_only: boolean;
    /**
     * NIP-77 as far as known: true when negentropy worked here, false when the
     * relay refused it, null (`None`) while not yet known.
     */
    negentropy: boolean | null;
    /**
     * The current connection resumed with `since` (a quick reconnect after a
     * short disconnection or restart) instead of a fresh sync.
     */
    resumed: boolean;
    /** Historic sync progress of the current connection. */
    progress: HistoricProgress;
    /** Batches in flight. */
    pending_batches: number;
    /** Live subscriptions open. */
    live_filters: number;
    /** Repositories confirmed synced here. */
    confirmed_repos: number;
    /** Root events confirmed synced here. */
    confirmed_roots: number;
    /** Counters since the engine started. */
    counters: RelayCounters;
}

/**
 * Per-relay connection status (SPEC §6). `code()` (the status's `connection_code`,
 * the `ngit_sync_relay_connected` value): 0 Disconnected, 1 Connecting,
 * 2 Syncing, 3 Connected, 4 ConnectedDegraded.
 */
export type ConnectionStatus = "Disconnected" | "Connecting" | "Syncing" | "Connected" | "ConnectedDegraded";

/**
 * Per-relay health (SPEC §7). `code()` (the status's `health_code`, the
 * `ngit_sync_relay_status` value): 1 Healthy, 2 Disconnected, 3 Degraded,
 * 4 Dead, 5 RateLimited.
 */
export type HealthStatus = "Healthy" | "Disconnected" | "Degraded" | "Dead" | "RateLimited";

/** A problem seen with a relay, and when (`RelayStatus::last_error`). */
export interface RelayError {
    /** When it happened (unix milliseconds). */
    at: number;
    /** What happened, e.g. `connection failed: connection refused`. */
    message: string;
}

/**
 * Historic sync progress of one connection (SPEC §5 flow control; the demo's
 * progress bars and `ngit_sync_historic_ids_*`).
 */
export interface HistoricProgress {
    /** Ids negentropy reported as needed (known ones excluded). */
    ids_needed: number;
    /** Needed ids received so far. */
    ids_fetched: number;
    /** REQ pages completed. */
    pages_done: number;
    /** Historic requests in flight now. */
    requests_in_flight: number;
    /** Current in-flight window (shrinks when the relay says too many). */
    window: number;
    /** "Too many" refusals from the relay on this connection. */
    refusals: number;
    /** Batches created on this connection. */
    batches_total: number;
    /** Batches still pending. */
    batches_pending: number;
    /** Rough overall completion, 0–100 (100 once Connected). */
    percent: number;
}

/** Counters kept per relay (since the engine started). */
export interface RelayCounters {
    /** Successful connection attempts. */
    connect_success: number;
    /** Failed connection attempts. */
    connect_failure: number;
    /** EVENT frames received. */
    events_received: number;
    /** Events from this relay newly saved. */
    events_saved: number;
    /** Events already known (seen or stored). */
    events_duplicate: number;
    /** Rejected events by reason (`not_accepted`, `invalid_signature`, `malformed`, `oversized`, `store:…`). */
    events_rejected: { [key in string]: number };
    /** Frames received (all types). */
    frames_received: number;
    /** Bytes received in frames. */
    bytes_received: number;
    /** Frames sent. */
    frames_sent: number;
    /** Bytes sent. */
    bytes_sent: number;
    /** NEG-MSG rounds completed. */
    negentropy_rounds: number;
    /** `rate-limited:` answers seen. */
    rate_limited: number;
    /** Historic batches that failed. */
    batches_failed: number;
    /** NOTICE frames received. */
    notices: number;
    /**
     * Work the relay refused (a CLOSED, a NEG-ERR, or a NOTICE that
     * refuses), by reason: `too_many`, `rate_limited`, `rejected`,
     * `blocked`, `auth_required`, `restricted`, `invalid`, `error`,
     * `unsupported`, `pow`, `unknown_message`, `closed` (a CLOSED saying
     * nothing we recognise), `neg_err` (likewise for NEG-ERR).
     */
    refusals: { [key in string]: number };
}

/** Totals of SPEC §8. */
export interface Totals {
    /** `ngit_sync_events_synced_total`: events newly saved. */
    events_synced: number;
    /** `ngit_sync_relays_tracked_total`. */
    relays_tracked: number;
    /** `ngit_sync_relays_connected_total`: relays with status ≥ 2. */
    relays_connected: number;
    /** `ngit_sync_relays_dead_total`. */
    relays_dead: number;
    /** Events received over all relays. */
    events_received: number;
    /** Rejections by reason over all relays. */
    events_rejected: { [key in string]: number };
    /** Repositories served. */
    repositories: number;
    /** Root events known. */
    root_events: number;
    /** Batches in flight over all relays. */
    pending_batches: number;
    /** Events accepted and waiting for the store. */
    unsaved_events: number;
    /** Distinct relay URLs refused (safety rule and bounds). */
    relays_refused: number;
    /**
     * The same by reason: `private`, `scheme`, `invalid`, `too_long`,
     * `per_announcement`, `per_host`, `total`.
     */
    relay_urls_refused: { [key in string]: number };
    /**
     * The store's error while it keeps failing (`/health` answers 503);
     * null when the store is healthy.
     */
    store_error: string | null;
    /** Failed saves, ever. */
    store_errors: number;
    /** Events the store could not save on their own, dropped (logged). */
    events_quarantined: number;
    /** Accepted events forgotten while the store was down (fetched again on recovery). */
    events_forgotten: number;
}

/** A repository the engine serves. */
export interface RepoStatus {
    /** `30617:<pubkey>:<d>`. */
    address: string;
    /** `name` tag, null if none. */
    name: string | null;
    /** Relays the announcement lists. */
    relays: Array<string>;
    /** Root events (patches, PRs, issues) known. */
    root_events: number;
}

// ---- NIP-01 (hand-written in sync-wasm/src/typescript.rs) ----

/** A NIP-01 filter, as `query()` and `count()` take it. */
export interface NostrFilter {
    ids?: string[];
    authors?: string[];
    kinds?: number[];
    since?: number;
    until?: number;
    limit?: number;
    /** Tag filters: `#e`, `#p`, `#a`, … */
    [tag: `#${string}`]: string[] | undefined;
}

/** A NIP-01 event, as `query()` returns it. */
export interface NostrEvent {
    id: string;
    pubkey: string;
    created_at: number;
    kind: number;
    tags: string[][];
    content: string;
    sig: string;
}

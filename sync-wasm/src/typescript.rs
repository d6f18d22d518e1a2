//! TypeScript declarations for the plain objects crossing the JS boundary
//! (the `GraspSync` class itself is declared by wasm-bindgen).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Configuration for `new GraspSync(config)`. Give `interest` or `server`. */
export interface GraspSyncConfig {
  /** Relays always contacted (ws:// or wss://). */
  bootstrapRelays: string[];
  /** Client policy: repositories (`30617:<pubkey-hex>:<d>`), maintainers (hex pubkeys) or all. */
  interest?: { repositories?: string[]; maintainers?: string[]; all?: boolean };
  /** Server (GRASP) policy: repositories that list these relay URLs or clone URLs on these domains. */
  server?: { relayUrls?: string[]; domains?: string[] };
  /** IndexedDB database name (default "grasp-sync"). */
  databaseName?: string;
  /** Allow loopback/private relay URLs found in announcements (default false). */
  allowPrivateRelays?: boolean;
  /** Seed for backoff jitter and reconciliation intervals (random by default). */
  seed?: number;
  /** Timing overrides in milliseconds (SPEC defaults otherwise). */
  timings?: {
    batchWindowMs?: number; settleExtraMs?: number; backoffBaseMs?: number; backoffMaxMs?: number;
    tickIntervalMs?: number; historicTimeoutMs?: number; negentropyOpenTimeoutMs?: number;
    quickReconnectWindowMs?: number; stabilityPeriodMs?: number; rateLimitCooldownMs?: number;
  };
}

/** A NIP-01 filter. */
export interface NostrFilter {
  ids?: string[]; authors?: string[]; kinds?: number[];
  since?: number; until?: number; limit?: number;
  [tag: `#${string}`]: string[] | undefined;
}

/** A NIP-01 event. */
export interface NostrEvent {
  id: string; pubkey: string; created_at: number; kind: number;
  tags: string[][]; content: string; sig: string;
}

export type ConnectionStatus = "Disconnected" | "Connecting" | "Syncing" | "Connected" | "ConnectedDegraded";
export type HealthStatus = "Healthy" | "Disconnected" | "Degraded" | "Dead" | "RateLimited";

/** One relay's row (times are unix milliseconds). */
export interface RelayStatus {
  relay: string; bootstrap: boolean;
  connection: ConnectionStatus; connection_code: number;
  /** Why the relay is (or will end) ConnectedDegraded; absent otherwise. */
  degraded_reason?: string;
  health: HealthStatus; health_code: number; failures: number;
  last_connected: number | null; disconnected_at: number | null;
  announcements_synced: boolean; historic_sync_completed: boolean;
  historic_sync_completed_at: number | null; historic_sync_duration_ms: number | null;
  next_attempt_at: number | null; rate_limited_until: number | null; req_only: boolean;
  /** NIP-77: true negentropy worked here, false refused, null not yet known. */
  negentropy: boolean | null;
  /** Historic sync progress of the current connection. */
  progress: {
    ids_needed: number; ids_fetched: number; pages_done: number; requests_in_flight: number;
    window: number; refusals: number; batches_total: number; batches_pending: number; percent: number;
  };
  pending_batches: number; live_filters: number; confirmed_repos: number; confirmed_roots: number;
  counters: {
    connect_success: number; connect_failure: number; events_received: number; events_saved: number;
    events_duplicate: number; events_rejected: Record<string, number>; frames_received: number;
    bytes_received: number; frames_sent: number; bytes_sent: number; negentropy_rounds: number;
    rate_limited: number; batches_failed: number; notices: number;
  };
}

/** The status snapshot returned by `status()` and passed to `onStatus` callbacks. */
export interface SyncStatus {
  now: number; running: boolean;
  relays: RelayStatus[];
  totals: {
    events_synced: number; relays_tracked: number; relays_connected: number; relays_dead: number;
    events_received: number; events_rejected: Record<string, number>; repositories: number;
    root_events: number; pending_batches: number; unsaved_events: number; relays_refused: number;
    /** Distinct relay URLs refused, by reason (private, scheme, invalid, too_long, per_announcement, per_host, total). */
    relay_urls_refused: Record<string, number>;
    /** The store's error while it keeps failing (null when healthy). */
    store_error: string | null; store_errors: number; events_quarantined: number; events_forgotten: number;
  };
  repositories: { address: string; name: string | null; relays: string[]; root_events: number }[];
}
"#;

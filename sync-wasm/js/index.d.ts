// Declarations for the package entry (index.js). The plain objects crossing
// the boundary (config, status, filters, events) are generated from the Rust
// types into types.d.ts.
import type { GraspSyncConfig, NostrEvent, NostrFilter, SyncStatus } from './types.js';

export * from './types.js';

/** Where and how `GraspSync` runs its engine. */
export interface GraspSyncOptions {
  /** Run the engine in a dedicated Web Worker (default true); false runs it in the page. */
  worker?: boolean;
  /** Tabs sharing the database share one sync through Web Locks and BroadcastChannel (default true). */
  multiTab?: boolean;
  /** URL of worker.js when your bundler does not resolve `new URL('./worker.js', import.meta.url)`. */
  workerUrl?: string | URL;
  /** URL of engine_bg.wasm when it is not served next to engine.js. */
  wasmUrl?: string | URL;
}

/** Which tab runs the engine for this database. */
export type GraspSyncRole = 'leader' | 'follower' | 'stopped';

/** The grasp-sync engine for web clients, syncing NIP-34 data into IndexedDB. */
export class GraspSync {
  /** Nothing is opened or contacted until `start()` (or a query). */
  constructor(config: GraspSyncConfig, options?: GraspSyncOptions);
  /** Resolves once the engine is loaded and the config accepted; rejects with an Error naming the bad field. */
  readonly ready: Promise<void>;
  /** The IndexedDB database name. */
  readonly databaseName: string;
  /** True while an engine syncs this database (in this tab or, when following, another). */
  readonly running: boolean;
  /** 'leader' when this tab runs the engine, 'follower' when another tab does. */
  readonly role: GraspSyncRole;
  /** Starts syncing, or follows the tab that already does; rejects on a bad config or an unavailable IndexedDB. */
  start(): Promise<void>;
  /** Stops syncing (pending events and the sync state are saved); another tab may take over. */
  stop(): Promise<void>;
  /** Stops, closes the database and ends the worker; later calls reject. */
  close(): Promise<void>;
  /** The latest status snapshot (a follower shows the leader's); null until `ready` resolves. */
  status(): SyncStatus | null;
  /** Calls `callback(status)` on every new snapshot (at most every 200 ms). */
  onStatus(callback: (status: SyncStatus) => void): void;
  /** Removes a callback added with `onStatus`. */
  offStatus(callback: (status: SyncStatus) => void): void;
  /** Stored events matching a NIP-01 filter, newest first. */
  query(filter?: NostrFilter): Promise<NostrEvent[]>;
  /** Number of stored events matching a NIP-01 filter (`limit` honoured). */
  count(filter?: NostrFilter): Promise<number>;
}

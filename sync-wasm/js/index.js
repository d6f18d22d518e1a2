// grasp-sync for web clients: `GraspSync` keeps an IndexedDB copy of the
// NIP-34 data (repositories, patches, pull requests, issues, comments,
// statuses) you are interested in, synced from every relay the repositories
// announce.
//
// The engine runs in a dedicated Web Worker by default, so a large sync
// never blocks the page; `{ worker: false }` runs it in the page instead.
// Tabs sharing a database share one sync (see host.js). Same API either way.

const DEFAULT_DATABASE = 'grasp-sync';
const OPTIONS = ['worker', 'multiTab', 'workerUrl', 'wasmUrl'];

/** Runs the engine in a dedicated worker; calls and answers are messages. */
class WorkerBackend {
  constructor(workerUrl, onStatus) {
    // Written out in full so bundlers that follow `new Worker(new URL(…, import.meta.url))`
    // (Vite, webpack 5) bundle the worker with the app.
    const url = workerUrl ?? new URL('./worker.js', import.meta.url);
    this.worker = workerUrl
      ? new Worker(workerUrl, { type: 'module', name: 'grasp-sync' })
      : new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'grasp-sync' });
    this.pending = new Map();
    this.nextId = 1;
    this.failure = null;
    this.worker.onmessage = ({ data }) => {
      if (data.type === 'status') return onStatus(data.status, data.role, true);
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      if (data.status) onStatus(data.status, data.role, false);
      if (data.ok) call.resolve(data.value);
      else call.reject(new Error(data.error));
    };
    this.worker.onerror = (e) => {
      e.preventDefault?.();
      this.fail(new Error(`grasp-sync worker failed (${url}): ${e.message ?? 'could not load the script'}`));
    };
    this.worker.onmessageerror = () => this.fail(new Error('grasp-sync worker sent a message that cannot be read'));
  }

  fail(error) {
    this.failure = error;
    for (const call of this.pending.values()) call.reject(error);
    this.pending.clear();
  }

  call(method, args) {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args });
    });
  }

  terminate() {
    this.worker.terminate();
    this.fail(new Error('GraspSync is closed'));
  }
}

/** Runs the engine on the page's own thread (`{ worker: false }`). */
class PageBackend {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.host = null;
  }

  async call(method, args) {
    if (method === 'init') {
      const [{ default: init, GraspSync: Engine }, { SyncHost }] = await Promise.all([import('./engine.js'), import('./host.js')]);
      await init(args.wasmUrl ? { module_or_path: args.wasmUrl } : undefined);
      this.host = new SyncHost(Engine, args.config, {
        multiTab: args.multiTab,
        onStatus: (status, role) => this.onStatus(status, role, true),
      });
      return this.host.databaseName;
    }
    const value = await this.host[method](args);
    this.onStatus(this.host.status(), this.host.role, false);
    return value;
  }

  terminate() {}
}

export class GraspSync {
  #backend;
  #ready;
  #databaseName;
  #status = null;
  #role = 'stopped';
  #listeners = new Set();
  #closed = false;

  /**
   * @param {import('./types').GraspSyncConfig} config
   * @param {{ worker?: boolean, multiTab?: boolean, workerUrl?: string | URL, wasmUrl?: string | URL }} [options]
   */
  constructor(config, options = {}) {
    for (const key of Object.keys(options)) {
      if (!OPTIONS.includes(key)) throw new Error(`unknown GraspSync option \`${key}\` (expected one of ${OPTIONS.join(', ')})`);
    }
    const { worker = true, multiTab = true, workerUrl, wasmUrl } = options;
    this.#databaseName = config?.databaseName ?? DEFAULT_DATABASE;
    const onStatus = (status, role, notify) => this.#update(status, role, notify);
    this.#backend = worker ? new WorkerBackend(workerUrl, onStatus) : new PageBackend(onStatus);
    const init = { config, multiTab, wasmUrl: wasmUrl === undefined ? undefined : String(wasmUrl) };
    this.#ready = this.#backend.call('init', init);
    this.#ready.catch(() => {}); // reported by `ready` and every method
  }

  /** Resolves once the engine is loaded and the config accepted; rejects with the config error. */
  get ready() {
    return this.#ready.then(() => undefined);
  }

  /** The IndexedDB database name. */
  get databaseName() {
    return this.#databaseName;
  }

  /** True while an engine syncs this database (here or, following, in another tab). */
  get running() {
    return this.#status?.running ?? false;
  }

  /** 'leader' (this tab runs the engine), 'follower' (another tab does) or 'stopped'. */
  get role() {
    return this.#role;
  }

  /** Whether the engine loaded and took the config (stop/close need nothing else). */
  #loaded() {
    return this.#ready.then(() => true, () => false);
  }

  async #call(method, args) {
    if (this.#closed) throw new Error(`GraspSync is closed (database \`${this.#databaseName}\`)`);
    await this.#ready;
    return this.#backend.call(method, args);
  }

  /** Starts syncing, or follows the tab that already does. */
  start() {
    return this.#call('start');
  }

  /** Stops syncing (saving what is pending); another tab may take over. */
  async stop() {
    if (this.#closed || !(await this.#loaded())) return;
    await this.#backend.call('stop');
  }

  /** Stops, closes the database and ends the worker; later calls reject. */
  async close() {
    if (this.#closed) return;
    try {
      if (await this.#loaded()) await this.#backend.call('close');
    } finally {
      this.#closed = true;
      this.#backend.terminate();
    }
  }

  /** The latest status snapshot (a follower shows the leader's); null until `ready`. */
  status() {
    return this.#status;
  }

  /** Calls `callback(status)` on every snapshot (at most every 200 ms). */
  onStatus(callback) {
    this.#listeners.add(callback);
  }

  /** Removes a callback added with `onStatus`. */
  offStatus(callback) {
    this.#listeners.delete(callback);
  }

  /** Stored events matching a NIP-01 filter, newest first. */
  query(filter) {
    return this.#call('query', filter ?? {});
  }

  /** Number of stored events matching a NIP-01 filter. */
  count(filter) {
    return this.#call('count', filter ?? {});
  }

  /** Caches the snapshot that came with an answer or unasked; only the latter is announced. */
  #update(status, role, notify) {
    if (status) this.#status = status;
    if (role) this.#role = role;
    if (!notify) return;
    for (const callback of this.#listeners) {
      try {
        callback(this.#status);
      } catch (e) {
        console.error('GraspSync onStatus callback threw:', e);
      }
    }
  }
}

// One tab's side of the sync, in its worker (default) or in the page: the
// wasm engine and, when several tabs open the same database, which of them
// runs it.
//
// The tab holding the Web Lock `grasp-sync:<database>` leads: it runs the
// engine and broadcasts every status snapshot on the BroadcastChannel of the
// same name. The other tabs follow: they show the leader's status and answer
// query/count from IndexedDB themselves. When the leader goes (tab closed,
// worker terminated, stop()), the browser grants the lock to a waiting
// follower, whose engine restores the saved sync state and resumes with a
// quick reconnect. Without Web Locks or BroadcastChannel every tab leads.

// Status snapshots are throttled once, by the engine's driver
// (sync-core/src/driver.rs: at most one per 200 ms, the last change always
// published), so the host passes each one on as it comes.

export class SyncHost {
  /**
   * @param Engine the wasm-bindgen `GraspSync` class (engine.js)
   * @param config a GraspSyncConfig; an invalid one throws an Error naming the field
   * @param options.multiTab share one engine between tabs (default true)
   * @param options.onStatus (status, role) => void, at most every 200 ms (the driver's throttle)
   */
  constructor(Engine, config, { multiTab = true, onStatus = () => {} } = {}) {
    this.engine = new Engine(config);
    this.databaseName = this.engine.databaseName;
    this.lockName = `grasp-sync:${this.databaseName}`;
    this.multiTab = multiTab && typeof BroadcastChannel !== 'undefined' && !!globalThis.navigator?.locks;
    this.onStatusOut = onStatus;
    /** 'stopped' | 'leader' | 'follower' */
    this.role = 'stopped';
    this.leaderStatus = null;
    this.channel = null;
    this.abort = null;
    this.releaseLock = null;
    this.engine.onStatus(() => this.emitNow());
  }

  /** Leads (runs the engine) or follows; resolves once either is settled. */
  async start() {
    if (this.role !== 'stopped') throw new Error('GraspSync is already running');
    if (!this.multiTab) {
      await this.engine.start();
      this.setRole('leader');
      return;
    }
    this.channel = new BroadcastChannel(this.lockName);
    this.channel.onmessage = (e) => this.onChannel(e.data);
    this.abort = new AbortController();
    const led = await this.requestLock({ ifAvailable: true });
    if (!led) {
      this.setRole('follower');
      this.channel.postMessage({ type: 'hello' });
      // queued behind the leader: granted when it goes
      this.requestLock({ signal: this.abort.signal }).catch((e) => {
        if (e?.name !== 'AbortError') console.error('grasp-sync: taking over the sync failed:', e);
      });
    }
  }

  /**
   * Requests the lock; once granted, starts the engine and holds the lock
   * until stop(). Resolves true when leading, false when the lock was not
   * available (`ifAvailable`); rejects when the engine cannot start (the
   * lock is then released for another tab).
   */
  requestLock(options) {
    return new Promise((resolve, reject) => {
      navigator.locks
        .request(this.lockName, options, async (lock) => {
          if (!lock) return resolve(false);
          if (this.role === 'stopped' && !options.ifAvailable) return resolve(false); // stopped while queued
          try {
            await this.engine.start();
          } catch (e) {
            reject(e);
            return;
          }
          const held = new Promise((release) => { this.releaseLock = release; });
          this.setRole('leader');
          resolve(true);
          await held;
        })
        .catch(reject);
    });
  }

  onChannel(msg) {
    if (this.role === 'leader' && msg?.type === 'hello') {
      this.channel.postMessage({ type: 'status', status: this.engine.status() });
    } else if (this.role === 'follower' && msg?.type === 'status') {
      this.leaderStatus = msg.status;
      this.emitNow();
    }
  }

  setRole(role) {
    this.role = role;
    if (role !== 'follower') this.leaderStatus = null;
    this.emitNow();
  }

  /** The leader's snapshot when following, else this engine's. */
  status() {
    return (this.role === 'follower' && this.leaderStatus) || this.engine.status();
  }

  emitNow() {
    const status = this.status();
    if (this.role === 'leader' && this.channel) this.channel.postMessage({ type: 'status', status });
    this.onStatusOut(status, this.role);
  }

  /** Stops leading (another tab takes over) or following. */
  async stop() {
    const role = this.role;
    this.role = 'stopped';
    this.abort?.abort();
    if (role === 'leader') {
      await this.engine.stop();
      // the final snapshot (running: false) before another tab takes over
      this.channel?.postMessage({ type: 'status', status: this.engine.status() });
    }
    this.releaseLock?.();
    this.releaseLock = null;
    this.channel?.close();
    this.channel = null;
    this.setRole('stopped');
  }

  async close() {
    await this.stop();
    await this.engine.close();
  }

  query(filter) {
    return this.engine.query(filter);
  }

  count(filter) {
    return this.engine.count(filter);
  }
}

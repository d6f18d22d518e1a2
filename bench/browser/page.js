// The benchmark page: runs one contender per page load and measures it from
// inside Chromium. The driver (run.mjs) sets `window.__BENCH__` before any
// script runs and awaits `window.__benchResult`.
//
// This file is harness, not payload: the libraries under test are loaded
// from /dist/ and /pkg/ (the files whose gzipped size the driver reports).
//
// Times are `performance.now()` values: milliseconds since navigation start.

const cfg = window.__BENCH__;

// Main-thread long tasks (≥ 50 ms by definition), from navigation start on.
const longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) longTasks.push(e.duration);
}).observe({ type: 'longtask', buffered: true });

async function run() {
  const contender = CONTENDERS[cfg.contender];
  if (!contender) throw new Error(`unknown contender ${cfg.contender}`);
  const lib = await contender.load();
  const ready = performance.now();
  const handle = await contender.start(lib);
  const started = performance.now();
  const idb = await waitForIndexedDb(cfg.dbName, cfg.expectedKeys, cfg.timeoutMs);
  const done = performance.now();
  // Let the library report its own completion if it is about to (not waited for long).
  await Promise.race([handle.libDone, sleep(200)]);
  const result = {
    ready,
    started,
    done: idb.complete ? done : null,
    stored: idb.stored,
    present: idb.present,
    // When the store first held ≥ 1 %, 50 % of the expected events.
    firstAt: idb.firstAt,
    halfAt: idb.halfAt,
    libDoneAt: handle.libDoneAt(),
    longTasks: { count: longTasks.length, totalMs: sum(longTasks), blockingMs: sum(longTasks.map((d) => d - 50)) },
    extra: handle.extra?.() ?? {},
  };
  await handle.close?.();
  return result;
}

// ---------------------------------------------------------------- contenders

let wasmExports = null; // grasp-sync in the page: its linear memory is measurable

const CONTENDERS = {
  // grasp-sync: the npm package (mode 'npm'; in its Web Worker or, with
  // `worker: false`, in the page) when it exists, else a wasm-bindgen build
  // in the page (mode 'in-page'), as the driver decided.
  'grasp-sync': {
    async load() {
      const mod = await import(cfg.ours.module);
      if (cfg.ours.mode === 'in-page') {
        // wasm-bindgen --target web: instantiate the module before use.
        wasmExports = await mod.default({ module_or_path: cfg.ours.wasm });
      }
      return mod;
    },
    async start(mod) {
      const config = {
        bootstrapRelays: [cfg.relay],
        interest: { repositories: cfg.repositories },
        databaseName: cfg.dbName,
        allowPrivateRelays: true,
        timings: { batchWindowMs: 500, settleExtraMs: 500 },
      };
      const sync = cfg.ours.mode === 'npm' ? new mod.GraspSync(config, { worker: cfg.ours.worker }) : new mod.GraspSync(config);
      let libDoneAt = null;
      let resolveLibDone;
      const libDone = new Promise((r) => (resolveLibDone = r));
      let last = null;
      sync.onStatus((s) => {
        last = s;
        // The engine's own counter of events saved (not what "done" is measured on).
        if (libDoneAt === null && s.totals?.events_synced >= cfg.expectedKeys.length) {
          libDoneAt = performance.now();
          resolveLibDone();
        }
      });
      await sync.start();
      return {
        libDone,
        libDoneAt: () => libDoneAt,
        extra: () => ({
          eventsSynced: last?.totals?.events_synced ?? null,
          wasmMemoryMiB: wasmExports ? +(wasmExports.memory.buffer.byteLength / 1048576).toFixed(1) : null,
          relays: last?.relays.map((r) => ({ relay: r.relay, connection: r.connection, negentropy: r.negentropy, reqOnly: r.req_only })) ?? [],
        }),
        close: () => sync.close(),
      };
    },
  },

  // NDK 3 + @nostr-dev-kit/sync into @nostr-dev-kit/ndk-cache-dexie.
  ndk: {
    async load() {
      return import(cfg.ndk.module);
    },
    async start({ NDK, NDKCacheAdapterDexie, NDKSync }) {
      const cacheAdapter = new NDKCacheAdapterDexie({ dbName: cfg.dbName });
      const ndk = new NDK({
        explicitRelayUrls: [cfg.relay],
        cacheAdapter,
        // Only the benchmark relay: no outbox discovery or user relays (no internet here).
        enableOutboxModel: false,
        autoConnectUserRelays: false,
        // Every signature verified, as grasp-sync does (NDK's default samples down to 10 %).
        initialValidationRatio: 1,
        lowestValidationRatio: cfg.ndk.verifyAll ? 1 : 0.1,
      });
      await ndk.connect(10_000);
      const unwrapped = cfg.ndk.shim ? [...ndk.pool.relays.values()].map(singleFilterNegOpen) : [];
      const sync = new NDKSync(ndk);
      let libDoneAt = null;
      const perFilter = [];
      // One sync per filter, one at a time: NEG-OPEN carries one filter (the
      // shim), and NDK registers one NEG-MSG handler per relay, so two
      // sessions on the same relay at once would steal each other's answers.
      const libDone = (async () => {
        for (const filter of cfg.filters) {
          const t0 = performance.now();
          const r = await sync.sync(filter);
          perFilter.push({ ms: Math.round(performance.now() - t0), need: r.need.size, events: r.events.length });
        }
        libDoneAt = performance.now();
      })();
      return {
        libDone,
        libDoneAt: () => libDoneAt,
        extra: () => ({
          negOpensUnwrapped: sum(unwrapped.map((count) => count())),
          syncs: perFilter.length,
          needed: sum(perFilter.map((p) => p.need)),
          fetched: sum(perFilter.map((p) => p.events)),
          slowestSyncMs: Math.max(0, ...perFilter.map((p) => p.ms)),
        }),
      };
    },
  },
};

// The peer adaptation for NIP-77: @nostr-dev-kit/sync 1.0.0 sends
// ["NEG-OPEN", id, [filter, ...], msg] (an array of filters), while NIP-77 and
// nostr-relay-builder take one filter object (the relay drops the connection
// on the array). The page calls sync() with one filter at a time, so the
// array always has one element; this unwraps it on the way out.
// Returns a function that tells how many NEG-OPENs were rewritten.
function singleFilterNegOpen(relay) {
  const conn = relay.connectivity;
  const send = conn.send.bind(conn);
  let rewritten = 0;
  conn.send = (message) => {
    if (typeof message === 'string' && message.startsWith('["NEG-OPEN"')) {
      const m = JSON.parse(message);
      if (Array.isArray(m[2])) {
        if (m[2].length !== 1) throw new Error(`NEG-OPEN with ${m[2].length} filters cannot be expressed in NIP-77`);
        m[2] = m[2][0];
        message = JSON.stringify(m);
        rewritten++;
      }
    }
    return send(message);
  };
  return () => rewritten;
}

// ---------------------------------------------------------------- IndexedDB

// Polls the raw IndexedDB store `events` of database `name` (whoever wrote
// it) until it holds every expected primary key. Counting is cheap, so the
// keys are compared only once the count is high enough.
async function waitForIndexedDb(name, expectedKeys, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  let db = null;
  let stored = 0;
  let present = 0;
  let firstAt = null;
  let halfAt = null;
  while (performance.now() < deadline) {
    try {
      db ??= await openExisting(name);
      if (db) {
        stored = await request(db.transaction('events', 'readonly').objectStore('events').count());
        if (firstAt === null && stored >= expectedKeys.length / 100) firstAt = performance.now();
        if (halfAt === null && stored >= expectedKeys.length / 2) halfAt = performance.now();
        if (stored >= expectedKeys.length) {
          const keys = new Set(await request(db.transaction('events', 'readonly').objectStore('events').getAllKeys()));
          present = expectedKeys.reduce((n, k) => n + (keys.has(k) ? 1 : 0), 0);
          if (present === expectedKeys.length) {
            db.close();
            return { complete: true, stored, present, firstAt, halfAt };
          }
        }
      }
    } catch {
      // Closed for the library's schema upgrade (or not ready yet): reopen next time.
      db = null;
    }
    await sleep(cfg.pollMs);
  }
  db?.close();
  return { complete: false, stored, present, firstAt, halfAt };
}

// Opens `name` only once the library created it with its `events` store:
// opening a database that does not exist yet would create it empty (version
// 1) under the library's feet.
async function openExisting(name) {
  const dbs = await indexedDB.databases();
  if (!dbs.some((d) => d.name === name)) return null;
  const db = await request(indexedDB.open(name));
  // Step aside if the library upgrades its schema.
  db.onversionchange = () => db.close(); // the next transaction throws and the poller reopens
  if (!db.objectStoreNames.contains('events')) {
    db.close();
    return null;
  }
  return db;
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function sum(xs) {
  return xs.reduce((a, b) => a + b, 0);
}

// Last, so that every declaration above is initialised.
window.__benchResult = run().catch((e) => ({ error: String(e?.stack ?? e) }));

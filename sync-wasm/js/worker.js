// The dedicated Web Worker `GraspSync` runs its engine in by default
// (index.js): loads the wasm, then answers the page's calls. Every call is
// `{ id, method, args }`, every answer `{ id, ok, value | error, status,
// role }`; status snapshots also arrive unasked as `{ type: 'status' }`.
import init, { GraspSync as Engine } from './engine.js';
import { SyncHost } from './host.js';

let host = null;

const methods = {
  async init({ config, multiTab, wasmUrl }) {
    await init(wasmUrl ? { module_or_path: wasmUrl } : undefined);
    host = new SyncHost(Engine, config, {
      multiTab,
      onStatus: (status, role) => self.postMessage({ type: 'status', status, role }),
    });
    return host.databaseName;
  },
  start: () => host.start(),
  stop: () => host.stop(),
  close: () => host.close(),
  query: (filter) => host.query(filter),
  count: (filter) => host.count(filter),
};

self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    if (!methods[method]) throw new Error(`unknown method ${method}`);
    if (method !== 'init' && !host) throw new Error('GraspSync failed to initialise');
    const value = await methods[method](args);
    self.postMessage({ id, ok: true, value, status: host?.status(), role: host?.role });
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message ?? e), status: host?.status(), role: host?.role });
  }
};

// The npm package as a web client uses it: `npm install` the packed tarball
// into a fresh app, bundle the app with esbuild, run it in Debian's Chromium
// against a real NIP-77 relay on 127.0.0.1 holding 10,000 NIP-34 events.
//
//   node sync-wasm/js/test/package.mjs
//
// Checks: the payload (wasm + JS, gzipped) is at most 700 KB; every event
// reaches IndexedDB; with the engine in its worker (the default) the page's
// main thread sees no long task (> 50 ms) during the sync. A 120 ms probe
// that blocks the main thread on purpose afterwards must be seen, so the
// observer is shown to work; the in-page run's long tasks are reported.
// Needs target/npm/grasp-sync-<version>.tgz (scripts/build-wasm-pkg) and the
// relay helper (RELAYS_BIN).
// BULK_EVENTS changes the event count (default 10000).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { serve } from '../../../web-demo/serve.mjs';
import { launchChromium, startRelayHelper } from '../../../web-demo/tests/harness.mjs';

const repo = fileURLToPath(new URL('../../..', import.meta.url));
const targetDir = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
const relaysBin = process.env.RELAYS_BIN ?? join(targetDir, 'debug', 'wasm-e2e-relays');
const EVENTS = Number(process.env.BULK_EVENTS ?? 10_000);
const MAX_PAYLOAD_GZ = 700 * 1024;
const log = (...a) => console.log(`[package ${new Date().toISOString().slice(11, 23)}]`, ...a);

const npmDir = join(targetDir, 'npm');
const tarball = existsSync(npmDir) && readdirSync(npmDir).find((f) => /^grasp-sync-.*\.tgz$/.test(f));
assert.ok(tarball, `no package tarball in ${npmDir}: run scripts/build-wasm-pkg`);
assert.ok(existsSync(relaysBin), `relay helper missing: ${relaysBin} (cargo build -p grasp-sync-tests --bin wasm-e2e-relays)`);

// --- a fresh app that depends on the package ---------------------------------
const app = mkdtempSync(join(tmpdir(), 'grasp-sync-app-'));
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'tiny-app', private: true, type: 'module' }));
execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(npmDir, tarball)], { cwd: app, stdio: 'inherit' });
writeFileSync(join(app, 'app.js'), `
import { GraspSync } from 'grasp-sync';

// One sync of \`repository\` from \`relay\` into database \`db\`; resolves when
// IndexedDB holds \`count\` events, with the main thread's long tasks meanwhile.
window.runSync = async ({ relay, repository, count, db, worker }) => {
  const entries = [];
  const observer = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  observer.observe({ type: 'longtask' });
  const sync = new GraspSync({
    bootstrapRelays: [relay],
    interest: { repositories: [repository] },
    databaseName: db,
    allowPrivateRelays: true,
    timings: { batchWindowMs: 500, settleExtraMs: 500 },
  }, { worker });
  let snapshots = 0;
  sync.onStatus(() => snapshots++);
  const t0 = performance.now();
  await sync.start();
  let stored = 0;
  while ((stored = await sync.count({})) < count && performance.now() - t0 < 120000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const ms = Math.round(performance.now() - t0);
  // a probe: block the main thread on purpose, to show the observer sees long tasks here
  const probeAt = performance.now();
  await new Promise((r) => setTimeout(r, 0));
  while (performance.now() - probeAt < 120) {}
  await new Promise((r) => setTimeout(r, 200));
  observer.disconnect();
  const longTasks = entries.filter((e) => e.startTime < probeAt).map((e) => Math.round(e.duration));
  const probeSeen = entries.some((e) => e.startTime >= probeAt);
  const role = sync.role;
  await sync.close();
  return { ms, stored, longTasks, probeSeen, snapshots, role };
};
window.appReady = true;
`);
// the package's types, as a TypeScript app sees them through `exports.types`
writeFileSync(join(app, 'check.ts'), `
import { GraspSync, type GraspSyncConfig, type SyncStatus, type NostrEvent } from 'grasp-sync';

const config: GraspSyncConfig = {
  bootstrapRelays: ['wss://relay.example.com'],
  interest: { repositories: ['30617:abc:repo'] },
  timings: { batchWindowMs: 500 },
};
const sync = new GraspSync(config, { worker: true, multiTab: false, wasmUrl: new URL('https://x/engine_bg.wasm') });
sync.onStatus((s: SyncStatus) => {
  const synced: number = s.totals.events_synced;
  const resumed: boolean[] = s.relays.map((r) => r.resumed);
  const reason: string | undefined = s.relays[0]?.degraded_reason;
  console.log(synced, resumed, reason, sync.role === 'follower');
});
export async function use(): Promise<NostrEvent[]> {
  await sync.ready;
  await sync.start();
  const n: number = await sync.count({ kinds: [1621], '#a': ['30617:abc:repo'] });
  console.log(n);
  return sync.query({ limit: 10 });
}
// @ts-expect-error unknown config fields are refused by the types too
new GraspSync({ bootstrapRelays: [], bootstrap: [] });
`);
execFileSync(join(repo, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
  '--target', 'es2022', '--lib', 'es2022,dom', 'check.ts'], { cwd: app, stdio: 'inherit' });
log('types: a TypeScript app type-checks against the package (tsc --strict)');
writeFileSync(join(app, 'index.html'), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>tiny app</title><script type="module" src="dist/app.js"></script>');
const esbuild = join(repo, 'node_modules/.bin/esbuild');
execFileSync(esbuild, ['app.js', '--bundle', '--format=esm', '--minify', '--outfile=dist/app.js', '--log-level=warning'], { cwd: app, stdio: 'inherit' });
// what the package README says to do with esbuild: its worker and wasm beside the bundle
const pkg = join(app, 'node_modules/grasp-sync');
for (const f of ['worker.js', 'host.js', 'engine.js', 'engine_bg.wasm']) copyFileSync(join(pkg, f), join(app, 'dist', f));

const payload = ['engine_bg.wasm', 'worker.js', 'host.js', 'engine.js'].map((f) => readFileSync(join(pkg, f)))
  .concat([readFileSync(join(pkg, 'index.js'))])
  .reduce((sum, bytes) => sum + gzipSync(bytes, { level: 9 }).length, 0);
log(`payload (engine_bg.wasm + JS, gzip -9): ${payload} bytes`);
assert.ok(payload <= MAX_PAYLOAD_GZ, `payload ${payload} bytes gzipped, limit ${MAX_PAYLOAD_GZ}`);

// --- relay with the events ---------------------------------------------------
const helper = await startRelayHelper(relaysBin); // (its e2e relays are unused here)
helper.send(`bulk ${EVENTS}`);
const { bulk } = await helper.next();
log(`relay ${bulk.relay}: ${bulk.count} events`);

const server = await serve(0, join(app, '/'));
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await launchChromium();
let failed = false;
try {
  const results = {};
  for (const worker of [true, false]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => log('page error:', e.message));
    page.on('console', (m) => m.type() === 'error' && log('console error:', m.text()));
    await page.goto(base);
    await page.waitForFunction(() => window.appReady === true);
    const db = `package-${worker ? 'worker' : 'page'}-${Date.now()}`;
    const r = await page.evaluate((args) => window.runSync(args), { ...bulk, db, worker });
    const mode = worker ? 'worker' : 'in page';
    log(`${mode}: ${r.stored}/${bulk.count} events in IndexedDB after ${r.ms} ms (${Math.round(r.stored / (r.ms / 1000))} events/s),`,
      `${r.longTasks.length} long tasks (${r.longTasks.slice(0, 8).join(', ')}${r.longTasks.length > 8 ? ', …' : ''} ms), ${r.snapshots} snapshots`);
    assert.equal(r.stored, bulk.count, `${mode}: every event stored`);
    assert.equal(r.role, 'leader', `${mode}: the only tab leads`);
    assert.ok(r.probeSeen, `${mode}: the long-task observer saw the 120 ms probe (it works in this browser)`);
    results[mode] = r;
    await context.close();
  }
  assert.deepEqual(results.worker.longTasks, [], 'no main-thread long task while the engine syncs in its worker');
  log('ALL PACKAGE CHECKS PASSED');
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.close();
  helper.stop();
  rmSync(app, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

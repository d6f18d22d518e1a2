// Browser end-to-end test: real relays on 127.0.0.1 (tests/src/bin/wasm-e2e-relays.rs),
// the demo page served locally, Debian's Chromium driven by playwright-core.
//
//   node web-demo/tests/e2e.mjs
//
// Needs web-demo/pkg (scripts/test-wasm builds it) and the relay helper
// binary (RELAYS_BIN, default ${CARGO_TARGET_DIR:-target}/debug/wasm-e2e-relays).
// Screenshots go to test-artifacts/.
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { serve } from '../serve.mjs';
import { launchChromium, startRelayHelper } from './harness.mjs';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const targetDir = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
const relaysBin = process.env.RELAYS_BIN ?? join(targetDir, 'debug', 'wasm-e2e-relays');
const artifacts = join(repo, 'test-artifacts');
const TAB_EVENTS = Number(process.env.TAB_EVENTS ?? 2_000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (...a) => console.log(`[e2e ${new Date().toISOString().slice(11, 23)}]`, ...a);

assert.ok(existsSync(join(repo, 'web-demo/pkg/index.js')), 'web-demo/pkg missing: build it with scripts/build-wasm-pkg (scripts/test-wasm does)');
assert.ok(existsSync(relaysBin), `relay helper missing: ${relaysBin} (cargo build -p grasp-sync-tests --bin wasm-e2e-relays)`);
mkdirSync(artifacts, { recursive: true });

// --- relays -----------------------------------------------------------------
const helper = await startRelayHelper(relaysBin);
const { relays, next: nextLine } = helper;
log('relays', JSON.stringify({ solo: relays.solo.relay, nip77: relays.pair.nip77, reqOnly: relays.pair.reqOnly }));

// --- page and browser -------------------------------------------------------
const server = await serve(0);
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await launchChromium();

let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
  // the engine's persisted sync state (IndexedDB `meta`/`sync_state`, JSON bytes), read without sync-wasm
  await context.addInitScript(() => {
    window.readSyncState = (name) => new Promise((resolve, reject) => {
      const open = indexedDB.open(name);
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const req = open.result.transaction('meta').objectStore('meta').get('sync_state');
        req.onsuccess = () => {
          open.result.close();
          resolve(req.result ? JSON.parse(new TextDecoder().decode(req.result)) : null);
        };
        req.onerror = () => reject(req.error);
      };
    });
  });

  // ---- scenario 1: one NIP-77 relay ----------------------------------------
  {
    const page = await context.newPage();
    page.on('pageerror', (e) => log('page error:', e.message));
    page.on('console', (m) => m.type() === 'error' && log('console error:', m.text()));
    const db = `e2e-solo-${Date.now()}`;
    const q = new URLSearchParams({ relays: relays.solo.relay, repos: relays.solo.repository, db, private: '1', batch: '500' });
    const t0 = Date.now();
    await page.goto(`${base}?${q}`);
    const row = page.locator(`#relay-table tr[data-relay="${relays.solo.relay}"]`);
    await row.and(page.locator('[data-status="Connected"]')).waitFor({ timeout: 30_000 });
    const tConnected = Date.now() - t0;
    const expected = relays.solo.expectedIds;
    await page.waitForFunction((n) => document.getElementById('t-stored').textContent === String(n), expected.length, { timeout: 10_000 });
    log(`solo: Connected after ${tConnected} ms, ${expected.length} events stored`);
    assert.equal(await page.textContent('#t-synced'), String(expected.length), 'events synced total');
    assert.equal(await page.textContent('#t-repos'), '1', 'repositories');
    assert.equal(await page.textContent('#t-roots'), String(relays.solo.roots), 'root events');
    assert.equal(await row.locator('.events-synced').textContent(), String(expected.length), 'relay events synced');
    assert.notEqual(await row.locator('.completed-at').textContent(), '—', 'historic sync completed at');
    assert.equal(await page.locator(`#repositories li[data-address="${relays.solo.repository}"]`).count(), 1);
    assert.deepEqual((await idbIds(page, db)).sort(), [...expected].sort(), 'IndexedDB holds exactly the accepted events');

    // a live event appears on the page within 2 s
    helper.send('live');
    const tLive = Date.now();
    const { live } = await nextLine();
    await page.locator(`#events li[data-id="${live}"]`).waitFor({ timeout: 2_000 });
    log(`solo: live event on the page after ${Date.now() - tLive} ms`);
    assert.ok((await idbIds(page, db)).includes(live), 'live event stored');
    await page.screenshot({ path: join(artifacts, 'web-demo-solo.png'), fullPage: true });

    // the JS API: query/count, clear errors
    const api = await page.evaluate(async (addr) => {
      const s = window.graspSync;
      const issues = await s.query({ kinds: [1621], '#a': [addr] });
      const n = await s.count({ '#a': [addr] });
      const errors = [];
      // in a worker the config is checked there: `ready` (and start()) reject with the message
      const bad = new window.graspSync.constructor({ bootstrapRelays: [] });
      try { await bad.ready; errors.push('accepted'); } catch (e) { errors.push(e instanceof Error ? e.message : 'not an Error'); }
      try { await bad.start(); errors.push('started'); } catch (e) { errors.push(e instanceof Error ? e.message : 'not an Error'); }
      await bad.close();
      try { await s.query({ kinds: 'nope' }); } catch (e) { errors.push(e instanceof Error ? e.message : 'not an Error'); }
      await s.close();
      try { await s.count({}); } catch (e) { errors.push(e instanceof Error ? e.message : 'not an Error'); }
      return { issues: issues.length, n, errors, status: s.status().running };
    }, relays.solo.repository);
    assert.equal(api.issues, 4, '3 issues + the live one');
    assert.ok(api.n > 0);
    assert.match(api.errors[0], /bootstrapRelays/);
    assert.match(api.errors[1], /bootstrapRelays/);
    assert.match(api.errors[2], /invalid filter/);
    assert.match(api.errors[3], /closed/);
    assert.equal(api.status, false);
    await page.close();
  }

  // ---- scenario 2: one NIP-77 relay and one REQ-only relay; reload resumes -
  {
    const page = await context.newPage();
    page.on('pageerror', (e) => log('page error:', e.message));
    const db = `e2e-pair-${Date.now()}`;
    const { nip77, reqOnly, repository, expectedIds } = relays.pair;
    const q = new URLSearchParams({ relays: `${nip77},${reqOnly}`, repos: repository, db, private: '1', batch: '500' });
    const t0 = Date.now();
    await page.goto(`${base}?${q}`);
    for (const url of [nip77, reqOnly]) {
      await page.locator(`#relay-table tr[data-relay="${url}"][data-status="Connected"]`).waitFor({ timeout: 60_000 });
    }
    await page.waitForFunction((n) => document.getElementById('t-stored').textContent === String(n), expectedIds.length, { timeout: 10_000 });
    log(`pair: both relays Connected after ${Date.now() - t0} ms, ${expectedIds.length} events stored`);
    const mode = await page.locator(`#relay-table tr[data-relay="${reqOnly}"] .mode`).textContent();
    assert.equal(mode, 'REQ only', 'the proxy relay is marked REQ-only');
    assert.equal(await page.locator(`#relay-table tr[data-relay="${nip77}"] .mode`).textContent(), 'negentropy');
    assert.equal(await page.textContent('#t-roots'), String(relays.pair.roots));
    assert.deepEqual((await idbIds(page, db)).sort(), [...expectedIds].sort(), 'IndexedDB holds exactly the accepted events');
    await page.screenshot({ path: join(artifacts, 'web-demo-pair.png'), fullPage: true });

    // reload: the persisted sync state is restored (repositories known at once), nothing is saved twice
    await page.evaluate(() => window.graspSync.stop());
    await page.reload();
    await page.waitForFunction(() => window.demoReady === true);
    await page.waitForFunction((addr) => !!document.querySelector(`#repositories li[data-address="${addr}"]`), repository, { timeout: 5_000 });
    for (const url of [nip77, reqOnly]) {
      await page.locator(`#relay-table tr[data-relay="${url}"][data-status="Connected"]`).waitFor({ timeout: 60_000 });
    }
    assert.equal(await page.textContent('#t-synced'), '0', 'nothing new after reload');
    assert.deepEqual((await idbIds(page, db)).sort(), [...expectedIds].sort());
    log(`pair: reload resumed, Connected again`);
    await page.close();
  }
  // ---- scenario 3: three tabs, one sync; the leader closes, another takes over
  {
    helper.send(`bulk ${TAB_EVENTS}`);
    const { bulk } = await nextLine();
    const db = `e2e-tabs-${Date.now()}`;
    const q = new URLSearchParams({ relays: bulk.relay, repos: bulk.repository, db, private: '1', batch: '500' });
    const tabs = [];
    for (let i = 0; i < 3; i++) {
      const page = await context.newPage();
      page.on('pageerror', (e) => log(`tab ${i} page error:`, e.message));
      await page.goto(`${base}?${q}`);
      await page.waitForFunction(() => ['leader', 'follower'].includes(window.graspSync?.role));
      tabs.push(page);
    }
    const roles = await Promise.all(tabs.map((p) => p.evaluate(() => window.graspSync.role)));
    assert.deepEqual(roles, ['leader', 'follower', 'follower'], 'the first tab leads, the others follow');
    // every tab shows the leader's status and reads IndexedDB itself
    for (const page of tabs) {
      await page.locator(`#relay-table tr[data-relay="${bulk.relay}"][data-status="Connected"]`).waitFor({ timeout: 60_000 });
      assert.equal(await page.evaluate(() => window.graspSync.count({})), bulk.count, 'each tab counts every event');
    }
    assert.equal(await tabs[1].getAttribute('#engine-state', 'data-role'), 'follower');
    // the leader persists its sync state on a quiet tick (at most every 5 s); a tab closed before
    // that resumes with a fresh sync instead, which loses nothing but is not what this test checks
    const persisted = () => tabs[0].evaluate(({ db, url }) => window.readSyncState(db).then((st) => st?.relays?.[url]), { db, url: bulk.relay });
    for (const until = Date.now() + 30_000; ; await sleep(250)) {
      const relay = await persisted();
      if (relay?.announcements_synced && relay?.historic_sync_completed) break;
      assert.ok(Date.now() < until, `the leader's sync state was not persisted within 30 s: ${JSON.stringify(relay)}`);
    }

    const t0 = Date.now();
    await tabs[0].close();
    const heirs = tabs.slice(1);
    await Promise.any(heirs.map((p) => p.waitForFunction(() => window.graspSync.role === 'leader', null, { timeout: 5_000, polling: 50 })))
      .catch(() => assert.fail('no tab took over the sync within 5 s'));
    const leaders = await Promise.all(heirs.map((p) => p.evaluate(() => window.graspSync.role)));
    assert.deepEqual(leaders.filter((r) => r === 'leader').length, 1, `exactly one new leader: ${leaders}`);
    const heir = heirs[leaders.indexOf('leader')];
    // measured in the page (when its status said so), not by polling a background tab
    const handover = (await heir.evaluate(() => window.graspRoleSince)) - t0;
    assert.ok(handover <= 2_000, `another tab led ${handover} ms after the leader closed (limit 2 s)`);
    const other = heirs[1 - leaders.indexOf('leader')];
    const resumed = (url) => window.graspSync.status().relays.some((r) => r.relay === url && r.connection === 'Connected' && r.resumed);
    await heir.waitForFunction(resumed, bulk.relay, { timeout: 30_000 }).catch(async (e) => {
      const row = await heir.evaluate((url) => window.graspSync.status()?.relays.find((r) => r.relay === url), bulk.relay);
      throw new Error(`the new leader did not resume: ${JSON.stringify(row)}`, { cause: e });
    });
    await other.waitForFunction(resumed, bulk.relay, { timeout: 5_000 }); // the follower sees the new leader's status
    const after = await heir.evaluate(() => window.graspSync.status().totals);
    assert.equal(after.events_synced, 0, 'the new leader resumed: nothing fetched again');
    assert.equal((await idbIds(heir, db)).length, bulk.count, 'IndexedDB holds every event once');
    log(`tabs: ${bulk.count} events; the leader closed, another tab led after ${handover} ms and resumed (quick reconnect)`);
    await heir.screenshot({ path: join(artifacts, 'web-demo-tabs.png'), fullPage: true });
    for (const page of heirs) await page.close();
  }
  // ---- scenario 4: the storage quota runs out mid-sync, then frees up ------
  {
    helper.send('bulk 2000');
    const { bulk } = await nextLine();
    const quotaContext = await browser.newContext();
    const page = await quotaContext.newPage();
    const cdp = await quotaContext.newCDPSession(page);
    const origin = new URL(base).origin;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 64 * 1024 }); // real QuotaExceededError
    const db = `e2e-quota-${Date.now()}`;
    await page.goto(`${base}?${new URLSearchParams({ relays: bulk.relay, repos: bulk.repository, db, private: '1', batch: '500' })}`);
    await page.waitForFunction(() => /storage is full/.test(document.getElementById('error').textContent), null, { timeout: 30_000 });
    const shown = await page.textContent('#error');
    assert.match(shown, /quota/i, 'the message names the quota');
    log(`quota: the page says "${shown.slice(0, 90)}…"`);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin }); // back to the browser's own quota
    await page.waitForFunction((n) => document.getElementById('t-stored').textContent === String(n), bulk.count, { timeout: 90_000 });
    assert.equal((await idbIds(page, db)).length, bulk.count, 'nothing lost: every event stored once the quota allows');
    await page.waitForFunction(() => document.getElementById('error').textContent === '', null, { timeout: 5_000 });
    log(`quota: freed, all ${bulk.count} events stored`);
    await quotaContext.close();
  }

  // ---- scenario 5: IndexedDB refused (as in some private modes) -----------
  {
    const page = await context.newPage();
    // the engine in the page (worker=0) so the refusal reaches it: opening any database fails
    await page.addInitScript(() => {
      IDBFactory.prototype.open = function () {
        throw new DOMException('The operation is insecure.', 'SecurityError');
      };
    });
    await page.goto(`${base}?${new URLSearchParams({ relays: relays.solo.relay, repos: relays.solo.repository, db: 'refused', private: '1', worker: '0' })}`);
    await page.waitForFunction(() => document.getElementById('error').textContent.length > 0, null, { timeout: 10_000 });
    const shown = await page.textContent('#error');
    assert.match(shown, /IndexedDB is unavailable/, `a clear message: ${shown}`);
    log(`no IndexedDB: the page says "${shown.slice(0, 90)}…"`);
    await page.close();
  }
  log('ALL BROWSER E2E CHECKS PASSED');
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.close();
  helper.stop();
}
process.exit(failed ? 1 : 0);

/** Event ids in the page's IndexedDB, read with the raw IndexedDB API (not through sync-wasm). */
async function idbIds(page, db) {
  return page.evaluate((name) => new Promise((resolve, reject) => {
    const open = indexedDB.open(name);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const req = open.result.transaction('events').objectStore('events').getAllKeys();
      req.onsuccess = () => { open.result.close(); resolve(req.result); };
      req.onerror = () => reject(req.error);
    };
  }), db);
}

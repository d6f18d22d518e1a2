// The demo page: configures GraspSync from the form (or URL parameters),
// renders every status snapshot, and shows what IndexedDB holds.
//
// The engine runs in the package's Web Worker; tabs showing the same
// database share one sync (the others follow it).
//
// URL parameters (all optional; `relays` also starts syncing at once):
//   relays=ws://a,wss://b   repos=30617:<pk>:<d>,...   maintainers=<hex>,...
//   all=1   db=<name>   private=1   batch=<ms batch window>   worker=0 (engine in the page)
import { GraspSync } from './pkg/index.js';

const $ = (id) => document.getElementById(id);
const lines = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
const LABELS = { ConnectedDegraded: 'Degraded' };

let sync = null;
let lastSynced = -1;
let batchWindowMs;
let inWorker = true;

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : '—';
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function renderRelays(relays) {
  const body = $('relay-table').tBodies[0];
  body.replaceChildren(...relays.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.relay = r.relay;
    tr.dataset.status = r.connection;
    tr.append(text('td', r.relay + (r.bootstrap ? ' (bootstrap)' : ''), 'relay'));
    const status = document.createElement('td');
    status.append(text('span', LABELS[r.connection] ?? r.connection, `badge status-${r.connection}`));
    if (r.degraded_reason) status.title = r.degraded_reason;
    tr.append(status);
    tr.append(text('td', r.health, `health-${r.health}`));
    tr.append(text('td', String(r.failures), 'failures'));
    tr.append(text('td', String(r.counters.events_saved), 'events-synced'));
    tr.append(text('td', fmtTime(r.historic_sync_completed_at), 'completed-at'));
    const progress = document.createElement('td');
    progress.className = 'progress';
    const bar = document.createElement('progress');
    bar.max = 100;
    bar.value = r.progress?.percent ?? 0;
    progress.append(bar, text('span', ` ${r.progress?.percent ?? 0}%`, 'percent'));
    progress.title = `ids ${r.progress?.ids_fetched ?? 0}/${r.progress?.ids_needed ?? 0}, pages ${r.progress?.pages_done ?? 0}, ` +
      `in flight ${r.progress?.requests_in_flight ?? 0}/${r.progress?.window ?? 0}`;
    tr.append(progress);
    const mode = r.req_only ? 'REQ only' : r.negentropy === true ? 'negentropy' : 'not yet known';
    tr.append(text('td', mode, 'mode'));
    return tr;
  }));
}

function renderRepos(repos) {
  $('repositories').replaceChildren(...repos.map((r) => {
    const li = document.createElement('li');
    li.dataset.address = r.address;
    li.append(text('strong', r.name ?? '(unnamed)'), ' ', text('span', r.address, 'mono'),
      ` — ${r.root_events} root events, relays: ${r.relays.join(', ') || '—'}`);
    return li;
  }));
}

async function refreshStore() {
  if (!sync) return;
  try {
    $('t-stored').textContent = String(await sync.count({}));
    const latest = await sync.query({ limit: 15 });
    $('events').replaceChildren(...latest.map((e) => {
      const li = document.createElement('li');
      li.dataset.id = e.id;
      const subject = e.tags.find((t) => t[0] === 'subject' || t[0] === 'name')?.[1] ?? e.content.slice(0, 80);
      li.append(text('span', `kind ${e.kind}`), ' · ', text('span', subject), ' · ', text('span', e.id.slice(0, 12), 'mono'));
      return li;
    }));
  } catch (err) {
    $('error').textContent = String(err.message ?? err);
  }
}

/** A clear message for what users can fix: no IndexedDB (private mode), a full quota. */
function explain(message) {
  if (/quota/i.test(message)) {
    return `Browser storage is full (quota exceeded): free space or allow this site more storage. Saves are retried. (${message})`;
  }
  if (/IndexedDB/i.test(message) && /open|unavailable|undefined|null|environment/i.test(message)) {
    return `IndexedDB is unavailable (private browsing, or storage blocked for this site), so nothing can be synced. (${message})`;
  }
  return message;
}

function render(status) {
  if (!status) return;
  const t = status.totals;
  $('t-synced').textContent = String(t.events_synced);
  $('t-tracked').textContent = String(t.relays_tracked);
  $('t-connected').textContent = String(t.relays_connected);
  $('t-dead').textContent = String(t.relays_dead);
  $('t-repos').textContent = String(t.repositories);
  $('t-roots').textContent = String(t.root_events);
  $('t-pending').textContent = String(t.pending_batches);
  const role = sync?.role;
  if (role !== window.graspRole) {
    window.graspRole = role;
    window.graspRoleSince = Date.now(); // when this tab learnt it leads or follows (tests read it)
  }
  const where = role === 'follower' ? 'following the sync in another tab' : status.running ? `running${inWorker ? ' (in a worker)' : ''}` : 'stopped';
  $('engine-state').textContent = t.store_error ? `${where}, store failing` : where;
  $('engine-state').dataset.state = status.running ? 'running' : 'stopped';
  $('engine-state').dataset.role = role ?? 'stopped';
  if (t.store_error) $('error').textContent = `Store failing, saves are retried: ${explain(t.store_error)}`;
  else if ($('error').textContent.startsWith('Store failing')) $('error').textContent = '';
  renderRelays(status.relays);
  renderRepos(status.repositories);
  if (t.events_synced !== lastSynced) {
    lastSynced = t.events_synced;
    refreshStore();
  }
}

function configFromForm() {
  const config = {
    bootstrapRelays: lines($('relays').value),
    interest: { repositories: lines($('repos').value), maintainers: lines($('maintainers').value), all: $('all').checked },
    databaseName: $('db').value.trim() || 'grasp-sync-demo',
    allowPrivateRelays: $('private').checked,
  };
  if (batchWindowMs) config.timings = { batchWindowMs, settleExtraMs: Math.min(1000, batchWindowMs) };
  return config;
}

async function start() {
  $('error').textContent = '';
  if (typeof indexedDB === 'undefined') {
    $('error').textContent = explain('IndexedDB is unavailable in this browser');
    return;
  }
  try {
    if (sync) await sync.close();
    sync = new GraspSync(configFromForm(), { worker: inWorker });
    window.graspSync = sync;
    lastSynced = -1;
    sync.onStatus(render);
    await sync.start();
    render(sync.status());
    $('start').disabled = true;
    $('stop').disabled = false;
  } catch (err) {
    $('error').textContent = explain(String(err.message ?? err));
  }
}

async function stop() {
  if (!sync) return;
  await sync.stop();
  render(sync.status());
  $('start').disabled = false;
  $('stop').disabled = true;
}

const params = new URLSearchParams(location.search);
if (params.has('relays')) $('relays').value = lines(params.get('relays')).join('\n');
if (params.has('repos')) $('repos').value = lines(params.get('repos')).join('\n');
if (params.has('maintainers')) $('maintainers').value = lines(params.get('maintainers')).join('\n');
if (params.get('all') === '1') $('all').checked = true;
if (params.has('db')) $('db').value = params.get('db');
if (params.get('private') === '1') $('private').checked = true;
if (params.has('batch')) batchWindowMs = Number(params.get('batch'));
if (params.get('worker') === '0') inWorker = false;
$('config-form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
$('stop').addEventListener('click', stop);
setInterval(() => { if (sync) render(sync.status()); }, 1000);
window.demoReady = true;
if (params.has('relays')) await start();

//! One live connection to a relay: its live subscriptions and its
//! PendingSyncIndex entry (batches in flight and their historic jobs).
//! Dropped on disconnect, which is exactly "pending is cleared".

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use nostr::{EventId, Filter};

use crate::filters::{BatchItems, Layer};
use crate::flow::FlowWindow;
use crate::historic::fetch::Fetch;
use crate::historic::negentropy::NegSession;
use crate::historic::paginate::Paginator;
use crate::time::Millis;

/// How a historic job is progressing.
#[derive(Debug)]
pub enum JobKind {
    /// Not started: negentropy or pagination, decided when a window slot frees.
    New,
    /// Waiting for our negentropy items from the store (token).
    LoadingItems(u64),
    /// NEG-OPEN sent; no answer yet (silence or NOTICE means REQ-only).
    NegOpen(Box<NegSession>),
    /// Negentropy rounds in progress.
    Neg(Box<NegSession>),
    /// REQ+EOSE pagination.
    Page(Box<Paginator>),
    /// Fetching needed ids.
    Fetch(Fetch),
}

/// One historic subscription: one filter of a batch.
#[derive(Debug)]
pub struct Job {
    /// Batch it belongs to.
    pub batch: u64,
    /// The historic filter (with `since` on quick reconnect).
    pub filter: Filter,
    /// Progress.
    pub kind: JobKind,
    /// The last REQ filter sent (re-sent on timeout or rate limit).
    pub last_request: Option<Filter>,
    /// No progress by then: retry, then fail.
    pub deadline: Millis,
    /// Restarts after timeouts/errors.
    pub restarts: u32,
    /// Waiting for a window slot (not sent, or sent and refused as one too many).
    pub queued: bool,
    /// Start order on this connection (the newest is the one a "too many"
    /// NOTICE most likely refused).
    pub started: u64,
    /// Must be sent while nothing else is in flight: a NEG-OPEN probe whose
    /// silence or NOTICE would otherwise be ambiguous (SPEC §2).
    pub alone: bool,
    /// The next NEG-MSG, held while the batch's fetch queue is full.
    pub held: Option<String>,
    /// The relay answered this request (an EVENT, EOSE or NEG-MSG): it was
    /// accepted, so an unattributed "too many" NOTICE is not about it.
    pub answered: bool,
    /// A "too many" NOTICE arrived while this request was unanswered: if it
    /// is still unanswered then, it was the refused one.
    pub suspect_until: Option<Millis>,
}

impl Job {
    /// A job for `filter` waiting for a slot.
    pub fn new(batch: u64, filter: Filter, kind: JobKind, deadline: Millis) -> Self {
        Self {
            batch,
            filter,
            kind,
            last_request: None,
            deadline,
            restarts: 0,
            queued: true,
            started: 0,
            alone: false,
            held: None,
            answered: false,
            suspect_until: None,
        }
    }

    /// Holds a window slot (sent, or about to be sent, and not refused).
    pub fn in_flight(&self) -> bool {
        !self.queued
    }

    /// Holds (or is about to open) a negentropy session at the relay.
    pub fn is_negentropy(&self) -> bool {
        matches!(self.kind, JobKind::LoadingItems(_) | JobKind::NegOpen(_) | JobKind::Neg(_))
    }
}

/// A batch of work for one relay (PendingSyncIndex entry).
#[derive(Debug)]
pub struct PendingBatch {
    /// What it covers.
    pub items: BatchItems,
    /// Historic jobs still running.
    pub jobs_left: usize,
    /// A job failed (withheld ids, never-EOSE…): the batch stays pending, failed.
    pub failed: bool,
    /// `since` used (quick reconnect).
    pub since: Option<u64>,
    /// When it was created.
    pub created_at: Millis,
    /// Ids negentropy said we need, not yet requested (fetched while later
    /// rounds go on; ids requested elsewhere wait here until that answers).
    pub fetch_queue: VecDeque<EventId>,
}

impl PendingBatch {
    /// A batch with `jobs` historic jobs.
    pub fn new(items: BatchItems, jobs: usize, since: Option<u64>, now: Millis) -> Self {
        Self { items, jobs_left: jobs, failed: false, since, created_at: now, fetch_queue: VecDeque::new() }
    }

    /// Nothing left to do: every job ended and every needed id was requested.
    pub fn is_done(&self) -> bool {
        self.jobs_left == 0 && self.fetch_queue.is_empty()
    }

    /// The layer, for scheduling (L1 before L2 before L3).
    pub fn layer(&self) -> Layer {
        self.items.layer()
    }
}

/// Historic progress of one connection (status snapshot, metrics, demo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Ids negentropy reported as needed (after dropping known ones).
    pub ids_needed: u64,
    /// Needed ids that arrived.
    pub ids_fetched: u64,
    /// REQ pages completed.
    pub pages_done: u64,
}

/// Per-connection state.
#[derive(Debug)]
pub struct Session {
    /// When the connection was established.
    pub connected_at: Millis,
    /// The relay refused negentropy this session.
    pub req_only: bool,
    /// A NEG-MSG arrived this session: negentropy works (logged once).
    pub negentropy_seen: bool,
    /// This connection resumed with `since` (quick reconnect, SPEC §5)
    /// instead of a fresh sync.
    pub resumed: bool,
    pub(crate) next_sub: u64,
    pub(crate) next_batch: u64,
    /// Open live subscriptions (one REQ each, several items packed) and what they cover.
    pub live: BTreeMap<String, Vec<BatchItems>>,
    /// Items of new batches whose live REQ is not open yet (packed on flush).
    pub live_pending: Vec<BatchItems>,
    /// Live subscriptions the relay closed, reopened at the first time with
    /// `since` the second: what was published meanwhile is not lost.
    pub live_reopen: BTreeMap<String, (Millis, nostr::Timestamp)>,
    /// Layer 3 is live through one kind filter ([`BatchItems::AllThreads`])
    /// because the relay's subscription limit cannot hold one per 100 roots.
    pub l3_broad: bool,
    /// Nothing new is sent before then (a relay just said "too many").
    pub pause_until: Option<Millis>,
    /// Batches in flight (and failed ones).
    pub batches: BTreeMap<u64, PendingBatch>,
    /// Historic jobs by subscription id.
    pub jobs: BTreeMap<String, Job>,
    /// Frames held back while rate limited.
    pub outbox: VecDeque<String>,
    /// Since when no batch has been in flight.
    pub idle_since: Option<Millis>,
    /// When the last batch was created.
    pub last_batch_created: Millis,
    /// Next daily reconciliation.
    pub reconcile_at: Millis,
    /// The in-flight window.
    pub window: FlowWindow,
    pub(crate) next_start: u64,
    /// When live filters were last consolidated (at most once per batch window).
    pub last_consolidated: Option<Millis>,
    /// Historic progress.
    pub progress: Progress,
    /// Historic work waits for the NIP-11 document until then.
    pub info_wait_until: Option<Millis>,
    /// The relay's stated subscription limit (NIP-11 `max_subscriptions`):
    /// live and historic subscriptions together stay within it.
    pub sub_budget: Option<usize>,
    /// REQ page size on this relay (our `page_limit`, capped by NIP-11 `max_limit`).
    pub page_limit: Option<usize>,
}

impl Session {
    /// A new session at `now`.
    pub fn new(now: Millis, reconcile_at: Millis, window: usize) -> Self {
        Self {
            connected_at: now,
            req_only: false,
            negentropy_seen: false,
            resumed: false,
            next_sub: 0,
            next_batch: 0,
            live: BTreeMap::new(),
            live_pending: Vec::new(),
            live_reopen: BTreeMap::new(),
            l3_broad: false,
            pause_until: None,
            batches: BTreeMap::new(),
            jobs: BTreeMap::new(),
            outbox: VecDeque::new(),
            idle_since: None,
            last_batch_created: now,
            reconcile_at,
            window: FlowWindow::new(window),
            next_start: 0,
            last_consolidated: None,
            progress: Progress::default(),
            info_wait_until: None,
            sub_budget: None,
            page_limit: None,
        }
    }

    /// Historic requests allowed in flight now: the window, within what the
    /// relay's subscription budget leaves beside the live subscriptions.
    pub fn effective_window(&self) -> usize {
        let w = self.window.limit();
        match self.sub_budget {
            Some(b) => w.min(b.saturating_sub(self.live.len())).max(1),
            None => w,
        }
    }

    /// Historic requests holding a window slot.
    pub fn requests_in_flight(&self) -> usize {
        self.jobs.values().filter(|j| j.in_flight()).count()
    }

    /// Marks `job` as started (holding a slot) and returns its start number.
    pub fn next_start_seq(&mut self) -> u64 {
        self.next_start += 1;
        self.next_start
    }

    /// A fresh subscription id with a readable prefix (`live`, `hist`, `neg`, `ids`).
    pub fn sub_id(&mut self, prefix: &str) -> String {
        self.next_sub += 1;
        format!("{prefix}{}", self.next_sub)
    }

    /// A fresh batch id.
    pub fn batch_id(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch
    }

    /// Batches still running (not failed).
    pub fn in_flight(&self) -> usize {
        self.batches.values().filter(|b| !b.failed).count()
    }

    /// Any failed batch.
    pub fn any_failed(&self) -> bool {
        self.batches.values().any(|b| b.failed)
    }

    /// Repositories and roots covered by pending batches.
    pub fn pending_items(&self) -> (BTreeSet<String>, BTreeSet<EventId>) {
        let mut repos = BTreeSet::new();
        let mut roots = BTreeSet::new();
        for b in self.batches.values() {
            match &b.items {
                BatchItems::Repos(r) => repos.extend(r.iter().cloned()),
                BatchItems::Roots(r) => roots.extend(r.iter().copied()),
                BatchItems::Announcements | BatchItems::AllThreads => {}
            }
        }
        (repos, roots)
    }
}

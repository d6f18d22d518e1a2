//! Scheduling historic work inside each relay's window (SPEC §5 "Flow control").
//!
//! Batches only *queue* work: their historic jobs wait as `queued`, and the
//! ids negentropy says we need wait in their batch's fetch queue. `pump`
//! starts work while the relay's window has free slots, in this order:
//! a NEG-OPEN probe that must go alone; needed ids (known work first, and an
//! id already requested on any relay is not requested again); then queued
//! jobs, L1 before L2 before L3. Nothing starts while the relay is rate
//! limited or while too many accepted events wait for the store.

use nostr::{ClientMessage, EventId, SubscriptionId};

use super::Engine;
use crate::filters::Layer;
use crate::flow;
use crate::historic::fetch::Fetch;
use crate::relay_url::RelayUrl;
use crate::session::{Job, JobKind};
use crate::time::Millis;

/// What the next free slot of a relay is used for.
enum Next {
    /// Send this job alone (a NEG-OPEN probe).
    Alone(String),
    /// Fetch `take` for batch; `drop` are known by now and leave its queue.
    Fetch { batch: u64, take: Vec<EventId>, drop: Vec<EventId> },
    /// Start this queued job.
    Job(String),
    /// Nothing to start.
    Idle,
}

impl Engine {
    /// Starts queued work on every connected relay.
    pub(super) fn pump_all(&mut self, now: Millis) {
        let urls: Vec<RelayUrl> = self.relays.iter().filter(|(_, r)| r.session.is_some()).map(|(u, _)| u.clone()).collect();
        for url in urls {
            self.pump(&url, now);
        }
    }

    /// Starts queued work on `url` while its window has free slots.
    pub(super) fn pump(&mut self, url: &RelayUrl, now: Millis) {
        if !self.running || self.relays.get(url).is_none_or(|r| r.session.is_none() || r.sync.health.is_rate_limited(now)) {
            return;
        }
        if self
            .relays
            .get(url)
            .and_then(|r| r.session.as_ref())
            .is_some_and(|s| s.pause_until.is_some_and(|t| now < t) || s.info_wait_until.is_some())
        {
            return; // the relay just said "too many", or its NIP-11 limits are not known yet
        }
        // Live filters of new batches go out before their historic requests.
        self.flush_live(url, now);
        // Memory stays proportional to work in flight: with a store backlog
        // nothing new is asked for until it drains (`handle_saved` pumps again).
        if self.unsaved_count() >= self.config.max_unsaved {
            return;
        }
        self.release_held_rounds(url, now);
        loop {
            match self.next_work(url, now) {
                Next::Idle => return,
                Next::Alone(sub) | Next::Job(sub) => self.start_job(url, &sub, now),
                Next::Fetch { batch, take, drop } => self.start_fetch(url, batch, take, drop, now),
            }
        }
    }

    /// Decides what the next free slot does (read-only, so it can look at
    /// other relays' fetches).
    fn next_work(&self, url: &RelayUrl, now: Millis) -> Next {
        let Some(session) = self.relays.get(url).and_then(|r| r.session.as_ref()) else { return Next::Idle };
        if session.info_wait_until.is_some() || !session.live_pending.is_empty() {
            // the NIP-11 limits are not known yet, or new live filters wait
            // for a slot and must be open before their historic requests
            return Next::Idle;
        }
        let in_flight = session.requests_in_flight();
        if session.jobs.values().any(|j| j.alone && j.in_flight()) {
            return Next::Idle;
        }
        if let Some((sub, _)) = session.jobs.iter().find(|(_, j)| j.alone && j.queued) {
            return if in_flight == 0 { Next::Alone(sub.clone()) } else { Next::Idle };
        }
        if in_flight >= session.effective_window() {
            return Next::Idle;
        }
        let mut batches: Vec<(Layer, u64)> =
            session.batches.iter().filter(|(_, b)| !b.fetch_queue.is_empty()).map(|(id, b)| (b.layer(), *id)).collect();
        batches.sort_unstable();
        for (_, id) in batches {
            let batch = &session.batches[&id];
            let (mut take, mut drop) = (Vec::new(), Vec::new());
            for eid in &batch.fetch_queue {
                if self.seen.contains(eid) || self.rejections.contains(eid, now) {
                    drop.push(*eid);
                } else if !self.requested_anywhere(eid) {
                    take.push(*eid);
                    if take.len() >= self.config.fetch_chunk {
                        break;
                    }
                }
            }
            if !take.is_empty() || !drop.is_empty() {
                return Next::Fetch { batch: id, take, drop };
            }
        }
        // Relays limit negentropy sessions separately (often to a few): a job
        // that would open one waits while that many are open.
        let negs = session.jobs.values().filter(|j| j.in_flight() && j.is_negentropy()).count();
        let neg_full = negs >= self.config.max_negentropy_sessions;
        session
            .jobs
            .iter()
            .filter(|(_, j)| j.queued && !(neg_full && !session.req_only && matches!(j.kind, JobKind::New)))
            .min_by_key(|(_, j)| (session.batches.get(&j.batch).map(|b| b.layer()), j.batch))
            .map_or(Next::Idle, |(sub, _)| Next::Job(sub.clone()))
    }

    /// An id some fetch (on any relay) has asked for and not yet received.
    fn requested_anywhere(&self, id: &EventId) -> bool {
        let Some((url, sub)) = self.requested.get(id) else { return false };
        self.relays
            .get(url)
            .and_then(|r| r.session.as_ref())
            .and_then(|s| s.jobs.get(sub))
            .is_some_and(|j| matches!(&j.kind, JobKind::Fetch(f) if f.missing().any(|m| m == id)))
    }

    /// Takes a slot: negentropy or pagination for a new job (decided now, so
    /// a REQ-only verdict reached meanwhile is honoured), the current page
    /// again for a refused pagination job.
    fn start_job(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        let timeout = self.config.historic_timeout;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let limit = session.page_limit.unwrap_or(self.config.page_limit);
        let seq = session.next_start_seq();
        let req_only = session.req_only;
        let Some(job) = session.jobs.get_mut(sub) else { return };
        job.queued = false;
        job.started = seq;
        job.deadline = now + timeout;
        let page = match &mut job.kind {
            JobKind::Page(p) => {
                let f = p.request(limit);
                job.last_request = Some(f.clone());
                Some(f)
            }
            _ => None,
        };
        match page {
            Some(f) => self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![f]), now),
            None if req_only => self.begin_pagination(url, sub, now),
            None => self.begin_negentropy(url, sub, now),
        }
    }

    /// Takes a slot for one `REQ {ids}` of needed ids.
    fn start_fetch(&mut self, url: &RelayUrl, batch_id: u64, take: Vec<EventId>, drop: Vec<EventId>, now: Millis) {
        let timeout = self.config.historic_timeout;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let Some(batch) = session.batches.get_mut(&batch_id) else { return };
        let leaving: std::collections::HashSet<EventId> = take.iter().chain(drop.iter()).copied().collect();
        batch.fetch_queue.retain(|id| !leaving.contains(id));
        if take.is_empty() {
            return self.try_complete_batch(url, batch_id, now);
        }
        batch.jobs_left += 1;
        let seq = session.next_start_seq();
        let sub = session.sub_id("ids");
        let (fetch, filter) = Fetch::new(take.clone());
        let mut job = Job::new(batch_id, filter.clone(), JobKind::Fetch(fetch), now + timeout);
        job.queued = false;
        job.started = seq;
        job.last_request = Some(filter.clone());
        session.jobs.insert(sub.clone(), job);
        for id in take {
            self.requested.insert(id, (url.clone(), sub.clone()));
        }
        self.send(url, ClientMessage::req(SubscriptionId::new(sub), vec![filter]), now);
    }

    /// Negentropy rounds held back while their batch's fetch queue was full
    /// continue once it has drained to half.
    fn release_held_rounds(&mut self, url: &RelayUrl, now: Millis) {
        let low = self.config.fetch_queue_max / 2;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let mut release = Vec::new();
        for (sub, job) in session.jobs.iter_mut() {
            if job.held.is_some() && session.batches.get(&job.batch).is_none_or(|b| b.fetch_queue.len() <= low) {
                release.push((sub.clone(), job.held.take().expect("held")));
                job.deadline = now + self.config.historic_timeout;
            }
        }
        for (sub, msg) in release {
            self.send_neg_msg(url, &sub, msg, now);
        }
    }

    /// The relay refused `sub` as one request too many: shrink the window and
    /// queue the work again under a new subscription id. Never a failure,
    /// never a capability verdict (SPEC §2).
    pub(super) fn requeue_refused(&mut self, url: &RelayUrl, sub: &str, now: Millis) {
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let Some(mut job) = session.jobs.remove(sub) else { return };
        session.window.on_refusal(job.started, session.next_start);
        session.pause_until = Some(now + self.config.refusal_pause);
        if session.requests_in_flight() == 0 {
            // Refused with nothing else of ours in flight: our live REQs fill
            // the relay's subscription limit.
            let held = session.live.len();
            session.sub_budget = Some(session.sub_budget.map_or(held, |b| b.min(held)).max(2));
        }
        tracing::info!(relay = %url, sub, window = session.window.limit(), "relay refused a request as too many; window shrinks");
        let was_neg = matches!(job.kind, JobKind::NegOpen(_) | JobKind::Neg(_));
        let was_sent = !matches!(job.kind, JobKind::New | JobKind::LoadingItems(_)) && !job.queued;
        match core::mem::replace(&mut job.kind, JobKind::New) {
            JobKind::Fetch(f) => {
                if let Some(batch) = session.batches.get_mut(&job.batch) {
                    for id in f.missing() {
                        batch.fetch_queue.push_front(*id);
                    }
                    batch.jobs_left = batch.jobs_left.saturating_sub(1);
                }
                for id in f.requested_ids() {
                    if self.requested.get(id).is_some_and(|(u, s)| u == url && s == sub) {
                        self.requested.remove(id);
                    }
                }
            }
            JobKind::Page(p) => {
                job.kind = JobKind::Page(p);
                job.answered = false;
                job.suspect_until = None;
                Self::requeue_as_new_sub(session, job);
            }
            _ => {
                job.held = None;
                job.answered = false;
                job.suspect_until = None;
                Self::requeue_as_new_sub(session, job);
            }
        }
        if was_sent {
            let close = if was_neg {
                ClientMessage::NegClose { subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)) }
            } else {
                ClientMessage::close(SubscriptionId::new(sub))
            };
            self.send(url, close, now);
        }
        self.maybe_consolidate(url, now);
    }

    fn requeue_as_new_sub(session: &mut crate::session::Session, mut job: Job) {
        job.queued = true;
        let sub = session.sub_id("hist");
        session.jobs.insert(sub, job);
    }

    /// An unattributed "too many" NOTICE: every request of its kind still
    /// unanswered becomes a suspect (negentropy sessions when the NOTICE
    /// names them, REQs otherwise); suspects still silent after
    /// [`flow::NOTICE_ATTRIBUTION`] are re-queued as refused. A NOTICE carries
    /// no subscription id and, on relays that run queries in parallel, is no
    /// clue to which request it refused; silence is.
    pub(super) fn too_many_notice(&mut self, url: &RelayUrl, neg: bool, now: Millis) {
        let pause = self.config.refusal_pause;
        let Some(session) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let newest = session.next_start;
        let mut oldest_suspect = None;
        for job in session.jobs.values_mut().filter(|j| j.in_flight() && !j.answered) {
            let kind_matches = match job.kind {
                JobKind::NegOpen(_) | JobKind::Neg(_) => neg,
                JobKind::Page(_) | JobKind::Fetch(_) => !neg,
                JobKind::New | JobKind::LoadingItems(_) => false,
            };
            if kind_matches && job.suspect_until.is_none() {
                job.suspect_until = Some(now + flow::NOTICE_ATTRIBUTION);
                oldest_suspect = Some(oldest_suspect.map_or(job.started, |s: u64| s.min(job.started)));
            }
        }
        let before = session.window.limit();
        session.window.cut(oldest_suspect.unwrap_or(newest), newest);
        session.pause_until = Some(now + pause);
        // logged when it changes something: a NOTICE storm must not flood the log
        if session.window.limit() < before {
            tracing::info!(relay = %url, window = session.window.limit(), "relay says too many (NOTICE); window shrinks");
        } else {
            tracing::debug!(relay = %url, "relay says too many (NOTICE)");
        }
    }

    /// Suspects of a "too many" NOTICE on `url` that stayed silent were refused.
    pub(super) fn expire_suspects(&mut self, url: &RelayUrl, now: Millis) {
        let Some(s) = self.relays.get_mut(url).and_then(|r| r.session.as_mut()) else { return };
        let mut refused = Vec::new();
        for (sub, j) in s.jobs.iter_mut() {
            if j.suspect_until.is_some_and(|t| now >= t) {
                // cleared whatever happens next: a past deadline left
                // behind would make the timer fire again at once
                j.suspect_until = None;
                if j.in_flight() && !j.answered {
                    refused.push(sub.clone());
                }
            }
        }
        for sub in refused {
            self.requeue_refused(url, &sub, now);
        }
    }
}

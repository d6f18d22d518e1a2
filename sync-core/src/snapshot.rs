//! Builds the [`SyncStatus`] snapshot from the engine's state.

use crate::engine::Engine;
use crate::session::Session;
use crate::status::{ConnectionStatus, HealthStatus, HistoricProgress, RelayStatus, RepoStatus, SyncStatus, Totals};
use crate::time::Millis;

impl Engine {
    /// A serialisable snapshot of every relay and the totals (SPEC §8).
    pub fn status(&self, now: Millis) -> SyncStatus {
        let mut totals = Totals { events_synced: self.events_synced, relays_tracked: self.relays.len(), ..Default::default() };
        let mut relays = Vec::with_capacity(self.relays.len());
        for (url, r) in &self.relays {
            let health = r.sync.health.status(now);
            if r.status.is_connected() {
                totals.relays_connected += 1;
            }
            if health == HealthStatus::Dead {
                totals.relays_dead += 1;
            }
            totals.events_received += r.counters.events_received;
            for (reason, n) in &r.counters.events_rejected {
                *totals.events_rejected.entry(reason.clone()).or_default() += n;
            }
            let (pending, live, req_only) = r.session.as_ref().map_or((0, 0, false), |s| (s.in_flight(), s.live.len(), s.req_only));
            totals.pending_batches += pending;
            relays.push(RelayStatus {
                relay: url.to_string(),
                bootstrap: r.sync.bootstrap,
                connection: r.status,
                degraded_reason: r.degraded_reason.as_ref().map(ToString::to_string),
                last_error: r.last_error.clone(),
                connection_code: r.status.code(),
                health,
                health_code: health.code(),
                failures: r.sync.health.failures,
                last_connected: r.sync.last_connected,
                disconnected_at: r.sync.disconnected_at,
                announcements_synced: r.sync.announcements_synced,
                historic_sync_completed: r.sync.historic_sync_completed,
                historic_sync_completed_at: r.sync.historic_sync_completed_at,
                historic_sync_duration_ms: r.historic_duration_ms,
                next_attempt_at: (r.status == ConnectionStatus::Disconnected).then_some(r.sync.health.next_attempt_at),
                rate_limited_until: r.sync.health.rate_limited_until.filter(|t| *t > now),
                req_only,
                negentropy: r.sync.negentropy,
                resumed: r.session.as_ref().is_some_and(|s| s.resumed),
                progress: r.session.as_ref().map(|s| progress(s, r.status)).unwrap_or_default(),
                pending_batches: pending,
                live_filters: live,
                confirmed_repos: r.sync.confirmed_repos.len(),
                confirmed_roots: r.sync.confirmed_roots.len(),
                counters: r.counters.clone(),
            });
        }
        totals.repositories = self.repos.repo_count();
        totals.root_events = self.repos.root_count();
        totals.unsaved_events = self.unsaved_count();
        totals.store_error = self.saving.error.clone();
        totals.store_errors = self.saving.errors_total;
        totals.events_quarantined = self.saving.quarantined;
        totals.events_forgotten = self.saving.forgotten;
        totals.relays_refused = self.urls_refused.values().sum::<u64>() as usize;
        totals.relay_urls_refused = self.urls_refused.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let repositories = self
            .repos
            .repos()
            .map(|(addr, e)| RepoStatus {
                address: addr.clone(),
                name: e.name.clone(),
                relays: e.relays.iter().map(|r| r.to_string()).collect(),
                root_events: e.roots.len(),
            })
            .collect();
        SyncStatus { now, running: self.running, relays, totals, repositories }
    }
}

/// Progress of one connection: batches done, with the pending ones credited
/// by the share of needed ids already fetched.
fn progress(s: &Session, status: ConnectionStatus) -> HistoricProgress {
    let total = s.next_batch;
    let pending = s.batches.len();
    let percent = if status != ConnectionStatus::Syncing {
        100
    } else if total == 0 {
        0
    } else {
        let fetched = if s.progress.ids_needed == 0 { 0.0 } else { s.progress.ids_fetched as f64 / s.progress.ids_needed as f64 };
        let done = (total as f64 - pending as f64) + fetched * pending as f64;
        ((99.0 * done / total as f64) as u8).min(99)
    };
    HistoricProgress {
        ids_needed: s.progress.ids_needed,
        ids_fetched: s.progress.ids_fetched,
        pages_done: s.progress.pages_done,
        requests_in_flight: s.requests_in_flight(),
        window: s.window.limit(),
        refusals: s.window.refusals,
        batches_total: total,
        batches_pending: pending,
        percent,
    }
}

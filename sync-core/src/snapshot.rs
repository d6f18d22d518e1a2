//! Builds the [`SyncStatus`] snapshot from the engine's state.

use crate::engine::Engine;
use crate::status::{ConnectionStatus, HealthStatus, RelayStatus, RepoStatus, SyncStatus, Totals};
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
        totals.relays_refused = self.refused_urls.len();
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

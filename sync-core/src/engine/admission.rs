//! Which relays are tracked (issue "hostile world", connection amplifier).
//!
//! Relay URLs come from announcements anyone can publish, so every way they
//! reach the relay table is bounded: URLs per announcement and URL length
//! (in `RepoSyncIndex::add_announcement`), relays per host and relays in
//! total (here), and new connections per tick (`tick`). Every refused URL
//! is logged once and counted by reason; the memory of refused URLs is
//! bounded too.

use nostr::Event;

use super::{Engine, RelayMachine};
use crate::nip34;
use crate::relay_url::RelayUrl;
use crate::repo_index::{ListedRelays, UrlRefusal};

/// Distinct refused URLs remembered (to log each once).
pub(crate) const REFUSED_URLS_REMEMBERED: usize = 10_000;

impl Engine {
    /// Starts tracking the relays of `address` (after its announcement was indexed).
    pub(super) fn track_relays_of(&mut self, address: &str) {
        let listed: Vec<RelayUrl> =
            self.repos.repos().filter(|(a, _)| a.as_str() == address).flat_map(|(_, r)| r.relays.iter().cloned()).collect();
        for url in listed {
            self.admit_relay(&url, address);
        }
    }

    /// Starts tracking every relay an indexed repository lists (restore, start-up indexing).
    pub(super) fn track_all_listed(&mut self) {
        let listed: Vec<(RelayUrl, String)> =
            self.repos.repos().flat_map(|(a, r)| r.relays.iter().map(move |u| (u.clone(), a.clone()))).collect();
        self.capacity_refused = false;
        for (url, address) in listed {
            self.admit_relay(&url, &address);
        }
    }

    /// Tracks `url` unless it is excluded (ours) or a bound refuses it.
    fn admit_relay(&mut self, url: &RelayUrl, repo: &str) {
        if self.excluded.contains(url) || self.relays.contains_key(url) {
            return;
        }
        let total = self.config.max_tracked_relays;
        let per_host = self.config.max_relays_per_host;
        let refusal = if self.relays.len() >= total {
            Some(UrlRefusal::Total(total))
        } else if self.relays.keys().filter(|u| u.host() == url.host()).count() >= per_host {
            Some(UrlRefusal::PerHost(per_host))
        } else {
            None
        };
        if let Some(why) = refusal {
            // Room may open up later (a repository drops a relay): look again then.
            self.capacity_refused = true;
            return self.note_refused_url(url.as_str(), &why, repo);
        }
        tracing::info!(relay = %url, "tracking relay");
        self.relays.insert(url.clone(), RelayMachine::new(url.clone(), false));
        self.state_dirty = true;
    }

    /// Logs a refused URL the first time and counts it by reason.
    pub(super) fn note_refused_url(&mut self, raw: &str, why: &UrlRefusal, repo: &str) {
        // The key includes the reason: a URL refused for capacity may be
        // refused later for another reason, which is news.
        let key = format!("{} {raw}", why.label());
        if self.refused_urls.insert(key) {
            *self.urls_refused.entry(why.label()).or_default() += 1;
            tracing::warn!(url = %raw.chars().take(300).collect::<String>(), reason = %why, repo, "relay URL refused");
        }
    }

    /// Indexes an announcement (accepted, or de-listing an indexed
    /// repository) and tracks its relays; true when the accepted set changed.
    /// `listed`: its relays, parsed once where it came in; `None` for a
    /// de-listing version.
    pub(super) fn apply_announcement(&mut self, event: &Event, listed: Option<&ListedRelays>) -> bool {
        let address = nip34::repo_address(event);
        let Some(listed) = listed else {
            if !self.repos.delist(event) {
                return false;
            }
            tracing::info!(repo = %address, "newer announcement no longer lists this service; repository no longer synced");
            return true;
        };
        let change = self.repos.add_announcement(event, listed, crate::repo_index::UrlRules::from_config(&self.config));
        for (raw, why) in &change.refused {
            self.note_refused_url(raw, why, &address);
        }
        if change.updated {
            self.track_relays_of(&address);
        }
        change.updated
    }

    /// New connections allowed this tick: at most `max_connects_per_tick`
    /// `Connect` commands go out per tick however many relays are due.
    pub(super) fn take_connect_budget(&mut self) -> bool {
        if self.connects_this_tick >= self.config.max_connects_per_tick {
            return false;
        }
        self.connects_this_tick += 1;
        true
    }

    /// When a capacity bound refused URLs earlier and relays have been
    /// dropped since, admits listed relays again.
    pub(super) fn admit_again(&mut self) {
        if self.capacity_refused && core::mem::take(&mut self.relays_dropped) {
            self.track_all_listed();
        }
    }
}

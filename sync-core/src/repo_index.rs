//! RepoSyncIndex (SPEC §5, "want"): every accepted repository with the relays
//! its announcement lists and its root events. It is the target side of the
//! three-way diff and is persisted with the sync state.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, EventId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::nip34;
use crate::relay_url::{RelayUrl, RelayUrlError};

/// One accepted repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    /// Announcement author (hex).
    pub author: String,
    /// `d` identifier.
    pub d: String,
    /// `name` tag.
    pub name: Option<String>,
    /// `created_at` of the announcement version indexed.
    pub created_at: u64,
    /// Safe relay URLs the announcement lists.
    pub relays: BTreeSet<RelayUrl>,
    /// Maintainer pubkeys (hex), author included.
    pub maintainers: BTreeSet<String>,
    /// Root events (patches, PRs, issues).
    pub roots: BTreeSet<EventId>,
}

/// What indexing an announcement changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnnouncementChange {
    /// The repository was not indexed before.
    pub new_repo: bool,
    /// The announcement was newer than the indexed version (or new).
    pub updated: bool,
    /// Relay URLs refused by the safety rule (raw text and why).
    pub refused: Vec<(String, RelayUrlError)>,
}

/// Accepted repositories and their root events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSyncIndex {
    repos: BTreeMap<String, RepoEntry>,
    roots: BTreeMap<EventId, BTreeSet<String>>,
}

impl RepoSyncIndex {
    /// Indexes an accepted announcement; older versions than the indexed one
    /// change nothing (addressable replacement).
    pub fn add_announcement(&mut self, event: &Event, allow_private: bool) -> AnnouncementChange {
        let address = nip34::repo_address(event);
        let mut change = AnnouncementChange::default();
        let created_at = event.created_at.as_secs();
        if let Some(existing) = self.repos.get(&address) {
            if existing.created_at > created_at {
                return change;
            }
        } else {
            change.new_repo = true;
        }
        change.updated = true;
        let mut relays = BTreeSet::new();
        for raw in nip34::tag_values(event, "relays") {
            match RelayUrl::parse_safe(raw, allow_private) {
                Ok(u) => {
                    relays.insert(u);
                }
                Err(e) => change.refused.push((raw.to_string(), e)),
            }
        }
        let mut maintainers: BTreeSet<String> =
            nip34::tag_values(event, "maintainers").filter_map(|m| PublicKey::from_hex(m).ok().map(|p| p.to_hex())).collect();
        maintainers.insert(event.pubkey.to_hex());
        let entry = self.repos.entry(address).or_default();
        entry.author = event.pubkey.to_hex();
        entry.d = nip34::d_tag(event).to_string();
        entry.name = nip34::first_tag_value(event, "name").map(str::to_string);
        entry.created_at = created_at;
        entry.relays = relays;
        entry.maintainers = maintainers;
        change
    }

    /// Records a root event of `repo`; true when it was new.
    pub fn add_root(&mut self, repo: &str, id: EventId) -> bool {
        let Some(entry) = self.repos.get_mut(repo) else { return false };
        let new = entry.roots.insert(id);
        self.roots.entry(id).or_default().insert(repo.to_string());
        new
    }

    /// Is this repository accepted?
    pub fn contains_repo(&self, address: &str) -> bool {
        self.repos.contains_key(address)
    }

    /// Is this a root event of an accepted repository?
    pub fn contains_root(&self, id: &EventId) -> bool {
        self.roots.contains_key(id)
    }

    /// Is `pubkey` the author or a maintainer of an accepted repository with identifier `d`?
    pub fn is_repo_controller(&self, pubkey: &PublicKey, d: &str) -> bool {
        let hex = pubkey.to_hex();
        self.repos.values().any(|r| r.d == d && r.maintainers.contains(&hex))
    }

    /// Accepted repositories whose announcement lists `relay`.
    pub fn repos_for_relay(&self, relay: &RelayUrl) -> BTreeSet<String> {
        self.repos.iter().filter(|(_, r)| r.relays.contains(relay)).map(|(a, _)| a.clone()).collect()
    }

    /// Root events of the repositories that list `relay`.
    pub fn roots_for_relay(&self, relay: &RelayUrl) -> BTreeSet<EventId> {
        self.repos.values().filter(|r| r.relays.contains(relay)).flat_map(|r| r.roots.iter().copied()).collect()
    }

    /// True when some accepted repository lists `relay`.
    pub fn lists_relay(&self, relay: &RelayUrl) -> bool {
        self.repos.values().any(|r| r.relays.contains(relay))
    }

    /// Every relay listed by an accepted repository.
    pub fn all_relays(&self) -> BTreeSet<RelayUrl> {
        self.repos.values().flat_map(|r| r.relays.iter().cloned()).collect()
    }

    /// Iterates repositories by address.
    pub fn repos(&self) -> impl Iterator<Item = (&String, &RepoEntry)> {
        self.repos.iter()
    }

    /// Number of repositories.
    pub fn repo_count(&self) -> usize {
        self.repos.len()
    }

    /// Number of root events.
    pub fn root_count(&self) -> usize {
        self.roots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use nostr::{Keys, Timestamp};

    #[test]
    fn targets_follow_listed_relays() {
        let k = Keys::generate();
        let ann = announcement(&k, "r", &["wss://a.example.com", "wss://b.example.com"], &[]);
        let mut idx = RepoSyncIndex::default();
        assert!(idx.add_announcement(&ann, false).new_repo);
        let addr = nip34::repo_address(&ann);
        assert!(idx.add_root(&addr, EventId::all_zeros()));
        let a = RelayUrl::parse("wss://a.example.com").unwrap();
        let c = RelayUrl::parse("wss://c.example.com").unwrap();
        assert_eq!(idx.repos_for_relay(&a).len(), 1);
        assert_eq!(idx.roots_for_relay(&a).len(), 1);
        assert!(idx.repos_for_relay(&c).is_empty());
        assert_eq!(idx.all_relays().len(), 2);
    }

    #[test]
    fn hostile_relay_urls_are_refused_and_reported() {
        let k = Keys::generate();
        let ann = announcement(&k, "r", &["ws://127.0.0.1:7000", "ws://10.0.0.1", "http://relay.example.com", "wss://ok.example.com"], &[]);
        let mut idx = RepoSyncIndex::default();
        let change = idx.add_announcement(&ann, false);
        assert_eq!(change.refused.len(), 3);
        assert_eq!(idx.all_relays().into_iter().map(|r| r.to_string()).collect::<Vec<_>>(), vec!["wss://ok.example.com"]);
        let mut allowed = RepoSyncIndex::default();
        assert_eq!(allowed.add_announcement(&ann, true).refused.len(), 1); // http:// is never a relay
    }

    #[test]
    fn older_announcement_does_not_replace_newer() {
        let k = Keys::generate();
        let newer = announcement_at(&k, "r", &["wss://new.example.com"], Timestamp::from(2000));
        let older = announcement_at(&k, "r", &["wss://old.example.com"], Timestamp::from(1000));
        let mut idx = RepoSyncIndex::default();
        idx.add_announcement(&newer, false);
        assert!(!idx.add_announcement(&older, false).updated);
        assert!(idx.lists_relay(&RelayUrl::parse("wss://new.example.com").unwrap()));
        assert!(!idx.lists_relay(&RelayUrl::parse("wss://old.example.com").unwrap()));
    }
}

//! RepoSyncIndex (SPEC §5, "want"): every accepted repository with the relays
//! its announcement lists and its root events. It is the target side of the
//! three-way diff and is persisted with the sync state.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, EventId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::relay_url::{RelayUrl, RelayUrlError};
use crate::{nip01, nip34};

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
    /// Id of the announcement version indexed (NIP-01: equal `created_at`
    /// goes to the lowest id). Absent in state written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement_id: Option<EventId>,
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
    /// Relay URLs refused (raw text and why).
    pub refused: Vec<(String, UrlRefusal)>,
}

/// Why a relay URL taken from an announcement is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not a usable relay URL or not a public address (the safety rule).
    #[error(transparent)]
    Unsafe(#[from] RelayUrlError),
    /// Longer than `max_relay_url_len`.
    #[error("URL longer than {0} bytes")]
    TooLong(usize),
    /// Beyond `max_relays_per_announcement`.
    #[error("announcement lists more than {0} relays")]
    PerAnnouncement(usize),
    /// Beyond `max_relays_per_host`.
    #[error("more than {0} relays on this host")]
    PerHost(usize),
    /// Beyond `max_tracked_relays`.
    #[error("already tracking {0} relays")]
    Total(usize),
}

impl UrlRefusal {
    /// The `reason` label of `ngit_sync_relay_urls_refused`.
    pub fn label(&self) -> &'static str {
        match self {
            UrlRefusal::Unsafe(RelayUrlError::Private(_)) => "private",
            UrlRefusal::Unsafe(RelayUrlError::Scheme(_)) => "scheme",
            UrlRefusal::Unsafe(_) => "invalid",
            UrlRefusal::TooLong(_) => "too_long",
            UrlRefusal::PerAnnouncement(_) => "per_announcement",
            UrlRefusal::PerHost(_) => "per_host",
            UrlRefusal::Total(_) => "total",
        }
    }
}

/// Which relay URLs an announcement may contribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlRules {
    /// Allow loopback/private addresses.
    pub allow_private: bool,
    /// Longest URL accepted, in bytes.
    pub max_len: usize,
    /// Relays used per announcement (the first ones listed).
    pub max_per_announcement: usize,
}

impl UrlRules {
    /// The rules of `config`.
    pub fn from_config(config: &crate::SyncConfig) -> Self {
        Self {
            allow_private: config.allow_private_relays,
            max_len: config.max_relay_url_len,
            max_per_announcement: config.max_relays_per_announcement,
        }
    }
}

impl Default for UrlRules {
    fn default() -> Self {
        Self::from_config(&crate::SyncConfig::default())
    }
}

/// Does version `(created_at, id)` replace the indexed one? The NIP-01 rule
/// ([`nip01::replaces`]).
fn replaces(existing: &RepoEntry, created_at: u64, id: EventId) -> bool {
    newer(existing.created_at, existing.announcement_id, created_at, id)
}

/// [`nip01::replaces`], where the old version's id may be unknown (state
/// written before ids were kept): then any version at least as new replaces it.
fn newer(old_at: u64, old_id: Option<EventId>, at: u64, id: EventId) -> bool {
    match old_id {
        Some(old_id) => nip01::replaces(at, &id, old_at, &old_id),
        None => at >= old_at,
    }
}

/// The `relays` tag values of an announcement, each parsed and normalised
/// once ([`RelayUrl::parse`]) where the event comes in: the policy asks
/// whether they name us, the index applies the safety rule and bounds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedRelays(Vec<(String, Result<RelayUrl, RelayUrlError>)>);

impl ListedRelays {
    /// Parses the announcement's `relays` tag values, in order.
    pub fn of(event: &Event) -> Self {
        Self(nip34::tag_values(event, "relays").map(|raw| (raw.to_string(), RelayUrl::parse(raw))).collect())
    }

    /// The values that parsed.
    pub fn parsed(&self) -> impl Iterator<Item = &RelayUrl> {
        self.0.iter().filter_map(|(_, r)| r.as_ref().ok())
    }
}

/// Accepted repositories and their root events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSyncIndex {
    repos: BTreeMap<String, RepoEntry>,
    roots: BTreeMap<EventId, BTreeSet<String>>,
    /// Repositories whose owner de-listed us: the version that did, so an
    /// older version naming us (replayed by any relay) does not bring them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    delisted: BTreeMap<String, Version>,
}

/// An announcement version: `created_at` and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Version(u64, EventId);

impl RepoSyncIndex {
    /// Indexes an accepted announcement; versions that do not replace the
    /// indexed one change nothing (addressable replacement).
    pub fn add_announcement(&mut self, event: &Event, listed: &ListedRelays, rules: UrlRules) -> AnnouncementChange {
        let address = nip34::repo_address(event);
        let mut change = AnnouncementChange::default();
        let created_at = event.created_at.as_secs();
        if let Some(existing) = self.repos.get(&address) {
            if existing.announcement_id == Some(event.id) || !replaces(existing, created_at, event.id) {
                return change;
            }
        } else if let Some(Version(at, id)) = self.delisted.get(&address) {
            if !newer(*at, Some(*id), created_at, event.id) {
                return change; // older than the version that de-listed us
            }
            self.delisted.remove(&address);
            change.new_repo = true;
        } else {
            change.new_repo = true;
        }
        change.updated = true;
        let mut relays = BTreeSet::new();
        for (raw, parsed) in &listed.0 {
            let parsed = if raw.len() > rules.max_len {
                Err(UrlRefusal::TooLong(rules.max_len))
            } else {
                parsed.clone().and_then(|u| u.check_safe(rules.allow_private).map(|()| u)).map_err(UrlRefusal::from)
            };
            match parsed {
                Ok(u) if relays.contains(&u) => {}
                Ok(_) if relays.len() >= rules.max_per_announcement => {
                    change.refused.push((raw.to_string(), UrlRefusal::PerAnnouncement(rules.max_per_announcement)))
                }
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
        entry.announcement_id = Some(event.id);
        entry.relays = relays;
        entry.maintainers = maintainers;
        change
    }

    /// True when `event` is a version of an indexed repository's
    /// announcement that replaces the indexed one.
    pub fn replaces_indexed(&self, event: &Event) -> bool {
        self.repos.get(&nip34::repo_address(event)).is_some_and(|e| replaces(e, event.created_at.as_secs(), event.id))
    }

    /// A version of an indexed repository's announcement that no longer
    /// names this service (or this client's interest): when it replaces the
    /// indexed version the repository stops being synced (its stored events
    /// stay). True when it did.
    pub fn delist(&mut self, event: &Event) -> bool {
        let address = nip34::repo_address(event);
        let Some(existing) = self.repos.get(&address) else { return false };
        if !replaces(existing, event.created_at.as_secs(), event.id) {
            return false;
        }
        let entry = self.repos.remove(&address).expect("present");
        self.delisted.insert(address.clone(), Version(event.created_at.as_secs(), event.id));
        for root in entry.roots {
            if let Some(repos) = self.roots.get_mut(&root) {
                repos.remove(&address);
                if repos.is_empty() {
                    self.roots.remove(&root);
                }
            }
        }
        true
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
        assert!(idx.add_announcement(&ann, &ListedRelays::of(&ann), UrlRules::default()).new_repo);
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
        let change = idx.add_announcement(&ann, &ListedRelays::of(&ann), UrlRules::default());
        assert_eq!(change.refused.len(), 3);
        assert_eq!(idx.all_relays().into_iter().map(|r| r.to_string()).collect::<Vec<_>>(), vec!["wss://ok.example.com"]);
        let mut allowed = RepoSyncIndex::default();
        assert_eq!(
            allowed.add_announcement(&ann, &ListedRelays::of(&ann), UrlRules { allow_private: true, ..UrlRules::default() }).refused.len(),
            1
        );
        // http:// is never a relay
    }

    #[test]
    fn older_announcement_does_not_replace_newer() {
        let k = Keys::generate();
        let newer = announcement_at(&k, "r", &["wss://new.example.com"], Timestamp::from(2000));
        let older = announcement_at(&k, "r", &["wss://old.example.com"], Timestamp::from(1000));
        let mut idx = RepoSyncIndex::default();
        idx.add_announcement(&newer, &ListedRelays::of(&newer), UrlRules::default());
        assert!(!idx.add_announcement(&older, &ListedRelays::of(&older), UrlRules::default()).updated);
        assert!(idx.lists_relay(&RelayUrl::parse("wss://new.example.com").unwrap()));
        assert!(!idx.lists_relay(&RelayUrl::parse("wss://old.example.com").unwrap()));
    }

    #[test]
    fn one_announcement_contributes_a_bounded_number_of_short_urls() {
        let k = Keys::generate();
        let many: Vec<String> = (0..5000).map(|i| format!("wss://r{i}.example.com")).collect();
        let mut listed: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = format!("wss://{}.example.com", "x".repeat(300));
        listed.insert(0, &long);
        listed.insert(1, "wss://r0.example.com"); // a repeat is not a second relay
        let ann = announcement(&k, "r", &listed, &[]);
        let mut idx = RepoSyncIndex::default();
        let change = idx.add_announcement(&ann, &ListedRelays::of(&ann), UrlRules::default());
        assert_eq!(idx.all_relays().len(), 20);
        assert_eq!(change.refused.iter().filter(|(_, why)| why.label() == "too_long").count(), 1);
        assert_eq!(change.refused.iter().filter(|(_, why)| why.label() == "per_announcement").count(), 5000 - 20);
        assert!(idx.lists_relay(&RelayUrl::parse("wss://r19.example.com").unwrap()), "the first ones listed are kept");
    }

    #[test]
    fn a_newer_version_without_us_delists_the_repository() {
        let k = Keys::generate();
        let listed = announcement_at(&k, "r", &["wss://a.example.com"], Timestamp::from(1000));
        let mut idx = RepoSyncIndex::default();
        idx.add_announcement(&listed, &ListedRelays::of(&listed), UrlRules::default());
        let addr = nip34::repo_address(&listed);
        idx.add_root(&addr, EventId::all_zeros());
        let older = announcement_at(&k, "r", &[], Timestamp::from(999));
        assert!(!idx.delist(&older), "an older version changes nothing");
        assert!(idx.contains_repo(&addr));
        let newer = announcement_at(&k, "r", &[], Timestamp::from(1001));
        assert!(idx.delist(&newer));
        assert!(!idx.contains_repo(&addr));
        assert!(!idx.contains_root(&EventId::all_zeros()));
        assert!(!idx.is_repo_controller(&k.public_key(), "r"), "removed maintainers lose write access to the state");
    }

    #[test]
    fn equal_created_at_goes_to_the_lowest_id() {
        let k = Keys::generate();
        let at = Timestamp::from(1000);
        let a = announcement_at(&k, "r", &["wss://a.example.com"], at);
        let b = announcement_at(&k, "r", &["wss://b.example.com"], at);
        let (low, high) = if a.id < b.id { (a, b) } else { (b, a) };
        for order in [[&low, &high], [&high, &low]] {
            let mut idx = RepoSyncIndex::default();
            for ann in order {
                idx.add_announcement(ann, &ListedRelays::of(ann), UrlRules::default());
            }
            let kept = nip34::tag_values(&low, "relays").next().unwrap();
            assert!(idx.lists_relay(&RelayUrl::parse(kept).unwrap()));
            assert_eq!(idx.all_relays().len(), 1);
        }
        // a de-listing version with the same created_at wins only with a lower id
        let mut idx = RepoSyncIndex::default();
        idx.add_announcement(&low, &ListedRelays::of(&low), UrlRules::default());
        assert!(!idx.delist(&high));
        let mut idx = RepoSyncIndex::default();
        idx.add_announcement(&high, &ListedRelays::of(&high), UrlRules::default());
        assert!(idx.delist(&low));
    }
}

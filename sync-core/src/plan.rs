//! The three-way diff (SPEC §5): new work = target − pending − confirmed.
//! Nothing else decides what a relay is asked for.

use crate::config::SyncConfig;
use crate::filters::{self, BatchItems};
use crate::relay_url::RelayUrl;
use crate::repo_index::RepoSyncIndex;
use crate::session::Session;
use crate::state::RelaySyncEntry;

/// Batches to create for `relay`: repositories that list it and their roots,
/// minus what is pending or confirmed there, chunked per SPEC §3.
pub fn new_work(
    repos: &RepoSyncIndex,
    relay: &RelayUrl,
    confirmed: &RelaySyncEntry,
    session: &Session,
    config: &SyncConfig,
) -> Vec<BatchItems> {
    let (pending_repos, pending_roots) = session.pending_items();
    let mut want_repos = repos.repos_for_relay(relay);
    want_repos.retain(|r| !pending_repos.contains(r) && !confirmed.confirmed_repos.contains(r));
    let mut want_roots = repos.roots_for_relay(relay);
    want_roots.retain(|r| !pending_roots.contains(r) && !confirmed.confirmed_roots.contains(r));
    let mut out = filters::chunk_repos(&want_repos, config.max_addresses_per_filter);
    out.extend(filters::chunk_roots(&want_roots, config.max_ids_per_filter));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nip34;
    use crate::session::PendingBatch;
    use crate::testutil::*;
    use crate::time::Millis;
    use nostr::{EventId, Keys};

    #[test]
    fn diff_is_target_minus_pending_minus_confirmed() {
        let k = Keys::generate();
        let relay = RelayUrl::parse("wss://r.example.com").unwrap();
        let mut idx = RepoSyncIndex::default();
        let mut addrs = Vec::new();
        for d in ["a", "b", "c"] {
            let ann = announcement(&k, d, &["wss://r.example.com"], &[]);
            idx.add_announcement(&ann, &crate::repo_index::ListedRelays::of(&ann), crate::repo_index::UrlRules::default());
            addrs.push(nip34::repo_address(&ann));
        }
        let root1 = EventId::from_byte_array([1; 32]);
        let root2 = EventId::from_byte_array([2; 32]);
        idx.add_root(&addrs[0], root1);
        idx.add_root(&addrs[0], root2);
        let mut confirmed = RelaySyncEntry::default();
        confirmed.confirmed_repos.insert(addrs[0].clone());
        confirmed.confirmed_roots.insert(root1);
        let mut session = Session::new(Millis(0), Millis(0), 8);
        session.batches.insert(1, PendingBatch::new(BatchItems::Repos(vec![addrs[1].clone()]), 3, None, Millis(0)));
        let work = new_work(&idx, &relay, &confirmed, &session, &SyncConfig::default());
        assert_eq!(work, vec![BatchItems::Repos(vec![addrs[2].clone()]), BatchItems::Roots(vec![root2])]);
        // a relay no repository lists gets nothing
        let other = RelayUrl::parse("wss://other.example.com").unwrap();
        assert!(new_work(&idx, &other, &RelaySyncEntry::default(), &session, &SyncConfig::default()).is_empty());
    }
}

//! Filter builders for the three layers (SPEC §3), chunking, and the
//! consolidated filter set used when a relay carries too many live filters.
//!
//! Tag conditions inside one nostr filter are ANDed, so `#a`, `#A` and `#q`
//! each get their own filter; historic sync runs one job per filter so that
//! `until` pagination never mixes two result sets.

use std::collections::BTreeSet;

use nostr::{Alphabet, EventId, Filter, Kind, SingleLetterTag, Timestamp};
use serde::{Deserialize, Serialize};

use crate::nip34::{REPO_ANNOUNCEMENT, REPO_STATE};

/// The three sync layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Layer {
    /// Announcements and repository state.
    L1,
    /// Events tagging repositories.
    L2,
    /// Events tagging root events.
    L3,
}

/// Kinds that answer a root event (NIP-34 status and PR update, NIP-22
/// comment, label, deletion): the broad live filter of layer 3 when a
/// relay's subscription limit cannot hold one filter per 100 roots.
pub const THREAD_KINDS: [u16; 8] = [1111, 1619, 1630, 1631, 1632, 1633, 1985, 5];

/// What a batch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchItems {
    /// Layer 1.
    Announcements,
    /// Layer 2: repository addresses.
    Repos(Vec<String>),
    /// Layer 3: root event ids.
    Roots(Vec<EventId>),
    /// Layer 3, live only: every thread event by kind (see [`THREAD_KINDS`]);
    /// the acceptance policy keeps those of our roots.
    AllThreads,
}

impl BatchItems {
    /// The layer these items belong to.
    pub fn layer(&self) -> Layer {
        match self {
            BatchItems::Announcements => Layer::L1,
            BatchItems::Repos(_) => Layer::L2,
            BatchItems::Roots(_) | BatchItems::AllThreads => Layer::L3,
        }
    }

    /// The filters that sync these items (one per tag name for L2/L3).
    pub fn filters(&self) -> Vec<Filter> {
        match self {
            BatchItems::Announcements => vec![announcements_filter()],
            BatchItems::Repos(addrs) => ['a', 'A', 'q'].iter().map(|c| tag_filter(*c, addrs.iter().cloned())).collect(),
            BatchItems::Roots(ids) => ['e', 'E', 'q'].iter().map(|c| tag_filter(*c, ids.iter().map(|i| i.to_hex()))).collect(),
            BatchItems::AllThreads => vec![Filter::new().kinds(THREAD_KINDS.map(Kind::Custom))],
        }
    }
}

/// L1: `{kinds:[30617,30618]}`.
pub fn announcements_filter() -> Filter {
    Filter::new().kinds([Kind::Custom(REPO_ANNOUNCEMENT), Kind::Custom(REPO_STATE)])
}

fn tag_filter(c: char, values: impl IntoIterator<Item = String>) -> Filter {
    let tag = match c {
        'a' => SingleLetterTag::lowercase(Alphabet::A),
        'A' => SingleLetterTag::uppercase(Alphabet::A),
        'e' => SingleLetterTag::lowercase(Alphabet::E),
        'E' => SingleLetterTag::uppercase(Alphabet::E),
        _ => SingleLetterTag::lowercase(Alphabet::Q),
    };
    Filter::new().custom_tags(tag, values)
}

/// Splits items into batches of at most `max` (SPEC §3: 100 per filter).
pub fn chunk_repos(repos: &BTreeSet<String>, max: usize) -> Vec<BatchItems> {
    repos.iter().cloned().collect::<Vec<_>>().chunks(max.max(1)).map(|c| BatchItems::Repos(c.to_vec())).collect()
}

/// Splits root ids into batches of at most `max`.
pub fn chunk_roots(roots: &BTreeSet<EventId>, max: usize) -> Vec<BatchItems> {
    roots.iter().copied().collect::<Vec<_>>().chunks(max.max(1)).map(|c| BatchItems::Roots(c.to_vec())).collect()
}

/// The live form of a filter: `limit:0`, only new events.
pub fn live(filter: &Filter) -> Filter {
    filter.clone().limit(0)
}

/// Historic form, with an optional `since` (quick reconnect).
pub fn historic(filter: &Filter, since: Option<u64>) -> Filter {
    match since {
        Some(s) => filter.clone().since(Timestamp::from(s)),
        None => filter.clone(),
    }
}

/// The fewest live subscriptions covering L1 plus `repos` and `roots`
/// (SPEC §5 consolidation): one subscription per chunk of 100.
pub fn consolidated(repos: &BTreeSet<String>, roots: &BTreeSet<EventId>, config_max_addr: usize, config_max_ids: usize) -> Vec<BatchItems> {
    let mut out = vec![BatchItems::Announcements];
    out.extend(chunk_repos(repos, config_max_addr));
    out.extend(chunk_roots(roots, config_max_ids));
    out
}

/// Groups items so that each group's live REQ stays within `max_bytes` of
/// filter JSON (relays cap frame sizes; strfry's default is 128 KiB), in order.
pub fn pack(items: Vec<BatchItems>, max_bytes: usize) -> Vec<Vec<BatchItems>> {
    use nostr::JsonUtil;
    let mut out: Vec<Vec<BatchItems>> = Vec::new();
    let mut size = 0;
    for items in items {
        let bytes: usize = items.filters().iter().map(|f| f.as_json().len() + 12).sum();
        match out.last_mut() {
            Some(group) if size + bytes <= max_bytes => group.push(items),
            _ => {
                out.push(vec![items]);
                size = 0;
            }
        }
        size += bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::JsonUtil;

    #[test]
    fn l1_filter_is_announcements_and_state() {
        assert_eq!(announcements_filter().as_json(), r#"{"kinds":[30617,30618]}"#);
    }

    #[test]
    fn l2_uses_separate_filters_for_a_big_a_and_q() {
        let f = BatchItems::Repos(vec!["30617:ab:x".into()]).filters();
        let json: Vec<String> = f.iter().map(|f| f.as_json()).collect();
        assert_eq!(json, vec![r##"{"#a":["30617:ab:x"]}"##, r##"{"#A":["30617:ab:x"]}"##, r##"{"#q":["30617:ab:x"]}"##]);
    }

    #[test]
    fn chunks_hold_at_most_100_items() {
        let repos: BTreeSet<String> = (0..250).map(|i| format!("30617:k:{i:03}")).collect();
        let chunks = chunk_repos(&repos, 100);
        assert_eq!(chunks.len(), 3);
        assert!(matches!(&chunks[2], BatchItems::Repos(v) if v.len() == 50));
        let roots: BTreeSet<EventId> = (0..100u8).map(|i| EventId::from_byte_array([i; 32])).collect();
        assert_eq!(chunk_roots(&roots, 100).len(), 1);
    }

    #[test]
    fn live_filters_have_limit_zero_and_historic_has_since() {
        assert_eq!(live(&announcements_filter()).limit, Some(0));
        assert_eq!(historic(&announcements_filter(), Some(10)).since, Some(Timestamp::from(10)));
        assert_eq!(historic(&announcements_filter(), None).since, None);
    }

    #[test]
    fn pack_keeps_each_req_under_the_byte_budget() {
        let roots: BTreeSet<EventId> = (0..1000u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_be_bytes());
                EventId::from_byte_array(b)
            })
            .collect();
        let items = chunk_roots(&roots, 100); // 10 chunks of ~20 KB of filters
        let groups = pack(items, 65_536);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 10);
        assert!(groups.len() >= 4 && groups.len() <= 5, "{}", groups.len());
        for g in &groups {
            let bytes: usize = g.iter().flat_map(|i| i.filters()).map(|f| f.as_json().len()).sum();
            assert!(bytes <= 65_536, "{bytes}");
        }
        // small items share one REQ
        assert_eq!(pack(vec![BatchItems::Announcements, BatchItems::AllThreads], 65_536).len(), 1);
    }
}

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

/// What a batch covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchItems {
    /// Layer 1.
    Announcements,
    /// Layer 2: repository addresses.
    Repos(Vec<String>),
    /// Layer 3: root event ids.
    Roots(Vec<EventId>),
}

impl BatchItems {
    /// The layer these items belong to.
    pub fn layer(&self) -> Layer {
        match self {
            BatchItems::Announcements => Layer::L1,
            BatchItems::Repos(_) => Layer::L2,
            BatchItems::Roots(_) => Layer::L3,
        }
    }

    /// The filters that sync these items (one per tag name for L2/L3).
    pub fn filters(&self) -> Vec<Filter> {
        match self {
            BatchItems::Announcements => vec![announcements_filter()],
            BatchItems::Repos(addrs) => ['a', 'A', 'q'].iter().map(|c| tag_filter(*c, addrs.iter().cloned())).collect(),
            BatchItems::Roots(ids) => ['e', 'E', 'q'].iter().map(|c| tag_filter(*c, ids.iter().map(|i| i.to_hex()))).collect(),
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
}

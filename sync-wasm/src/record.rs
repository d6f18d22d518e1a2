//! How an event is laid out in IndexedDB, and which index answers a filter.
//!
//! Pure Rust (no browser APIs) so it is unit-tested on the host; the
//! IndexedDB store only moves these records in and out.

use std::collections::BTreeSet;

use nostr::{Event, Filter, JsonUtil, SingleLetterTag};
use serde::{Deserialize, Serialize};
use sync_core::{nip01, nip34};

/// Tag names whose first value is indexed: the ones the sync layers query
/// (`#a`, `#A`, `#q` for repositories, `#e`, `#E`, `#q` for root events) and `d`.
pub const INDEXED_TAGS: [&str; 6] = ["a", "A", "e", "E", "q", "d"];

/// Object store holding events, keyed by `id`.
pub const EVENTS: &str = "events";
/// Object store holding the engine's sync state (out-of-line key [`STATE_KEY`]).
pub const META: &str = "meta";
/// Key of the persisted sync state in [`META`].
pub const STATE_KEY: &str = "sync_state";
/// Index over `kind`.
pub const IDX_KIND: &str = "kind";
/// Index over `pubkey`.
pub const IDX_PUBKEY: &str = "pubkey";
/// Index over `created_at`.
pub const IDX_CREATED_AT: &str = "created_at";
/// Multi-entry index over [`Record::tags`] (`"<name>:<value>"`).
pub const IDX_TAGS: &str = "tags";
/// Index over [`Record::addr`] (addressable events only).
pub const IDX_ADDR: &str = "addr";

/// The largest `created_at` a record holds: JavaScript's
/// `Number.MAX_SAFE_INTEGER` (2^53 − 1). `created_at` is stored (and indexed)
/// as a JS number so range queries and ordering stay numeric; beyond this a
/// number no longer holds every integer (and serde-wasm-bindgen refuses the
/// `u64`), so such an event is rejected on its own instead of failing its
/// batch. No honest event is affected: 2^53 seconds is ~285 million years.
pub const MAX_CREATED_AT: u64 = (1 << 53) - 1;

/// The [`SaveOutcome::Rejected`](sync_core::SaveOutcome::Rejected) reason for
/// an event whose `created_at` exceeds [`MAX_CREATED_AT`].
pub const CREATED_AT_OUT_OF_RANGE: &str = "invalid: created_at out of range";

/// One stored event. The indexed fields are copies; `json` is the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Event id (hex), the primary key.
    pub id: String,
    /// Event kind.
    pub kind: u16,
    /// Author (hex).
    pub pubkey: String,
    /// `created_at` (unix seconds).
    pub created_at: u64,
    /// Index keys `"<name>:<value>"` for the [`INDEXED_TAGS`].
    pub tags: Vec<String>,
    /// `"<kind>:<pubkey>:<d>"` for addressable kinds (30000–39999), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The event as NIP-01 JSON.
    pub json: String,
}

impl Record {
    /// The record for `event`, or the rejection reason when the event
    /// cannot be stored (its `created_at` is beyond [`MAX_CREATED_AT`]).
    pub fn try_from_event(event: &Event) -> Result<Self, String> {
        if event.created_at.as_secs() > MAX_CREATED_AT {
            return Err(CREATED_AT_OUT_OF_RANGE.to_string());
        }
        Ok(Self::from_event(event))
    }

    /// The record for `event` (whatever its `created_at`; see
    /// [`Record::try_from_event`] for what the store accepts).
    pub fn from_event(event: &Event) -> Self {
        let mut tags: Vec<String> = Vec::new();
        for tag in event.tags.iter() {
            let slice = tag.as_slice();
            if let (Some(name), Some(value)) = (slice.first(), slice.get(1)) {
                if INDEXED_TAGS.contains(&name.as_str()) {
                    let key = tag_key(name, value);
                    if !tags.contains(&key) {
                        tags.push(key);
                    }
                }
            }
        }
        Self {
            id: event.id.to_hex(),
            kind: event.kind.as_u16(),
            pubkey: event.pubkey.to_hex(),
            created_at: event.created_at.as_secs(),
            tags,
            addr: address_key(event),
            json: event.as_json(),
        }
    }

    /// Decides `filter` from the indexed fields alone (no JSON parsing), the
    /// same way `Filter::match_event` does. `None` when the filter uses
    /// something the record does not index (search, a tag outside
    /// [`INDEXED_TAGS`]): then the caller parses the event and matches it.
    pub fn matches(&self, filter: &Filter) -> Option<bool> {
        if filter.search.is_some() || filter.generic_tags.keys().any(|l| !INDEXED_TAGS.contains(&l.as_str())) {
            return None;
        }
        let ok = filter.ids.as_ref().is_none_or(|ids| ids.is_empty() || ids.iter().any(|i| i.to_hex() == self.id))
            && filter.authors.as_ref().is_none_or(|a| a.is_empty() || a.iter().any(|p| p.to_hex() == self.pubkey))
            && filter.kinds.as_ref().is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_u16() == self.kind))
            && filter.since.is_none_or(|t| self.created_at >= t.as_secs())
            && filter.until.is_none_or(|t| self.created_at <= t.as_secs())
            && filter.generic_tags.iter().all(|(letter, values)| values.iter().any(|v| self.tags.contains(&tag_key(letter.as_str(), v))));
        Some(ok)
    }

    /// Parses the stored event back.
    pub fn event(&self) -> Result<Event, String> {
        Event::from_json(&self.json).map_err(|e| format!("stored event {} is corrupt: {e}", self.id))
    }
}

/// The multi-entry index key of one tag value.
pub fn tag_key(name: &str, value: &str) -> String {
    format!("{name}:{value}")
}

/// `"<kind>:<pubkey>:<d>"` for addressable events (the replacement key).
pub fn address_key(event: &Event) -> Option<String> {
    nip34::is_addressable(event.kind).then(|| format!("{}:{}:{}", event.kind.as_u16(), event.pubkey.to_hex(), nip34::d_tag(event)))
}

/// The [`StoreError`](sync_core::StoreError) message for a failed IndexedDB
/// operation: `dom_name` is the `DOMException` name when there is one
/// (the request's or the aborted transaction's error). Running out of quota
/// says so plainly, since it is the one failure the user can act on.
pub fn store_failure_message(context: &str, dom_name: Option<&str>, detail: &str) -> String {
    let quota = dom_name == Some("QuotaExceededError") || detail.contains("QuotaExceededError");
    match (quota, dom_name) {
        (true, _) => format!("IndexedDB quota exceeded ({context}): the browser refused to store more data; free space or grant persistent storage ({detail})"),
        (false, Some(name)) => format!("{context}: {name}: {detail}"),
        (false, None) => format!("{context}: {detail}"),
    }
}

/// Which index narrows a filter down before exact matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Primary-key lookups.
    Ids(Vec<String>),
    /// [`IDX_TAGS`] lookups, one per key.
    Tags(Vec<String>),
    /// [`IDX_PUBKEY`] lookups.
    Authors(Vec<String>),
    /// [`IDX_KIND`] lookups.
    Kinds(Vec<u16>),
    /// [`IDX_CREATED_AT`] range (or everything when both bounds are open).
    TimeRange {
        /// Lower bound (inclusive).
        since: Option<u64>,
        /// Upper bound (inclusive).
        until: Option<u64>,
    },
}

/// Picks the most selective index for `filter`: ids, then an indexed tag
/// (the one with the fewest values), then authors, kinds, and time. Every
/// candidate is still checked with `Filter::match_event`, so the plan only
/// has to return a superset.
pub fn plan(filter: &Filter) -> Plan {
    if let Some(ids) = filter.ids.as_ref().filter(|s| !s.is_empty()) {
        return Plan::Ids(ids.iter().map(|id| id.to_hex()).collect());
    }
    let mut best: Option<Vec<String>> = None;
    for name in INDEXED_TAGS {
        let Some(Ok(letter)) = name.chars().next().map(SingleLetterTag::from_char) else { continue };
        if let Some(values) = filter.generic_tags.get(&letter) {
            let keys: Vec<String> = values.iter().map(|v| tag_key(name, v)).collect();
            if best.as_ref().is_none_or(|b| keys.len() < b.len()) {
                best = Some(keys);
            }
        }
    }
    if let Some(keys) = best {
        return Plan::Tags(keys);
    }
    if let Some(authors) = filter.authors.as_ref().filter(|s| !s.is_empty()) {
        return Plan::Authors(authors.iter().map(|a| a.to_hex()).collect());
    }
    if let Some(kinds) = filter.kinds.as_ref().filter(|s| !s.is_empty()) {
        let kinds: BTreeSet<u16> = kinds.iter().map(|k| k.as_u16()).collect();
        return Plan::Kinds(kinds.into_iter().collect());
    }
    Plan::TimeRange { since: filter.since.map(|t| t.as_secs()), until: filter.until.map(|t| t.as_secs()) }
}

/// Exact matching, newest-first ordering (ties by id) and `limit`, applied
/// to the plan's candidates.
pub fn finish(filter: &Filter, candidates: Vec<Event>) -> Vec<Event> {
    let opts = nostr::filter::MatchEventOptions::new();
    let mut seen = BTreeSet::new();
    let mut out: Vec<Event> = candidates.into_iter().filter(|e| seen.insert(e.id) && filter.match_event(e, opts)).collect();
    out.sort_by(|a, b| nip01::newest_first(a.created_at.as_secs(), &a.id, b.created_at.as_secs(), &b.id));
    if let Some(limit) = filter.limit {
        out.truncate(limit);
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind, Tag, TagKind, Timestamp};

    fn event(keys: &Keys, kind: u16, tags: Vec<Tag>, at: u64) -> Event {
        EventBuilder::new(Kind::from(kind), "x").tags(tags).custom_created_at(Timestamp::from(at)).sign_with_keys(keys).unwrap()
    }

    fn tag(name: &str, value: &str) -> Tag {
        Tag::custom(TagKind::custom(name), [value])
    }

    #[test]
    fn record_indexes_layer_tags_and_addressable_key() {
        let k = Keys::generate();
        let e = event(&k, 30617, vec![tag("d", "repo"), tag("a", "x"), tag("p", "ignored"), tag("a", "x")], 5);
        let r = Record::from_event(&e);
        assert_eq!(r.tags, vec!["d:repo".to_string(), "a:x".to_string()]);
        assert_eq!(r.addr, Some(format!("30617:{}:repo", k.public_key().to_hex())));
        assert_eq!(r.event().unwrap(), e);
        let note = event(&k, 1621, vec![tag("E", "root")], 5);
        assert_eq!(Record::from_event(&note).addr, None);
    }

    #[test]
    fn plan_prefers_ids_then_smallest_tag_set() {
        let f = Filter::new()
            .custom_tags(SingleLetterTag::from_char('a').unwrap(), ["1", "2"])
            .custom_tags(SingleLetterTag::from_char('E').unwrap(), ["3"]);
        assert_eq!(plan(&f), Plan::Tags(vec!["E:3".into()]));
        let f = Filter::new().kinds([Kind::from(30617u16), Kind::from(30618u16)]);
        assert_eq!(plan(&f), Plan::Kinds(vec![30617, 30618]));
        assert_eq!(plan(&Filter::new()), Plan::TimeRange { since: None, until: None });
    }

    #[test]
    fn record_matching_agrees_with_match_event() {
        let k = Keys::generate();
        let e = event(&k, 1621, vec![tag("a", "30617:x:y"), tag("E", "root"), tag("p", "someone")], 50);
        let r = Record::from_event(&e);
        let a = SingleLetterTag::from_char('a').unwrap();
        let p = SingleLetterTag::from_char('p').unwrap();
        let filters = [
            Filter::new(),
            Filter::new().kind(Kind::from(1621u16)),
            Filter::new().kind(Kind::from(1u16)),
            Filter::new().author(k.public_key()).since(Timestamp::from(50)).until(Timestamp::from(50)),
            Filter::new().since(Timestamp::from(51)),
            Filter::new().custom_tags(a, ["30617:x:y", "other"]),
            Filter::new().custom_tags(a, ["other"]),
            Filter::new().id(e.id).custom_tags(SingleLetterTag::from_char('E').unwrap(), ["root"]),
        ];
        let opts = nostr::filter::MatchEventOptions::new();
        for f in filters {
            assert_eq!(r.matches(&f), Some(f.match_event(&e, opts)), "{f:?}");
        }
        assert_eq!(r.matches(&Filter::new().custom_tags(p, ["someone"])), None);
    }

    #[test]
    fn created_at_beyond_safe_integers_is_rejected_alone() {
        let k = Keys::generate();
        assert!(Record::try_from_event(&event(&k, 1, vec![], MAX_CREATED_AT)).is_ok());
        for at in [MAX_CREATED_AT + 1, u64::MAX] {
            assert_eq!(Record::try_from_event(&event(&k, 1, vec![], at)), Err(CREATED_AT_OUT_OF_RANGE.to_string()));
        }
    }

    #[test]
    fn quota_failures_are_named() {
        let m = store_failure_message("save: commit", Some("QuotaExceededError"), "The quota has been exceeded.");
        assert!(m.starts_with("IndexedDB quota exceeded"), "{m}");
        let m = store_failure_message("save: commit", None, "DomException(QuotaExceededError)");
        assert!(m.starts_with("IndexedDB quota exceeded"), "{m}");
        assert_eq!(store_failure_message("save", Some("AbortError"), "x"), "save: AbortError: x");
        assert_eq!(store_failure_message("save", None, "x"), "save: x");
    }
}

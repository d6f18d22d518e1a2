//! NIP-34 kinds and tag helpers the engine relies on (SPEC §2).

use nostr::{Event, EventId, Kind};

/// Repository announcement.
pub const REPO_ANNOUNCEMENT: u16 = 30617;
/// Repository state.
pub const REPO_STATE: u16 = 30618;
/// Patch (root event).
pub const PATCH: u16 = 1617;
/// Pull request (root event).
pub const PULL_REQUEST: u16 = 1618;
/// Pull request update.
pub const PULL_REQUEST_UPDATE: u16 = 1619;
/// Issue (root event).
pub const ISSUE: u16 = 1621;
/// NIP-22 comment.
pub const COMMENT: u16 = 1111;

/// True for the root kinds whose threads are synced in layer 3.
pub fn is_root_kind(kind: Kind) -> bool {
    matches!(kind.as_u16(), PATCH | PULL_REQUEST | ISSUE)
}

/// True for addressable kinds (30000–39999): newest per `(kind, pubkey, d)` wins.
pub fn is_addressable(kind: Kind) -> bool {
    (30000..40000).contains(&kind.as_u16())
}

/// Values of every tag named `name` (all values after the name, flattened),
/// e.g. `["relays", "wss://a", "wss://b"]` gives both URLs.
pub fn tag_values<'a>(event: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    event
        .tags
        .iter()
        .filter_map(move |t| {
            let s = t.as_slice();
            (s.first().map(String::as_str) == Some(name)).then(|| s[1..].iter().map(String::as_str))
        })
        .flatten()
}

/// The first value of the first tag named `name`.
pub fn first_tag_value<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.tags.iter().find_map(|t| {
        let s = t.as_slice();
        (s.first().map(String::as_str) == Some(name)).then(|| s.get(1).map(String::as_str)).flatten()
    })
}

/// The single value (index 1) of each tag named `name` (for `a`, `e`, `q`, …).
pub fn tag_refs<'a>(event: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    event.tags.iter().filter_map(move |t| {
        let s = t.as_slice();
        (s.first().map(String::as_str) == Some(name)).then(|| s.get(1).map(String::as_str)).flatten()
    })
}

/// The `d` identifier of an addressable event ("" when absent, as NIP-01 says).
pub fn d_tag(event: &Event) -> &str {
    first_tag_value(event, "d").unwrap_or("")
}

/// `30617:<pubkey-hex>:<d>` of an announcement.
pub fn repo_address(event: &Event) -> String {
    format!("{}:{}:{}", REPO_ANNOUNCEMENT, event.pubkey.to_hex(), d_tag(event))
}

/// Parses a 64-hex event id from a tag value.
pub fn parse_event_id(value: &str) -> Option<EventId> {
    if value.len() == 64 {
        EventId::from_hex(value).ok()
    } else {
        None
    }
}

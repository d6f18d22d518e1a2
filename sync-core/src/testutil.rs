//! Event builders shared by unit tests.

use nostr::{Event, EventBuilder, Keys, Kind, Tag, Timestamp};

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid tag")
}

/// A 30617 announcement with `relays` and `maintainers`.
pub fn announcement(keys: &Keys, d: &str, relays: &[&str], maintainers: &[&str]) -> Event {
    announcement_full(keys, d, relays, maintainers, None, Timestamp::from(1_700_000_000))
}

/// A 30617 announcement at a given time.
pub fn announcement_at(keys: &Keys, d: &str, relays: &[&str], at: Timestamp) -> Event {
    announcement_full(keys, d, relays, &[], None, at)
}

/// A 30617 announcement with a clone URL.
pub fn announcement_with_clone(keys: &Keys, d: &str, relays: &[&str], clone: &str) -> Event {
    announcement_full(keys, d, relays, &[], Some(clone), Timestamp::from(1_700_000_000))
}

fn announcement_full(keys: &Keys, d: &str, relays: &[&str], maintainers: &[&str], clone: Option<&str>, at: Timestamp) -> Event {
    let mut tags = vec![tag(&["d", d]), tag(&["name", d])];
    let mut r = vec!["relays"];
    r.extend_from_slice(relays);
    tags.push(tag(&r));
    if !maintainers.is_empty() {
        let mut m = vec!["maintainers"];
        m.extend_from_slice(maintainers);
        tags.push(tag(&m));
    }
    if let Some(c) = clone {
        tags.push(tag(&["clone", c]));
    }
    EventBuilder::new(Kind::Custom(30617), "").tags(tags).custom_created_at(at).sign_with_keys(keys).expect("sign")
}

/// A 30618 repository state.
pub fn repo_state(keys: &Keys, d: &str) -> Event {
    EventBuilder::new(Kind::Custom(30618), "").tags([tag(&["d", d])]).sign_with_keys(keys).expect("sign")
}

/// An event of `kind` with one tag `[name, value]`.
pub fn tagged(keys: &Keys, kind: u16, name: &str, value: &str) -> Event {
    tagged_at(keys, kind, name, value, Timestamp::from(1_700_000_100))
}

/// An event of `kind` with one tag `[name, value]` at a given time.
pub fn tagged_at(keys: &Keys, kind: u16, name: &str, value: &str, at: Timestamp) -> Event {
    let t = tag(&[name, value]);
    EventBuilder::new(Kind::Custom(kind), format!("{kind} {value}")).tags([t]).custom_created_at(at).sign_with_keys(keys).expect("sign")
}

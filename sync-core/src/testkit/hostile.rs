//! Hostile relay behaviour for tests: junk events that match a filter but do
//! not verify, and negentropy messages that never let a session end.

use nostr::secp256k1::schnorr::Signature;
use nostr::{Event, EventId, Filter, Keys, Kind, Tag, TagKind, Tags, Timestamp};

/// `n` events matching `filter` (its first kind, its first tag value) with a
/// correct id but a signature that does not verify, dated below `until`.
pub fn junk_matching(filter: &Filter, until: Timestamp, n: usize, salt: u64) -> Vec<Event> {
    let kind = filter.kinds.as_ref().and_then(|k| k.iter().next().copied()).unwrap_or(Kind::Custom(1111));
    let tag = filter.generic_tags.iter().next().and_then(|(name, values)| {
        let value = values.iter().next()?;
        Some(Tag::custom(TagKind::Custom(name.to_string().into()), [value.clone()]))
    });
    let keys = Keys::parse("0000000000000000000000000000000000000000000000000000000000000001").expect("valid key");
    let sig = Signature::from_slice(&[7u8; 64]).expect("64 bytes");
    (0..n)
        .map(|i| {
            let created_at = Timestamp::from(until.as_secs().saturating_sub(i as u64 / 2));
            let tags = Tags::from_list(tag.iter().cloned().collect());
            let content = format!("junk {salt} {i}");
            let id = EventId::new(&keys.public_key(), &created_at, &kind, &tags, &content);
            Event::new(id, keys.public_key(), created_at, kind, tags, content, sig)
        })
        .collect()
}

/// A NEG-MSG (hex) that reports `ids` fresh ids the client lacks below
/// timestamp 1000 and a fingerprint mismatch above it, so the client always
/// has to answer: a session that never ends and keeps reporting ids.
pub fn endless_negentropy_message(round: u64, ids: usize) -> String {
    let mut out = vec![0x61u8]; // protocol version 1
                                // range 1: up to timestamp 1000, id list
    varint(&mut out, 1001);
    varint(&mut out, 0);
    varint(&mut out, 2);
    varint(&mut out, ids as u64);
    for i in 0..ids as u64 {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&round.to_be_bytes());
        id[8..16].copy_from_slice(&i.to_be_bytes());
        id[31] = 0x5a;
        out.extend_from_slice(&id);
    }
    // range 2: up to infinity, a fingerprint that never matches
    varint(&mut out, 0);
    varint(&mut out, 0);
    varint(&mut out, 1);
    let mut fp = [0xeeu8; 16];
    fp[..8].copy_from_slice(&round.to_be_bytes());
    out.extend_from_slice(&fp);
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    let mut groups = vec![(n & 0x7f) as u8];
    n >>= 7;
    while n > 0 {
        groups.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.extend(groups.iter().rev());
}

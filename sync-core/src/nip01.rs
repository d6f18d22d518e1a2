//! The NIP-01 replacement rule, written once.
//!
//! Of two versions of one replaceable (`kind:pubkey`) or addressable
//! (`kind:pubkey:d`) event, the one with the newer `created_at` wins; on equal
//! `created_at` the one with the lowest id (first in lexical order) wins.
//! Queries list events in the same order: newest first, then lowest id. The
//! stores, the repository index and the front ends all decide with these
//! functions, so they cannot disagree about which version is current.
//!
//! Ids are compared as given: [`nostr::EventId`]s by their 32 bytes, or the
//! browser store's lowercase hex strings, which order the same way (equal
//! length, and `0-9` sort before `a-f` as the nibbles do).

use core::cmp::Ordering;

/// NIP-01 order of two events: newer `created_at` first, then lower id first.
/// Sorting with it puts the winning version of a replaceable event first.
pub fn newest_first<I: Ord + ?Sized>(a_created_at: u64, a_id: &I, b_created_at: u64, b_id: &I) -> Ordering {
    b_created_at.cmp(&a_created_at).then_with(|| a_id.cmp(b_id))
}

/// Does the version `(new_created_at, new_id)` replace the stored
/// `(old_created_at, old_id)`? Newer wins; on equal `created_at` the lower id
/// wins; the same event does not replace itself.
pub fn replaces<I: Ord + ?Sized>(new_created_at: u64, new_id: &I, old_created_at: u64, old_id: &I) -> bool {
    newest_first(new_created_at, new_id, old_created_at, old_id) == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::EventId;

    #[test]
    fn newer_wins_then_lowest_id() {
        let (low, high) = (EventId::from_byte_array([1; 32]), EventId::from_byte_array([2; 32]));
        assert!(replaces(2, &high, 1, &low), "newer wins whatever its id");
        assert!(!replaces(1, &low, 2, &high), "older loses whatever its id");
        assert!(replaces(1, &low, 1, &high), "a tie goes to the lowest id");
        assert!(!replaces(1, &high, 1, &low));
        assert!(!replaces(1, &low, 1, &low), "an event does not replace itself");
    }

    #[test]
    fn hex_ids_order_like_their_bytes() {
        let ids: Vec<EventId> = [[0x0f; 32], [0xa0; 32], [0x10; 32], [0xff; 32], [0x9a; 32]].map(EventId::from_byte_array).to_vec();
        for a in &ids {
            for b in &ids {
                assert_eq!(replaces(5, a, 5, b), replaces(5, a.to_hex().as_str(), 5, b.to_hex().as_str()), "{a} {b}");
            }
        }
    }

    #[test]
    fn sorting_puts_the_winner_first() {
        let mut v = vec![(1, "b"), (3, "c"), (3, "a"), (2, "a")];
        v.sort_by(|a, b| newest_first(a.0, a.1, b.0, b.1));
        assert_eq!(v, [(3, "a"), (3, "c"), (2, "a"), (1, "b")]);
        assert!(v.windows(2).all(|w| !replaces(w[1].0, w[1].1, w[0].0, w[0].1)));
    }
}

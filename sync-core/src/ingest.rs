//! Dedup and rejection memory in front of verification.
//!
//! Every relay sends the same events: ids already seen skip verification, and
//! rejected ids are remembered so they are not downloaded and verified again
//! (SPEC §4). A rejection is only cached after the id was checked against the
//! content, so a hostile relay cannot poison the cache with someone else's id.
//! Conditional rejections expire when the accepted set grows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

use nostr::EventId;

use crate::policy::Rejection;
use crate::time::Millis;

/// A set that forgets its oldest members beyond `capacity`.
#[derive(Debug, Clone)]
pub struct BoundedSet<T: Hash + Eq + Clone> {
    set: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Hash + Eq + Clone> BoundedSet<T> {
    /// An empty set holding at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self { set: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Inserts; true when new.
    pub fn insert(&mut self, item: T) -> bool {
        if !self.set.insert(item.clone()) {
            return false;
        }
        self.order.push_back(item);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Membership.
    pub fn contains(&self, item: &T) -> bool {
        self.set.contains(item)
    }

    /// Removes an item (it may linger in the order queue harmlessly).
    pub fn remove(&mut self, item: &T) {
        self.set.remove(item);
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Millis,
    /// `None` for permanent rejections, else the acceptance generation it was made in.
    generation: Option<u64>,
}

/// Remembered rejections, with expiry and a capacity.
#[derive(Debug, Clone)]
pub struct RejectionCache {
    entries: HashMap<EventId, Entry>,
    order: VecDeque<EventId>,
    capacity: usize,
    generation: u64,
}

impl RejectionCache {
    /// An empty cache.
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), generation: 0 }
    }

    /// Remembers a rejection until `expires`.
    pub fn insert(&mut self, id: EventId, kind: Rejection, expires: Millis) {
        let generation = match kind {
            Rejection::Permanent => None,
            Rejection::Conditional => Some(self.generation),
        };
        if self.entries.insert(id, Entry { expires, generation }).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    /// Is `id` a remembered, still valid rejection?
    pub fn contains(&self, id: &EventId, now: Millis) -> bool {
        match self.entries.get(id) {
            Some(e) => now < e.expires && e.generation.is_none_or(|g| g == self.generation),
            None => false,
        }
    }

    /// The accepted set grew: conditional rejections are no longer trustworthy.
    pub fn accepted_set_grew(&mut self) {
        self.generation += 1;
    }

    /// Entries held (including stale ones not yet evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> EventId {
        EventId::from_byte_array([b; 32])
    }

    #[test]
    fn bounded_set_forgets_oldest() {
        let mut s = BoundedSet::new(2);
        assert!(s.insert(1));
        assert!(!s.insert(1));
        s.insert(2);
        s.insert(3);
        assert!(!s.contains(&1));
        assert!(s.contains(&2) && s.contains(&3));
    }

    #[test]
    fn rejections_expire_and_conditional_ones_reset_on_growth() {
        let mut c = RejectionCache::new(10);
        c.insert(id(1), Rejection::Permanent, Millis(100));
        c.insert(id(2), Rejection::Conditional, Millis(100));
        assert!(c.contains(&id(1), Millis(50)) && c.contains(&id(2), Millis(50)));
        assert!(!c.contains(&id(1), Millis(100)));
        c.accepted_set_grew();
        assert!(c.contains(&id(1), Millis(50)));
        assert!(!c.contains(&id(2), Millis(50)));
    }

    #[test]
    fn rejection_capacity_is_bounded() {
        let mut c = RejectionCache::new(3);
        for b in 0..10 {
            c.insert(id(b), Rejection::Permanent, Millis(1000));
        }
        assert_eq!(c.len(), 3);
        assert!(c.contains(&id(9), Millis(0)));
        assert!(!c.contains(&id(0), Millis(0)));
    }
}

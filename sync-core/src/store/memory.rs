//! An in-memory [`EventStore`]: the reference semantics (verified events by
//! id, addressable replacement, negentropy items per filter) for tests, the
//! simulation and short-lived tools.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::{self, LocalBoxFuture};
use nostr::filter::MatchEventOptions;
use nostr::{Event, EventId, Filter, Kind, PublicKey};

use crate::runtime::{EventStore, NegentropyItem, SaveOutcome, StoreError};
use crate::{nip01, nip34};

#[derive(Default)]
struct Inner {
    events: HashMap<EventId, Event>,
    addressable: HashMap<(Kind, PublicKey, String), EventId>,
    saved_count: HashMap<EventId, u32>,
    state: Option<Vec<u8>>,
    closed: bool,
    /// Saves fail (like a full disk) while reads work (tests).
    full: bool,
    /// A save containing one of these fails as a whole (an event the store cannot hold; tests).
    unsaveable: std::collections::HashSet<EventId>,
}

/// Events in a hash map behind a mutex.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Saves synchronously (the async trait method wraps this).
    pub fn save_sync(&self, events: Vec<Event>) -> Result<Vec<SaveOutcome>, StoreError> {
        let mut inner = self.lock()?;
        if inner.full {
            return Err(StoreError("no space left on device".into()));
        }
        if let Some(bad) = events.iter().find(|e| inner.unsaveable.contains(&e.id)) {
            return Err(StoreError(format!("cannot store event {}", bad.id)));
        }
        Ok(events.into_iter().map(|e| inner.save_one(e)).collect())
    }

    /// Matching events, newest first, honouring `limit`.
    pub fn query_sync(&self, filter: &Filter) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock()?;
        let opts = MatchEventOptions::new();
        let mut out: Vec<Event> = inner.events.values().filter(|e| filter.match_event(e, opts)).cloned().collect();
        out.sort_by(|a, b| nip01::newest_first(a.created_at.as_secs(), &a.id, b.created_at.as_secs(), &b.id));
        if let Some(limit) = filter.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// `(id, created_at)` of matching events.
    pub fn negentropy_items_sync(&self, filter: &Filter) -> Result<Vec<NegentropyItem>, StoreError> {
        let mut f = filter.clone();
        f.limit = None;
        Ok(self.query_sync(&f)?.into_iter().map(|e| (e.id, e.created_at)).collect())
    }

    /// Every stored event.
    pub fn all(&self) -> Vec<Event> {
        self.lock().map(|i| i.events.values().cloned().collect()).unwrap_or_default()
    }

    /// How many times `id` was newly saved (1 for "exactly once").
    pub fn saved_count(&self, id: &EventId) -> u32 {
        self.lock().map(|i| i.saved_count.get(id).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Number of stored events.
    pub fn len(&self) -> usize {
        self.lock().map(|i| i.events.len()).unwrap_or(0)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every later call fail, like a closed database (for tests).
    pub fn close(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.closed = true;
        }
    }

    /// Saves fail (`true`) or work again (`false`); reads keep working (tests).
    pub fn set_full(&self, full: bool) {
        if let Ok(mut i) = self.inner.lock() {
            i.full = full;
        }
    }

    /// Any save containing `id` fails as a whole (tests).
    pub fn refuse_to_save(&self, id: EventId) {
        if let Ok(mut i) = self.inner.lock() {
            i.unsaveable.insert(id);
        }
    }

    /// Re-opens after `close`.
    pub fn reopen(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.closed = false;
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        let guard = self.inner.lock().map_err(|_| StoreError("memory store poisoned".into()))?;
        if guard.closed {
            return Err(StoreError("store is closed".into()));
        }
        Ok(guard)
    }
}

impl Inner {
    fn save_one(&mut self, event: Event) -> SaveOutcome {
        if self.events.contains_key(&event.id) {
            return SaveOutcome::Duplicate;
        }
        if nip34::is_addressable(event.kind) {
            let key = (event.kind, event.pubkey, nip34::d_tag(&event).to_string());
            if let Some(old_id) = self.addressable.get(&key).copied() {
                let old = &self.events[&old_id];
                if !nip01::replaces(event.created_at.as_secs(), &event.id, old.created_at.as_secs(), &old.id) {
                    return SaveOutcome::Stale;
                }
                self.events.remove(&old_id);
            }
            self.addressable.insert(key, event.id);
        }
        *self.saved_count.entry(event.id).or_default() += 1;
        self.events.insert(event.id, event);
        SaveOutcome::Saved
    }
}

impl EventStore for MemoryStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        Box::pin(future::ready(self.save_sync(events)))
    }

    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>> {
        Box::pin(future::ready(self.negentropy_items_sync(&filter)))
    }

    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>> {
        Box::pin(future::ready(self.query_sync(&filter)))
    }

    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(future::ready(self.lock().map(|i| i.state.clone())))
    }

    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>> {
        Box::pin(future::ready(self.lock().map(|mut i| i.state = Some(state))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use nostr::{Keys, Timestamp};

    #[test]
    fn duplicate_and_addressable_replacement() {
        let k = Keys::generate();
        let s = MemoryStore::new();
        let old = announcement_at(&k, "r", &["wss://a.example.com"], Timestamp::from(100));
        let new = announcement_at(&k, "r", &["wss://b.example.com"], Timestamp::from(200));
        assert_eq!(s.save_sync(vec![old.clone()]).unwrap(), vec![SaveOutcome::Saved]);
        assert_eq!(s.save_sync(vec![old.clone()]).unwrap(), vec![SaveOutcome::Duplicate]);
        assert_eq!(s.save_sync(vec![new.clone()]).unwrap(), vec![SaveOutcome::Saved]);
        assert_eq!(s.save_sync(vec![old.clone()]).unwrap(), vec![SaveOutcome::Stale]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.all()[0].id, new.id);
    }

    #[test]
    fn query_by_tag_and_negentropy_items() {
        let k = Keys::generate();
        let s = MemoryStore::new();
        let a = tagged(&k, 1617, "a", "30617:x:y");
        let b = tagged(&k, 1621, "a", "30617:x:z");
        s.save_sync(vec![a.clone(), b]).unwrap();
        let f = crate::filters::BatchItems::Repos(vec!["30617:x:y".into()]).filters().remove(0);
        assert_eq!(s.query_sync(&f).unwrap().len(), 1);
        assert_eq!(s.negentropy_items_sync(&f).unwrap(), vec![(a.id, a.created_at)]);
    }

    #[test]
    fn closed_store_gives_clear_error() {
        let s = MemoryStore::new();
        s.close();
        assert_eq!(s.save_sync(vec![]).unwrap_err().to_string(), "store error: store is closed");
    }
}

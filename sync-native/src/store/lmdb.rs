//! The embedded store: verified events in LMDB (`nostr-lmdb`, the rust-nostr
//! LMDB backend, which already implements addressable replacement and indexed
//! negentropy/filter queries) plus the sync-state file, both in the data
//! directory. Each LMDB write transaction is committed (and synced) before
//! the engine hears `Saved`, so an event counted as saved survives SIGKILL.

use std::path::Path;
use std::sync::Arc;

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use nostr::{Event, Filter};
use nostr_database::{NostrDatabase, RejectedReason, SaveEventStatus};
use nostr_lmdb::NostrLMDB;
use nostr_relay_builder::LocalRelay;
use sync_core::{EventStore, NegentropyItem, SaveOutcome, StoreError};

use super::state_file::StateFile;
use super::OpenError;

/// Sub-directory of the data directory holding the LMDB environment.
pub const LMDB_DIR: &str = "events.lmdb";

/// LMDB events + state file.
pub struct LmdbStore {
    db: Arc<NostrLMDB>,
    state: StateFile,
    live: Option<LocalRelay>,
}

impl LmdbStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::DataDir { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(LMDB_DIR);
        let db = NostrLMDB::open(&path).map_err(|source| OpenError::Lmdb { path: path.display().to_string(), source })?;
        Ok(Self { db: Arc::new(db), state: StateFile::new(data_dir), live: None })
    }

    /// The database, shared with the served relay.
    pub fn database(&self) -> Arc<NostrLMDB> {
        Arc::clone(&self.db)
    }

    /// Newly saved events are pushed to this relay's live subscribers.
    pub fn notify_relay(&mut self, relay: LocalRelay) {
        self.live = Some(relay);
    }
}

/// Maps `nostr-database`'s answer to the engine's vocabulary.
fn outcome(status: SaveEventStatus) -> SaveOutcome {
    match status {
        SaveEventStatus::Success => SaveOutcome::Saved,
        SaveEventStatus::Rejected(RejectedReason::Duplicate) => SaveOutcome::Duplicate,
        SaveEventStatus::Rejected(RejectedReason::Replaced) => SaveOutcome::Stale,
        SaveEventStatus::Rejected(RejectedReason::Deleted) => SaveOutcome::Rejected("deleted".into()),
        SaveEventStatus::Rejected(RejectedReason::Expired) => SaveOutcome::Rejected("expired".into()),
        SaveEventStatus::Rejected(RejectedReason::Ephemeral) => SaveOutcome::Rejected("ephemeral".into()),
        SaveEventStatus::Rejected(RejectedReason::InvalidDelete) => SaveOutcome::Rejected("invalid_delete".into()),
        SaveEventStatus::Rejected(RejectedReason::Other) => SaveOutcome::Rejected("other".into()),
    }
}

impl EventStore for LmdbStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        async move {
            // All saves are queued before any is awaited, so the LMDB ingester
            // commits them in one transaction.
            let results = join_all(events.iter().map(|e| self.db.save_event(e))).await;
            let mut out = Vec::with_capacity(events.len());
            for result in results {
                let o = outcome(result.map_err(|e| StoreError(e.to_string()))?);
                out.push(o);
            }
            if let Some(relay) = &self.live {
                for (event, o) in events.into_iter().zip(&out) {
                    if *o == SaveOutcome::Saved {
                        relay.notify_event(event);
                    }
                }
            }
            Ok(out)
        }
        .boxed_local()
    }

    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>> {
        async move { self.db.negentropy_items(filter).await.map_err(|e| StoreError(e.to_string())) }.boxed_local()
    }

    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>> {
        async move { self.db.query(filter).await.map(|events| events.into_iter().collect()).map_err(|e| StoreError(e.to_string())) }
            .boxed_local()
    }

    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let file = self.state.clone();
        async move {
            tokio::task::spawn_blocking(move || file.load_usable())
                .await
                .map_err(|e| StoreError(e.to_string()))?
                .map_err(|e| StoreError(format!("reading {}: {e}", STATE_NAME)))
        }
        .boxed_local()
    }

    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>> {
        let file = self.state.clone();
        async move {
            tokio::task::spawn_blocking(move || file.store(&state))
                .await
                .map_err(|e| StoreError(e.to_string()))?
                .map_err(|e| StoreError(format!("writing {}: {e}", STATE_NAME)))
        }
        .boxed_local()
    }
}

const STATE_NAME: &str = super::state_file::STATE_FILE;

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind, Tag, Timestamp};

    fn run<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(f)
    }

    fn announcement(keys: &Keys, at: u64) -> Event {
        EventBuilder::new(Kind::Custom(30617), "")
            .tags([Tag::identifier("repo")])
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .unwrap()
    }

    #[test]
    fn saves_dedups_replaces_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::generate();
        let old = announcement(&keys, 100);
        let new = announcement(&keys, 200);
        let note = EventBuilder::text_note("hi").sign_with_keys(&keys).unwrap();
        let state = sync_core::state::SyncState { version: sync_core::state::STATE_VERSION, ..Default::default() }.to_bytes();
        run(async {
            let store = LmdbStore::open(dir.path()).unwrap();
            let out = store.save(vec![old.clone(), note.clone(), note.clone()]).await.unwrap();
            assert_eq!(out, vec![SaveOutcome::Saved, SaveOutcome::Saved, SaveOutcome::Duplicate]);
            assert_eq!(store.save(vec![new.clone(), old.clone()]).await.unwrap(), vec![SaveOutcome::Saved, SaveOutcome::Stale]);
            store.save_state(state.clone()).await.unwrap();
        });
        run(async {
            let store = LmdbStore::open(dir.path()).unwrap();
            let all = store.query(Filter::new()).await.unwrap();
            let mut ids: Vec<_> = all.iter().map(|e| e.id).collect();
            ids.sort();
            let mut want = vec![new.id, note.id];
            want.sort();
            assert_eq!(ids, want);
            let items = store.negentropy_items(Filter::new().kind(Kind::Custom(30617))).await.unwrap();
            assert_eq!(items, vec![(new.id, new.created_at)]);
            assert_eq!(store.load_state().await.unwrap(), Some(state.clone()));
        });
    }
}

//! The IndexedDB [`EventStore`]: events keyed by id with indexes for kind,
//! author, `created_at`, the layer tags (multi-entry) and the addressable
//! key; one read-write transaction per saved batch; the engine's sync state
//! in a small `meta` store so a reload resumes instead of restarting.
//!
//! Semantics match sync-core's `MemoryStore` (the reference): duplicates by
//! id, addressable kinds keep only the newest per `(kind, pubkey, d)`.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use indexed_db_futures::database::Database;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::TransactionMode;
use indexed_db_futures::KeyPath;
use js_sys::Uint8Array;
use nostr::{Event, EventId, Filter, Timestamp};
use sync_core::{EventStore, NegentropyItem, SaveOutcome, StoreError};
use wasm_bindgen::{JsCast, JsValue};

use crate::record::{self, Plan, Record};

/// Schema version; bump with an upgrade step when stores or indexes change.
const DB_VERSION: u32 = 1;

fn err(context: &str, e: impl core::fmt::Display) -> StoreError {
    StoreError(format!("{context}: {e}"))
}

/// An open IndexedDB database. Cheap to clone (shared connection).
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Inner>,
}

struct Inner {
    name: String,
    db: Database,
    closed: Cell<bool>,
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`.
    pub async fn open(name: &str) -> Result<Self, StoreError> {
        let db = Database::open(name)
            .with_version(DB_VERSION)
            .with_on_upgrade_needed(|_event, db| {
                let names: Vec<String> = db.object_store_names().collect();
                if !names.iter().any(|n| n == record::EVENTS) {
                    let store = db.create_object_store(record::EVENTS).with_key_path(KeyPath::One("id")).build()?;
                    store.create_index(record::IDX_KIND, KeyPath::One("kind")).build()?;
                    store.create_index(record::IDX_PUBKEY, KeyPath::One("pubkey")).build()?;
                    store.create_index(record::IDX_CREATED_AT, KeyPath::One("created_at")).build()?;
                    store.create_index(record::IDX_TAGS, KeyPath::One("tags")).with_multi_entry(true).build()?;
                    store.create_index(record::IDX_ADDR, KeyPath::One("addr")).build()?;
                }
                if !names.iter().any(|n| n == record::META) {
                    db.create_object_store(record::META).build()?;
                }
                Ok(())
            })
            .await
            .map_err(|e| err(&format!("cannot open IndexedDB database `{name}`"), e))?;
        Ok(Self { inner: Rc::new(Inner { name: name.to_string(), db, closed: Cell::new(false) }) })
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Closes the connection; every later call fails with a clear error.
    pub fn close(&self) {
        if !self.inner.closed.replace(true) {
            self.inner.db.clone().close();
        }
    }

    /// True after [`IdbStore::close`].
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    fn db(&self) -> Result<&Database, StoreError> {
        if self.inner.closed.get() {
            return Err(StoreError(format!("IndexedDB database `{}` is closed", self.inner.name)));
        }
        Ok(&self.inner.db)
    }

    /// Saves a batch in one read-write transaction; one outcome per event.
    pub async fn save_events(&self, events: Vec<Event>) -> Result<Vec<SaveOutcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db()?;
        let tx = db.transaction(record::EVENTS).with_mode(TransactionMode::Readwrite).build().map_err(|e| err("save: transaction", e))?;
        let store = tx.object_store(record::EVENTS).map_err(|e| err("save: object store", e))?;
        let addr_index = store.index(record::IDX_ADDR).map_err(|e| err("save: addr index", e))?;
        let records: Vec<Record> = events.iter().map(Record::from_event).collect();

        // 1. what is already there: all lookups go out at once
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
        let addrs: Vec<&str> = records.iter().filter_map(|r| r.addr.as_deref()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut id_lookups = Vec::with_capacity(ids.len());
        for id in &ids {
            id_lookups.push(store.count().with_query(*id).primitive().map_err(|e| err("save: lookup", e))?);
        }
        let mut addr_lookups = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            addr_lookups.push(addr_index.get_all::<JsValue>().with_query(*addr).primitive().map_err(|e| err("save: lookup", e))?);
        }
        let mut existing: BTreeSet<String> = BTreeSet::new();
        for (id, n) in ids.iter().zip(join_all(id_lookups).await) {
            if n.map_err(|e| err("save: lookup", e))? > 0 {
                existing.insert(id.to_string());
            }
        }
        // addressable key → (created_at, id) of the current winner, plus stored losers to delete
        let mut winners: HashMap<String, (u64, String)> = HashMap::new();
        let mut to_delete: Vec<String> = Vec::new();
        for (addr, found) in addrs.iter().zip(join_all(addr_lookups).await) {
            let found = found.map_err(|e| err("save: lookup", e))?;
            let mut best: Option<(u64, String)> = None;
            for value in found {
                let rec: Record = from_js(value.map_err(|e| err("save: lookup", e))?)?;
                match &best {
                    Some((at, id)) if !record::replaces(rec.created_at, &rec.id, *at, id) => to_delete.push(rec.id),
                    _ => {
                        if let Some((_, old)) = best.replace((rec.created_at, rec.id)) {
                            to_delete.push(old);
                        }
                    }
                }
            }
            if let Some(b) = best {
                winners.insert(addr.to_string(), b);
            }
        }

        // 2. decide, in batch order
        let mut outcomes = Vec::with_capacity(records.len());
        let mut to_put: HashMap<String, Record> = HashMap::new();
        for rec in records {
            if existing.contains(&rec.id) {
                outcomes.push(SaveOutcome::Duplicate);
                continue;
            }
            if let Some(addr) = rec.addr.clone() {
                if let Some((at, id)) = winners.get(&addr) {
                    if !record::replaces(rec.created_at, &rec.id, *at, id) {
                        outcomes.push(SaveOutcome::Stale);
                        continue;
                    }
                    // the old winner goes: from the database, or from this batch
                    if to_put.remove(id).is_none() {
                        to_delete.push(id.clone());
                    }
                }
                winners.insert(addr, (rec.created_at, rec.id.clone()));
            }
            existing.insert(rec.id.clone());
            to_put.insert(rec.id.clone(), rec);
            outcomes.push(SaveOutcome::Saved);
        }

        // 3. write
        let mut writes = Vec::with_capacity(to_delete.len() + to_put.len());
        for id in &to_delete {
            writes.push(store.delete(id.as_str()).primitive().map_err(|e| err("save: delete", e))?.boxed_local());
        }
        for rec in to_put.values() {
            let value = to_js(rec)?;
            writes.push(store.put(value).primitive().map_err(|e| err("save: put", e))?.boxed_local());
        }
        for w in join_all(writes).await {
            w.map_err(|e| err("save: write", e))?;
        }
        tx.commit().await.map_err(|e| err("save: commit", e))?;
        Ok(outcomes)
    }

    /// Stored events matching `filter`, newest first, honouring `limit`.
    pub async fn query_events(&self, filter: &Filter) -> Result<Vec<Event>, StoreError> {
        let records = self.candidates(filter).await?;
        // only records that may match are parsed
        let events = records
            .iter()
            .filter(|r| r.matches(filter) != Some(false))
            .map(|r| r.event().map_err(StoreError))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(record::finish(filter, events))
    }

    /// Number of stored events matching `filter` (`limit` honoured).
    pub async fn count_events(&self, filter: &Filter) -> Result<usize, StoreError> {
        Ok(self.query_events(filter).await?.len())
    }

    /// Records the plan's index lookups return (a superset of the matches).
    async fn candidates(&self, filter: &Filter) -> Result<Vec<Record>, StoreError> {
        let db = self.db()?;
        let tx = db.transaction(record::EVENTS).build().map_err(|e| err("query: transaction", e))?;
        let store = tx.object_store(record::EVENTS).map_err(|e| err("query: object store", e))?;
        let mut values: Vec<JsValue> = Vec::new();
        match record::plan(filter) {
            Plan::Ids(ids) => {
                let mut reqs = Vec::new();
                for id in &ids {
                    reqs.push(store.get::<JsValue, _, _>(id.as_str()).primitive().map_err(|e| err("query: get", e))?);
                }
                for r in join_all(reqs).await {
                    if let Some(v) = r.map_err(|e| err("query: get", e))? {
                        values.push(v);
                    }
                }
            }
            Plan::Tags(keys) => values = index_lookup(&store, record::IDX_TAGS, keys.into_iter().map(JsValue::from).collect()).await?,
            Plan::Authors(keys) => values = index_lookup(&store, record::IDX_PUBKEY, keys.into_iter().map(JsValue::from).collect()).await?,
            Plan::Kinds(kinds) => values = index_lookup(&store, record::IDX_KIND, kinds.into_iter().map(JsValue::from).collect()).await?,
            Plan::TimeRange { since, until } => {
                let index = store.index(record::IDX_CREATED_AT).map_err(|e| err("query: index", e))?;
                let lo = since.unwrap_or(0) as f64;
                let hi = until.map(|u| u as f64).unwrap_or(f64::MAX);
                let found = index.get_all::<JsValue>().with_query(lo..=hi).primitive().map_err(|e| err("query: index", e))?.await;
                for v in found.map_err(|e| err("query: index", e))? {
                    values.push(v.map_err(|e| err("query: index", e))?);
                }
            }
        }
        drop(tx); // read-only: nothing to commit
        values.into_iter().map(from_js).collect()
    }

    /// `(id, created_at)` of every stored event matching `filter` (no limit).
    /// Decided from the indexed fields when possible, without parsing events.
    pub async fn negentropy_items_for(&self, filter: &Filter) -> Result<Vec<NegentropyItem>, StoreError> {
        let mut f = filter.clone();
        f.limit = None;
        let opts = nostr::filter::MatchEventOptions::new();
        let mut seen = BTreeSet::new();
        let mut items = Vec::new();
        for r in self.candidates(&f).await? {
            let item = match r.matches(&f) {
                Some(false) => continue,
                Some(true) => {
                    let id = EventId::from_hex(&r.id).map_err(|e| err("stored event id", e))?;
                    (id, Timestamp::from(r.created_at))
                }
                None => {
                    let e = r.event().map_err(StoreError)?;
                    if !f.match_event(&e, opts) {
                        continue;
                    }
                    (e.id, e.created_at)
                }
            };
            if seen.insert(item.0) {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// The persisted sync state.
    pub async fn load_sync_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let tx = db.transaction(record::META).build().map_err(|e| err("load state", e))?;
        let store = tx.object_store(record::META).map_err(|e| err("load state", e))?;
        let value: Option<JsValue> = store
            .get::<JsValue, _, _>(record::STATE_KEY)
            .primitive()
            .map_err(|e| err("load state", e))?
            .await
            .map_err(|e| err("load state", e))?;
        Ok(value.and_then(|v| v.dyn_into::<Uint8Array>().ok()).map(|a| a.to_vec()))
    }

    /// Replaces the persisted sync state.
    pub async fn save_sync_state(&self, state: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db.transaction(record::META).with_mode(TransactionMode::Readwrite).build().map_err(|e| err("save state", e))?;
        let store = tx.object_store(record::META).map_err(|e| err("save state", e))?;
        let value: JsValue = Uint8Array::from(state).into();
        store
            .put(value)
            .with_key(record::STATE_KEY)
            .primitive()
            .map_err(|e| err("save state", e))?
            .await
            .map_err(|e| err("save state", e))?;
        tx.commit().await.map_err(|e| err("save state: commit", e))
    }

    /// Number of stored events (all of them).
    pub async fn count_all(&self) -> Result<u32, StoreError> {
        let db = self.db()?;
        let tx = db.transaction(record::EVENTS).build().map_err(|e| err("count", e))?;
        let store = tx.object_store(record::EVENTS).map_err(|e| err("count", e))?;
        let n = store.count().primitive().map_err(|e| err("count", e))?.await.map_err(|e| err("count", e))?;
        Ok(n)
    }
}

/// `getAll` on index `name` for each key, all requests in flight at once.
async fn index_lookup(store: &ObjectStore<'_>, name: &str, keys: Vec<JsValue>) -> Result<Vec<JsValue>, StoreError> {
    let index = store.index(name).map_err(|e| err("query: index", e))?;
    let mut reqs = Vec::with_capacity(keys.len());
    for key in keys {
        reqs.push(index.get_all::<JsValue>().with_query(key).primitive().map_err(|e| err("query: index", e))?);
    }
    let mut values = Vec::new();
    for r in join_all(reqs).await {
        for v in r.map_err(|e| err("query: index", e))? {
            values.push(v.map_err(|e| err("query: index", e))?);
        }
    }
    Ok(values)
}

fn to_js(rec: &Record) -> Result<JsValue, StoreError> {
    serde_wasm_bindgen::to_value(rec).map_err(|e| err("encode record", e))
}

fn from_js(value: JsValue) -> Result<Record, StoreError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| err("decode record", e))
}

impl EventStore for IdbStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        self.save_events(events).boxed_local()
    }

    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>> {
        async move { self.negentropy_items_for(&filter).await }.boxed_local()
    }

    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>> {
        async move { self.query_events(&filter).await }.boxed_local()
    }

    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        self.load_sync_state().boxed_local()
    }

    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>> {
        async move { self.save_sync_state(&state).await }.boxed_local()
    }
}

//! The IndexedDB [`EventStore`]: events keyed by id with indexes for kind,
//! author, `created_at`, the layer tags (multi-entry) and the addressable
//! key; one read-write transaction per saved batch; the engine's sync state
//! in a small `meta` store so a reload resumes instead of restarting.
//!
//! Semantics match sync-core's `MemoryStore` (the reference): duplicates by
//! id, addressable kinds keep only the newest per `(kind, pubkey, d)`.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use futures::future::{join_all, LocalBoxFuture};
use futures::FutureExt;
use indexed_db_futures::database::Database;
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{TransactionDurability, TransactionMode, TransactionOptions};
use indexed_db_futures::KeyPath;
use js_sys::Uint8Array;
use nostr::{Event, EventId, Filter, Timestamp};
use sync_core::{nip01, EventStore, NegentropyItem, SaveOutcome, StoreError};
use wasm_bindgen::closure::Closure;
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

    /// Saves a batch in one read-write transaction (relaxed durability);
    /// one outcome per event.
    ///
    /// No read per id: every new record is written with `add`, and a
    /// `ConstraintError` on its request (the id is already stored) is that
    /// event's [`SaveOutcome::Duplicate`]; the error event is cancelled
    /// (`preventDefault` + `stopPropagation`) so it neither aborts the
    /// transaction nor reaches its error listener. The only reads are one
    /// `getAll` on the `addr` index per distinct addressable key, for the
    /// replacement rule. Requests are not awaited one by one: their results
    /// are read after the commit. An event that cannot be encoded is
    /// [`SaveOutcome::Rejected`] alone; the batch fails ([`StoreError`])
    /// only when the transaction does (abort, quota, closed database).
    pub async fn save_events(&self, events: Vec<Event>) -> Result<Vec<SaveOutcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.db()?;
        let n = events.len();

        // 1. records and their JS values, once per distinct id (`first[i]`:
        //    the index of the first event with event i's id)
        let mut first_index: HashMap<EventId, usize> = HashMap::with_capacity(n);
        let mut first: Vec<usize> = Vec::with_capacity(n);
        let mut firsts: Vec<&Event> = Vec::with_capacity(n);
        for (i, event) in events.iter().enumerate() {
            let f = *first_index.entry(event.id).or_insert(i);
            first.push(f);
            if f == i {
                firsts.push(event);
            }
        }
        let mut encoded = encode_all(&firsts).into_iter();
        let prepared: Vec<Option<Result<(Record, JsValue), String>>> =
            (0..n).map(|i| (first[i] == i).then(|| encoded.next().expect("one per first copy"))).collect();
        drop(firsts);
        drop(events);
        let record_at = |i: usize| match &prepared[i] {
            Some(Ok((rec, _))) => Some(rec),
            _ => None,
        };

        let options = TransactionOptions::new().with_durability(TransactionDurability::Relaxed);
        let tx = db
            .transaction(record::EVENTS)
            .with_mode(TransactionMode::Readwrite)
            .with_options(options)
            .build()
            .map_err(|e| lib_failure("save: transaction", e))?;
        let raw_tx: web_sys::IdbTransaction = tx.as_sys().clone().into();
        let finished = finished(&raw_tx)?;
        let store = tx.object_store(record::EVENTS).map_err(|e| lib_failure("save: object store", e))?;

        // 2. addressable keys: what is stored (all lookups in flight at once)
        let addrs: Vec<&str> =
            (0..n).filter_map(|i| record_at(i).and_then(|r| r.addr.as_deref())).collect::<BTreeSet<_>>().into_iter().collect();
        // addressable key → (created_at, id) of the current winner
        let mut winners: HashMap<String, (u64, String)> = HashMap::new();
        // ids of stored addressable events (an event's id fixes its key, so
        // the lookups find every stored copy of this batch's addressable ids)
        let mut present: HashSet<String> = HashSet::new();
        // stored ids to delete: replaced winners (and losers left behind)
        let mut to_delete: Vec<String> = Vec::new();
        if !addrs.is_empty() {
            let addr_index = store.index(record::IDX_ADDR).map_err(|e| lib_failure("save: addr index", e))?;
            let mut lookups = Vec::with_capacity(addrs.len());
            for addr in &addrs {
                lookups.push(addr_index.get_all::<JsValue>().with_query(*addr).primitive().map_err(|e| lib_failure("save: lookup", e))?);
            }
            for (addr, found) in addrs.iter().zip(join_all(lookups).await) {
                let found = found.map_err(|e| lib_failure("save: lookup", e))?;
                let mut best: Option<(u64, String)> = None;
                for value in found {
                    let rec: Record = from_js(value.map_err(|e| lib_failure("save: lookup", e))?)?;
                    present.insert(rec.id.clone());
                    match &best {
                        Some((at, id)) if !nip01::replaces(rec.created_at, rec.id.as_str(), *at, id.as_str()) => to_delete.push(rec.id),
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
        }

        // 3. decide, in batch order. `None`: decided by the write (regular
        //    events) or by the first copy (repeated regular ids).
        let mut outcomes: Vec<Option<SaveOutcome>> = vec![None; n];
        let mut adds: Vec<usize> = Vec::new();
        // addressable winners of this batch: id → index of the event to write
        let mut to_put: HashMap<String, usize> = HashMap::new();
        for i in 0..n {
            let f = first[i];
            let rec = match &prepared[f] {
                Some(Ok((rec, _))) => rec,
                Some(Err(reason)) => {
                    outcomes[i] = Some(SaveOutcome::Rejected(reason.clone()));
                    continue;
                }
                None => unreachable!("the first copy of an id is prepared"),
            };
            let Some(addr) = &rec.addr else {
                if f == i {
                    adds.push(i);
                }
                continue;
            };
            // NIP-01 replacement, exactly as MemoryStore: stored id → duplicate,
            // not newer than the key's winner → stale, else it replaces it
            if present.contains(&rec.id) {
                outcomes[i] = Some(SaveOutcome::Duplicate);
                continue;
            }
            if let Some((at, id)) = winners.get(addr) {
                if !nip01::replaces(rec.created_at, rec.id.as_str(), *at, id.as_str()) {
                    outcomes[i] = Some(SaveOutcome::Stale);
                    continue;
                }
                present.remove(id);
                if to_put.remove(id).is_none() {
                    to_delete.push(id.clone());
                }
            }
            winners.insert(addr.clone(), (rec.created_at, rec.id.clone()));
            present.insert(rec.id.clone());
            to_put.insert(rec.id.clone(), f);
            outcomes[i] = Some(SaveOutcome::Saved);
        }

        // 4. write, without awaiting each request
        let raw_store: &web_sys::IdbObjectStore = store.as_sys();
        for id in &to_delete {
            raw_store.delete(&JsValue::from_str(id)).map_err(|e| js_failure("save: delete", e))?;
        }
        let mut requests: Vec<(usize, web_sys::IdbRequest)> = Vec::with_capacity(adds.len() + to_put.len());
        let mut put: Vec<usize> = to_put.into_values().collect();
        put.sort_unstable();
        for (i, addressable) in put.into_iter().map(|i| (i, true)).chain(adds.into_iter().map(|i| (i, false))) {
            let Some(Ok((_, value))) = &prepared[i] else { unreachable!("only encoded records are written") };
            match raw_store.add(value) {
                Ok(req) => {
                    ON_ADD_ERROR.with(|f| req.set_onerror(Some(f.as_ref().unchecked_ref())));
                    requests.push((i, req));
                }
                // the value itself is unacceptable (not a key, not cloneable):
                // that event alone is rejected. An addressable one may already
                // have displaced its predecessor in this transaction, so it
                // fails the batch instead (it cannot happen: ids are strings).
                Err(e) if !addressable && matches!(dom_name(&e).as_deref(), Some("DataError" | "DataCloneError")) => {
                    outcomes[i] = Some(SaveOutcome::Rejected(format!("invalid: {}", js_detail(&e))));
                }
                Err(e) => return Err(js_failure("save: add", e)),
            }
        }
        // No explicit `commit()`: Chromium aborted (UnknownError) a
        // transaction committed that way as soon as one of its requests
        // failed, even with the ConstraintError cancelled. Left alone, it
        // commits by itself once every request is done.
        let result = finished.await;
        drop(store);
        drop(tx); // finished: the library's abort-on-drop is a no-op now
        result.map_err(|e| tx_failure_js("save: commit", &raw_tx, e))?;

        // 5. outcomes of the writes, then of repeated ids
        for (i, req) in requests {
            outcomes[i] = Some(match req.error() {
                Ok(None) => SaveOutcome::Saved,
                Ok(Some(e)) if e.name() == "ConstraintError" => SaveOutcome::Duplicate,
                Ok(Some(e)) => return Err(StoreError(record::store_failure_message("save: add", Some(&e.name()), &e.message()))),
                Err(e) => return Err(js_failure("save: add", e)),
            });
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let outcome = match outcomes[i].take() {
                Some(o) => o,
                // a repeated regular id: the first copy is stored now (or was)
                None => match &out.get(first[i]) {
                    Some(SaveOutcome::Rejected(r)) => SaveOutcome::Rejected(r.clone()),
                    _ => SaveOutcome::Duplicate,
                },
            };
            out.push(outcome);
        }
        Ok(out)
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

    /// Replaces the persisted sync state, with strict durability: the
    /// engine writes it only after the events it covers were committed
    /// (relaxed), and a strict commit also flushes those earlier writes.
    pub async fn save_sync_state(&self, state: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let tx = db
            .transaction(record::META)
            .with_mode(TransactionMode::Readwrite)
            .with_options(TransactionOptions::new().with_durability(TransactionDurability::Strict))
            .build()
            .map_err(|e| lib_failure("save state", e))?;
        let raw_tx: web_sys::IdbTransaction = tx.as_sys().clone().into();
        let store = tx.object_store(record::META).map_err(|e| err("save state", e))?;
        let value: JsValue = Uint8Array::from(state).into();
        store
            .put(value)
            .with_key(record::STATE_KEY)
            .primitive()
            .map_err(|e| lib_failure("save state", e))?
            .await
            .map_err(|e| lib_failure("save state", e))?;
        tx.commit().await.map_err(|e| tx_failure("save state: commit", &raw_tx, e))
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

/// The record of each event as a JS value, or why that event cannot be
/// stored. All records go to JS as one JSON array and one `JSON.parse` (far
/// cheaper than building 10k objects field by field across the wasm
/// boundary); should that fail, each record is parsed alone so only the
/// culprit is rejected.
fn encode_all(events: &[&Event]) -> Vec<Result<(Record, JsValue), String>> {
    let mut batch = String::from("[");
    let mut spans: Vec<Result<(Record, usize, usize), String>> = Vec::with_capacity(events.len());
    for event in events {
        let rec = Record::try_from_event(event)
            .and_then(|r| serde_json::to_string(&r).map(|j| (r, j)).map_err(|e| format!("invalid: cannot encode record: {e}")));
        spans.push(rec.map(|(rec, json)| {
            if batch.len() > 1 {
                batch.push(',');
            }
            let start = batch.len();
            batch.push_str(&json);
            (rec, start, batch.len())
        }));
    }
    batch.push(']');
    let parsed = js_sys::JSON::parse(&batch).ok().and_then(|v| v.dyn_into::<js_sys::Array>().ok());
    let mut slot = 0;
    spans
        .into_iter()
        .map(|span| {
            let (rec, start, end) = span?;
            let value = match &parsed {
                Some(values) => values.get(slot),
                None => js_sys::JSON::parse(&batch[start..end]).map_err(|e| format!("invalid: cannot encode record: {}", js_detail(&e)))?,
            };
            slot += 1;
            Ok((rec, value))
        })
        .collect()
}

/// The `DOMException` name of a thrown JS value, if it is one.
fn dom_name(e: &JsValue) -> Option<String> {
    e.dyn_ref::<web_sys::DomException>().map(|d| d.name())
}

/// `"<name>: <message>"` of a thrown JS value.
fn js_detail(e: &JsValue) -> String {
    match e.dyn_ref::<web_sys::DomException>() {
        Some(d) => format!("{}: {}", d.name(), d.message()),
        None => format!("{e:?}"),
    }
}

/// A store-level failure from a thrown JS value.
fn js_failure(context: &str, e: JsValue) -> StoreError {
    match e.dyn_ref::<web_sys::DomException>() {
        Some(d) => StoreError(record::store_failure_message(context, Some(&d.name()), &d.message())),
        None => StoreError(record::store_failure_message(context, None, &format!("{e:?}"))),
    }
}

/// A store-level failure from an indexed_db_futures error.
fn lib_failure(context: &str, e: indexed_db_futures::error::Error) -> StoreError {
    match &e {
        indexed_db_futures::error::Error::DomException(d) => {
            let name = d.as_ref().dyn_ref::<web_sys::DomException>().map(|d| d.name());
            StoreError(record::store_failure_message(context, name.as_deref(), &d.message()))
        }
        _ => StoreError(record::store_failure_message(context, None, &e.to_string())),
    }
}

thread_local! {
    /// `onerror` of every `add` request: a `ConstraintError` (the id is
    /// already stored) is cancelled (`preventDefault`, so the transaction
    /// goes on, and `stopPropagation`, so indexed_db_futures' transaction
    /// error listener never sees it); any other error aborts as usual. One
    /// closure for the program's lifetime: requests may fire after a failed
    /// save returned, so it is never dropped.
    static ON_ADD_ERROR: Closure<dyn FnMut(web_sys::Event)> = Closure::new(|ev: web_sys::Event| {
        let req = ev.target().and_then(|t| t.dyn_into::<web_sys::IdbRequest>().ok());
        if req.and_then(|r| r.error().ok().flatten()).is_some_and(|e| e.name() == "ConstraintError") {
            ev.prevent_default();
            ev.stop_propagation();
        }
    });
}

/// The `type` of a DOM event (`"abort"`), for messages.
fn event_type(e: &JsValue) -> String {
    e.dyn_ref::<web_sys::Event>().map(|e| e.type_()).unwrap_or_else(|| format!("{e:?}"))
}

/// Resolves when `tx` completes, fails when it aborts. Listens alongside
/// indexed_db_futures' own handlers (which only `commit()` awaits).
fn finished(tx: &web_sys::IdbTransaction) -> Result<wasm_bindgen_futures::JsFuture, StoreError> {
    let mut registered = Ok(());
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        registered =
            tx.add_event_listener_with_callback("complete", &resolve).and_then(|()| tx.add_event_listener_with_callback("abort", &reject));
    });
    registered.map_err(|e| js_failure("save: transaction listeners", e))?;
    Ok(wasm_bindgen_futures::JsFuture::from(promise))
}

/// A transaction that aborted: its own error (e.g. `QuotaExceededError`)
/// when it has one, else the abort event.
fn tx_failure_js(context: &str, tx: &web_sys::IdbTransaction, e: JsValue) -> StoreError {
    match tx.error() {
        Some(d) => StoreError(record::store_failure_message(context, Some(&d.name()), &d.message())),
        None => {
            StoreError(record::store_failure_message(context, Some("AbortError"), &format!("transaction aborted ({})", event_type(&e))))
        }
    }
}

/// A failed commit: the transaction's own error (e.g. `QuotaExceededError`
/// on an abort) when it has one, else what the library reported.
fn tx_failure(context: &str, tx: &web_sys::IdbTransaction, e: indexed_db_futures::error::Error) -> StoreError {
    match tx.error() {
        Some(d) => StoreError(record::store_failure_message(context, Some(&d.name()), &d.message())),
        None => lib_failure(context, e),
    }
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

//! The JavaScript class `GraspSync`: configure, start, stop, read status,
//! subscribe to status changes and query the IndexedDB copy.
//!
//! Every method that can fail rejects/throws a JS `Error` with a message;
//! nothing here panics on JavaScript or relay input.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{LocalBoxFuture, Shared};
use futures::FutureExt;
use js_sys::{Function, Promise};
use nostr::{Filter, JsonUtil};
use sync_core::status::Totals;
use sync_core::{Clock, Driver, DriverHandle, Engine, SyncStatus};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::config::{JsConfig, Settings};
use crate::idb_store::IdbStore;
use crate::runtime::{BrowserClock, BrowserConnector};

/// A JS `Error` with `msg`.
fn js_error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

/// Serialises a status snapshot as a plain object (numbers, arrays, objects).
fn status_to_js(status: &SyncStatus) -> Result<JsValue, JsValue> {
    use serde::Serialize;
    status.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| js_error(format!("cannot encode status: {e}")))
}

type OpenFuture = Shared<LocalBoxFuture<'static, Result<IdbStore, String>>>;

/// A running driver: its handle and a future that completes when it stopped.
struct Running {
    handle: DriverHandle,
    done: Shared<oneshot::Receiver<()>>,
}

/// State shared between the JS object and the futures it spawns.
struct State {
    settings: Settings,
    open: RefCell<Option<OpenFuture>>,
    running: RefCell<Option<Running>>,
    listeners: RefCell<Vec<Function>>,
    last_status: RefCell<Option<SyncStatus>>,
    closed: RefCell<bool>,
}

impl State {
    /// The store, opened on first use (concurrent callers share one open).
    async fn store(self: &Rc<Self>) -> Result<IdbStore, JsValue> {
        if *self.closed.borrow() {
            return Err(js_error(format!("GraspSync is closed (database `{}`)", self.settings.database_name)));
        }
        let fut = self
            .open
            .borrow_mut()
            .get_or_insert_with(|| {
                let name = self.settings.database_name.clone();
                async move { IdbStore::open(&name).await.map_err(|e| e.0) }.boxed_local().shared()
            })
            .clone();
        match fut.await {
            Ok(store) => Ok(store),
            Err(e) => {
                self.open.borrow_mut().take(); // let a later call retry
                Err(js_error(e))
            }
        }
    }

    fn notify(&self, status: &SyncStatus) {
        *self.last_status.borrow_mut() = Some(status.clone());
        let listeners: Vec<Function> = self.listeners.borrow().clone();
        if listeners.is_empty() {
            return;
        }
        let value = match status_to_js(status) {
            Ok(v) => v,
            Err(_) => return,
        };
        for cb in listeners {
            if let Err(e) = cb.call1(&JsValue::NULL, &value) {
                web_sys::console::error_2(&"GraspSync onStatus callback threw:".into(), &e);
            }
        }
    }
}

/// Parses a NIP-01 filter object.
fn parse_filter(filter: &JsValue) -> Result<Filter, JsValue> {
    let filter = if filter.is_undefined() || filter.is_null() { js_sys::Object::new().into() } else { filter.clone() };
    let json = js_sys::JSON::stringify(&filter).map_err(|_| js_error("filter is not JSON-serialisable"))?;
    let json: String = json.into();
    Filter::from_json(&json).map_err(|e| js_error(format!("invalid filter {json}: {e}")))
}

/// The grasp-sync engine in the browser.
#[wasm_bindgen]
pub struct GraspSync {
    shared: Rc<State>,
}

#[wasm_bindgen]
impl GraspSync {
    /// Validates `config`; throws an `Error` naming the bad field. Nothing is
    /// opened or contacted until `start()` (or a query).
    #[wasm_bindgen(constructor)]
    pub fn new(#[wasm_bindgen(unchecked_param_type = "GraspSyncConfig")] config: JsValue) -> Result<GraspSync, JsValue> {
        console_error_panic_hook::set_once();
        // through JSON so that unknown (misspelt) fields are refused, not ignored
        let json: String = js_sys::JSON::stringify(&config)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| js_error("invalid GraspSync config: expected a plain object"))?;
        let parsed: JsConfig = serde_json::from_str(&json).map_err(|e| js_error(format!("invalid GraspSync config: {e}")))?;
        let settings = parsed.into_settings().map_err(|e| js_error(format!("invalid GraspSync config: {e}")))?;
        Ok(GraspSync {
            shared: Rc::new(State {
                settings,
                open: RefCell::new(None),
                running: RefCell::new(None),
                listeners: RefCell::new(Vec::new()),
                last_status: RefCell::new(None),
                closed: RefCell::new(false),
            }),
        })
    }

    /// The IndexedDB database name.
    #[wasm_bindgen(getter, js_name = databaseName)]
    pub fn database_name(&self) -> String {
        self.shared.settings.database_name.clone()
    }

    /// True while the engine runs.
    #[wasm_bindgen(getter)]
    pub fn running(&self) -> bool {
        self.shared.running.borrow().is_some()
    }

    /// Opens the database (restoring saved sync state) and starts syncing.
    /// Resolves once running; rejects if already running or the database
    /// cannot be opened.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn start(&self) -> Promise {
        let shared = Rc::clone(&self.shared);
        future_to_promise(async move {
            if shared.running.borrow().is_some() {
                return Err(js_error("GraspSync is already running"));
            }
            let store = shared.store().await?;
            if shared.running.borrow().is_some() {
                return Err(js_error("GraspSync is already running"));
            }
            let s = &shared.settings;
            let clock = BrowserClock;
            let now = clock.now();
            let seed = s.seed.unwrap_or_else(|| (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64 ^ now.0);
            let engine = Engine::new(s.sync.clone(), s.policy.clone(), &s.bootstrap, seed, now).map_err(|e| js_error(e.to_string()))?;
            let mut driver = Driver::new(engine, clock, BrowserConnector, store);
            let weak = Rc::downgrade(&shared);
            driver.on_status(Box::new(move |status| {
                if let Some(shared) = weak.upgrade() {
                    shared.notify(status);
                }
            }));
            let (tx, rx) = oneshot::channel();
            *shared.running.borrow_mut() = Some(Running { handle: driver.handle(), done: rx.shared() });
            let after = Rc::clone(&shared);
            spawn_local(async move {
                let driver = driver.run().await;
                let final_status = driver.handle().status();
                after.running.borrow_mut().take();
                after.notify(&final_status);
                let _ = tx.send(());
            });
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops syncing: closes relays, saves pending events and the sync state.
    /// Resolves when done (immediately if not running).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn stop(&self) -> Promise {
        let shared = Rc::clone(&self.shared);
        future_to_promise(async move {
            let done = shared.running.borrow().as_ref().map(|r| {
                r.handle.stop();
                r.done.clone()
            });
            if let Some(done) = done {
                let _ = done.await;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops syncing and closes the database; later calls reject with an `Error`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let stop = self.stop();
        let shared = Rc::clone(&self.shared);
        future_to_promise(async move {
            wasm_bindgen_futures::JsFuture::from(stop).await?;
            *shared.closed.borrow_mut() = true;
            let open = shared.open.borrow_mut().take();
            if let Some(fut) = open {
                if let Ok(store) = fut.await {
                    store.close();
                }
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The latest status snapshot as a plain object (see `SyncStatus`).
    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> Result<JsValue, JsValue> {
        if let Some(r) = self.shared.running.borrow().as_ref() {
            return status_to_js(&r.handle.status());
        }
        if let Some(s) = self.shared.last_status.borrow().as_ref() {
            return status_to_js(s);
        }
        let idle =
            SyncStatus { now: BrowserClock.now(), running: false, relays: Vec::new(), totals: Totals::default(), repositories: Vec::new() };
        status_to_js(&idle)
    }

    /// Calls `callback(status)` whenever the snapshot changes.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, #[wasm_bindgen(unchecked_param_type = "(status: SyncStatus) => void")] callback: Function) {
        self.shared.listeners.borrow_mut().push(callback);
    }

    /// Removes a callback added with `onStatus`.
    #[wasm_bindgen(js_name = offStatus)]
    pub fn off_status(&self, #[wasm_bindgen(unchecked_param_type = "(status: SyncStatus) => void")] callback: Function) {
        self.shared.listeners.borrow_mut().retain(|f| !js_sys::Object::is(f, &callback));
    }

    /// Stored events matching a NIP-01 filter, newest first.
    #[wasm_bindgen(unchecked_return_type = "Promise<NostrEvent[]>")]
    pub fn query(&self, #[wasm_bindgen(unchecked_param_type = "NostrFilter")] filter: JsValue) -> Promise {
        let shared = Rc::clone(&self.shared);
        future_to_promise(async move {
            let filter = parse_filter(&filter)?;
            let store = shared.store().await?;
            let events = store.query_events(&filter).await.map_err(|e| js_error(e.0))?;
            let json = format!("[{}]", events.iter().map(|e| e.as_json()).collect::<Vec<_>>().join(","));
            js_sys::JSON::parse(&json)
        })
    }

    /// Number of stored events matching a NIP-01 filter (`limit` honoured).
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn count(&self, #[wasm_bindgen(unchecked_param_type = "NostrFilter")] filter: JsValue) -> Promise {
        let shared = Rc::clone(&self.shared);
        future_to_promise(async move {
            let filter = parse_filter(&filter)?;
            let store = shared.store().await?;
            let n = store.count_events(&filter).await.map_err(|e| js_error(e.0))?;
            Ok(JsValue::from(n as f64))
        })
    }
}

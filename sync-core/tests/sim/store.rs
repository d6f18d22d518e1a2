//! The simulated [`EventStore`]: a [`MemoryStore`] behind virtual latency
//! (a save commits 0–30 ms after it starts, a negentropy load answers after
//! 0–10 ms, up to 3 s and 1 s in worlds with a slow store; queries and the
//! sync state answer at once), with the world's
//! faults (random save failures, an outage during which every save fails)
//! and the persisted sync state kept across restarts.
//!
//! It also checks, from the store's side, the ordering rules the production
//! driver promises (`sync-core/src/driver.rs`):
//! - **one save at a time**: a save never starts while another is in flight;
//! - **loads after earlier saves**: a negentropy load starts only once every
//!   save the engine asked for before that load has finished (what
//!   negentropy offers as "have" must include them); the loads asked for are
//!   seen by the driver's observer (`world::Shared::on_output`), in order;
//! - **reads and the state wait for saves**: stored events are queried and
//!   the sync state persisted only with no save in flight;
//! - **the shutdown flush**: once a stopped driver's `run` returns, no save
//!   is in flight, the state was persisted after the stop, and no save
//!   finished after that last persist.
//!
//! Violations end up in `Outcome::ordering` and fail the seed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use nostr::{Event, EventId, Filter};
use sync_core::{EventStore, MemoryStore, Millis, NegentropyItem, SaveOutcome, StoreError};

use super::exec::{self, Time};
use super::world::{since, Shared};

/// A save commits up to this many ms after it starts (unless the world's
/// store is slow, `Knobs::store_latency_ms`).
const SAVE_MS: u64 = 30;
/// A negentropy load answers after up to this many ms (same exception).
const LOAD_MS: u64 = 10;

/// Ordering violations kept per run (the count goes on in the last line).
const ORDERING_MAX: usize = 10;

/// The store's state, kept across restarts.
#[derive(Default)]
pub(super) struct StoreState {
    pub(super) mem: MemoryStore,
    /// Latest persisted sync state.
    persisted: Option<Vec<u8>>,
    /// The run is over (unsettled): saves still running never complete, so
    /// the store stays as the final status saw it.
    pub(super) frozen: bool,
    next_save: u64,
    /// Saves in flight: store-side id → events.
    pub(super) in_flight: BTreeMap<u64, usize>,
    /// Saves finished (succeeded or failed), all engines.
    pub(super) saves_finished: u64,
    /// Failed saves in a row.
    pub(super) failures_in_row: u32,
    /// Per event: failed saves of it alone, and the successful saves before the first.
    pub(super) solo_failures: BTreeMap<EventId, (u32, u64)>,
    /// Successful saves.
    pub(super) saves_ok: u64,
    /// Newly saved events (`SaveOutcome::Saved`).
    pub(super) saved_outcomes: u64,
    /// A counter over store operations, to order them.
    ops: u64,
    /// `ops` when the last save finished, and when the state was last persisted.
    last_save_done: u64,
    last_persist: u64,
    /// `ops` when the running driver was asked to stop.
    stop_at: Option<u64>,
    /// Ordering violations.
    pub(super) ordering: Vec<String>,
    ordering_count: usize,
}

impl StoreState {
    /// The driver was asked to stop: its shutdown is checked when it returns.
    pub(super) fn on_stop(&mut self) {
        self.ops += 1;
        self.stop_at = Some(self.ops);
    }

    fn violation(&mut self, what: String) {
        self.ordering_count += 1;
        if self.ordering.len() < ORDERING_MAX {
            self.ordering.push(what);
        } else if self.ordering.len() == ORDERING_MAX {
            self.ordering.push("(more ordering violations)".into());
        }
    }
}

impl Shared {
    /// A save starts: one at a time; returns its id and when it commits.
    fn save_started(&mut self, events: usize) -> (u64, Millis) {
        let now = self.now();
        if let Some((other, n)) = self.store.in_flight.iter().next().map(|(i, n)| (*i, *n)) {
            self.store.violation(format!(
                "a save of {events} events started at +{}ms while store save {other} ({n} events) was still in flight",
                since(now)
            ));
        }
        self.store.next_save += 1;
        let id = self.store.next_save;
        self.store.in_flight.insert(id, events);
        let max = self.world.knobs.store_latency_ms.unwrap_or(SAVE_MS);
        let delay = Duration::from_millis(self.rng.range(0, max));
        (id, now + delay)
    }

    /// A save commits (or fails); `None` once the store is frozen.
    fn save_finished(&mut self, id: u64, events: Vec<Event>) -> Option<Result<Vec<SaveOutcome>, StoreError>> {
        if self.store.frozen {
            return None;
        }
        let now = self.now();
        let st = &mut self.store;
        st.in_flight.remove(&id);
        st.saves_finished += 1;
        st.ops += 1;
        st.last_save_done = st.ops;
        let knobs = &self.world.knobs;
        let outage = knobs.store_outage.is_some_and(|(at, long)| now >= at && now < at + long);
        let random = !outage && knobs.store_failure > 0.0 && self.rng.chance(knobs.store_failure);
        let ids = || events.iter().map(|e| e.id.to_hex()[..8].to_string()).collect::<Vec<_>>().join(" ");
        if outage || random {
            st.failures_in_row += 1;
            if let [e] = events.as_slice() {
                let ok = st.saves_ok;
                st.solo_failures.entry(e.id).or_insert((0, ok)).0 += 1;
            }
        }
        if outage {
            self.stats.outage_failures += 1;
            if self.trace {
                eprintln!("{} store save {id} failed: store down ({} events)", since(now), events.len());
            }
            return Some(Err(StoreError("simulated outage: no space left on device".into())));
        }
        if random {
            self.stats.store_failures += 1;
            if self.trace {
                eprintln!("{} store save {id} failed: {}", since(now), ids());
            }
            return Some(Err(StoreError("simulated store failure".into())));
        }
        if self.trace {
            eprintln!("{} store save {id} done: {}", since(now), ids());
        }
        let outcomes = st.mem.save_sync(events).expect("memory store");
        st.saves_ok += 1;
        st.failures_in_row = 0;
        st.saved_outcomes += outcomes.iter().filter(|o| **o == SaveOutcome::Saved).count() as u64;
        Some(Ok(outcomes))
    }

    /// A negentropy load starts: after the saves asked before it; returns
    /// when it answers.
    fn load_started(&mut self) -> Millis {
        let now = self.now();
        match self.load_asks.pop_front() {
            Some(before) if self.store.saves_finished < before => {
                let done = self.store.saves_finished;
                self.store.violation(format!(
                    "a negentropy load started at +{}ms before the saves asked before it had finished ({done} of {before} finished)",
                    since(now)
                ));
            }
            Some(_) => {}
            None => self.store.violation(format!("a negentropy load at +{}ms the engine never asked for", since(now))),
        }
        let max = self.world.knobs.store_latency_ms.map_or(LOAD_MS, |ms| ms / 3);
        now + Duration::from_millis(self.rng.range(0, max))
    }

    /// Stored events are read, or the state persisted: no save may be in flight.
    fn after_saves(&mut self, what: &str) {
        if let Some((id, n)) = self.store.in_flight.iter().next().map(|(i, n)| (*i, *n)) {
            let now = self.now();
            self.store.violation(format!("{what} at +{}ms while store save {id} ({n} events) was in flight", since(now)));
        }
    }

    /// A stopped driver's `run` returned: check its shutdown flush.
    pub(super) fn check_shutdown(&mut self, now: Millis) {
        let st = &mut self.store;
        let Some(stop) = st.stop_at.take() else { return };
        if !st.in_flight.is_empty() {
            st.violation(format!("the driver stopped at +{}ms with {} save(s) in flight", since(now), st.in_flight.len()));
        }
        if st.last_persist < stop {
            st.violation(format!("the driver stopped at +{}ms without persisting its state after the stop", since(now)));
        } else if st.last_save_done > st.last_persist {
            st.violation(format!("the driver stopped at +{}ms: a save finished after its last persisted state", since(now)));
        }
    }
}

/// The driver's store: the world's [`StoreState`] through virtual latency.
#[derive(Clone)]
pub struct SimStore {
    pub(super) shared: Rc<RefCell<Shared>>,
    pub(super) time: Time,
}

/// A save in flight; dropped unfinished (an abandoned run), it is no longer in flight.
struct InFlight {
    shared: Rc<RefCell<Shared>>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            s.store.in_flight.remove(&self.id);
        }
    }
}

impl EventStore for SimStore {
    fn save(&self, events: Vec<Event>) -> LocalBoxFuture<'_, Result<Vec<SaveOutcome>, StoreError>> {
        let (shared, time) = (Rc::clone(&self.shared), Rc::clone(&self.time));
        Box::pin(async move {
            let (id, at) = shared.borrow_mut().save_started(events.len());
            let _in_flight = InFlight { shared: Rc::clone(&shared), id };
            exec::sleep(&time, at).await;
            let done = shared.borrow_mut().save_finished(id, events);
            match done {
                Some(result) => result,
                None => std::future::pending().await,
            }
        })
    }

    fn negentropy_items(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<NegentropyItem>, StoreError>> {
        let (shared, time) = (Rc::clone(&self.shared), Rc::clone(&self.time));
        Box::pin(async move {
            let at = shared.borrow_mut().load_started();
            exec::sleep(&time, at).await;
            let items = shared.borrow().store.mem.negentropy_items_sync(&filter);
            items
        })
    }

    fn query(&self, filter: Filter) -> LocalBoxFuture<'_, Result<Vec<Event>, StoreError>> {
        let mut s = self.shared.borrow_mut();
        s.after_saves("stored events queried");
        let result = s.store.mem.query_sync(&filter);
        Box::pin(std::future::ready(result))
    }

    fn load_state(&self) -> LocalBoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let state = self.shared.borrow().store.persisted.clone();
        Box::pin(std::future::ready(Ok(state)))
    }

    fn save_state(&self, state: Vec<u8>) -> LocalBoxFuture<'_, Result<(), StoreError>> {
        let mut s = self.shared.borrow_mut();
        s.after_saves("the sync state persisted");
        let st = &mut s.store;
        st.ops += 1;
        st.last_persist = st.ops;
        st.persisted = Some(state);
        Box::pin(std::future::ready(Ok(())))
    }
}

//! # sync-wasm
//!
//! The grasp-sync engine (sync-core) in the browser: a JavaScript class
//! `GraspSync` over browser timers, the browser `WebSocket` and an
//! IndexedDB event store.
//!
//! - [`record`]: how events are laid out in IndexedDB and which index answers
//!   a filter (pure Rust, tested on the host).
//! - [`config`]: the JS configuration object, validated into sync-core types.
//! - `idb_store` (wasm32): the IndexedDB `EventStore`.
//! - `runtime` (wasm32): the `Clock` and `Connector` on browser APIs.
//! - `api` (wasm32): the `GraspSync` class.

#![warn(missing_docs)]

pub mod config;
pub mod record;

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod idb_store;
#[cfg(target_arch = "wasm32")]
pub mod runtime;
mod typescript;

#[cfg(target_arch = "wasm32")]
pub use api::GraspSync;
#[cfg(target_arch = "wasm32")]
pub use idb_store::IdbStore;

//! # sync-core
//!
//! The GRASP-02 proactive sync engine for NIP-34 (git over nostr) data,
//! independent of any runtime: a sans-IO state machine ([`Engine`]) and a
//! `futures`-only [`Driver`] over three small platform traits ([`Clock`],
//! [`Connector`], [`EventStore`]).
//!
//! ```text
//! Input (frames, answers, time) → Engine::handle_input
//!                                  Engine::poll_output → Output::{Command, Event, Timeout} → Driver → sockets / store
//!                                  Engine::status → metrics / JS
//! ```

#![warn(missing_docs)]

/// `impl ts_rs::TS` for a newtype that serde writes as a plain JS value
/// (`$ts`: "string", "number"), for the generated TypeScript declarations.
#[cfg(feature = "typescript")]
macro_rules! ts_as_primitive {
    ($ty:ty, $ts:literal) => {
        impl ts_rs::TS for $ty {
            type WithoutGenerics = Self;
            type OptionInnerType = Self;

            fn name(_: &ts_rs::Config) -> String {
                $ts.to_owned()
            }

            fn inline(cfg: &ts_rs::Config) -> String {
                Self::name(cfg)
            }
        }
    };
}

pub mod command;
pub mod config;
pub mod driver;
pub mod engine;
pub mod filters;
pub mod flow;
pub mod health;
pub mod historic;
pub mod ingest;
pub mod io;
pub mod nip01;
pub mod nip11;
pub mod nip34;
pub mod plan;
pub mod policy;
pub mod relay_url;
pub mod repo_index;
pub mod rng;
pub mod runtime;
pub mod session;
mod snapshot;
pub mod state;
pub mod status;
pub mod store;
/// Test kit: the one in-process command interpreter, scripted relays, the
/// relay side of negentropy (feature `testkit`; never in a production build).
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;
mod timers;

#[cfg(test)]
mod testutil;

pub use command::Command;
pub use config::SyncConfig;
pub use driver::{Driver, DriverHandle};
pub use engine::{Engine, EngineError, EngineEvent, Transition};
pub use io::{Input, Output, SaveFailure};
pub use policy::{AcceptancePolicy, InterestSet};
pub use relay_url::{RelayUrl, RelayUrlError};
pub use runtime::{Clock, Connector, EventStore, FrameSink, FrameStream, NegentropyItem, SaveOutcome, StoreError, TransportError};
pub use status::{ConnectionStatus, HealthStatus, RelayError, RelayStatus, SyncStatus};
pub use store::memory::MemoryStore;
pub use time::Millis;

/// Re-exported so front ends use the same nostr types.
pub use nostr;

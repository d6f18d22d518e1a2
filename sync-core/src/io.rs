//! The engine's whole surface: one [`Input`] in, one [`Output`] out.
//!
//! Like str0m's `handle_input` / `poll_output`: the caller feeds everything
//! that happened through [`crate::Engine::handle_input`] and then calls
//! [`crate::Engine::poll_output`] until it returns [`Output::Timeout`], which
//! says when to call again with [`Input::Timeout`] if nothing else happens.
//!
//! Every [`Command`] that asks for something is answered by the [`Input`]
//! variant of the same name, carrying a `Result`: `Command::SaveEvents` by
//! `Input::SaveEvents`, `Command::Connect` by `Input::Connect`, and so on.
//! `Command::Send`, `Command::Disconnect` and `Command::PersistState` need no
//! answer. The production [`crate::Driver`] carries commands out over real
//! sockets and a store; tests, the simulation and fuzzing use the one
//! in-process interpreter in `testkit` (feature `testkit`).

use nostr::Event;

use crate::command::Command;
use crate::engine::EngineEvent;
use crate::relay_url::RelayUrl;
use crate::runtime::{NegentropyItem, SaveOutcome};
use crate::time::Millis;

/// A save that failed: the events come back so the engine can retry them
/// (halving the batch to find an event the store cannot take).
#[derive(Debug, Clone)]
pub struct SaveFailure {
    /// The events of the failed save, as they were sent.
    pub events: Vec<Event>,
    /// What the store said.
    pub error: String,
}

/// Something that happened: the answer to a command, a frame from a relay, a
/// lost connection, or time passing.
#[derive(Debug, Clone)]
pub enum Input {
    /// Answers `Command::LoadState`: the persisted state, `None` if there is none.
    LoadState(Result<Option<Vec<u8>>, String>),
    /// Answers `Command::QueryStored`.
    QueryStored {
        /// The command's token.
        token: u64,
        /// The stored events matching its filter.
        result: Result<Vec<Event>, String>,
    },
    /// Answers `Command::Connect`: the WebSocket is open, or why not.
    Connect {
        /// The relay dialled.
        relay: RelayUrl,
        /// `Err(reason)` when the connection could not be opened.
        result: Result<(), String>,
    },
    /// Answers `Command::FetchRelayInfo`: the NIP-11 document, `None` when
    /// there is none (or it could not be fetched in time).
    FetchRelayInfo {
        /// The relay asked about.
        relay: RelayUrl,
        /// The document's text.
        document: Option<String>,
    },
    /// Answers `Command::SaveEvents`.
    SaveEvents {
        /// The command's token.
        token: u64,
        /// One outcome per event, in order, or the failure.
        result: Result<Vec<SaveOutcome>, SaveFailure>,
    },
    /// Answers `Command::LoadNegentropyItems`.
    LoadNegentropyItems {
        /// The command's token.
        token: u64,
        /// `(id, created_at)` of stored events matching the filter.
        result: Result<Vec<NegentropyItem>, String>,
    },
    /// A text frame arrived from a connected relay.
    Frame {
        /// From where.
        relay: RelayUrl,
        /// The frame.
        text: String,
    },
    /// A connection was lost (not one closed by `Command::Disconnect`).
    Disconnected {
        /// Which relay.
        relay: RelayUrl,
        /// Why, for the log and the status.
        reason: String,
    },
    /// Time passed: the deadline of the last [`Output::Timeout`] (or any later time).
    Timeout,
    /// Stop: close every relay, flush the store and persist the state. Keep
    /// executing outputs until only [`Output::Timeout`]`(None)` is left.
    Shutdown,
}

/// What the engine wants next.
#[derive(Debug, Clone)]
pub enum Output {
    /// Do this (see [`Command`]); its answer, if any, comes back as the [`Input`] of the same name.
    Command(Command),
    /// Something a front end may want to show at once (the rest is in `Engine::status`).
    Event(EngineEvent),
    /// Nothing more to do now: call again with [`Input::Timeout`] at this
    /// time, or earlier when another input arrives. `None`: only inputs
    /// (the engine is stopped or still starting up).
    Timeout(Option<Millis>),
}

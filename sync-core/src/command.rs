//! What the engine asks its driver to do.

use core::time::Duration;

use nostr::{Event, Filter};

use crate::relay_url::RelayUrl;

/// An instruction from the engine to the driver; see [`crate::Engine::poll_command`].
#[derive(Debug, Clone)]
pub enum Command {
    /// Start-up: load the persisted sync state; report with `handle_state_loaded`.
    LoadState,
    /// Start-up: stored events matching `filter`; report with
    /// `handle_stored_events(token, …)`.
    QueryStored {
        /// Correlates the answer.
        token: u64,
        /// Which stored events.
        filter: Filter,
    },
    /// Open a WebSocket to `relay`, giving up after `timeout`; report with
    /// `handle_connected` or `handle_connect_failed`.
    Connect {
        /// Relay to connect to.
        relay: RelayUrl,
        /// Connect timeout.
        timeout: Duration,
    },
    /// Close the connection to `relay` (no `handle_disconnected` needed).
    Disconnect {
        /// Relay to close.
        relay: RelayUrl,
    },
    /// Send one text frame to a connected relay.
    Send {
        /// Destination.
        relay: RelayUrl,
        /// The JSON frame.
        text: String,
    },
    /// Save verified, accepted events; report with `handle_saved(token, …)`
    /// or `handle_save_failed(token, …)`.
    SaveEvents {
        /// Correlates the answer.
        token: u64,
        /// Events to save.
        events: Vec<Event>,
    },
    /// Load negentropy items for `filter`; report with `handle_negentropy_items(token, …)`.
    LoadNegentropyItems {
        /// Correlates the answer.
        token: u64,
        /// The filter of the negentropy session.
        filter: Filter,
    },
    /// Fetch the relay's NIP-11 document (HTTP GET with `Accept:
    /// application/nostr+json` on the relay URL's http(s) form); report with
    /// `handle_relay_info` — the text, or `None` when there is none.
    FetchRelayInfo {
        /// Relay whose document is wanted.
        relay: RelayUrl,
    },
    /// Persist the engine's sync state (opaque bytes). Issued only when every
    /// earlier `SaveEvents` has been reported, so the state never runs ahead of the store.
    PersistState {
        /// Serialized state for `Engine::restore`.
        state: Vec<u8>,
    },
}

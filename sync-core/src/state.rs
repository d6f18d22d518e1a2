//! RelaySyncIndex entries and the persisted sync state (SPEC §5).
//!
//! What survives a restart: the repository index, and per relay what was
//! confirmed synced, when it was last connected, and its health. A restart
//! within the quick-reconnect window therefore resumes with `since` instead
//! of re-downloading everything.

use std::collections::{BTreeMap, BTreeSet};

use nostr::EventId;
use serde::{Deserialize, Serialize};

use crate::health::Health;
use crate::relay_url::RelayUrl;
use crate::repo_index::RepoSyncIndex;
use crate::time::Millis;

/// The confirmed side of one relay (RelaySyncIndex entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySyncEntry {
    /// Configured bootstrap relay (never dropped).
    pub bootstrap: bool,
    /// Last time the relay was seen connected.
    pub last_connected: Option<Millis>,
    /// When the relay last disconnected.
    pub disconnected_at: Option<Millis>,
    /// L1 historic sync completed (allows `since` on quick reconnect).
    pub announcements_synced: bool,
    /// All historic batches completed.
    pub historic_sync_completed: bool,
    /// When historic sync completed.
    pub historic_sync_completed_at: Option<Millis>,
    /// Repositories confirmed synced on this relay.
    pub confirmed_repos: BTreeSet<String>,
    /// Root events confirmed synced on this relay.
    pub confirmed_roots: BTreeSet<EventId>,
    /// Health bookkeeping.
    pub health: Health,
    /// Negentropy worked on this relay once (SPEC §2: remembered as NIP-77,
    /// so silence or a stray NOTICE never makes it REQ-only).
    #[serde(default)]
    pub negentropy: Option<bool>,
}

impl RelaySyncEntry {
    /// Fresh start: forget what was confirmed.
    pub fn clear_confirmed(&mut self) {
        self.confirmed_repos.clear();
        self.confirmed_roots.clear();
        self.announcements_synced = false;
        self.historic_sync_completed = false;
        self.historic_sync_completed_at = None;
    }
}

/// Everything persisted between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Format version.
    pub version: u32,
    /// Accepted repositories and roots.
    pub repos: RepoSyncIndex,
    /// Per-relay confirmed state.
    pub relays: BTreeMap<RelayUrl, RelaySyncEntry>,
    /// Repository states that arrived before the announcement accepting them
    /// (newest last). They are kept across restarts: a quick reconnect asks
    /// relays only for what is newer, so a state lost here would never come
    /// again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<ParkedState>,
}

/// A parked repository state and the relay that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedState {
    /// Where it came from (counted there once ingested).
    pub relay: RelayUrl,
    /// The signed kind 30618 event.
    pub event: nostr::Event,
}

/// Current state format version.
pub const STATE_VERSION: u32 = 1;

/// The persisted state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not valid JSON for this format.
    #[error("sync state is corrupt: {0}")]
    Corrupt(String),
    /// Written by another format version.
    #[error("sync state has version {0}, expected {STATE_VERSION}")]
    Version(u32),
}

impl SyncState {
    /// Serialises to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses bytes written by `to_bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let s: SyncState = serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
        if s.version != STATE_VERSION {
            return Err(StateError::Version(s.version));
        }
        Ok(s)
    }
}

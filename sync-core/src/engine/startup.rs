//! Start-up as commands: the engine asks for its persisted state
//! (`Command::LoadState`), then for the stored announcements and root events
//! (`Command::QueryStored`), and only then starts ticking and connecting.
//!
//! Why: every driver (daemon, browser, simulation, test harness) used to
//! repeat this protocol by hand, and the simulation skipped the indexing
//! step. As outputs, it is written once and exercised everywhere.

use nostr::Event;

use super::Engine;
use crate::command::Command;
use crate::time::Millis;

/// Where start-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Startup {
    /// Waiting for `handle_state_loaded`.
    LoadingState,
    /// Waiting for `handle_stored_events` of filter `step` (token).
    Indexing { step: usize, token: u64 },
    /// Running: ticks, connections, sync.
    Done,
}

impl Engine {
    /// True once start-up (state restored, stored events indexed) is over.
    pub fn is_started(&self) -> bool {
        self.startup == Startup::Done
    }

    /// The driver loaded the persisted state (`Ok(None)`: there is none).
    /// Unusable state is logged and ignored: the engine starts fresh.
    pub fn handle_state_loaded(&mut self, state: Result<Option<Vec<u8>>, String>, now: Millis) {
        if self.startup != Startup::LoadingState {
            return;
        }
        match state {
            Ok(Some(bytes)) => match self.restore(&bytes) {
                Ok(()) => tracing::info!("restored sync state"),
                Err(e) => tracing::warn!(error = %e, "ignoring unusable sync state; starting fresh"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not load sync state; starting fresh"),
        }
        self.next_startup_step(0, now);
    }

    /// The driver answered `Command::QueryStored`.
    pub fn handle_stored_events(&mut self, token: u64, events: Result<Vec<Event>, String>, now: Millis) {
        let Startup::Indexing { step, token: expected } = self.startup else { return };
        if token != expected {
            return;
        }
        match events {
            Ok(events) => self.index_stored(&events, now),
            Err(e) => tracing::warn!(error = %e, "could not index stored events"),
        }
        self.next_startup_step(step + 1, now);
    }

    fn next_startup_step(&mut self, step: usize, now: Millis) {
        match Self::stored_index_filters().into_iter().nth(step) {
            Some(filter) => {
                let token = self.token();
                self.startup = Startup::Indexing { step, token };
                self.commands.push_back(Command::QueryStored { token, filter });
            }
            None => {
                self.startup = Startup::Done;
                self.next_tick = self.next_tick.max(now);
            }
        }
    }
}

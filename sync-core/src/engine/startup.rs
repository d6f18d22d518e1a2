//! Start-up as commands: the engine asks for its persisted state
//! (`Command::LoadState`), then for the stored announcements and root events
//! (`Command::QueryStored`), and only then starts ticking and connecting.
//!
//! Why: every driver (daemon, browser, simulation, test harness) used to
//! repeat this protocol by hand, and the simulation skipped the indexing
//! step. As outputs, it is written once and exercised everywhere.
//!
//! Stored events are read a page at a time (newest first, `until` moving
//! down), so a large store is indexed in bounded memory.

use nostr::{Event, Timestamp};

use super::Engine;
use crate::command::Command;
use crate::time::Millis;

/// Stored events read per start-up query.
pub(crate) const INDEX_PAGE: usize = 2_000;

/// Which page of a start-up filter is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    /// Newest first, at most `INDEX_PAGE` events up to `until`.
    Below(Option<Timestamp>),
    /// Every event of one second (a page was all of it).
    Second(Timestamp),
}

/// Where start-up is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Startup {
    /// Waiting for `handle_state_loaded`.
    LoadingState,
    /// Waiting for `handle_stored_events` of filter `step` (token), one page.
    Indexing { step: usize, token: u64, page: Page },
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
    pub(crate) fn handle_state_loaded(&mut self, state: Result<Option<Vec<u8>>, String>, now: Millis) {
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
    pub(crate) fn handle_stored_events(&mut self, token: u64, events: Result<Vec<Event>, String>, now: Millis) {
        let Startup::Indexing { step, token: expected, page } = self.startup else { return };
        if token != expected {
            return;
        }
        let events = match events {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "could not index stored events");
                return self.next_startup_step(step + 1, now);
            }
        };
        self.index_stored(&events, now);
        let oldest = events.iter().map(|e| e.created_at).min();
        let newest = events.iter().map(|e| e.created_at).max();
        let next = match (page, oldest) {
            (Page::Second(s), _) => Some(Page::Below(s.as_secs().checked_sub(1).map(Timestamp::from))),
            (Page::Below(_), Some(o)) if events.len() >= INDEX_PAGE && oldest == newest => Some(Page::Second(o)),
            (Page::Below(_), Some(o)) if events.len() >= INDEX_PAGE => Some(Page::Below(Some(o))),
            _ => None,
        };
        match next {
            // `until` is inclusive: the oldest second is read again (indexing is idempotent)
            Some(Page::Below(None)) | None => self.next_startup_step(step + 1, now),
            Some(page) => self.query_stored_page(step, page),
        }
    }

    fn query_stored_page(&mut self, step: usize, page: Page) {
        let Some(base) = Self::stored_index_filters().into_iter().nth(step) else { return };
        let filter = match page {
            Page::Below(until) => {
                let f = base.limit(INDEX_PAGE);
                match until {
                    Some(u) => f.until(u),
                    None => f,
                }
            }
            Page::Second(s) => base.since(s).until(s),
        };
        let token = self.token();
        self.startup = Startup::Indexing { step, token, page };
        self.commands.push_back(Command::QueryStored { token, filter });
    }

    fn next_startup_step(&mut self, step: usize, now: Millis) {
        match Self::stored_index_filters().into_iter().nth(step) {
            Some(_) => self.query_stored_page(step, Page::Below(None)),
            None => {
                self.startup = Startup::Done;
                self.next_tick = self.next_tick.max(now);
            }
        }
    }
}

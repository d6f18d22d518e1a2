//! REQ+EOSE historic sync with `until` pagination (SPEC §3).
//!
//! When a page brings at least `threshold` events the next page asks with
//! `until` = the oldest `created_at` seen. `until` is inclusive, so events
//! sharing that second are asked for again rather than lost; ids already seen
//! by this job do not count as new, and a page with nothing new ends the job.

use std::collections::HashSet;

use nostr::{EventId, Filter, Timestamp};

/// Pagination state for one filter.
#[derive(Debug, Clone)]
pub struct Paginator {
    base: Filter,
    until: Option<Timestamp>,
    seen: HashSet<EventId>,
    page_events: usize,
    page_new: usize,
    page_oldest: Option<Timestamp>,
    /// Pages requested so far.
    pub pages: u32,
}

/// What to do after EOSE.
#[derive(Debug, PartialEq, Eq)]
pub enum PageOutcome {
    /// Ask for the next page (filter already includes `until`).
    Next(Filter),
    /// Historic sync of this filter is complete.
    Done,
}

impl Paginator {
    /// Starts at the newest events (`until` unset, or the filter's own).
    pub fn new(base: Filter) -> Self {
        let until = base.until;
        Self { base, until, seen: HashSet::new(), page_events: 0, page_new: 0, page_oldest: None, pages: 0 }
    }

    /// The REQ filter for the current page.
    pub fn request(&mut self, limit: usize) -> Filter {
        self.pages += 1;
        self.page_events = 0;
        self.page_new = 0;
        self.page_oldest = None;
        let mut f = self.base.clone().limit(limit);
        f.until = self.until;
        f
    }

    /// An event arrived on this page.
    pub fn on_event(&mut self, id: EventId, created_at: Timestamp) {
        self.page_events += 1;
        if self.seen.insert(id) {
            self.page_new += 1;
        }
        self.page_oldest = Some(self.page_oldest.map_or(created_at, |o| o.min(created_at)));
    }

    /// EOSE for the current page.
    pub fn on_eose(&mut self, threshold: usize, limit: usize) -> PageOutcome {
        if self.page_events >= threshold && self.page_new > 0 {
            if let Some(oldest) = self.page_oldest {
                // never move forward in time, whatever the relay sent
                self.until = Some(self.until.map_or(oldest, |u| u.min(oldest)));
                return PageOutcome::Next(self.request(limit));
            }
        }
        PageOutcome::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::Kind;

    /// A relay's answer to one page: newest first, `until` inclusive, capped at `cap`.
    fn serve(all: &[(EventId, u64)], f: &Filter, cap: usize) -> Vec<(EventId, u64)> {
        let mut v: Vec<_> = all.iter().filter(|(_, t)| f.until.is_none_or(|u| *t <= u.as_secs())).copied().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(cap.min(f.limit.unwrap_or(usize::MAX)));
        v
    }

    fn run(all: &[(EventId, u64)], cap: usize) -> HashSet<EventId> {
        let mut p = Paginator::new(Filter::new().kind(Kind::TextNote));
        let mut f = p.request(500);
        let mut got = HashSet::new();
        loop {
            for (id, t) in serve(all, &f, cap) {
                got.insert(id);
                p.on_event(id, Timestamp::from(t));
            }
            match p.on_eose(75, 500) {
                PageOutcome::Next(next) => f = next,
                PageOutcome::Done => return got,
            }
        }
    }

    fn id(n: u32) -> EventId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        EventId::from_byte_array(b)
    }

    #[test]
    fn pagination_across_same_second_events_loses_nothing() {
        // 300 events, 40 per second: every page boundary falls inside a second.
        let all: Vec<_> = (0..300u32).map(|i| (id(i), 1000 + (i / 40) as u64)).collect();
        let got = run(&all, 100);
        assert_eq!(got.len(), 300);
    }

    #[test]
    fn page_below_threshold_stops() {
        let all: Vec<_> = (0..74u32).map(|i| (id(i), 1000 + i as u64)).collect();
        let mut p = Paginator::new(Filter::new());
        let _ = p.request(500);
        for (i, t) in &all {
            p.on_event(*i, Timestamp::from(*t));
        }
        assert_eq!(p.on_eose(75, 500), PageOutcome::Done);
    }

    #[test]
    fn page_at_threshold_continues_with_until_oldest() {
        let mut p = Paginator::new(Filter::new());
        let _ = p.request(500);
        for i in 0..75u32 {
            p.on_event(id(i), Timestamp::from(2000 - i as u64));
        }
        match p.on_eose(75, 500) {
            PageOutcome::Next(f) => assert_eq!(f.until, Some(Timestamp::from(1926))),
            PageOutcome::Done => panic!("should continue"),
        }
    }

    #[test]
    fn page_with_nothing_new_stops_even_when_full() {
        let all: Vec<_> = (0..200u32).map(|i| (id(i), 1000)).collect(); // all in one second, relay caps at 100
        let got = run(&all, 100);
        assert_eq!(got.len(), 100, "relay cap within one second is a relay limit; job terminates");
    }

    #[test]
    fn a_relay_that_ignores_until_cannot_loop_forever() {
        let all: Vec<_> = (0..100u32).map(|i| (id(i), 1000 + i as u64)).collect();
        let mut p = Paginator::new(Filter::new());
        let _ = p.request(500);
        let mut pages = 0;
        loop {
            pages += 1;
            for (i, t) in &all {
                p.on_event(*i, Timestamp::from(*t)); // same page every time
            }
            if p.on_eose(75, 500) == PageOutcome::Done {
                break;
            }
        }
        assert_eq!(pages, 2);
    }
}

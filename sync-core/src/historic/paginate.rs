//! REQ+EOSE historic sync with `until` pagination (SPEC §3).
//!
//! When a page brings at least `threshold` events the next page asks with
//! `until` = the oldest `created_at` seen. `until` is inclusive in NIP-01, so
//! events sharing that second are asked for again rather than lost; ids
//! already seen by this job do not count as new.
//!
//! Two relay habits would still lose events silently, and are handled:
//! - **exclusive `until`**: an inclusive relay answers `until = T` with the
//!   events of second T we already saw; an answer without any of them means
//!   the relay skipped second T: second T is asked for on its own
//!   (`since = T, until = T + 1`), and every later page asks one second later;
//! - **one second holding more than a page**: a full page of events we had
//!   already seen, all in one second, cannot move on; pagination continues
//!   below that second, and when the page was as large as we asked the job
//!   reports itself possibly incomplete (the batch ends ConnectedDegraded
//!   instead of Connected).

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
    page_newest: Option<Timestamp>,
    /// The page asked with `until` from a previous page and saw that second.
    page_saw_until: bool,
    /// `until` came from a previous page (not the filter's own).
    until_from_page: bool,
    /// The relay treats `until` as exclusive: ask one second later.
    pub exclusive_until: bool,
    /// Asking for this one second on its own (the second an exclusive relay skipped).
    probe: Option<Timestamp>,
    /// Where paging resumes after the probe (`None`: done after it).
    resume: Option<Timestamp>,
    /// A second held more than a page: some events may be missing.
    pub incomplete: bool,
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
        Self {
            base,
            until,
            seen: HashSet::new(),
            page_events: 0,
            page_new: 0,
            page_oldest: None,
            page_newest: None,
            page_saw_until: false,
            until_from_page: false,
            exclusive_until: false,
            probe: None,
            resume: None,
            incomplete: false,
            pages: 0,
        }
    }

    /// The REQ filter for the current page.
    pub fn request(&mut self, limit: usize) -> Filter {
        self.pages += 1;
        self.page_events = 0;
        self.page_new = 0;
        self.page_oldest = None;
        self.page_newest = None;
        self.page_saw_until = false;
        let mut f = self.base.clone().limit(limit);
        if let Some(second) = self.probe {
            f.since = Some(f.since.map_or(second, |s| s.max(second)));
            f.until = Some(Timestamp::from(second.as_secs() + 1));
            return f;
        }
        f.until = match self.until {
            Some(u) if self.exclusive_until && self.until_from_page => Some(Timestamp::from(u.as_secs() + 1)),
            u => u,
        };
        f
    }

    /// An event arrived on this page.
    pub fn on_event(&mut self, id: EventId, created_at: Timestamp) {
        self.page_events += 1;
        if self.seen.insert(id) {
            self.page_new += 1;
        }
        if self.until_from_page && Some(created_at) == self.until {
            self.page_saw_until = true;
        }
        self.page_oldest = Some(self.page_oldest.map_or(created_at, |o| o.min(created_at)));
        self.page_newest = Some(self.page_newest.map_or(created_at, |o| o.max(created_at)));
    }

    /// EOSE for the current page.
    pub fn on_eose(&mut self, threshold: usize, limit: usize) -> PageOutcome {
        let full = self.page_events >= threshold;
        if self.probe.take().is_some() {
            if self.page_events >= limit {
                self.incomplete = true; // the second holds at least a page
            }
            return match self.resume.take() {
                Some(r) => {
                    self.until = Some(r);
                    self.until_from_page = true;
                    PageOutcome::Next(self.request(limit))
                }
                None => PageOutcome::Done,
            };
        }
        if self.until_from_page && !self.page_saw_until && !self.exclusive_until {
            // An inclusive relay would have sent second `until` again: this
            // one skipped it. Ask for that second alone, then go on.
            self.exclusive_until = true;
            self.probe = self.until;
            self.resume = if full && self.page_new > 0 { self.page_oldest.map(|o| self.until.map_or(o, |u| u.min(o))) } else { None };
            return PageOutcome::Next(self.request(limit));
        }
        if full && self.page_new > 0 {
            if let Some(oldest) = self.page_oldest {
                // never move forward in time, whatever the relay sent
                self.until = Some(self.until.map_or(oldest, |u| u.min(oldest)));
                self.until_from_page = true;
                return PageOutcome::Next(self.request(limit));
            }
        }
        if full && self.page_new == 0 && self.page_oldest.is_some() && self.page_oldest == self.page_newest {
            // Nothing new, all in one second: go on below that second. When
            // the page was as large as we asked (our `limit`, capped by the
            // relay's NIP-11 `max_limit`), the second may hold more than a
            // page: say so. (A relay capping pages below our limit without
            // saying so cannot be told apart from a second that is complete.)
            let second = self.page_oldest.expect("checked").as_secs();
            if second > 0 && self.until.is_none_or(|u| u.as_secs() >= second) {
                self.incomplete |= self.page_events >= limit;
                self.until = Some(Timestamp::from(second - 1));
                self.until_from_page = false;
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
        run_with(all, cap, false).0
    }

    fn run_with(all: &[(EventId, u64)], cap: usize, exclusive: bool) -> (HashSet<EventId>, Paginator) {
        let mut p = Paginator::new(Filter::new().kind(Kind::TextNote));
        let mut f = p.request(500);
        let mut got = HashSet::new();
        for _ in 0..1000 {
            if exclusive {
                f.until = f.until.map(|u| Timestamp::from(u.as_secs() - 1));
            }
            for (id, t) in serve(all, &f, cap) {
                got.insert(id);
                p.on_event(id, Timestamp::from(t));
            }
            match p.on_eose(75, 500) {
                PageOutcome::Next(next) => f = next,
                PageOutcome::Done => return (got, p),
            }
        }
        panic!("pagination did not end");
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
    fn a_second_holding_more_than_a_page_continues_below_it_and_says_so() {
        // 200 events in one second (relay caps pages at 100), 50 older ones
        let mut all: Vec<_> = (0..200u32).map(|i| (id(i), 1000)).collect();
        all.extend((200..250u32).map(|i| (id(i), 900 + (i - 200) as u64)));
        let (got, p) = run_with(&all, 100, false);
        assert_eq!(got.len(), 150, "100 of the crowded second, and everything older");
        assert!(!p.incomplete, "a relay cap below our limit is invisible");
        let (got, p) = run_with(&all, 500, false);
        assert_eq!(got.len(), 250);
        assert!(!p.incomplete);
    }

    #[test]
    fn a_second_fuller_than_our_limit_marks_the_job_incomplete() {
        let mut all: Vec<_> = (0..200u32).map(|i| (id(i), 1000)).collect();
        all.extend((200..250u32).map(|i| (id(i), 900 + (i - 200) as u64)));
        let mut p = Paginator::new(Filter::new());
        let mut f = p.request(100);
        let mut got = HashSet::new();
        loop {
            for (id, t) in serve(&all, &f, usize::MAX) {
                got.insert(id);
                p.on_event(id, Timestamp::from(t));
            }
            match p.on_eose(75, 100) {
                PageOutcome::Next(next) => f = next,
                PageOutcome::Done => break,
            }
        }
        assert_eq!(got.len(), 150);
        assert!(p.incomplete, "the crowded second is reported");
    }

    #[test]
    fn exclusive_until_relays_lose_nothing() {
        // 300 events, 40 per second, relay treats until as exclusive
        let all: Vec<_> = (0..300u32).map(|i| (id(i), 1000 + (i / 40) as u64)).collect();
        let (got, p) = run_with(&all, 100, true);
        assert_eq!(got.len(), 300);
        assert!(p.exclusive_until);
        assert!(!p.incomplete);
        // and an inclusive relay is not mistaken for one
        let (got, p) = run_with(&all, 100, false);
        assert_eq!(got.len(), 300);
        assert!(!p.exclusive_until);
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

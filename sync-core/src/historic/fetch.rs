//! Fetching the ids negentropy said we need, with `REQ {ids}` in chunks, and
//! the retry-then-fail rule: ids still missing after the retry fail the batch.

use std::collections::BTreeSet;

use nostr::{EventId, Filter};

/// One chunk of ids being fetched.
#[derive(Debug, Clone)]
pub struct Fetch {
    requested: BTreeSet<EventId>,
    received: BTreeSet<EventId>,
    /// `received.len()` at the previous EOSE, to tell progress from withholding.
    received_at_last_eose: usize,
    /// Attempts made (1 after the first request).
    pub attempts: u32,
}

/// What to do after EOSE of a fetch.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Everything arrived.
    Complete,
    /// Ask again for these ids.
    Retry(Filter),
    /// Still missing after the retries: the relay withholds them.
    Failed(Vec<EventId>),
}

impl Fetch {
    /// A fetch for `ids`; returns it and the first filter.
    pub fn new(ids: Vec<EventId>) -> (Self, Filter) {
        let requested: BTreeSet<EventId> = ids.into_iter().collect();
        let filter = Filter::new().ids(requested.iter().copied());
        (Self { requested, received: BTreeSet::new(), received_at_last_eose: 0, attempts: 1 }, filter)
    }

    /// A valid event arrived (or one we already have / deliberately rejected);
    /// true when it answers a requested id for the first time.
    pub fn on_event(&mut self, id: EventId) -> bool {
        self.requested.contains(&id) && self.received.insert(id)
    }

    /// Every id this fetch asked for.
    pub fn requested_ids(&self) -> impl Iterator<Item = &EventId> {
        self.requested.iter()
    }

    /// Ids asked for and not (yet) received.
    pub fn missing(&self) -> impl Iterator<Item = &EventId> {
        self.requested.difference(&self.received)
    }

    /// EOSE: complete, retry the missing ids, or fail after `retries` retries.
    /// An answer that brought new ids is a relay truncating its result (its
    /// per-REQ cap is below our chunk), not withholding: the rest is asked
    /// for again whatever the retry count.
    pub fn on_eose(&mut self, retries: u32) -> FetchOutcome {
        let missing: Vec<EventId> = self.requested.difference(&self.received).copied().collect();
        let progressed = self.received.len() > self.received_at_last_eose;
        self.received_at_last_eose = self.received.len();
        if missing.is_empty() {
            FetchOutcome::Complete
        } else if self.attempts <= retries || progressed {
            self.attempts += 1;
            FetchOutcome::Retry(Filter::new().ids(missing))
        } else {
            FetchOutcome::Failed(missing)
        }
    }

    /// The filter to re-send after a reconnect-less restart (timeout, rate limit).
    pub fn resend_filter(&self) -> Filter {
        Filter::new().ids(self.requested.difference(&self.received).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> EventId {
        EventId::from_byte_array([b; 32])
    }

    #[test]
    fn withheld_ids_are_asked_twice_then_fail() {
        let (mut f, first) = Fetch::new(vec![id(1), id(2)]);
        assert_eq!(first.ids.as_ref().unwrap().len(), 2);
        f.on_event(id(1));
        match f.on_eose(1) {
            FetchOutcome::Retry(filter) => assert_eq!(filter.ids.unwrap().into_iter().collect::<Vec<_>>(), vec![id(2)]),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.on_eose(1), FetchOutcome::Failed(vec![id(2)]));
    }

    #[test]
    fn delivered_on_retry_completes() {
        let (mut f, _) = Fetch::new(vec![id(1)]);
        assert!(matches!(f.on_eose(1), FetchOutcome::Retry(_)));
        f.on_event(id(1));
        assert_eq!(f.on_eose(1), FetchOutcome::Complete);
    }

    #[test]
    fn a_relay_truncating_its_answer_is_asked_until_it_stops_progressing() {
        // a relay capping each answer at 2 events
        let (mut f, _) = Fetch::new((1..=6).map(id).collect());
        f.on_event(id(1));
        f.on_event(id(2));
        assert!(matches!(f.on_eose(1), FetchOutcome::Retry(_)));
        f.on_event(id(3));
        f.on_event(id(4));
        assert!(matches!(f.on_eose(1), FetchOutcome::Retry(_)), "progress: truncating, not withholding");
        f.on_event(id(5));
        assert!(matches!(f.on_eose(1), FetchOutcome::Retry(_)));
        // id 6 is withheld: an answer without progress after the retries fails
        assert_eq!(f.on_eose(1), FetchOutcome::Failed(vec![id(6)]));
    }

    #[test]
    fn unrequested_ids_do_not_count() {
        let (mut f, _) = Fetch::new(vec![id(1)]);
        f.on_event(id(9));
        assert!(matches!(f.on_eose(0), FetchOutcome::Failed(_)));
    }
}

//! Deadlines as data: one table slot per timer kind, like quinn-proto's
//! `TimerTable`.
//!
//! The engine keeps one [`TimerTable`] of [`EngineTimer`]s and each relay one
//! of [`RelayTimer`]s. `Engine::poll_timeout` is the minimum over all of
//! them, and `Engine::handle_timeout` acts on exactly the slots that expired,
//! so every rule fires at its own deadline: a relay whose backoff ends at
//! `t` is dialled at `t`, not at the next health tick.

use core::marker::PhantomData;

use crate::time::Millis;

/// A kind of timer: a small enum whose variants index a table.
pub(crate) trait TimerKind: Copy + core::fmt::Debug + 'static {
    /// Every variant, in index order.
    const ALL: &'static [Self];
    /// The variant's slot.
    fn index(self) -> usize;
}

/// One optional deadline per timer kind `K` (`N` = number of kinds).
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<K: TimerKind, const N: usize> {
    slots: [Option<Millis>; N],
    kind: PhantomData<K>,
}

impl<K: TimerKind, const N: usize> Default for TimerTable<K, N> {
    fn default() -> Self {
        Self { slots: [None; N], kind: PhantomData }
    }
}

impl<K: TimerKind, const N: usize> TimerTable<K, N> {
    /// Arms `kind` for `at` (`None`: stops it).
    pub(crate) fn set(&mut self, kind: K, at: Option<Millis>) {
        self.slots[kind.index()] = at;
    }

    /// The deadline of `kind`, if armed.
    pub(crate) fn get(&self, kind: K) -> Option<Millis> {
        self.slots[kind.index()]
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Millis> {
        self.slots.iter().flatten().min().copied()
    }

    /// The kinds whose deadline is at or before `now`, in index order.
    pub(crate) fn expired(&self, now: Millis) -> impl Iterator<Item = K> + '_ {
        K::ALL.iter().copied().filter(move |k| self.slots[k.index()].is_some_and(|t| t <= now))
    }
}

/// Declares a timer-kind enum with its `ALL` table (variants in slot order).
macro_rules! timer_kinds {
    ($(#[$doc:meta])* $name:ident, $count:ident { $( $(#[$vdoc:meta])* $variant:ident ),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $( $(#[$vdoc])* $variant, )*
        }

        /// How many kinds there are (the table's size).
        pub(crate) const $count: usize = [$( $name::$variant ),*].len();

        impl TimerKind for $name {
            const ALL: &'static [Self] = &[$( $name::$variant ),*];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

timer_kinds! {
    /// The engine's own timers.
    EngineTimer, ENGINE_TIMERS {
        /// The health and metrics tick (SPEC §7, every 2 s): connect budget,
        /// heartbeat of connected relays.
        Tick,
        /// The batch window closes: new work goes out.
        BatchWindow,
        /// A failing store is tried again.
        SaveRetry,
        /// The sync state is due to be persisted.
        Persist,
    }
}

timer_kinds! {
    /// One relay's timers.
    RelayTimer, RELAY_TIMERS {
        /// Disconnected: the next connection attempt (backoff, Dead retry,
        /// the end of a rate-limit cooldown).
        Dial,
        /// Historic work stops waiting for the NIP-11 document.
        RelayInfo,
        /// The pause after a "too many" answer ends.
        Pause,
        /// A rate-limit cooldown ends: frames held back go out.
        Cooldown,
        /// The earliest deadline of a historic request (retry, probe or fail).
        Requests,
        /// The earliest request suspected of a "too many" NOTICE is judged.
        Suspect,
        /// The earliest closed live subscription is reopened.
        LiveReopen,
        /// The daily reconciliation (SPEC §5).
        Reconcile,
        /// Syncing with nothing in flight: Connected once the settle window passed.
        Settle,
        /// The stability period of the connection ends: failures are forgiven.
        Stable,
        /// A quiet period after live subscriptions were closed ends.
        Forgive,
    }
}

/// A relay's timer table.
pub(crate) type RelayTimers = TimerTable<RelayTimer, RELAY_TIMERS>;
/// The engine's timer table.
pub(crate) type EngineTimers = TimerTable<EngineTimer, ENGINE_TIMERS>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_the_earliest_armed_slot_and_expired_lists_due_kinds() {
        let mut t = RelayTimers::default();
        assert_eq!(t.next(), None);
        t.set(RelayTimer::Reconcile, Some(Millis(50)));
        t.set(RelayTimer::Dial, Some(Millis(20)));
        t.set(RelayTimer::Settle, Some(Millis(30)));
        assert_eq!(t.next(), Some(Millis(20)));
        assert_eq!(t.expired(Millis(30)).collect::<Vec<_>>(), vec![RelayTimer::Dial, RelayTimer::Settle]);
        t.set(RelayTimer::Dial, None);
        assert_eq!((t.next(), t.get(RelayTimer::Dial)), (Some(Millis(30)), None));
        assert_eq!(RELAY_TIMERS, RelayTimer::ALL.len());
        assert!(RelayTimer::ALL.iter().enumerate().all(|(i, k)| k.index() == i));
    }
}

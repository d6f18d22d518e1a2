//! Wall-clock time as the engine sees it: milliseconds since the Unix epoch.
//!
//! The engine never reads a clock; every input carries `now`. Wall time (not a
//! monotonic instant) is used because sync state is persisted across restarts
//! and "reconnected within 15 minutes" must survive a process restart.

use core::ops::{Add, Sub};
use core::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The Unix epoch.
    pub const ZERO: Millis = Millis(0);

    /// Whole seconds since the epoch (what nostr `created_at` uses).
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

// In TypeScript a plain `number` (serde writes the inner `u64`; unix
// milliseconds stay far below 2^53).
#[cfg(feature = "typescript")]
ts_as_primitive!(Millis, "number");

impl Add<Duration> for Millis {
    type Output = Millis;
    fn add(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(d.as_millis() as u64))
    }
}

impl Sub<Duration> for Millis {
    type Output = Millis;
    fn sub(self, d: Duration) -> Millis {
        Millis(self.0.saturating_sub(d.as_millis() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5) - Duration::from_millis(10), Millis(0));
        assert_eq!(Millis(5).since(Millis(10)), Duration::ZERO);
        assert_eq!(Millis(2500).as_secs(), 2);
    }
}

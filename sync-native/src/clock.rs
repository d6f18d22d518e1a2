//! [`Clock`] on tokio timers: wall-clock milliseconds for the engine (its
//! state survives restarts, so it reasons in Unix time) and `tokio::time`
//! sleeps that track that wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use sync_core::{Clock, Millis};

/// Wall clock + tokio sleeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Millis {
        now_millis()
    }

    fn sleep_until(&self, deadline: Millis) -> LocalBoxFuture<'static, ()> {
        // Sleep for the wall-clock distance; a clock jump only makes one wake-up early
        // or late, and the engine re-arms its timer from the time it is given.
        let wait = Duration::from_millis(deadline.0.saturating_sub(now_millis().0));
        tokio::time::sleep(wait).boxed_local()
    }
}

/// Milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_millis() -> Millis {
    Millis(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_until_the_deadline() {
        let c = TokioClock;
        let start = c.now();
        c.sleep_until(start + Duration::from_millis(50)).await;
        assert!(c.now().since(start) >= Duration::from_millis(45));
    }
}

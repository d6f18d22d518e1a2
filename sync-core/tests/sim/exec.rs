//! Virtual time and the smallest executor that runs the production driver
//! deterministically.
//!
//! [`Time`] is the simulation's clock: `now` moves only when the world loop
//! (`world::Sim::run`) says so, and a [`Sleep`] completes once `now` has
//! reached its deadline. [`SimClock`] is the driver's [`Clock`] over it.
//!
//! [`Exec`] runs one future (the driver's `run`) on this thread: it polls it
//! while its waker was called and reports when it is stalled, i.e. waiting
//! for something only the world or the passing of time can bring. The
//! driver spawns nothing, so one task is all there is; no thread, no real
//! time, no hash order: a seed replays exactly.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use sync_core::{Clock, Millis};

/// How far a detected busy loop pushes the driver's next timer (as the
/// simulation did before it ran the driver: the run goes on, the liveness
/// failure is recorded).
pub const SPIN_STEP: Duration = Duration::from_millis(10);

/// The driver's timer firing this often at one virtual instant is a busy
/// loop of the driver itself (a healthy driver's fires at most a few times):
/// further fires then wait [`SPIN_STEP`], so the run goes on instead of
/// hanging the test, and the world records a liveness failure.
pub const TIMER_FIRES_PER_INSTANT: u64 = 10_000;

/// The virtual clock and its pending sleeps.
pub struct Timers {
    now: Millis,
    next_id: u64,
    /// Pending sleeps by (deadline, id), with the waker of their last poll.
    sleepers: BTreeMap<(Millis, u64), Option<Waker>>,
    /// A busy loop was detected at this instant: the driver's next timer at
    /// or before it is pushed [`SPIN_STEP`] later.
    spin_guard: Option<Millis>,
    /// The driver's timer fires at the current instant so far.
    fires: (Millis, u64),
    /// Instants at which the driver's timer fired too often (its own busy loops).
    pub driver_spins: Vec<Millis>,
}

/// Shared handle to the virtual clock.
pub type Time = Rc<RefCell<Timers>>;

/// A virtual clock starting at `start`.
pub fn new_time(start: Millis) -> Time {
    Rc::new(RefCell::new(Timers {
        now: start,
        next_id: 0,
        sleepers: BTreeMap::new(),
        spin_guard: None,
        fires: (start, 0),
        driver_spins: Vec::new(),
    }))
}

impl Timers {
    /// Current virtual time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The earliest pending sleep.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.sleepers.keys().next().map(|(t, _)| *t)
    }

    /// Moves time forward to `to` (never back) without waking anyone.
    pub fn set_now(&mut self, to: Millis) {
        self.now = self.now.max(to);
    }

    /// Wakes every sleep whose deadline has come.
    pub fn wake_due(&mut self) {
        while let Some(entry) = self.sleepers.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            if let Some(w) = entry.remove() {
                w.wake();
            }
        }
    }

    /// The driver is spinning at `now`: delay its next timer a little.
    pub fn guard_spin(&mut self) {
        self.spin_guard = Some(self.now);
    }
}

/// Completes once virtual time reaches `deadline`.
pub struct Sleep {
    time: Time,
    key: (Millis, u64),
    /// One of the driver's own timers ([`SimClock`]), watched for busy loops.
    driver: bool,
}

/// A sleep until `deadline` on `time`.
pub fn sleep(time: &Time, deadline: Millis) -> Sleep {
    let mut t = time.borrow_mut();
    t.next_id += 1;
    Sleep { time: Rc::clone(time), key: (deadline, t.next_id), driver: false }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let time = Rc::clone(&self.time);
        let mut t = time.borrow_mut();
        if t.now >= self.key.0 {
            t.sleepers.remove(&self.key);
            if !self.driver {
                return Poll::Ready(());
            }
            let now = t.now;
            t.fires = if t.fires.0 == now { (now, t.fires.1 + 1) } else { (now, 1) };
            if t.fires.1 <= TIMER_FIRES_PER_INSTANT {
                return Poll::Ready(());
            }
            // the driver spins on its own timer: make it wait a step
            if t.driver_spins.last() != Some(&now) {
                t.driver_spins.push(now);
            }
            self.key.0 = now + SPIN_STEP;
        }
        t.sleepers.insert(self.key, Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Ok(mut t) = self.time.try_borrow_mut() {
            t.sleepers.remove(&self.key);
        }
    }
}

/// The driver's clock: virtual time.
#[derive(Clone)]
pub struct SimClock(pub Time);

impl Clock for SimClock {
    fn now(&self) -> Millis {
        self.0.borrow().now
    }

    fn sleep_until(&self, deadline: Millis) -> LocalBoxFuture<'static, ()> {
        let deadline = {
            let t = self.0.borrow();
            // a busy loop: the timer that would fire again at once waits a step
            if t.spin_guard == Some(t.now) && deadline <= t.now {
                t.now + SPIN_STEP
            } else {
                deadline
            }
        };
        let mut s = sleep(&self.0, deadline);
        s.driver = true;
        Box::pin(s)
    }
}

/// The waker of [`Exec`]'s one task: raises a flag.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs one future at a time on this thread, polling it only when woken.
pub struct Exec<T> {
    task: Option<LocalBoxFuture<'static, T>>,
    flag: Arc<Flag>,
    waker: Waker,
    /// Polls so far (for the performance notes).
    pub polls: u64,
}

impl<T> Exec<T> {
    /// An executor with nothing to run.
    pub fn new() -> Self {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        Self { task: None, flag, waker, polls: 0 }
    }

    /// Runs `task` from now on (dropping any task still there).
    pub fn spawn(&mut self, task: LocalBoxFuture<'static, T>) {
        self.task = Some(task);
        self.flag.0.store(true, Ordering::Relaxed);
    }

    /// Drops the running task, if any.
    pub fn abandon(&mut self) -> Option<LocalBoxFuture<'static, T>> {
        self.task.take()
    }

    /// Polls the task until it waits for something nobody has signalled
    /// yet; returns its output if it finished.
    pub fn run_until_stalled(&mut self) -> Option<T> {
        let mut cx = Context::from_waker(&self.waker);
        while self.flag.0.swap(false, Ordering::Relaxed) {
            let task = self.task.as_mut()?;
            self.polls += 1;
            if let Poll::Ready(out) = task.as_mut().poll(&mut cx) {
                self.task = None;
                return Some(out);
            }
        }
        None
    }
}

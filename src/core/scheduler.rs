//! The ready queue and the timer heap, and the steps of one loop turn that touch them.
//!
//! A turn (asyncio's `_run_once`) is: `poll_timeout` (prune cancelled timers, decide how long to
//! block), poll and queue the I/O callbacks, `collect_due` (move due timers to the ready queue and
//! take the snapshot), then run exactly that many callbacks with `pop_ready`. Callbacks queued while
//! the turn runs wait for the next turn, so a callback that reschedules itself cannot starve I/O.

use std::collections::VecDeque;

use super::timers::TimerHeap;
use super::Entry;

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: never block longer than a day, whatever the next timer says.
pub const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

/// Timers are `T`; the ready queue holds `R`, which a due timer becomes. They differ when the
/// ready queue also takes entries that never were timers and are bigger than a timer's (the
/// heap's entries stay small: programs keep a million timers pending).
pub struct Scheduler<T, R = T> {
    ready: VecDeque<R>,
    timers: TimerHeap<T>,
}

impl<T: Entry, R: From<T>> Default for Scheduler<T, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Entry, R: From<T>> Scheduler<T, R> {
    pub fn new() -> Self {
        Scheduler {
            ready: VecDeque::new(),
            timers: TimerHeap::new(),
        }
    }

    pub fn push_ready(&mut self, entry: R) {
        self.ready.push_back(entry);
    }

    pub fn push_timer(&mut self, when: f64, entry: T) {
        self.timers.push(when, entry);
    }

    pub fn timer_cancelled(&mut self) {
        self.timers.note_cancelled();
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    pub fn timers_len(&self) -> usize {
        self.timers.len()
    }

    pub fn cancelled_timers(&self) -> usize {
        self.timers.cancelled_count()
    }

    /// How long the poller may block: `Some(0.0)` when callbacks are ready or a stop is pending,
    /// the time to the next live timer (capped at a day), or `None` to block until an event.
    /// The clock is read only when a timer decides the answer.
    pub fn poll_timeout(&mut self, now: impl FnOnce() -> f64, stopping: bool) -> Option<f64> {
        self.timers.prune();
        if !self.ready.is_empty() || stopping {
            return Some(0.0);
        }
        self.timers
            .next_deadline()
            .map(|when| (when - now()).clamp(0.0, MAXIMUM_SELECT_TIMEOUT))
    }

    /// Moves the timers due before `end_time` to the ready queue and returns the number of
    /// callbacks this turn runs: those ready now, and no more. The clock is read only if there
    /// are timers.
    pub fn collect_due(&mut self, end_time: impl FnOnce() -> f64) -> usize {
        if !self.timers.is_empty() {
            let end_time = end_time();
            while let Some(entry) = self.timers.pop_due(end_time) {
                self.ready.push_back(R::from(entry));
            }
        }
        self.ready.len()
    }

    pub fn pop_ready(&mut self) -> Option<R> {
        self.ready.pop_front()
    }

    /// The ready callbacks, in order.
    pub fn iter_ready(&self) -> impl Iterator<Item = &R> {
        self.ready.iter()
    }

    /// The timers, in no particular order.
    pub fn iter_timers(&self) -> impl Iterator<Item = &T> {
        self.timers.iter()
    }

    /// Empties both queues (the loop is closing); returns what they held.
    pub fn clear(&mut self) -> (Vec<R>, Vec<T>) {
        (self.ready.drain(..).collect(), self.timers.drain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Clone)]
    struct Cb(u32, Rc<Cell<bool>>);
    impl Entry for Cb {
        fn is_cancelled(&self) -> bool {
            self.1.get()
        }
    }
    fn cb(id: u32) -> Cb {
        Cb(id, Rc::new(Cell::new(false)))
    }

    #[test]
    fn ready_work_means_no_blocking() {
        let mut s: Scheduler<Cb> = Scheduler::new();
        assert_eq!(s.poll_timeout(|| 0.0, false), None);
        assert_eq!(s.poll_timeout(|| 0.0, true), Some(0.0));
        s.push_timer(5.0, cb(0));
        assert_eq!(s.poll_timeout(|| 1.0, false), Some(4.0));
        assert_eq!(s.poll_timeout(|| 9.0, false), Some(0.0));
        s.push_ready(cb(1));
        assert_eq!(s.poll_timeout(|| 1.0, false), Some(0.0));
    }

    #[test]
    fn timeout_is_capped_and_ignores_cancelled_heads() {
        let mut s: Scheduler<Cb> = Scheduler::new();
        let early = cb(0);
        s.push_timer(1.0, early.clone());
        s.push_timer(f64::INFINITY, cb(1));
        early.1.set(true);
        s.timer_cancelled();
        assert_eq!(s.poll_timeout(|| 0.0, false), Some(MAXIMUM_SELECT_TIMEOUT));
        assert_eq!(s.timers_len(), 1);
    }

    #[test]
    fn a_turn_runs_only_its_snapshot() {
        let mut s: Scheduler<Cb> = Scheduler::new();
        s.push_ready(cb(0));
        s.push_timer(1.0, cb(1));
        s.push_timer(3.0, cb(2));
        let n = s.collect_due(|| 2.0);
        assert_eq!(n, 2);
        let mut ran = vec![];
        for _ in 0..n {
            let c = s.pop_ready().unwrap();
            ran.push(c.0);
            // Each callback queues another: those wait for the next turn.
            s.push_ready(cb(c.0 + 10));
        }
        assert_eq!(ran, vec![0, 1]);
        assert_eq!(s.ready_len(), 2);
        assert_eq!(s.collect_due(|| 2.0), 2);
        assert_eq!(s.pop_ready().unwrap().0, 10);
    }

    #[test]
    fn due_timers_join_after_already_ready_callbacks() {
        let mut s: Scheduler<Cb> = Scheduler::new();
        s.push_timer(0.5, cb(7));
        s.push_ready(cb(1));
        s.collect_due(|| 1.0);
        assert_eq!(s.pop_ready().unwrap().0, 1);
        assert_eq!(s.pop_ready().unwrap().0, 7);
    }

    #[test]
    fn clear_returns_everything() {
        let mut s: Scheduler<Cb> = Scheduler::new();
        s.push_ready(cb(0));
        s.push_timer(1.0, cb(1));
        let (ready, timers) = s.clear();
        assert_eq!((ready.len(), timers.len()), (1, 1));
        assert_eq!(s.poll_timeout(|| 0.0, false), None);
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    struct Never;
    impl Entry for Never {
        fn is_cancelled(&self) -> bool {
            false
        }
    }

    #[test]
    fn no_timers_no_clock_reads() {
        let mut s: Scheduler<Never> = Scheduler::new();
        s.push_ready(Never);
        let clock = || -> f64 { panic!("the clock was read") };
        assert_eq!(s.poll_timeout(clock, false), Some(0.0));
        assert_eq!(s.collect_due(clock), 1);
        s.pop_ready();
        assert_eq!(s.poll_timeout(clock, false), None);
    }
}

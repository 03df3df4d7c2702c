//! Keeping loop threads out of a finalizing interpreter.
//!
//! Python 3.9 to 3.13 end a thread that asks for the GIL once finalization has begun with
//! `pthread_exit`. Its forced unwind runs through every frame of the thread's stack, and it cannot
//! cross the `extern "C"` functions by which Python calls into the loop: glibc aborts the process
//! ("FATAL: exception not rethrown"). A loop in a daemon thread asks for the GIL each time its poll
//! returns, and the interpreter can begin finalizing during any poll. (Python 3.14 parks such a
//! thread instead of ending it.)
//!
//! Checking for finalization before asking for the GIL cannot work: the thread would wait for the
//! GIL, held by the finalizing thread, and be ended when it gets it. So the gate is closed earlier,
//! from an `atexit` callback, which runs before finalization begins. From then on a loop of another
//! thread that returns from its poll parks for good instead of asking for the GIL, as Python 3.14's
//! threads do. The closing thread then waits, for a bounded time, for the loops that were running
//! callbacks to get to their poll: a loop that was still running Python code when finalization
//! began could be ended in it, its own frames below.
//!
//! Only loops that were running when the gate closed park: a loop that a later exit callback runs
//! (in a thread it starts and joins) must finish. The closing thread never parks.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

/// The process's gate, which `ferroloop`'s `atexit` callback closes.
pub static GATE: ExitGate = ExitGate::new();

thread_local! {
    /// This thread runs a loop that the gate counts.
    static TRACKED: Cell<bool> = const { Cell::new(false) };
    /// This thread closed the gate.
    static CLOSER: Cell<bool> = const { Cell::new(false) };
}

#[derive(Default)]
pub struct ExitGate {
    closed: AtomicBool,
    /// Counted loops outside their poll. Every access is sequentially consistent: a loop
    /// returning from its poll counts itself and then reads `closed`, the closer sets `closed`
    /// and then reads the count, so one of them sees the other.
    busy: AtomicUsize,
}

/// A running loop the gate counts; dropping it when the loop stops uncounts it.
pub struct Tracked {
    gate: &'static ExitGate,
}

impl ExitGate {
    pub const fn new() -> Self {
        ExitGate {
            closed: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
        }
    }

    /// Counts the loop this thread starts running, busy, unless the gate is closed already.
    pub fn track(&'static self) -> Option<Tracked> {
        self.busy.fetch_add(1, SeqCst);
        if self.closed.load(SeqCst) {
            self.busy.fetch_sub(1, SeqCst);
            return None;
        }
        TRACKED.set(true);
        Some(Tracked { gate: self })
    }

    /// Called with the GIL let go, before this thread's loop blocks in its poll.
    pub fn entering_poll(&self) {
        if TRACKED.get() {
            self.busy.fetch_sub(1, SeqCst);
        }
    }

    /// Called with the GIL still let go, when the poll returns: parks this thread for good if
    /// the gate closed meanwhile, so that it never asks for the GIL again.
    pub fn leaving_poll(&self) {
        if TRACKED.get() {
            self.busy.fetch_add(1, SeqCst);
            if self.closed.load(SeqCst) && !CLOSER.get() {
                self.busy.fetch_sub(1, SeqCst);
                loop {
                    thread::park();
                }
            }
        }
    }

    /// Closes the gate, then waits up to `limit` for the counted loops of other threads to be
    /// in their poll. Returns whether they all got there.
    pub fn close(&self, limit: Duration) -> bool {
        CLOSER.set(true);
        self.closed.store(true, SeqCst);
        let own = usize::from(TRACKED.get());
        let deadline = Instant::now() + limit;
        while self.busy.load(SeqCst) > own {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// In a forked child, whose only thread is the one that forked: only its loop is left.
    pub(crate) fn after_fork_in_child(&self) {
        self.busy.store(usize::from(TRACKED.get()), SeqCst);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        TRACKED.set(false);
        self.gate.busy.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn new_gate() -> &'static ExitGate {
        Box::leak(Box::new(ExitGate::new()))
    }

    /// A loop thread: tracked, busy for `busy_for`, then "polls" until told to return from it.
    /// Reports when it is in its poll and when it got out (which a parked thread never does).
    fn spawn_loop(
        gate: &'static ExitGate,
        busy_for: Duration,
    ) -> (mpsc::Sender<()>, mpsc::Receiver<&'static str>) {
        let (wake, woken) = mpsc::channel();
        let (report, reports) = mpsc::channel();
        thread::spawn(move || {
            let tracked = gate.track();
            assert!(tracked.is_some());
            thread::sleep(busy_for);
            gate.entering_poll();
            // The test may be over, its ends of the channels dropped.
            let _ = report.send("polling");
            let _ = woken.recv();
            gate.leaving_poll();
            let _ = report.send("returned");
        });
        (wake, reports)
    }

    /// Returns once a loop thread has counted itself (it is then busy for a while).
    fn wait_until_counted(gate: &ExitGate) {
        while gate.busy.load(SeqCst) == 0 {
            thread::yield_now();
        }
    }

    /// Ends the loop thread's poll and checks it never gets out of it.
    fn assert_parks_when_woken(wake: &mpsc::Sender<()>, reports: &mpsc::Receiver<&'static str>) {
        wake.send(()).unwrap();
        let returned = reports.recv_timeout(Duration::from_millis(200));
        assert_eq!(returned, Err(mpsc::RecvTimeoutError::Timeout));
    }

    #[test]
    fn a_loop_polling_when_the_gate_closes_parks_when_its_poll_returns() {
        let gate = new_gate();
        let (wake, reports) = spawn_loop(gate, Duration::ZERO);
        assert_eq!(reports.recv().unwrap(), "polling");
        assert!(gate.close(Duration::from_secs(5)));
        assert_parks_when_woken(&wake, &reports);
    }

    #[test]
    fn closing_waits_for_a_busy_loop_to_reach_its_poll() {
        let gate = new_gate();
        let (wake, reports) = spawn_loop(gate, Duration::from_millis(100));
        wait_until_counted(gate);
        // Closed while the loop is busy: true only once it got to its poll.
        assert!(gate.close(Duration::from_secs(5)));
        assert_eq!(gate.busy.load(SeqCst), 0);
        assert_eq!(reports.recv().unwrap(), "polling");
        assert_parks_when_woken(&wake, &reports);
    }

    #[test]
    fn closing_gives_up_on_a_loop_busy_past_the_limit() {
        let gate = new_gate();
        let (_wake, _reports) = spawn_loop(gate, Duration::from_secs(3));
        wait_until_counted(gate);
        let started = Instant::now();
        assert!(!gate.close(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_loop_started_after_the_gate_closed_is_not_counted_and_never_parks() {
        let gate = new_gate();
        assert!(gate.close(Duration::ZERO));
        let returned = thread::spawn(move || {
            assert!(gate.track().is_none());
            gate.entering_poll();
            gate.leaving_poll();
            gate.busy.load(SeqCst)
        })
        .join()
        .unwrap();
        assert_eq!(returned, 0);
    }

    #[test]
    fn the_closing_threads_own_loop_neither_delays_the_close_nor_parks() {
        let gate = new_gate();
        let done = thread::spawn(move || {
            let tracked = gate.track();
            let started = Instant::now();
            assert!(gate.close(Duration::from_secs(5)));
            let waited = started.elapsed();
            gate.entering_poll();
            gate.leaving_poll();
            drop(tracked);
            (waited, gate.busy.load(SeqCst))
        })
        .join()
        .unwrap();
        assert!(done.0 < Duration::from_secs(1), "{:?}", done.0);
        assert_eq!(done.1, 0);
    }

    #[test]
    fn a_stopped_loop_is_uncounted() {
        let gate = new_gate();
        thread::spawn(move || drop(gate.track())).join().unwrap();
        assert_eq!(gate.busy.load(SeqCst), 0);
        assert!(gate.close(Duration::ZERO));
    }

    #[test]
    fn a_forked_child_counts_only_the_forking_threads_loop() {
        let gate = new_gate();
        // A busy loop of another thread, which the child does not have.
        gate.busy.fetch_add(1, SeqCst);
        gate.after_fork_in_child();
        assert!(gate.close(Duration::ZERO));
    }
}

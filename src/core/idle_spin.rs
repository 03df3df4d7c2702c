//! How long a wait for events keeps polling before it blocks: adaptive, as KVM's halt polling is.
//!
//! A loop that blocks in `epoll_wait` and is woken from another core pays for the wake-up twice: the
//! waking side interrupts the sleeping core, and that core leaves its idle state before the loop
//! runs again. On a virtual machine whose guest does not poll before it halts (this project's
//! benchmark VMs boot with `haltpoll.guest_halt_poll_ns=0`), each such wake-up is an exit to the
//! hypervisor and costs more than a whole echo round trip of work: a server waiting for its client
//! on the other core spent most of its time waking up. The kernel's answer is halt polling: before
//! halting, poll for a while if recent waits were short. This is the same policy one level up: a
//! wait first polls without blocking, yielding the CPU between polls, for as long as the window
//! below, which follows the waits the loop has seen.
//!
//! The window starts closed. A wait that an event ended after more than the window but within
//! `MAX` would have been caught by a longer window: it grows (to `START`, then doubling up to
//! `MAX`). A wait longer than `MAX` closes it again. So an idle loop, or one whose events come
//! further apart than `MAX`, does not spin, and a loop spins at most `MAX` per wait it could not
//! shorten. A wait bounded by a timer within the window is not spun: a loop sleeping in short steps
//! would become a busy loop. When a yield lets another thread run on this core, spinning pauses (see
//! `found_core_shared`). `FERROLOOP_IDLE_SPIN=0` in the environment turns it off.

use std::ffi::OsStr;
use std::io;
use std::time::{Duration, Instant};

/// The first window a short wait opens.
const START: Duration = Duration::from_micros(10);
/// The longest window, and the longest wait that still counts as short.
const MAX: Duration = Duration::from_micros(50);
/// A `sched_yield` that took this long ran another thread on this core.
const GAVE_THE_CPU_AWAY: Duration = Duration::from_micros(5);
/// How many waits go unspun after a yield gave the CPU away; doubled each time the first spin after
/// a pause gives it away again, up to `LONGEST_PAUSE`.
const SHARED_CORE_PAUSE: u32 = 100;
const LONGEST_PAUSE: u32 = 100_000;

#[derive(Debug)]
pub struct IdleSpin {
    enabled: bool,
    window: Duration,
    /// Waits left before the window may open again, after a spin found the core shared.
    paused: u32,
    /// The pause that the next finding of a shared core starts.
    next_pause: u32,
}

impl IdleSpin {
    pub fn new(enabled: bool) -> Self {
        IdleSpin {
            enabled,
            window: Duration::ZERO,
            paused: 0,
            next_pause: SHARED_CORE_PAUSE,
        }
    }

    /// Enabled unless `FERROLOOP_IDLE_SPIN` is `0`.
    pub fn from_env() -> Self {
        Self::new(enabled_by(
            std::env::var_os("FERROLOOP_IDLE_SPIN").as_deref(),
        ))
    }

    /// Waits for events for at most `timeout` (None: no limit). `poll` polls once, waiting at most
    /// the time it is given, and says whether anything arrived; so does `wait`.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut poll: impl FnMut(Option<Duration>) -> io::Result<bool>,
    ) -> io::Result<bool> {
        let start = Instant::now();
        let window = self.window(timeout);
        let mut arrived = false;
        while !window.is_zero() {
            arrived = poll(Some(Duration::ZERO))?;
            let before_yield = Instant::now();
            if arrived || before_yield - start >= window {
                break;
            }
            // SAFETY: sched_yield takes no arguments; on Linux it always succeeds.
            unsafe { libc::sched_yield() };
            if self.learn_from_yield(before_yield.elapsed()) {
                break;
            }
        }
        if !arrived {
            let left = match timeout {
                Some(t) if !window.is_zero() => Some(t.saturating_sub(start.elapsed())),
                _ => timeout,
            };
            arrived = poll(left)?;
        }
        self.record(start.elapsed(), arrived);
        Ok(arrived)
    }

    /// How long to poll before blocking, for a wait of at most `timeout` (None: no limit).
    fn window(&self, timeout: Option<Duration>) -> Duration {
        match timeout {
            _ if !self.enabled || self.paused > 0 => Duration::ZERO,
            Some(timeout) if timeout <= self.window => Duration::ZERO,
            _ => self.window,
        }
    }

    /// Learns from one wait: how long it lasted, and whether an event (not its timeout) ended it.
    fn record(&mut self, waited: Duration, woken: bool) {
        if self.paused > 0 {
            self.paused -= 1;
        } else if waited > MAX {
            self.window = Duration::ZERO;
        } else if woken && waited > self.window {
            self.window = (self.window * 2).clamp(START, MAX);
        }
    }

    /// Learns from one `sched_yield` by how long it took, and says whether it ran another thread.
    fn learn_from_yield(&mut self, yield_took: Duration) -> bool {
        if yield_took < GAVE_THE_CPU_AWAY {
            self.next_pause = SHARED_CORE_PAUSE;
            return false;
        }
        self.found_core_shared();
        true
    }

    /// A yield let another thread run on this core. That thread is likely the one that will wake
    /// the loop, and waking a sleeper on its own core costs no interrupt: spinning would only take
    /// turns with it (on one core, HTTP keep-alive under wrk lost 14% to such turns). The window
    /// closes for a pause that grows while the core stays shared: a loop that shares its core with
    /// its peer for good soon spins once in `LONGEST_PAUSE` waits, and one that met a passing
    /// thread there is back to spinning after `SHARED_CORE_PAUSE`.
    fn found_core_shared(&mut self) {
        self.window = Duration::ZERO;
        self.paused = self.next_pause;
        self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
    }
}

fn enabled_by(setting: Option<&OsStr>) -> bool {
    setting != Some(OsStr::new("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn opened(waits: usize) -> IdleSpin {
        let mut spin = IdleSpin::new(true);
        for _ in 0..waits {
            spin.record(us(45), true);
        }
        spin
    }

    #[test]
    fn starts_closed() {
        assert_eq!(IdleSpin::new(true).window(None), Duration::ZERO);
    }

    #[test]
    fn short_waits_open_it_step_by_step_up_to_the_most() {
        let mut spin = IdleSpin::new(true);
        let mut seen = Vec::new();
        for _ in 0..5 {
            spin.record(us(45), true);
            seen.push(spin.window(None));
        }
        assert_eq!(seen, [us(10), us(20), us(40), MAX, MAX]);
    }

    #[test]
    fn a_wait_the_window_covered_changes_nothing() {
        let mut spin = opened(2);
        assert_eq!(spin.window(None), us(20));
        spin.record(us(3), true);
        spin.record(us(20), true);
        assert_eq!(spin.window(None), us(20));
    }

    #[test]
    fn a_long_wait_closes_it() {
        let mut spin = opened(3);
        spin.record(us(51), true);
        assert_eq!(spin.window(None), Duration::ZERO);
    }

    #[test]
    fn a_timeout_never_opens_it_and_a_long_one_closes_it() {
        let mut spin = IdleSpin::new(true);
        spin.record(us(30), false);
        assert_eq!(spin.window(None), Duration::ZERO);
        spin.record(us(30), true);
        spin.record(us(30), false);
        assert_eq!(spin.window(None), us(10));
        spin.record(Duration::from_millis(1), false);
        assert_eq!(spin.window(None), Duration::ZERO);
    }

    #[test]
    fn a_timer_within_the_window_is_waited_for_without_spinning() {
        let spin = opened(2);
        assert_eq!(spin.window(Some(us(20))), Duration::ZERO);
        assert_eq!(spin.window(Some(us(21))), us(20));
        assert_eq!(spin.window(Some(Duration::ZERO)), Duration::ZERO);
    }

    /// How many waits after `found_core_shared` the window stays closed, short waits all.
    fn pause(spin: &mut IdleSpin) -> u32 {
        spin.found_core_shared();
        let mut waits = 0;
        while spin.window(None).is_zero() {
            spin.record(us(45), true);
            waits += 1;
        }
        waits - 1
    }

    #[test]
    fn a_shared_core_pauses_it_longer_each_time_up_to_the_longest() {
        let mut spin = opened(4);
        assert_eq!(pause(&mut spin), SHARED_CORE_PAUSE);
        assert_eq!(pause(&mut spin), 2 * SHARED_CORE_PAUSE);
        assert_eq!(pause(&mut spin), 4 * SHARED_CORE_PAUSE);
        while spin.next_pause < LONGEST_PAUSE {
            pause(&mut spin);
        }
        assert_eq!(pause(&mut spin), LONGEST_PAUSE);
    }

    #[test]
    fn a_yield_that_keeps_the_cpu_makes_the_next_pause_short_again() {
        let mut spin = opened(4);
        assert!(spin.learn_from_yield(GAVE_THE_CPU_AWAY));
        assert_eq!(spin.next_pause, 2 * SHARED_CORE_PAUSE);
        assert!(!spin.learn_from_yield(us(1)));
        assert_eq!(spin.next_pause, SHARED_CORE_PAUSE);
    }

    #[test]
    fn disabled_it_never_opens() {
        let mut spin = IdleSpin::new(false);
        for _ in 0..10 {
            spin.record(us(45), true);
        }
        assert_eq!(spin.window(None), Duration::ZERO);
    }

    #[test]
    fn only_a_zero_turns_it_off() {
        assert!(enabled_by(None));
        assert!(enabled_by(Some(OsStr::new("1"))));
        assert!(enabled_by(Some(OsStr::new(""))));
        assert!(!enabled_by(Some(OsStr::new("0"))));
    }

    /// The timeouts `wait` passed to `poll`, with `poll` reporting an event on call `ready_at`.
    fn polls(
        spin: &mut IdleSpin,
        timeout: Option<Duration>,
        ready_at: usize,
    ) -> Vec<Option<Duration>> {
        let mut seen = Vec::new();
        let arrived = spin
            .wait(timeout, |t| {
                seen.push(t);
                Ok(seen.len() == ready_at)
            })
            .unwrap();
        assert_eq!(arrived, seen.len() == ready_at);
        seen
    }

    #[test]
    fn a_closed_window_blocks_at_once_with_the_whole_timeout() {
        let mut spin = IdleSpin::new(true);
        let seen = polls(&mut spin, Some(Duration::from_secs(1)), 1);
        assert_eq!(seen, [Some(Duration::from_secs(1))]);
    }

    #[test]
    fn an_event_found_while_spinning_ends_the_wait_without_blocking() {
        let mut spin = opened(4);
        let seen = polls(&mut spin, None, 1);
        assert_eq!(seen, [Some(Duration::ZERO)]);
    }

    #[test]
    fn a_spin_that_finds_nothing_blocks_for_what_is_left_of_the_timeout() {
        let mut spin = opened(4);
        let timeout = Duration::from_secs(1);
        let seen = polls(&mut spin, Some(timeout), usize::MAX);
        let (last, spun) = seen.split_last().unwrap();
        assert!(!spun.is_empty() && spun.iter().all(|t| *t == Some(Duration::ZERO)));
        let left = last.unwrap();
        assert!(left < timeout && left > timeout - Duration::from_millis(100));
    }

    #[test]
    fn the_wait_teaches_the_window() {
        // Each wait here ends at once, unless the test thread is preempted in it.
        let mut spin = IdleSpin::new(true);
        let opened = (0..100).any(|_| {
            spin.wait(None, |_| Ok(true)).unwrap();
            spin.window(None) > Duration::ZERO
        });
        assert!(opened);
    }
}

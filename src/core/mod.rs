//! The Python-free heart of the loop: clock, ready queue, timer heap, poller (with its idle spin),
//! waker, fork guard, exit gate, and the write buffer of stream transports.
//!
//! Nothing here knows about Python. The PyO3 layer (`crate::event_loop`) stores its handles in these
//! structures and drives one turn of the loop with them, the way asyncio's `BaseEventLoop._run_once`
//! drives its `_ready` deque, `_scheduled` heap and selector.

pub mod clock;
pub mod exit_gate;
pub mod fork;
pub mod idle_spin;
pub mod interests;
pub mod poller;
pub mod scheduler;
pub mod timers;
pub mod write_buffer;

/// What the scheduler needs to know about a queued callback: whether it was cancelled after it was
/// queued, and a way to tell a timer that it has left the heap (asyncio's `TimerHandle._scheduled`).
pub trait Entry {
    fn is_cancelled(&self) -> bool;
    fn set_unscheduled(&self) {}
}

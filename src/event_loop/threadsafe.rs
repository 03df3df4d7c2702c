//! `call_soon_threadsafe` handles that another thread cannot cancel mid-run.
//!
//! Python 3.14's asyncio (`events._ThreadSafeHandle`) gives these handles a lock that the loop
//! holds while their callback runs, and that `cancel()` and `cancelled()` take: called from
//! another thread while the callback runs (it may have let go of the GIL), they wait until it
//! has finished, so a `cancel()` that returns leaves no callback running. The thread running the
//! callback takes the lock again at once (an `RLock`). ferroloop keeps its handles and gives them
//! the same waits: the loop keeps the addresses of such handles while they are queued (a set
//! beside the queue, so that the queue's entries stay as small as they were), notes which one
//! runs, and on which thread; a caller from another thread that finds it running sleeps, without
//! the GIL, until a handle finishes.
//!
//! Where asyncio has no `_ThreadSafeHandle`, nothing of this happens: those handles are queued
//! as any other, and their `cancel()` returns at once, as asyncio's does there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::{self, ThreadId};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::LoopCore;
use crate::handles::Handle;

/// Which handle runs, and where.
pub(super) struct Running {
    handle: *const Handle,
    thread: ThreadId,
}

// SAFETY: the pointer is only compared, never followed.
unsafe impl Send for Running {}

/// Bumped (and waited on) each time a noted handle finishes; shared by every loop, as waits are
/// rare and short.
static FINISHED: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());
/// Threads waiting on `FINISHED`: a finishing handle notifies only when there are some.
static WAITERS: AtomicUsize = AtomicUsize::new(0);
/// Noted handles running now, in every loop: while none does, no `cancel()` looks further (the
/// GIL orders this count's changes before the reads that matter).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Whether some loop runs a noted handle now: `cancel()` and `cancelled()` ask this first.
#[inline]
pub(crate) fn any_running() -> bool {
    RUNNING.load(Ordering::Relaxed) > 0
}

/// Whether this Python's asyncio locks `call_soon_threadsafe` handles while they run.
pub(super) fn locks_threadsafe_handles(py: Python<'_>) -> bool {
    static LOCKS: PyOnceLock<bool> = PyOnceLock::new();
    *LOCKS.get_or_init(py, || {
        py.import("asyncio.events")
            .and_then(|events| events.hasattr("_ThreadSafeHandle"))
            .unwrap_or(false)
    })
}

impl LoopCore {
    /// Runs `run` as the loop runs a noted `call_soon_threadsafe` handle: marked running on this
    /// thread meanwhile, and the threads waiting for it woken after.
    pub(super) fn run_threadsafe<T>(
        &self,
        py: Python<'_>,
        handle: &Bound<'_, Handle>,
        run: impl FnOnce() -> T,
    ) -> T {
        self.state.borrow_mut(py).running_threadsafe = Some(Running {
            handle: handle.get(),
            thread: thread::current().id(),
        });
        RUNNING.fetch_add(1, Ordering::Relaxed);
        let result = run();
        RUNNING.fetch_sub(1, Ordering::Relaxed);
        self.state.borrow_mut(py).running_threadsafe = None;
        if WAITERS.load(Ordering::SeqCst) > 0 {
            let (finished, condvar) = &FINISHED;
            *finished.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            condvar.notify_all();
        }
        result
    }

    /// Returns once `handle`'s callback is not running on another thread (at once if it is not,
    /// or if it runs on this one).
    pub(crate) fn wait_while_running_elsewhere(&self, py: Python<'_>, handle: &Handle) {
        loop {
            let seen = {
                let st = self.state.borrow(py);
                match &st.running_threadsafe {
                    Some(running)
                        if std::ptr::eq(running.handle, handle)
                            && running.thread != thread::current().id() =>
                    {
                        // Read with the GIL held: the loop cannot finish the handle, which
                        // needs the GIL, before this thread lets go of it below.
                        let (finished, _) = &FINISHED;
                        *finished.lock().unwrap_or_else(|e| e.into_inner())
                    }
                    _ => return,
                }
            };
            WAITERS.fetch_add(1, Ordering::SeqCst);
            py.detach(|| {
                let (finished, condvar) = &FINISHED;
                let mut count = finished.lock().unwrap_or_else(|e| e.into_inner());
                while *count == seen {
                    count = condvar.wait(count).unwrap_or_else(|e| e.into_inner());
                }
            });
            WAITERS.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

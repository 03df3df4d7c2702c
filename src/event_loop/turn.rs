//! One turn of the loop, as asyncio's `BaseEventLoop._run_once`, and the loop that repeats it.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

use super::{closed_error, LoopCore, LoopState, Ready};
use crate::core::clock;
use crate::core::exit_gate::GATE;
use crate::core::poller::{Poller, Readiness};
use crate::errors::os_error;
use crate::handles::Handle;

/// `time.get_clock_info('monotonic').resolution` on Linux: timers due within it count as due.
const CLOCK_RESOLUTION: f64 = 1e-9;

/// Whether another thread could be waiting for the GIL: the interpreter has a thread state
/// besides the loop thread's, or another interpreter exists. A thread's state is made by the thread
/// that starts it (or by `PyGILState_Ensure` in a thread CPython did not start) before the thread
/// first asks for the GIL, so a new thread is seen before it can wait. An idle thread counts too:
/// whether a thread waits for the GIL cannot be seen.
fn gil_shared() -> bool {
    // SAFETY: called with the GIL held. A thread leaves the list when it ends, with the GIL
    // held (its thread state is unlinked before it lets go of the GIL), so the states read here
    // stay linked while we read them. (`PyThreadState_Delete` of another thread's state needs no
    // GIL, but only an embedding program calls it, for a thread it made.)
    unsafe {
        let head = ffi::PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Get());
        let other_thread = head.is_null() || !ffi::PyThreadState_Next(head).is_null();
        let other_interpreter =
            !ffi::PyInterpreterState_Next(ffi::PyInterpreterState_Head()).is_null();
        other_thread || other_interpreter
    }
}

impl LoopState {
    /// Queues the reader and writer of each fd the poll reported, then each held reader the
    /// poll did not report (`hold_readable`); returns the cancelled ones met, (fd, is_reader).
    fn queue_ready_fds(&mut self, py: Python<'_>, polled: &[Readiness]) -> Vec<(RawFd, bool)> {
        let mut stale = Vec::new();
        for ev in polled {
            let Some(callbacks) = self.fd_callbacks.get(&ev.fd) else {
                if self.interests.drop_parked(ev.fd, ev.generation) {
                    self.parked_files.remove(&ev.fd);
                }
                continue;
            };
            // An event of a registration left behind by a file closed under it: not this fd's.
            if callbacks.generation != ev.generation {
                continue;
            }
            for (ready, slot_is_reader) in [(ev.read, true), (ev.write, false)] {
                let slot = if slot_is_reader {
                    &callbacks.reader
                } else {
                    &callbacks.writer
                };
                if let (true, Some(handle)) = (ready, slot) {
                    if handle.get().cancelled() {
                        stale.push((ev.fd, slot_is_reader));
                    } else {
                        self.scheduler.push_ready(handle.clone_ref(py).into());
                    }
                }
            }
        }
        let held: Vec<Py<Handle>> = self
            .held_readers()
            .filter(|(fd, _)| !polled.iter().any(|ev| ev.fd == *fd && ev.read))
            .map(|(_, handle)| handle.clone_ref(py))
            .collect();
        for handle in held {
            self.scheduler.push_ready(handle.into());
        }
        stale
    }
}

impl LoopCore {
    /// Waits for I/O as long as `timeout` allows and queues the callbacks of the ready fds.
    ///
    /// asyncio's selector lets go of the GIL in every poll, which is when another thread that
    /// waits for it (an executor's worker, a `call_soon_threadsafe` caller) can take it; a loop
    /// that kept it while busy left such a thread one turn per switch interval (5 ms). ferroloop
    /// does the same whenever another thread exists. When none does, nobody can be waiting: the
    /// loop keeps the GIL and asks the poller without waiting first, and lets go of it only to
    /// block. Letting go of the GIL and taking it back cost more than the poll: a UDP echo server
    /// ran 6,250 instructions per datagram letting go of it in every poll, 5,740 without
    /// (callgrind).
    fn poll_io(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let shared = gil_shared();
        let (mut events, watching, timeout) = {
            let mut st = self.state.borrow_mut(py);
            let watching = !st.fd_callbacks.is_empty();
            // A held reader is work ready for this turn: the poll must not block.
            let timeout = if st.held_readers().next().is_some() {
                Some(0.0)
            } else {
                timeout
            };
            // With nothing watched, a poll that does not wait could only report the waker. It
            // is skipped unless it is where another thread gets the GIL.
            if timeout == Some(0.0) && !shared && !watching {
                return Ok(());
            }
            (std::mem::take(&mut st.events), watching, timeout)
        };
        let mut guard = self
            .poller
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("This event loop is already running"))?;
        let poller: &mut Poller = guard.as_mut().ok_or_else(closed_error)?;
        let result = if shared || !watching {
            self.wait(py, poller, timeout, &mut events)
        } else {
            match poller.poll(Some(Duration::ZERO), &mut events) {
                Ok(()) if timeout != Some(0.0) && events.is_empty() => {
                    self.wait(py, poller, timeout, &mut events)
                }
                polled => Ok(polled),
            }
        };
        drop(guard);
        let result = match result {
            Ok(result) => result,
            Err(err) => {
                self.state.borrow_mut(py).events = events;
                return Err(err);
            }
        };
        match result {
            Ok(()) => {}
            // A signal arrived: run its Python handler (which may raise KeyboardInterrupt), then
            // go on with the turn as if the poll had timed out.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.state.borrow_mut(py).events = events;
                return py.check_signals();
            }
            Err(e) => {
                self.state.borrow_mut(py).events = events;
                return Err(os_error(e));
            }
        }
        let stale = {
            let mut st = self.state.borrow_mut(py);
            let stale = st.queue_ready_fds(py, &events);
            events.clear();
            st.events = events;
            stale
        };
        // A cancelled reader or writer is removed when its fd next fires, as asyncio does.
        for (fd, reader) in stale {
            self.remove_fd_callback(py, fd, reader, false)?;
        }
        Ok(())
    }

    /// Polls with the GIL let go, blocking for up to `timeout` (None: no limit) unless callbacks
    /// are ready or a stop is pending. The outer error is a signal handler's. A loop the exit gate
    /// counts parks in here for good if the interpreter began to exit meanwhile (`exit_gate.rs`).
    fn wait(
        &self,
        py: Python<'_>,
        poller: &mut Poller,
        timeout: Option<f64>,
        events: &mut Vec<Readiness>,
    ) -> PyResult<io::Result<()>> {
        let mut timeout = timeout;
        if timeout != Some(0.0) {
            // A signal that arrived since the last Python code ran (while this turn's native
            // bookkeeping ran) has tripped its flag but will not interrupt the wait: its Python
            // handler runs now, or the wait could outlast it (a Ctrl-C during `sleep(30)`). What
            // the handler scheduled (asyncio.Runner cancels the main task) must not wait either.
            py.check_signals()?;
            let st = self.state.borrow(py);
            if st.scheduler.ready_len() > 0 || st.stopping {
                timeout = Some(0.0);
            }
        }
        let timeout = timeout.map(Duration::from_secs_f64);
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            self.waker.set_polling(true);
        }
        let result = py.detach(|| {
            GATE.entering_poll();
            let result = poller.poll(timeout, events);
            GATE.leaving_poll();
            result
        });
        if blocking {
            self.waker.set_polling(false);
        }
        Ok(result)
    }

    fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_not_inherited()?;
        let replaced_now = LoopCore::replaced_time(slf)?
            .map(|t| t.extract::<f64>())
            .transpose()?;
        let timeout = {
            let mut st = this.state.borrow_mut(py);
            let stopping = st.stopping;
            st.scheduler
                .poll_timeout(|| replaced_now.unwrap_or_else(clock::monotonic), stopping)
        };
        this.poll_io(py, timeout)?;
        let replaced_now = LoopCore::replaced_time(slf)?
            .map(|t| t.extract::<f64>())
            .transpose()?;
        let (ntodo, debug) = {
            let mut st = this.state.borrow_mut(py);
            let end_time = || replaced_now.unwrap_or_else(clock::monotonic) + CLOCK_RESOLUTION;
            (st.scheduler.collect_due(end_time), st.debug)
        };
        for _ in 0..ntodo {
            let (entry, thread_safe) = {
                let mut st = this.state.borrow_mut(py);
                let Some(entry) = st.scheduler.pop_ready() else {
                    break;
                };
                let thread_safe = match &entry {
                    Ready::Handle(h) if !st.threadsafe_queued.is_empty() => {
                        st.threadsafe_queued.remove(&(h.as_ptr() as usize))
                    }
                    _ => false,
                };
                (entry, thread_safe)
            };
            let handle = match entry {
                Ready::Handle(handle) => handle.into_bound(py),
                Ready::Call(call) if !debug => {
                    call.run(slf)?;
                    continue;
                }
                Ready::Call(call) => call.into_handle(slf)?,
            };
            if handle.get().cancelled() {
                continue;
            }
            let result = if thread_safe {
                this.run_threadsafe(py, &handle, || run(slf, &handle, debug))
            } else {
                run(slf, &handle, debug)
            };
            Handle::leave_queue(&handle);
            result?;
        }
        Ok(())
    }
}

/// Runs a handle's callback, through the loop's slow-callback check in debug mode.
fn run(slf: &Bound<'_, LoopCore>, handle: &Bound<'_, Handle>, debug: bool) -> PyResult<()> {
    if debug {
        slf.call_method1("_run_handle_debug", (handle,)).map(drop)
    } else {
        Handle::run(handle)
    }
}

#[pymethods]
impl LoopCore {
    /// One turn: poll, queue I/O callbacks and due timers, run what was ready when the turn began.
    fn _run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        LoopCore::run_once(slf)
    }

    /// Turns until `stop()` was called; `run_forever` wraps this with its set-up and tear-down.
    /// `park_at_exit`: the exit gate counts this run (a thread that does not finalize the
    /// interpreter, on a Python that ends such threads at exit).
    fn _run_until_stopped(slf: &Bound<'_, LoopCore>, park_at_exit: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let _tracked = if park_at_exit { GATE.track() } else { None };
        loop {
            LoopCore::run_once(slf)?;
            if this.state.borrow(py).stopping {
                return Ok(());
            }
        }
    }
}

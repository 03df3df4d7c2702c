//! One turn of the loop, as asyncio's `BaseEventLoop._run_once`, and the loop that repeats it.

use std::io;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::{LoopCore, Ready};
use crate::core::clock;
use crate::errors::os_error;
use crate::handles::Handle;

/// `time.get_clock_info('monotonic').resolution` on Linux: timers due within it count as due.
const CLOCK_RESOLUTION: f64 = 1e-9;

impl LoopCore {
    /// Waits for I/O as long as `timeout` allows and queues the callbacks of the ready fds.
    fn poll_io(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let mut events = {
            let mut st = self.state.borrow_mut(py);
            // With nothing watched, a zero-timeout poll could only report the waker: skip it.
            if timeout == Some(0.0) && st.fd_callbacks.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut st.events)
        };
        let mut timeout = timeout;
        if timeout != Some(0.0) {
            // A signal that arrived since the last Python code ran (while this turn's native
            // bookkeeping ran) has tripped its flag but will not interrupt the wait: its Python
            // handler runs now, or the wait could outlast it (a Ctrl-C during `sleep(30)`). What
            // the handler scheduled (asyncio.Runner cancels the main task) must not wait either.
            if let Err(err) = py.check_signals() {
                self.state.borrow_mut(py).events = events;
                return Err(err);
            }
            let st = self.state.borrow(py);
            if st.scheduler.ready_len() > 0 || st.stopping {
                timeout = Some(0.0);
            }
        }
        let mut poller = self
            .poller
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("This event loop is already running"))?;
        let result = if timeout == Some(0.0) {
            poller.poll(Some(Duration::ZERO), &mut events)
        } else {
            let timeout = timeout.map(Duration::from_secs_f64);
            self.waker.set_polling(true);
            let poller: &mut crate::core::poller::Poller = &mut poller;
            let result = py.detach(|| poller.poll(timeout, &mut events));
            self.waker.set_polling(false);
            result
        };
        drop(poller);
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
        let mut stale = Vec::new();
        {
            let mut st = self.state.borrow_mut(py);
            let st = &mut *st;
            for ev in events.drain(..) {
                let Some(callbacks) = st.fd_callbacks.get(&ev.fd) else {
                    continue;
                };
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
                            st.scheduler.push_ready(handle.clone_ref(py).into());
                        }
                    }
                }
            }
            st.events = events;
        }
        // A cancelled reader or writer is removed when its fd next fires, as asyncio does.
        for (fd, reader) in stale {
            self.remove_fd_callback(py, fd, reader)?;
        }
        Ok(())
    }

    fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_not_inherited()?;
        let timeout = {
            let mut st = this.state.borrow_mut(py);
            let stopping = st.stopping;
            st.scheduler.poll_timeout(clock::monotonic, stopping)
        };
        this.poll_io(py, timeout)?;
        let (ntodo, debug) = {
            let mut st = this.state.borrow_mut(py);
            let end_time = || clock::monotonic() + CLOCK_RESOLUTION;
            (st.scheduler.collect_due(end_time), st.debug)
        };
        for _ in 0..ntodo {
            let Some(entry) = this.state.borrow_mut(py).scheduler.pop_ready() else {
                break;
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
            let result = if debug {
                slf.call_method1("_run_handle_debug", (&handle,)).map(drop)
            } else {
                Handle::run(&handle)
            };
            Handle::leave_queue(&handle);
            result?;
        }
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    /// One turn: poll, queue I/O callbacks and due timers, run what was ready when the turn began.
    fn _run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        LoopCore::run_once(slf)
    }

    /// Turns until `stop()` was called; `run_forever` wraps this with its set-up and tear-down.
    fn _run_until_stopped(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        loop {
            LoopCore::run_once(slf)?;
            if this.state.borrow(py).stopping {
                return Ok(());
            }
        }
    }
}

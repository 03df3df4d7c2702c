//! `call_soon`, `call_later`, `call_at`, `call_soon_threadsafe` and `time`.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};

use super::{threadsafe, LoopCore};
use crate::core::clock;
use crate::errors::os_error;
use crate::handles::{Handle, Seconds, TimerHandle};
use crate::packed_call;
use crate::pyobjects;

impl LoopCore {
    /// asyncio's `_check_callback`, which it runs in debug mode only.
    fn check_callback(py: Python<'_>, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        if pyobjects::coroutines_iscoroutine(py)?
            .call1((callback,))?
            .is_truthy()?
            || pyobjects::coroutines_iscoroutinefunction(py)?
                .call1((callback,))?
                .is_truthy()?
        {
            return Err(PyTypeError::new_err(format!(
                "coroutines cannot be used with {method}()"
            )));
        }
        if !callback.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                callback.repr()?
            )));
        }
        Ok(())
    }

    /// asyncio's `_check_thread`: in debug mode, only the loop's thread may schedule callbacks.
    fn check_thread(&self, py: Python<'_>) -> PyResult<()> {
        let Some(owner) = self
            .state
            .borrow(py)
            .thread_id
            .as_ref()
            .map(|t| t.clone_ref(py))
        else {
            return Ok(());
        };
        let current = pyobjects::thread_get_ident(py)?.call0()?;
        if !current.eq(owner)? {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Checks shared by every scheduling method, then a new handle ready to queue.
    pub(super) fn new_handle(
        slf: &Bound<'_, LoopCore>,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
        method: Option<&str>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let this = slf.get();
        let debug = {
            let st = this.state.borrow(py);
            if st.closed {
                return Err(super::closed_error());
            }
            st.debug
        };
        if debug {
            if let Some(method) = method {
                if method != "call_soon_threadsafe" {
                    this.check_thread(py)?;
                }
                LoopCore::check_callback(py, &packed_call::callback(call), method)?;
            }
        }
        Handle::build(
            py,
            call.clone().unbind(),
            slf.clone().into_any().unbind(),
            context,
            debug,
        )
    }

    pub(crate) fn schedule_soon(
        slf: &Bound<'_, LoopCore>,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
        method: &str,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let handle = Bound::new(py, LoopCore::new_handle(slf, call, context, Some(method))?)?;
        let running = {
            let mut st = slf.get().state.borrow_mut(py);
            st.scheduler.push_ready(handle.clone().unbind().into());
            st.thread_id.is_some()
        };
        if running {
            Handle::untrack_while_queued(&handle);
        }
        Ok(handle.unbind())
    }

    fn schedule_at(
        slf: &Bound<'_, LoopCore>,
        when: Seconds,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
        method: &str,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let base = LoopCore::new_handle(slf, call, context, Some(method))?;
        let timer = Bound::new(
            py,
            PyClassInitializer::from(base).add_subclass(TimerHandle::new(when, true)),
        )?;
        // CPython accepts NaN and, since no comparison with NaN is true, treats it as already
        // due; order it first so that it fires on the next turn, as it does there.
        let key = if when.value.is_nan() {
            f64::NEG_INFINITY
        } else {
            when.value
        };
        let running = {
            let mut st = slf.get().state.borrow_mut(py);
            st.scheduler
                .push_timer(key, timer.as_super().clone().unbind());
            st.thread_id.is_some()
        };
        if running {
            Handle::untrack_while_queued(timer.as_super());
        }
        Ok(timer.unbind())
    }
}

/// A deadline or delay given as a float or an int; other numbers go through Python so that their
/// errors (e.g. "unsupported operand type(s) for +") are the ones asyncio's arithmetic raises.
fn as_seconds(value: &Bound<'_, PyAny>) -> Option<Seconds> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Some(Seconds::float(f.value()));
    }
    if value.cast_exact::<PyInt>().is_ok() {
        // An int a float holds exactly stays an int, as asyncio keeps `call_at(when)`'s `when`.
        if let Ok(i) = value.extract::<i64>() {
            return Some(Seconds::int(i));
        }
        return value.extract::<f64>().ok().map(Seconds::float);
    }
    None
}

#[pymethods]
impl LoopCore {
    /// Queues an existing handle for the next turn (asyncio's `_add_callback`, which its signal
    /// handling uses). A handle of another class (asyncio's own) is run through its `_run`.
    fn _add_callback(slf: &Bound<'_, LoopCore>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let handle = match handle.cast::<Handle>() {
            // Tracked: the loop's walk sees through untracked handles, which is exact only for
            // a handle that one queue slot owns.
            Ok(ours) => {
                Handle::track(ours);
                ours.clone().unbind()
            }
            Err(_) => {
                if handle.getattr("_cancelled")?.is_truthy()? {
                    return Ok(());
                }
                let run = handle.getattr("_run")?;
                Py::new(py, LoopCore::new_handle(slf, &run, None, None)?)?
            }
        };
        if !handle.get().cancelled() {
            slf.get()
                .state
                .borrow_mut(py)
                .scheduler
                .push_ready(handle.into());
        }
        Ok(())
    }
}

impl LoopCore {
    /// `call_soon_threadsafe`, once its arguments are sorted out (see `fastcall`).
    pub(super) fn call_soon_threadsafe_impl(
        slf: &Bound<'_, LoopCore>,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let handle = LoopCore::schedule_soon(slf, call, context, "call_soon_threadsafe")?;
        // Noted as one whose cancel waits for it to finish, where asyncio's do (`threadsafe`).
        if threadsafe::locks_threadsafe_handles(slf.py()) {
            let address = handle.as_ptr() as usize;
            slf.get()
                .state
                .borrow_mut(slf.py())
                .threadsafe_queued
                .insert(address);
        }
        // A forked child must not wake the parent's loop through the inherited eventfd.
        if !slf.get().is_inherited_through_fork() {
            slf.get().waker.wake().map_err(os_error)?;
        }
        Ok(handle)
    }

    /// `call_later`, once its arguments are sorted out (see `fastcall`).
    pub(super) fn call_later_impl(
        slf: &Bound<'_, LoopCore>,
        delay: &Bound<'_, PyAny>,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        // Python 3.11 added this check; before, the sum below failed on None.
        if delay.is_none() && slf.py().version_info() >= (3, 11) {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        // asyncio's call_later is `self.call_at(self.time() + delay, ...)`.
        if let Some(now) = LoopCore::replaced_time(slf)? {
            return LoopCore::call_at_impl(slf, &now.add(delay)?, call, context);
        }
        let now = clock::monotonic();
        let when = match as_seconds(delay) {
            Some(d) => now + d.value,
            None => PyFloat::new(slf.py(), now).add(delay)?.extract::<f64>()?,
        };
        LoopCore::schedule_at(slf, Seconds::float(when), call, context, "call_at")
    }

    /// `call_at`, once its arguments are sorted out (see `fastcall`).
    pub(super) fn call_at_impl(
        slf: &Bound<'_, LoopCore>,
        when: &Bound<'_, PyAny>,
        call: &Bound<'_, PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when = match as_seconds(when) {
            Some(w) => w,
            None => when.extract::<f64>().map(Seconds::float).map_err(|_| {
                PyTypeError::new_err(format!(
                    "'<' not supported between instances of '{}' and 'float'",
                    when.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?,
        };
        LoopCore::schedule_at(slf, when, call, context, "call_at")
    }
}

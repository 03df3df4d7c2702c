//! Task steps and task wake-ups queued without a handle.
//!
//! CPython's C Task schedules each of its steps with `loop.call_soon(step, context=ctx)`, and its
//! C Future wakes a waiting task with `loop.call_soon(wakeup, future, context=ctx)`; both drop the
//! handle `call_soon` returns at once (`call_soon` in `Modules/_asynciomodule.c`). `step` is a
//! `TaskStepMethWrapper`, which only the C Task makes, and `wakeup` the Task's `task_wakeup`
//! builtin, which only a Task's future callbacks hold. For these two calls a handle is an object
//! made to be freed unseen: one allocation, one garbage-collector registration and one
//! deallocation per task step. So when the running loop's `call_soon` is its own (not overridden
//! by a subclass or on the instance, where Python code could see what it returns) and debug mode
//! is off, the ready queue takes the call itself and `call_soon` returns None to the C caller.
//!
//! Nothing else changes: the call runs in its turn, in its context, in queue order; an error it
//! raises is reported with a handle made then, as `Handle._run` would report it; in debug mode
//! (or switched into it while the call waits) it runs through a real handle.
//!
//! The handle also counted as a young-generation allocation until it ran: with 100k tasks
//! created at once, that was 100k more and set off an extra full collection of every task.

use std::ptr;
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::LoopCore;
use crate::handles::{run_in_context, Handle};
use crate::packed_call;

/// The types of the two calls, learnt from CPython by `ferroloop._task_calls` at import.
struct Known {
    step_type: Py<PyType>,
    wakeup_def: usize,
}

static KNOWN: OnceLock<Known> = OnceLock::new();

/// Learns a `TaskStepMethWrapper` and a `task_wakeup` from a task the Python side drove through
/// a step and a wake-up (see `ferroloop._task_calls`).
#[pyfunction]
pub fn _register_task_calls(step: &Bound<'_, PyAny>, wakeup: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: reading the type and, for a builtin function, its method table of a live object.
    let wakeup_def = unsafe {
        let ptr = wakeup.as_ptr();
        if ffi::Py_TYPE(ptr) != ptr::addr_of_mut!(ffi::PyCFunction_Type) {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "task_wakeup is not a builtin function",
            ));
        }
        (*ptr.cast::<ffi::PyCFunctionObject>()).m_ml as usize
    };
    let _ = KNOWN.set(Known {
        step_type: step.get_type().unbind(),
        wakeup_def,
    });
    Ok(())
}

/// A task step (`arg` None) or a task wake-up (`arg` the future), queued without a handle.
pub(crate) struct TaskCall {
    callback: Py<PyAny>,
    arg: Option<Py<PyAny>>,
    context: Py<PyAny>,
}

/// What the ready queue holds: handles, and the calls above.
pub(crate) enum Ready {
    Handle(Py<Handle>),
    Call(TaskCall),
}

impl Ready {
    pub(super) fn handle(&self) -> Option<&Py<Handle>> {
        match self {
            Ready::Handle(handle) => Some(handle),
            Ready::Call(_) => None,
        }
    }
}

impl From<Py<Handle>> for Ready {
    fn from(handle: Py<Handle>) -> Self {
        Ready::Handle(handle)
    }
}

impl TaskCall {
    /// The call, if `callback(*args)` in `context` is one of the two.
    ///
    /// # Safety
    /// `callback`, the `args` and `context` are live objects; the GIL is held.
    pub(super) unsafe fn recognise(
        py: Python<'_>,
        callback: *mut ffi::PyObject,
        args: &[*mut ffi::PyObject],
        context: *mut ffi::PyObject,
    ) -> Option<TaskCall> {
        let known = KNOWN.get()?;
        if ffi::PyContext_CheckExact(context) == 0 {
            return None;
        }
        let ty = ffi::Py_TYPE(callback);
        let arg = match args {
            [] if ty == known.step_type.as_ptr().cast() => None,
            [future]
                if ty == ptr::addr_of_mut!(ffi::PyCFunction_Type)
                    && (*callback.cast::<ffi::PyCFunctionObject>()).m_ml as usize
                        == known.wakeup_def =>
            {
                Some(Bound::from_borrowed_ptr(py, *future).unbind())
            }
            _ => return None,
        };
        Some(TaskCall {
            callback: Bound::from_borrowed_ptr(py, callback).unbind(),
            arg,
            context: Bound::from_borrowed_ptr(py, context).unbind(),
        })
    }

    /// The handle `call_soon` would have made: for debug mode and for error reports.
    pub(super) fn into_handle<'py>(
        self,
        slf: &Bound<'py, LoopCore>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let args: Vec<_> = self.arg.iter().map(|arg| arg.as_ptr()).collect();
        // SAFETY: the argument is a live object (owned by self) for the call.
        let call = unsafe { packed_call::pack_raw(self.callback.bind(py), &args)? };
        let handle = Handle::build(
            py,
            call,
            slf.clone().into_any().unbind(),
            Some(self.context),
            false,
        )?;
        Bound::new(py, handle)
    }

    /// Runs the call in its context, as `Handle._run` would.
    pub(super) fn run(self, slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        // SAFETY: the call's objects are live (owned by self).
        let result = run_in_context(self.context.bind(slf.py()), || unsafe {
            match &self.arg {
                Some(arg) => ffi::PyObject_CallOneArg(self.callback.as_ptr(), arg.as_ptr()),
                None => ffi::PyObject_CallNoArgs(self.callback.as_ptr()),
            }
        });
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let handle = self.into_handle(slf)?;
                Handle::report_error(&handle, err)
            }
        }
    }

    /// Each object the call references, for the loop's traverse.
    pub(super) fn walk_referents<E>(
        &self,
        visit: &mut impl FnMut(&Py<PyAny>) -> Result<(), E>,
    ) -> Result<(), E> {
        visit(&self.callback)?;
        if let Some(arg) = &self.arg {
            visit(arg)?;
        }
        visit(&self.context)
    }
}

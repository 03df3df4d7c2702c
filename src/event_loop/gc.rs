//! The loop's traverse: the queued handles.
//!
//! A handle queued by `call_soon`/`call_later`/`call_at` while the loop runs is untracked while
//! it waits, and so is its own context copy; once the loop stops, such a handle is held by its
//! queue slot alone (see "Handles and the garbage collector" in `mod.rs`), so the loop visits
//! their referents on their behalf, the context's by calling the Context type's own
//! `tp_traverse`. That needs the collector's raw visit function, which PyO3's `PyVisit` does not
//! expose; so the loop type's `tp_traverse` is this function, which runs PyO3's (the loop's
//! `__traverse__`: fd callbacks, task factory) and then walks the queue.
//!
//! While the loop runs, the walk is skipped. A running loop is reachable from outside the
//! collector's view (the running-loop thread-local, the `run_forever` frame), so whatever its
//! queue references is reachable through it anyway: not visiting those references leaves them
//! counted as referenced from outside, which is the same verdict, reached without walking every
//! queued callback in every full collection. The walk matters for a loop that is not running,
//! which may be garbage: an unclosed loop dropped with callbacks queued is then collected.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::{LoopCore, Ready};
use crate::handles::Handle;

/// The traverse PyO3 made from `LoopCore::__traverse__`.
static PYO3_TRAVERSE: OnceLock<ffi::traverseproc> = OnceLock::new();

/// Visits the queued handles (or their referents, on their behalf).
///
/// # Safety
/// Only from a `tp_traverse` of the loop type, with the collector's `visit` and `arg`.
unsafe fn walk_queue(slf: *mut ffi::PyObject, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
    // SAFETY: the collector holds the GIL; `slf` is a live instance of the loop type (or a
    // subclass), borrowed for this call without touching its reference count.
    let py = Python::assume_attached();
    let this = Borrowed::from_ptr(py, slf).cast_unchecked::<LoopCore>();
    let Some(st) = this.get().state.try_borrow_for_gc() else {
        return 0;
    };
    if st.thread_id.is_some() {
        return 0;
    }
    let mut visit_one = |obj: &Py<PyAny>| match visit(obj.as_ptr(), arg) {
        0 => Ok(()),
        done => Err(done),
    };
    let mut context_behalf = |ctx: &Py<PyAny>| {
        let ptr = ctx.as_ptr();
        match (*ffi::Py_TYPE(ptr)).tp_traverse.map(|t| t(ptr, visit, arg)) {
            None | Some(0) => Ok(()),
            Some(done) => Err(done),
        }
    };
    for entry in st.scheduler.iter_ready() {
        let walked = match entry {
            Ready::Handle(handle) => walk_handle(handle, &mut visit_one, &mut context_behalf),
            Ready::Call(call) => call.walk_referents(&mut visit_one),
        };
        if let Err(done) = walked {
            return done;
        }
    }
    for handle in st.scheduler.iter_timers() {
        if let Err(done) = walk_handle(handle, &mut visit_one, &mut context_behalf) {
            return done;
        }
    }
    0
}

/// A queued handle: visited if tracked, else its referents on its behalf.
fn walk_handle(
    handle: &Py<Handle>,
    visit_one: &mut impl FnMut(&Py<PyAny>) -> Result<(), c_int>,
    context_behalf: &mut impl FnMut(&Py<PyAny>) -> Result<(), c_int>,
) -> Result<(), c_int> {
    if Handle::is_tracked(handle) {
        visit_one(handle.as_any())
    } else {
        handle.get().walk_referents(visit_one, context_behalf)
    }
}

unsafe extern "C" fn traverse(
    slf: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    if let Some(pyo3_traverse) = PYO3_TRAVERSE.get() {
        let done = pyo3_traverse(slf, visit, arg);
        if done != 0 {
            return done;
        }
    }
    // No Rust panic may unwind into the collector; a failed walk visits nothing more, which only
    // keeps objects alive longer.
    catch_unwind(AssertUnwindSafe(|| walk_queue(slf, visit, arg))).unwrap_or(0)
}

/// Puts `traverse` in the loop type's slot, in front of PyO3's.
pub(super) fn install(loop_type: &Bound<'_, PyType>) {
    let ty = loop_type.as_type_ptr();
    // SAFETY: the type was just made by PyO3 (with a traverse, as it has `__traverse__`) and no
    // instance or subclass exists yet; subclasses call the base slot at collection time.
    unsafe {
        if let Some(pyo3_traverse) = (*ty).tp_traverse {
            if PYO3_TRAVERSE.set(pyo3_traverse).is_ok() {
                (*ty).tp_traverse = Some(traverse);
            }
        }
    }
}

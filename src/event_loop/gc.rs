//! The loop's traverse, completed: the contexts of queued handles.
//!
//! A queued handle's own context copy is untracked while it waits (see "Handles and the garbage
//! collector" in `mod.rs`), so the loop visits what the context references on the context's
//! behalf, by calling the Context type's own `tp_traverse`. That needs the raw visit function,
//! which PyO3's `PyVisit` does not expose; so the loop type's `tp_traverse` is this function,
//! which runs PyO3's (the loop's `__traverse__`) and then this pass.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::LoopCore;
use crate::handles::Handle;

/// The traverse PyO3 made from `LoopCore::__traverse__`.
static PYO3_TRAVERSE: OnceLock<ffi::traverseproc> = OnceLock::new();

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
    // No Rust panic may unwind into the collector; a failed pass visits nothing more, which only
    // keeps objects alive longer.
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the collector holds the GIL; `slf` is a live instance of the loop type (or a
        // subclass), borrowed for this call without touching its reference count.
        let py = Python::assume_attached();
        let this = Borrowed::from_ptr(py, slf).cast_unchecked::<LoopCore>();
        let Some(st) = this.get().state.try_borrow_for_gc() else {
            return 0;
        };
        for handle in st.scheduler.iter() {
            if !Handle::is_tracked(handle) {
                let done = handle.get().traverse_untracked_context(visit, arg);
                if done != 0 {
                    return done;
                }
            }
        }
        0
    }))
    .unwrap_or(0)
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

//! A caller's context variables, kept without a Context object of their own.
//!
//! asyncio gives every handle a copy of the current Context (`contextvars.copy_context()`), a
//! 64-byte collected object. CPython keeps 255 freed contexts for reuse, so while few handles
//! wait a copy costs little; behind a long queue (a fan-out, a burst of `call_soon_threadsafe`,
//! a million pending timers) every copy is a fresh allocation that lives until its callback runs.
//!
//! A copy's whole content is its variables: an immutable mapping (a HAMT) that the original and
//! every copy share, which a later `ContextVar.set` replaces rather than changes. So holding that
//! mapping is holding the copy. A handle queued behind many others holds just the mapping
//! (`capture`), and makes the Context (`make_context`, from CPython's free list, as the previous
//! callback's went back to it) only when the callback runs or someone asks for it.
//!
//! Neither reading a Context's mapping nor giving a new Context one has a C API, so this reads
//! and writes the `ctx_vars` field of CPython's `PyContext` struct, whose layout has been the same
//! from 3.7 to 3.14. `mapping_type` checks it once against the public API before anything relies
//! on it; where the check fails, handles copy the Context as asyncio does.

use std::ffi::CStr;
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The head of CPython's `PyContext` (Include/internal/pycore_context.h).
#[repr(C)]
struct ContextHead {
    ob_base: ffi::PyObject,
    ctx_prev: *mut ffi::PyObject,
    ctx_vars: *mut ffi::PyObject,
}

/// The mapping a live Context holds (a borrowed reference).
///
/// # Safety
/// `ctx` must be a live object of exactly the Context type, and the layout check must have passed
/// (or be the one calling).
unsafe fn vars_of(ctx: *mut ffi::PyObject) -> *mut ffi::PyObject {
    (*ctx.cast::<ContextHead>()).ctx_vars
}

/// A new Context holding `vars`.
///
/// # Safety
/// As for `vars_of`; `vars` must be a live mapping taken from a Context.
unsafe fn context_with(py: Python<'_>, vars: *mut ffi::PyObject) -> PyResult<Py<PyAny>> {
    let ctx = Bound::from_owned_ptr_or_err(py, ffi::PyContext_New())?;
    let head = ctx.as_ptr().cast::<ContextHead>();
    // A new Context's mapping is the shared empty one: swap it for `vars`.
    let empty = std::mem::replace(&mut (*head).ctx_vars, vars);
    ffi::Py_INCREF(vars);
    ffi::Py_DECREF(empty);
    Ok(ctx.unbind())
}

/// The variables of the current context: those `contextvars.copy_context()` would hold.
fn current_vars(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // The copy comes from CPython's free list and goes back to it at once: it costs no allocation.
    // SAFETY: PyContext_CopyCurrent returns a new Context or NULL with an exception set; the
    // mapping is taken (with a reference of its own) before the copy is dropped.
    unsafe {
        let copy = Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?;
        Ok(Bound::from_borrowed_ptr(py, vars_of(copy.as_ptr())).unbind())
    }
}

/// CPython's HAMT type (its address), if the `PyContext` layout is the one this module assumes,
/// checked once: the field holds an object of that type, and a Context given a copy's mapping sees
/// the copy's variables while the original does not.
fn mapping_type(py: Python<'_>) -> Option<usize> {
    static MAPPING_TYPE: OnceLock<Option<usize>> = OnceLock::new();
    *MAPPING_TYPE.get_or_init(|| check_layout(py).ok().flatten())
}

fn check_layout(py: Python<'_>) -> PyResult<Option<usize>> {
    // SAFETY: every pointer comes from the public context API and is checked before use; the
    // field is read only once the object is known to be a Context.
    unsafe {
        let empty = Bound::from_owned_ptr_or_err(py, ffi::PyContext_New())?;
        if ffi::PyContext_CheckExact(empty.as_ptr()) == 0 {
            return Ok(None);
        }
        let vars = vars_of(empty.as_ptr());
        if vars.is_null() || CStr::from_ptr((*ffi::Py_TYPE(vars)).tp_name) != c"hamt" {
            return Ok(None);
        }
        let var = Bound::from_owned_ptr_or_err(
            py,
            ffi::PyContextVar_New(c"ferroloop layout check".as_ptr(), std::ptr::null_mut()),
        )?;
        let marker = py.None();
        let holder = Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(empty.as_ptr()))?;
        if ffi::PyContext_Enter(holder.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        let token =
            Bound::from_owned_ptr_or_err(py, ffi::PyContextVar_Set(var.as_ptr(), marker.as_ptr()));
        ffi::PyContext_Exit(holder.as_ptr());
        drop(token?);
        let made =
            Bound::from_owned_ptr(py, context_with(py, vars_of(holder.as_ptr()))?.into_ptr());
        let works = var_value(&made, &var)?.is_some_and(|v| v.is(&marker))
            && var_value(&empty, &var)?.is_none();
        Ok(works.then_some(ffi::Py_TYPE(vars) as usize))
    }
}

/// The value of `var` in `ctx`, or None if it has none there.
fn var_value<'py>(
    ctx: &Bound<'py, PyAny>,
    var: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = ctx.py();
    // SAFETY: both are live objects of the types the calls expect (checked by the calls).
    unsafe {
        if ffi::PyContext_Enter(ctx.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        let mut value = std::ptr::null_mut();
        let found = ffi::PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &mut value);
        ffi::PyContext_Exit(ctx.as_ptr());
        if found < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr_or_opt(py, value))
    }
}

/// The current context's variables (what a copy of it would hold), if this interpreter's layout
/// allows holding them alone.
pub(crate) fn capture(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    if mapping_type(py).is_none() {
        return Ok(None);
    }
    current_vars(py).map(Some)
}

/// A new Context with the variables `capture` returned: the copy asyncio would have made when
/// scheduling.
pub(crate) fn make_context(py: Python<'_>, vars: &Py<PyAny>) -> PyResult<Py<PyAny>> {
    // SAFETY: reading the type of a live object.
    let ty = unsafe { ffi::Py_TYPE(vars.as_ptr()) } as usize;
    if mapping_type(py) != Some(ty) {
        return Err(PyTypeError::new_err(
            "not the variables of a captured context",
        ));
    }
    // SAFETY: the layout check passed and `vars` is a live mapping of the type it found.
    unsafe { context_with(py, vars.as_ptr()) }
}

//! A caller's context variables, kept without a Context object of their own.
//!
//! asyncio gives every handle a copy of the current Context (`contextvars.copy_context()`), a
//! 64-byte collected object. CPython keeps 255 freed contexts for reuse, so while few handles
//! wait a copy costs a free-list round trip; behind a long queue (a fan-out, a burst of
//! `call_soon_threadsafe`, a million pending timers) every copy is a fresh allocation that lives
//! until its callback runs.
//!
//! A copy's whole content is its variables: an immutable mapping (a HAMT) that the original and
//! every copy share, which a later `ContextVar.set` replaces rather than changes. So holding that
//! mapping is holding the copy. A handle holds just the mapping (`capture`), and makes the Context
//! (`make_context`) only when someone asks for it; its callback runs in the spare (below).
//!
//! Neither reading a Context's mapping nor giving a new Context one has a C API, so this reads
//! and writes the `ctx_vars` field of CPython's `PyContext` struct, whose layout has been the same
//! from 3.9 (and earlier) to 3.14. `layout` checks it once against the public API before anything
//! relies on it; where the check fails, handles copy the Context as asyncio does.
//!
//! Nor can the current Context be looked at without copying it (`PyContext_CopyCurrent`, a free
//! list round trip of some 60 instructions per scheduled callback). The thread state's `context`
//! field moves between versions, so `thread_context_word` finds it once by entering Contexts and
//! watching which word changes; where it is not found, the current Context is copied.
//!
//! A callback that runs on held variables needs a Context to run in. When nothing but the loop
//! holds its handle, nothing can see that Context after the call unless the callback kept a
//! reference to it (a `ContextVar.set` token does). So the loop keeps one spare Context
//! (`run_context`, `release`), gives it the variables for the call and the empty mapping after it,
//! and makes a new one only when the spare was kept by someone. The variables are released when
//! the call ends, as asyncio's copy would release them.

use std::ffi::CStr;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// CPython's `PyContext` (Include/internal/pycore_context.h, the same from 3.9 to 3.14).
#[repr(C)]
struct ContextHead {
    ob_base: ffi::PyObject,
    ctx_prev: *mut ffi::PyObject,
    ctx_vars: *mut ffi::PyObject,
    ctx_weakreflist: *mut ffi::PyObject,
    ctx_entered: std::os::raw::c_int,
}

/// Whether nothing but its own reference can reach `ctx`: not entered, no weak reference.
///
/// # Safety
/// As for `vars_of`.
unsafe fn unreachable_but_by(ctx: *mut ffi::PyObject) -> bool {
    let head = &*ctx.cast::<ContextHead>();
    ffi::Py_REFCNT(ctx) == 1 && head.ctx_weakreflist.is_null() && head.ctx_entered == 0
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
fn current_vars(py: Python<'_>, layout: Layout) -> PyResult<Py<PyAny>> {
    if let Some(word) = layout.thread_context_word {
        // SAFETY: the probe found the thread state's `context` field at this word; it holds the
        // current Context or, in a thread that never asked for one, null.
        unsafe {
            let ctx = *ffi::PyThreadState_Get()
                .cast::<*mut ffi::PyObject>()
                .add(word);
            if !ctx.is_null() {
                return Ok(Bound::from_borrowed_ptr(py, vars_of(ctx)).unbind());
            }
        }
    }
    // The copy comes from CPython's free list and goes back to it at once: it costs no allocation.
    // SAFETY: PyContext_CopyCurrent returns a new Context or NULL with an exception set; the
    // mapping is taken (with a reference of its own) before the copy is dropped.
    unsafe {
        let copy = Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?;
        Ok(Bound::from_borrowed_ptr(py, vars_of(copy.as_ptr())).unbind())
    }
}

/// How far `thread_context_word` looks: every CPython from 3.9 to 3.14 has the field within
/// its first 40 words (3.11: word 28 of 45).
const THREAD_STATE_WORDS: usize = 40;

/// Where a thread state keeps its current Context (`PyThreadState.context`), in pointer-sized
/// words from its start, if it can be found. Its place differs between CPython versions and no
/// API reads it without copying the Context. A Context this thread has just entered is the
/// current one, so the field is the first word that holds it and then, once it is exited, the
/// previous one; two different Contexts must agree on the word.
///
/// # Safety
/// The PyContext layout check must have passed. The scan stops at the first word holding the
/// entered Context, so it reads no further than the field itself.
unsafe fn thread_context_word(py: Python<'_>) -> PyResult<Option<usize>> {
    // A new thread has no current Context until one is asked for: this makes one.
    drop(Bound::from_owned_ptr_or_err(
        py,
        ffi::PyContext_CopyCurrent(),
    )?);
    let state = ffi::PyThreadState_Get().cast::<*mut ffi::PyObject>();
    let mut found = None;
    for _ in 0..2 {
        let ctx = Bound::from_owned_ptr_or_err(py, ffi::PyContext_New())?;
        if ffi::PyContext_Enter(ctx.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        let word = (0..THREAD_STATE_WORDS).find(|&i| *state.add(i) == ctx.as_ptr());
        if ffi::PyContext_Exit(ctx.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        let restored = word.is_some_and(|i| {
            let now = *state.add(i);
            !now.is_null() && now != ctx.as_ptr()
        });
        if !restored || found.is_some_and(|f| Some(f) != word) {
            return Ok(None);
        }
        found = word;
    }
    Ok(found)
}

/// What the layout check found: the mapping's type, and the empty mapping (a reference of its own,
/// never released), both as addresses.
#[derive(Clone, Copy)]
struct Layout {
    mapping_type: usize,
    empty_vars: usize,
    /// See `thread_context_word`; None makes `current_vars` copy the current Context instead.
    thread_context_word: Option<usize>,
}

/// The layout, if the `PyContext` struct is the one this module assumes, checked once: the
/// mapping field holds an object of CPython's HAMT type, a Context given a copy's mapping sees the
/// copy's variables while the original does not, and the entered flag and the weak-reference list
/// change where this module reads them.
fn layout(py: Python<'_>) -> Option<Layout> {
    static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();
    *LAYOUT.get_or_init(|| check_layout(py).ok().flatten())
}

fn check_layout(py: Python<'_>) -> PyResult<Option<Layout>> {
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
        let entered_seen = (*holder.as_ptr().cast::<ContextHead>()).ctx_entered == 1;
        ffi::PyContext_Exit(holder.as_ptr());
        drop(token?);
        let made =
            Bound::from_owned_ptr(py, context_with(py, vars_of(holder.as_ptr()))?.into_ptr());
        let works = var_value(&made, &var)?.is_some_and(|v| v.is(&marker))
            && var_value(&empty, &var)?.is_none();
        let weakref = Bound::from_owned_ptr_or_err(
            py,
            ffi::PyWeakref_NewRef(made.as_ptr(), std::ptr::null_mut()),
        )?;
        let weakref_seen = !(*made.as_ptr().cast::<ContextHead>())
            .ctx_weakreflist
            .is_null();
        drop(weakref);
        // Once the weak reference is gone, `made` is reachable only through its own reference.
        let fields_seen = entered_seen && weakref_seen && unreachable_but_by(made.as_ptr());
        if !(works && fields_seen) {
            return Ok(None);
        }
        let thread_context_word = thread_context_word(py)?;
        ffi::Py_INCREF(vars);
        Ok(Some(Layout {
            mapping_type: ffi::Py_TYPE(vars) as usize,
            empty_vars: vars as usize,
            thread_context_word,
        }))
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
    match layout(py) {
        Some(layout) => current_vars(py, layout).map(Some),
        None => Ok(None),
    }
}

/// Whether `held` is variables `capture` returned rather than a Context (or whatever object a
/// caller gave as the context).
pub(crate) fn holds_vars(py: Python<'_>, held: &Py<PyAny>) -> bool {
    // SAFETY: reading the type of a live object.
    let ty = unsafe { ffi::Py_TYPE(held.as_ptr()) } as usize;
    layout(py).is_some_and(|layout| layout.mapping_type == ty)
}

/// The layout, if `vars` is a mapping `capture` could have returned.
fn layout_for(py: Python<'_>, vars: &Py<PyAny>) -> PyResult<Layout> {
    // SAFETY: reading the type of a live object.
    let ty = unsafe { ffi::Py_TYPE(vars.as_ptr()) } as usize;
    layout(py)
        .filter(|layout| layout.mapping_type == ty)
        .ok_or_else(|| PyTypeError::new_err("not the variables of a captured context"))
}

/// A new Context with the variables `capture` returned: the copy asyncio would have made when
/// scheduling.
pub(crate) fn make_context(py: Python<'_>, vars: &Py<PyAny>) -> PyResult<Py<PyAny>> {
    layout_for(py, vars)?;
    // SAFETY: the layout check passed and `vars` is a live mapping of the type it found.
    unsafe { context_with(py, vars.as_ptr()) }
}

/// The spare Context (a reference of its own), holding the empty mapping; null when there is none.
/// Reached only with the GIL held (the module is `gil_used`, see `gil.rs`), so plain loads and
/// stores suffice: a locked swap would cost some 20 cycles for nothing.
static SPARE: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());

/// A Context holding `vars` for one callback to run in, to be handed to `release` once it has run:
/// to the callback, the copy asyncio would have made when scheduling.
pub(crate) fn run_context(py: Python<'_>, vars: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    let spare = SPARE.load(Ordering::Relaxed);
    if spare.is_null() {
        return make_context(py, &vars).map(|ctx| ctx.into_bound(py));
    }
    layout_for(py, &vars)?;
    SPARE.store(ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: the spare is a Context of the checked layout that only SPARE referred to, not
    // entered; its mapping is swapped for `vars`, whose reference it takes over.
    unsafe {
        let head = spare.cast::<ContextHead>();
        let empty = std::mem::replace(&mut (*head).ctx_vars, vars.into_ptr());
        ffi::Py_DECREF(empty);
        Ok(Bound::from_owned_ptr(py, spare))
    }
}

/// Takes back a Context from `run_context` whose callback has run. It becomes the spare if nothing
/// else holds it; either way, the variables it held are released as asyncio's copy's would be.
pub(crate) fn release(context: Bound<'_, PyAny>) {
    let py = context.py();
    let Some(layout) = layout(py) else {
        return;
    };
    // SAFETY: `context` is a live Context of the checked layout.
    if !unsafe { unreachable_but_by(context.as_ptr()) } {
        return;
    }
    let ctx = context.into_ptr();
    // SAFETY: `ctx` is a Context of the checked layout (from `run_context`), exited, and ours
    // alone; it is given a reference to the empty mapping in place of the one it held.
    let vars = unsafe {
        let empty = layout.empty_vars as *mut ffi::PyObject;
        ffi::Py_INCREF(empty);
        std::mem::replace(&mut (*ctx.cast::<ContextHead>()).ctx_vars, empty)
    };
    if SPARE.load(Ordering::Relaxed).is_null() {
        SPARE.store(ctx, Ordering::Relaxed);
    } else {
        // A nested run made a spare of its own meanwhile. SAFETY: our reference to a live object.
        unsafe { ffi::Py_DECREF(ctx) };
    }
    // Last: releasing the variables may run any Python code, which may use the spare.
    // SAFETY: the reference the Context held, now ours.
    unsafe { ffi::Py_DECREF(vars) };
}

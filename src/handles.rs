//! `Handle` and `TimerHandle`: what `call_soon`/`call_later` return, with asyncio's interface
//! (`cancel`, `cancelled`, `when`, `get_context`, repr, comparisons) and its run semantics.
//!
//! A handle is as small as asyncio's (one is made per callback, and programs keep a million
//! timers pending), and it takes part in garbage collection like asyncio's: a timer whose callback
//! is a bound method of an object that holds the timer is a cycle the collector must be able to see.

use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::context_vars;
use crate::core::Entry;
use crate::event_loop::LoopCore;
use crate::gil::GilSlot;
use crate::pyobjects;

/// What only debug mode records, with the loop it stands in for in the handle's `owner` slot:
/// keeping it there rather than in a field of its own keeps every handle one allocation class
/// smaller (80 bytes with the collector's header, as against asyncio's 96).
///
/// A record is its handle's alone and never handed out, so it is no object of the collector's:
/// the handle visits what the record holds as its own referents, as asyncio's handle lists its
/// loop and source traceback.
#[pyclass(frozen, module = "ferroloop")]
struct DebugRecord {
    loop_: Py<PyAny>,
    /// Where the handle was created (a `traceback.StackSummary`), or None.
    source_traceback: Option<Py<PyAny>>,
    /// The repr kept at cancel time, so a slow-callback warning can still name the handle.
    repr: Option<Py<PyString>>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop")]
pub struct Handle {
    callback: GilSlot<PyAny>,
    args: GilSlot<PyTuple>,
    /// A Context (the one given, or this handle's own copy), or the caller's context variables
    /// to make one from if `context_is_vars` is set (see `context_vars`).
    context: GilSlot<PyAny>,
    /// The loop, or a `DebugRecord` holding it if `owner_is_record` is set. Never empty.
    owner: GilSlot<PyAny>,
    cancelled: AtomicBool,
    /// True while the handle sits in the timer heap (asyncio's `TimerHandle._scheduled`).
    scheduled: AtomicBool,
    context_is_vars: AtomicBool,
    owner_is_record: AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle is only ever dropped by its deallocation, which CPython runs with the
        // GIL held; `drop_ref` then skips PyO3's GIL-state lookup.
        let py = unsafe { Python::assume_attached() };
        if let Some(x) = self.callback.take_exclusive() {
            x.drop_ref(py);
        }
        if let Some(x) = self.args.take_exclusive() {
            x.drop_ref(py);
        }
        if let Some(x) = self.context.take_exclusive() {
            x.drop_ref(py);
        }
        if let Some(x) = self.owner.take_exclusive() {
            x.drop_ref(py);
        }
    }
}

#[pyclass(frozen, extends = Handle, module = "ferroloop")]
pub struct TimerHandle {
    when: f64,
}

impl Entry for Py<Handle> {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.get().cancelled()
    }
    #[inline]
    fn set_unscheduled(&self) {
        self.get().scheduled.store(false, Ordering::Relaxed);
    }
}

/// The context a callback runs in: the one given, else a copy of the current one (asyncio's
/// rule), held as its variables alone where the interpreter allows it. The flag says which of the
/// two it is.
fn context_or_copy(py: Python<'_>, context: Option<Py<PyAny>>) -> PyResult<(Py<PyAny>, bool)> {
    if let Some(ctx) = context.filter(|ctx| !ctx.is_none(py)) {
        return Ok((ctx, false));
    }
    if let Some(vars) = context_vars::capture(py)? {
        return Ok((vars, true));
    }
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an exception set.
    let copy = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? };
    Ok((copy.unbind(), false))
}

/// The creation stack of a handle in debug mode, ending at the Python code that asked for it.
fn creation_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let frame = pyobjects::getframe(py)?.call1((0,))?;
    Ok(pyobjects::extract_stack(py)?.call1((frame,))?.unbind())
}

fn loop_debug(loop_: &Bound<'_, PyAny>) -> PyResult<bool> {
    match loop_.cast::<LoopCore>() {
        Ok(core) => Ok(core.get().debug(loop_.py())),
        Err(_) => loop_.call_method0("get_debug")?.is_truthy(),
    }
}

impl Handle {
    pub(crate) fn build(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        loop_: Py<PyAny>,
        context: Option<Py<PyAny>>,
        debug: bool,
    ) -> PyResult<Handle> {
        let owner = if debug {
            let record = DebugRecord {
                loop_,
                source_traceback: Some(creation_stack(py)?),
                repr: None,
            };
            Py::new(py, record)?.into_any()
        } else {
            loop_
        };
        let (context, context_is_vars) = context_or_copy(py, context)?;
        Ok(Handle {
            callback: GilSlot::new(Some(callback)),
            args: GilSlot::new(Some(args)),
            context: GilSlot::new(Some(context)),
            owner: GilSlot::new(Some(owner)),
            cancelled: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            context_is_vars: AtomicBool::new(context_is_vars),
            owner_is_record: AtomicBool::new(debug),
        })
    }

    /// What debug mode recorded for this handle, if anything.
    fn record<'py>(&self, py: Python<'py>) -> Option<Bound<'py, DebugRecord>> {
        if !self.owner_is_record.load(Ordering::Relaxed) {
            return None;
        }
        let owner = self.owner.get(py)?.into_bound(py);
        owner.cast_into::<DebugRecord>().ok()
    }

    /// The loop the handle belongs to.
    pub(crate) fn loop_<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        if let Some(record) = self.record(py) {
            return record.get().loop_.bind(py).clone();
        }
        match self.owner.get(py) {
            Some(owner) => owner.into_bound(py),
            // Unreachable: the owner is set at build and only ever replaced, never taken.
            None => py.None().into_bound(py),
        }
    }

    /// Hands the handle's references over to the loop's queue for the collector's purposes: see
    /// "Handles and the garbage collector" in `event_loop/mod.rs`.
    pub(crate) fn untrack_while_queued(slf: &Bound<'_, Handle>) {
        // SAFETY: a live GC object; untracking an object is always allowed.
        unsafe { ffi::PyObject_GC_UnTrack(slf.as_ptr().cast()) }
    }

    /// Tracks the handle again if it is untracked, so that cycles through it are collectable.
    pub(crate) fn track(slf: &Bound<'_, Handle>) {
        let ptr = slf.as_ptr();
        // SAFETY: a live GC object; it is tracked only if it is not tracked already.
        unsafe {
            if ffi::PyObject_GC_IsTracked(ptr) == 0 {
                ffi::PyObject_GC_Track(ptr.cast());
            }
        }
    }

    /// Called when the loop's queue lets go of the handle: if someone else still holds it, the
    /// collector must see its references again.
    pub(crate) fn leave_queue(slf: &Bound<'_, Handle>) {
        // SAFETY: reading the reference count of a live object.
        if unsafe { ffi::Py_REFCNT(slf.as_ptr()) } > 1 {
            Handle::track(slf);
        }
    }

    pub(crate) fn is_tracked(handle: &Py<Handle>) -> bool {
        // SAFETY: a live object, read with the GIL held (the collector holds it during traverse).
        unsafe { ffi::PyObject_GC_IsTracked(handle.as_ptr()) != 0 }
    }

    /// Walks what the handle references, for its own `__traverse__` and for the loop's on behalf
    /// of a queued (untracked) handle.
    pub(crate) fn walk_referents<E>(
        &self,
        visit: &mut impl FnMut(&Py<PyAny>) -> Result<(), E>,
    ) -> Result<(), E> {
        // SAFETY: the collector runs with the GIL held, and visiting runs no Python code.
        let (callback, args, context, owner) = unsafe {
            (
                self.callback.peek(),
                self.args.peek(),
                self.context.peek(),
                self.owner.peek(),
            )
        };
        for obj in [callback, context].into_iter().flatten() {
            visit(obj)?;
        }
        if let Some(args) = args {
            visit(args.as_any())?;
        }
        let Some(owner) = owner else {
            return Ok(());
        };
        if !self.owner_is_record.load(Ordering::Relaxed) {
            return visit(owner);
        }
        // SAFETY: as above; a type check runs no Python code either.
        let py = unsafe { Python::assume_attached() };
        if let Ok(record) = owner.bind(py).cast::<DebugRecord>() {
            let record = record.get();
            visit(&record.loop_)?;
            if let Some(tb) = &record.source_traceback {
                visit(tb)?;
            }
        }
        Ok(())
    }

    /// The Context the callback runs in. One made from held variables is kept: it is the one the
    /// callback runs in and `get_context()` returns, as asyncio's copy would be.
    fn context_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(held) = self.context.get(py) else {
            return Ok(None);
        };
        if !self.context_is_vars.load(Ordering::Relaxed) {
            return Ok(Some(held));
        }
        let made = context_vars::make_context(py, &held)?;
        let vars = self.context.replace(py, Some(made.clone_ref(py)));
        self.context_is_vars.store(false, Ordering::Relaxed);
        drop(vars);
        Ok(Some(made))
    }

    pub(crate) fn mark_scheduled(&self) {
        self.scheduled.store(true, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let record = self.record(py)?;
        let tb = record.get().source_traceback.as_ref()?;
        Some(tb.clone_ref(py))
    }

    /// `Handle.cancel`, with `TimerHandle.cancel`'s report to the loop while it is in the heap.
    pub(crate) fn cancel_bound(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled() {
            return Ok(());
        }
        let loop_ = &this.loop_(py);
        if this.scheduled.load(Ordering::Relaxed) {
            match loop_.cast::<LoopCore>() {
                Ok(core) => core.get().timer_handle_cancelled(py),
                Err(_) => {
                    loop_.call_method1("_timer_handle_cancelled", (slf,))?;
                }
            }
        }
        this.cancelled.store(true, Ordering::Relaxed);
        // A cancelled handle keeps its context and may be held by its owner for long: let the
        // collector see it whether or not it is still queued.
        Handle::track(slf);
        if loop_debug(loop_)? {
            // Keep a description: a slow-callback warning may still need to name this handle.
            let record = DebugRecord {
                loop_: loop_.clone().unbind(),
                source_traceback: this.source_traceback(py),
                repr: Some(slf.repr()?.unbind()),
            };
            let old = this
                .owner
                .replace(py, Some(Py::new(py, record)?.into_any()));
            this.owner_is_record.store(true, Ordering::Relaxed);
            drop(old);
        }
        let (callback, args) = (this.callback.take(py), this.args.take(py));
        // Dropped once the handle is consistent: a destructor may run Python code that looks at it.
        drop((callback, args));
        Ok(())
    }

    /// Runs the callback in its context, as `Handle._run`: SystemExit and KeyboardInterrupt
    /// propagate, any other exception goes to the loop's exception handler.
    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // When the caller's reference is the only one (the usual case: the loop popped the handle
        // and nobody kept it), nothing can look at the handle after the call, so its references
        // are moved out instead of copied; they are put back if the error report needs them.
        // SAFETY: reading the reference count of a live object.
        let sole_owner = unsafe { ffi::Py_REFCNT(slf.as_ptr()) } == 1;
        let parts = if sole_owner {
            match (
                this.callback.take(py),
                this.args.take(py),
                this.context.take(py),
            ) {
                (Some(cb), Some(args), Some(ctx)) => Some((cb, args, Some(ctx))),
                _ => None,
            }
        } else {
            match (this.callback.get(py), this.args.get(py)) {
                (Some(cb), Some(args)) => Some((cb, args, None)),
                _ => None,
            }
        };
        let Some((callback, args, taken_context)) = parts else {
            return Ok(());
        };
        let (callback, args) = (callback.into_bound(py), args.into_bound(py));
        // Made, if need be, outside any borrow of the handle: making a Context may allocate.
        // Held variables get a Context that nobody else can see once the call is over.
        let (context, released) = match taken_context {
            // Load and store, not a locked swap: the flag is only reached with the GIL held.
            Some(vars) if this.context_is_vars.load(Ordering::Relaxed) => {
                this.context_is_vars.store(false, Ordering::Relaxed);
                (context_vars::run_context(py, vars)?, true)
            }
            Some(ctx) => (ctx.into_bound(py), false),
            None => match this.context_object(py)? {
                Some(ctx) => (ctx.into_bound(py), false),
                None => return Ok(()),
            },
        };
        // SAFETY: callback and args are live objects we hold references to.
        let result = run_in_context(&context, || unsafe {
            ffi::PyObject_Call(callback.as_ptr(), args.as_ptr(), ptr::null_mut())
        });
        let err = match result {
            Ok(_) if released => {
                context_vars::release(context);
                return Ok(());
            }
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        if sole_owner {
            // The slots are empty (taken above), so nothing is dropped here.
            this.callback.replace(py, Some(callback.clone().unbind()));
            this.args.replace(py, Some(args.clone().unbind()));
            this.context.replace(py, Some(context.unbind()));
        }
        report_callback_error(slf, &callback, &args, err)
    }

    fn repr_info(slf: &Bound<'_, Handle>) -> PyResult<Vec<String>> {
        let py = slf.py();
        let this = slf.get();
        let mut info = vec![slf.get_type().name()?.to_string()];
        if this.cancelled() {
            info.push("cancelled".to_owned());
        }
        if let Ok(timer) = slf.cast::<TimerHandle>() {
            let when = PyFloat::new(py, timer.get().when).repr()?;
            info.push(format!("when={when}"));
        }
        let (callback, args) = (this.callback.get(py), this.args.get(py));
        if let Some(callback) = callback {
            let args: Py<PyAny> = match args {
                Some(a) => a.into_any(),
                None => py.None(),
            };
            info.push(
                pyobjects::format_callback_source(py)?
                    .call1((callback, args))?
                    .extract::<String>()?,
            );
        }
        if let Some(tb) = this.source_traceback(py) {
            let tb = tb.bind(py);
            if tb.is_truthy()? {
                let frame = tb.get_item(-1)?;
                let file: String = frame.get_item(0)?.extract()?;
                info.push(format!("created at {file}:{}", frame.get_item(1)?.str()?));
            }
        }
        Ok(info)
    }
}

/// `call()` (a new reference or NULL with an exception set) with `context` entered, as
/// `Context.run` does; the context is exited on every path after a successful enter, once the
/// call's error has been fetched.
pub(crate) fn run_in_context<'py>(
    context: &Bound<'py, PyAny>,
    call: impl FnOnce() -> *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    let py = context.py();
    let ctx = context.as_ptr();
    // SAFETY: ctx is a live object we hold a reference to; PyContext_Enter checks its type.
    unsafe {
        if ffi::PyContext_Enter(ctx) < 0 {
            return Err(PyErr::fetch(py));
        }
        let result = Bound::from_owned_ptr_or_err(py, call());
        ffi::PyContext_Exit(ctx);
        result
    }
}

impl Handle {
    /// Reports an error its callback raised, as `Handle._run` does (for a call that was queued
    /// without a handle and got one only for the report; see `event_loop/task_calls.rs`).
    pub(crate) fn report_error(slf: &Bound<'_, Handle>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (Some(callback), Some(args)) = (this.callback.get(py), this.args.get(py)) else {
            return Err(err);
        };
        let (callback, args) = (callback.into_bound(py), args.into_bound(py));
        report_callback_error(slf, &callback, &args, err)
    }
}

fn report_callback_error(
    handle: &Bound<'_, Handle>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
    err: PyErr,
) -> PyResult<()> {
    let py = handle.py();
    if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
        return Err(err);
    }
    let source: String = pyobjects::format_callback_source(py)?
        .call1((callback, args))?
        .extract()?;
    let context = PyDict::new(py);
    context.set_item("message", format!("Exception in callback {source}"))?;
    context.set_item("exception", err.into_value(py))?;
    context.set_item("handle", handle)?;
    let this = handle.get();
    if let Some(tb) = this.source_traceback(py) {
        if tb.bind(py).is_truthy()? {
            context.set_item("source_traceback", tb)?;
        }
    }
    this.loop_(py)
        .call_method1("call_exception_handler", (context,))?;
    Ok(())
}

#[pymethods]
impl Handle {
    #[new]
    #[pyo3(signature = (callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: &Bound<'_, PyAny>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let args = PyTuple::new(py, args.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.unbind();
        let debug = loop_debug(r#loop.bind(py))?;
        Handle::build(py, callback, args, r#loop, context, debug)
    }

    fn cancel(slf: &Bound<'_, Handle>) -> PyResult<()> {
        Handle::cancel_bound(slf)
    }

    #[pyo3(name = "cancelled")]
    fn py_cancelled(&self) -> bool {
        self.cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.context_object(py)
    }

    fn _run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        Handle::run(slf)
    }

    fn __repr__(slf: &Bound<'_, Handle>) -> PyResult<Py<PyString>> {
        if let Some(repr) = slf.get()._repr(slf.py()) {
            return Ok(repr);
        }
        let repr = format!("<{}>", Handle::repr_info(slf)?.join(" "));
        Ok(PyString::new(slf.py(), &repr).unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.walk_referents(&mut |obj: &Py<PyAny>| visit.call(obj))
    }

    fn __clear__(&self, py: Python<'_>) {
        // The owner stays (the loop is needed for as long as the handle lives), without its record.
        let record = self.record(py).map(|record| {
            let loop_ = record.get().loop_.clone_ref(py);
            self.owner_is_record.store(false, Ordering::Relaxed);
            self.owner.replace(py, Some(loop_))
        });
        let taken = (
            self.callback.take(py),
            self.args.take(py),
            self.context.take(py),
        );
        drop((record, taken));
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback.get(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.args.get(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.cancelled()
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.context_object(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.loop_(py).unbind()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback(py)
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> Option<Py<PyString>> {
        let record = self.record(py)?;
        record.get().repr.as_ref().map(|r| r.clone_ref(py))
    }
}

impl TimerHandle {
    pub(crate) fn new(when: f64) -> Self {
        TimerHandle { when }
    }
}

#[pymethods]
impl TimerHandle {
    #[new]
    #[pyo3(signature = (when, callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        when: f64,
        callback: Py<PyAny>,
        args: &Bound<'_, PyAny>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = Handle::py_new(py, callback, args, r#loop, context)?;
        Ok(PyClassInitializer::from(base).add_subclass(TimerHandle { when }))
    }

    #[pyo3(name = "when")]
    fn py_when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, TimerHandle>) -> bool {
        slf.as_super().get().scheduled.load(Ordering::Relaxed)
    }

    fn __hash__(slf: &Bound<'_, TimerHandle>) -> PyResult<isize> {
        // asyncio hashes a timer by its deadline: hash the float the way Python does.
        PyFloat::new(slf.py(), slf.get().when).hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, TimerHandle>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when, other.get().when);
        let equal = || -> PyResult<bool> {
            if a != b {
                return Ok(false);
            }
            let (x, y) = (slf.as_super().get(), other.as_super().get());
            if x.cancelled() != y.cancelled() {
                return Ok(false);
            }
            Ok(x._callback(py).into_pyobject(py)?.eq(y._callback(py))?
                && x._args(py).into_pyobject(py)?.eq(y._args(py))?)
        };
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || equal()?,
            CompareOp::Ge => a > b || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(result.into_pyobject(py)?.to_owned().into_any().unbind())
    }
}

//! `Handle` and `TimerHandle`: what `call_soon`/`call_later` return, with asyncio's interface
//! (`cancel`, `cancelled`, `when`, `get_context`, repr, comparisons) and its run semantics.
//!
//! A handle is smaller than asyncio's (one is made per callback, and programs keep a million
//! timers pending), and it takes part in garbage collection like asyncio's: a timer whose callback
//! is a bound method of an object that holds the timer is a cycle the collector must be able to see.
//!
//! A handle is three references and a weak-reference list: 64 bytes with the collector's header,
//! a timer 80 (asyncio's: 96 and 112). Everything else it knows is read off those references: the
//! callback and its arguments share one (`packed_call`), a cancelled handle has let go of it, a
//! context slot holding variables rather than a Context is told by its type (`context_vars`), and
//! so is an owner that is a debug record rather than the loop. Each 16 bytes saved is a cache line
//! in four for a queue of waiting callbacks: a handle 16 bytes bigger ran `call_soon_threadsafe x4
//! threads` 6% slower (benchmarks/run.py, 9 interleaved runs, 0.94x rloop where it ran 1.00x).

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::context_vars;
use crate::core::Entry;
use crate::event_loop::{threadsafe, LoopCore};
use crate::gil::GilSlot;
use crate::packed_call;
use crate::pyobjects;

/// What only debug mode records, with the loop it stands in for in the handle's `owner` slot:
/// keeping it there rather than in a field of its own keeps every handle one allocation class
/// smaller.
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
    /// The callback and its arguments (`packed_call`); empty once cancelled.
    call: GilSlot<PyAny>,
    /// A Context (the one given, or this handle's own copy), or the caller's context variables
    /// to make one from (`context_vars::holds_vars`).
    context: GilSlot<PyAny>,
    /// The loop, or a `DebugRecord` holding it. Never empty.
    owner: GilSlot<PyAny>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle is only ever dropped by its deallocation, which CPython runs with the
        // GIL held; `drop_ref` then skips PyO3's GIL-state lookup.
        let py = unsafe { Python::assume_attached() };
        if let Some(x) = self.call.take_exclusive() {
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

/// A number of seconds as asyncio keeps a timer's deadline: the value, and whether it was given
/// as an int (`call_at(when)` stores `when` as it is; `when()` gives it back as it came).
#[derive(Clone, Copy)]
pub struct Seconds {
    pub value: f64,
    pub is_int: bool,
}

impl Seconds {
    pub fn float(value: f64) -> Self {
        Seconds {
            value,
            is_int: false,
        }
    }

    /// An int, kept as one if a float holds it exactly.
    pub fn int(value: i64) -> Self {
        let as_float = value as f64;
        Seconds {
            value: as_float,
            is_int: as_float as i64 == value,
        }
    }

    fn to_python<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.is_int {
            Ok((self.value as i64).into_pyobject(py)?.into_any())
        } else {
            Ok(PyFloat::new(py, self.value).into_any())
        }
    }
}

#[pyclass(frozen, extends = Handle, module = "ferroloop")]
pub struct TimerHandle {
    when: f64,
    /// Kept beside `scheduled` rather than as a `Seconds`, whose padding would add 8 bytes to
    /// every timer.
    when_is_int: bool,
    /// True while the timer sits in the heap (asyncio's `TimerHandle._scheduled`).
    scheduled: AtomicBool,
}

impl Entry for Py<Handle> {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.get().cancelled()
    }
    #[inline]
    fn set_unscheduled(&self) {
        // SAFETY: the heap is only ever reached with the GIL held (it lives in the loop's state).
        let py = unsafe { Python::assume_attached() };
        if let Ok(timer) = self.bind(py).cast::<TimerHandle>() {
            timer.get().scheduled.store(false, Ordering::Relaxed);
        }
    }
}

/// The context a callback runs in: the one given, else a copy of the current one (asyncio's
/// rule), held as its variables alone where the interpreter allows it.
fn context_or_copy(py: Python<'_>, context: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    if let Some(ctx) = context.filter(|ctx| !ctx.is_none(py)) {
        return Ok(ctx);
    }
    if let Some(vars) = context_vars::capture(py)? {
        return Ok(vars);
    }
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an exception set.
    let copy = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? };
    Ok(copy.unbind())
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
    /// A handle for `call`, a packed callback and arguments (`packed_call`).
    pub(crate) fn build(
        py: Python<'_>,
        call: Py<PyAny>,
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
        let context = context_or_copy(py, context)?;
        Ok(Handle {
            call: GilSlot::new(Some(call)),
            context: GilSlot::new(Some(context)),
            owner: GilSlot::new(Some(owner)),
        })
    }

    /// What debug mode recorded for this handle, if anything.
    fn record<'py>(&self, py: Python<'py>) -> Option<Bound<'py, DebugRecord>> {
        let owner = self.owner.get(py)?.into_bound(py);
        owner.cast_into_exact::<DebugRecord>().ok()
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
        let (call, context, owner) =
            unsafe { (self.call.peek(), self.context.peek(), self.owner.peek()) };
        for obj in [call, context].into_iter().flatten() {
            visit(obj)?;
        }
        let Some(owner) = owner else {
            return Ok(());
        };
        // SAFETY: as above; a type check runs no Python code either.
        let py = unsafe { Python::assume_attached() };
        let Ok(record) = owner.bind(py).cast_exact::<DebugRecord>() else {
            return visit(owner);
        };
        let record = record.get();
        visit(&record.loop_)?;
        if let Some(tb) = &record.source_traceback {
            visit(tb)?;
        }
        Ok(())
    }

    /// The Context the callback runs in. One made from held variables is kept: it is the one the
    /// callback runs in and `get_context()` returns, as asyncio's copy would be.
    fn context_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(held) = self.context.get(py) else {
            return Ok(None);
        };
        if !context_vars::holds_vars(py, &held) {
            return Ok(Some(held));
        }
        let made = context_vars::make_context(py, &held)?;
        let vars = self.context.replace(py, Some(made.clone_ref(py)));
        drop(vars);
        Ok(Some(made))
    }

    /// Waits, as a `call_soon_threadsafe` handle's `cancel()` and `cancelled()` wait in asyncio
    /// 3.14, while this handle's callback runs on another thread (`event_loop::threadsafe`).
    #[inline]
    fn wait_while_running_elsewhere(&self, py: Python<'_>) {
        if threadsafe::any_running() {
            self.wait_for_loop(py);
        }
    }

    #[cold]
    #[inline(never)]
    fn wait_for_loop(&self, py: Python<'_>) {
        if let Ok(core) = self.loop_(py).cast::<LoopCore>() {
            core.get().wait_while_running_elsewhere(py, self);
        }
    }

    /// A cancelled handle has let go of its callback. (So has one whose callback is running and
    /// that nobody else holds, which nobody can ask; see `run`.)
    #[inline]
    pub(crate) fn cancelled(&self) -> bool {
        // SAFETY: a null check of the slot, which runs no Python code; the GIL is held by
        // whoever holds a handle.
        unsafe { self.call.peek().is_none() }
    }

    /// The callback and its arguments, unless cancelled.
    fn callback_and_args<'py>(
        &self,
        py: Python<'py>,
    ) -> Option<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let call = self.call.get(py)?.into_bound(py);
        Some((packed_call::callback(&call), packed_call::args(&call)))
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
        let Some(call) = this.call.get(py) else {
            return Ok(()); // cancelled already
        };
        let loop_ = &this.loop_(py);
        let scheduled = slf
            .cast::<TimerHandle>()
            .is_ok_and(|timer| timer.get().scheduled.load(Ordering::Relaxed));
        if scheduled {
            match loop_.cast::<LoopCore>() {
                Ok(core) => core.get().timer_handle_cancelled(py),
                Err(_) => {
                    loop_.call_method1("_timer_handle_cancelled", (slf,))?;
                }
            }
        }
        // In debug mode, keep a description: a slow-callback warning may still need to name this
        // handle. asyncio makes it once `_cancelled` is set and before the callback is let go.
        let record = loop_debug(loop_).and_then(|debug| {
            if !debug {
                return Ok(None);
            }
            let repr = format!(
                "<{}>",
                Handle::repr_info(slf, Some(call.bind(py)), true)?.join(" ")
            );
            let record = DebugRecord {
                loop_: loop_.clone().unbind(),
                source_traceback: this.source_traceback(py),
                repr: Some(PyString::new(py, &repr).unbind()),
            };
            Py::new(py, record).map(Some)
        });
        // Cancelled from here on, whether or not the description could be made (asyncio sets
        // `_cancelled` first).
        let taken = this.call.take(py);
        // A cancelled handle keeps its context and may be held by its owner for long: let the
        // collector see it whether or not it is still queued.
        Handle::track(slf);
        let (old_owner, result) = match record {
            Ok(Some(record)) => (this.owner.replace(py, Some(record.into_any())), Ok(())),
            Ok(None) => (None, Ok(())),
            Err(err) => (None, Err(err)),
        };
        // Dropped once the handle is consistent: a destructor may run Python code that looks at it.
        drop((call, taken, old_owner));
        result
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
            match (this.call.take(py), this.context.take(py)) {
                (Some(call), Some(ctx)) => Some((call, Some(ctx))),
                _ => None,
            }
        } else {
            this.call.get(py).map(|call| (call, None))
        };
        let Some((call, taken_context)) = parts else {
            return Ok(());
        };
        let call = call.into_bound(py);
        // Made, if need be, outside any borrow of the handle: making a Context may allocate.
        // Held variables get a Context that nobody else can see once the call is over.
        let (context, released) = match taken_context {
            Some(vars) if context_vars::holds_vars(py, &vars) => {
                (context_vars::run_context(py, vars)?, true)
            }
            Some(ctx) => (ctx.into_bound(py), false),
            None => match this.context_object(py)? {
                Some(ctx) => (ctx.into_bound(py), false),
                None => return Ok(()),
            },
        };
        // SAFETY: `call` is a live packed call we hold a reference to.
        let result = run_in_context(&context, || unsafe { packed_call::invoke(call.as_ptr()) });
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
            this.call.replace(py, Some(call.clone().unbind()));
            this.context.replace(py, Some(context.unbind()));
        }
        report_callback_error(slf, &call, err)
    }

    /// The words of the handle's repr: `call` is what it calls (None once cancelled), and
    /// `cancelled` whether to say so.
    fn repr_info(
        slf: &Bound<'_, Handle>,
        call: Option<&Bound<'_, PyAny>>,
        cancelled: bool,
    ) -> PyResult<Vec<String>> {
        let py = slf.py();
        let this = slf.get();
        let mut info = vec![slf.get_type().name()?.to_string()];
        if cancelled {
            info.push("cancelled".to_owned());
        }
        if let Ok(timer) = slf.cast::<TimerHandle>() {
            let when = timer.get().when().to_python(py)?.repr()?;
            info.push(format!("when={when}"));
        }
        if let Some(call) = call {
            info.push(callback_source(slf, call)?);
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

/// asyncio's description of the handle's callback (`format_helpers._format_callback_source`).
/// From Python 3.13 on it shows the arguments only when the handle's loop is in debug mode, and
/// `Handle` passes it `debug=`; before, the helper took no such argument and always showed them.
fn callback_source(handle: &Bound<'_, Handle>, call: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = handle.py();
    let (callback, args) = (packed_call::callback(call), packed_call::args(call));
    let format = pyobjects::format_callback_source(py)?;
    if py.version_info() < (3, 13) {
        return format.call1((callback, args))?.extract();
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "debug"), loop_debug(&handle.get().loop_(py))?)?;
    format.call((callback, args), Some(&kwargs))?.extract()
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
        let Some(call) = slf.get().call.get(slf.py()) else {
            return Err(err);
        };
        report_callback_error(slf, call.bind(slf.py()), err)
    }
}

fn report_callback_error(
    handle: &Bound<'_, Handle>,
    call: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    let py = handle.py();
    if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) {
        return Err(err);
    }
    let source = callback_source(handle, call)?;
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
        let args = PyTuple::new(py, args.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
        let call = packed_call::pack(callback.bind(py), &args)?;
        let debug = loop_debug(r#loop.bind(py))?;
        Handle::build(py, call, r#loop, context, debug)
    }

    fn cancel(slf: &Bound<'_, Handle>) -> PyResult<()> {
        slf.get().wait_while_running_elsewhere(slf.py());
        Handle::cancel_bound(slf)
    }

    #[pyo3(name = "cancelled")]
    fn py_cancelled(&self, py: Python<'_>) -> bool {
        self.wait_while_running_elsewhere(py);
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
        let this = slf.get();
        let call = this
            .call
            .get(slf.py())
            .map(|call| call.into_bound(slf.py()));
        let repr = format!(
            "<{}>",
            Handle::repr_info(slf, call.as_ref(), this.cancelled())?.join(" ")
        );
        Ok(PyString::new(slf.py(), &repr).unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.walk_referents(&mut |obj: &Py<PyAny>| visit.call(obj))
    }

    fn __clear__(&self, py: Python<'_>) {
        // The owner stays (the loop is needed for as long as the handle lives), without its record.
        let record = self.record(py).map(|record| {
            let loop_ = record.get().loop_.clone_ref(py);
            self.owner.replace(py, Some(loop_))
        });
        let taken = (self.call.take(py), self.context.take(py));
        drop((record, taken));
    }

    #[getter]
    fn _callback<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.callback_and_args(py).map(|(callback, _)| callback)
    }

    #[getter]
    fn _args<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyTuple>> {
        self.callback_and_args(py).map(|(_, args)| args)
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
    /// A timer for `when`, `scheduled` if it goes into the loop's heap at once.
    pub(crate) fn new(when: Seconds, scheduled: bool) -> Self {
        TimerHandle {
            when: when.value,
            when_is_int: when.is_int,
            scheduled: AtomicBool::new(scheduled),
        }
    }

    fn when(&self) -> Seconds {
        Seconds {
            value: self.when,
            is_int: self.when_is_int,
        }
    }
}

#[pymethods]
impl TimerHandle {
    #[new]
    #[pyo3(signature = (when, callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        when: &Bound<'_, PyAny>,
        callback: Py<PyAny>,
        args: &Bound<'_, PyAny>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = Handle::py_new(py, callback, args, r#loop, context)?;
        let when = match when.extract::<i64>() {
            Ok(i) if when.is_instance_of::<PyInt>() => Seconds::int(i),
            _ => Seconds::float(when.extract()?),
        };
        Ok(PyClassInitializer::from(base).add_subclass(TimerHandle::new(when, false)))
    }

    #[pyo3(name = "when")]
    fn py_when<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.when().to_python(py)
    }

    #[getter]
    fn _when<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.when().to_python(py)
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
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

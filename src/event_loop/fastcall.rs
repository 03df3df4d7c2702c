//! `call_soon`, `call_soon_threadsafe`, `call_later` and `call_at` as plain METH_FASTCALL methods.
//!
//! They are the loop's hottest entry points: every task step and every future callback comes
//! through `call_soon` (`loop.call_soon(step, context=ctx)` from C), every timeout and sleep through
//! `call_at`/`call_later`. Going through PyO3's generic argument parser and trampoline cost about
//! 180 instructions per call, 3% of a whole `await asyncio.sleep(0)` round trip (callgrind). These
//! entries parse `([when|delay,] callback, *args, context=None)` themselves, with the messages
//! CPython gives for `BaseEventLoop`'s Python signatures, and then share the scheduling code with
//! everything else.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::task_calls::TaskCall;
use super::{LoopCore, Ready};
use crate::errors::named_in_errors;
use crate::method_descriptor::call_for_cpython_returning;
use crate::packed_call;

/// Which entry point.
#[derive(Clone, Copy)]
enum Entry {
    Soon,
    SoonThreadsafe,
    Later,
    At,
}

impl Entry {
    fn name(self) -> &'static str {
        // Per call: strip_prefix compares bytes; trim_start_matches built a substring searcher
        // each time, which cost the call_soon chain a quarter of its speed.
        let qualified = self.qualified_name();
        qualified
            .strip_prefix("BaseEventLoop.")
            .unwrap_or(qualified)
    }

    fn qualified_name(self) -> &'static str {
        match self {
            Entry::Soon => "BaseEventLoop.call_soon",
            Entry::SoonThreadsafe => "BaseEventLoop.call_soon_threadsafe",
            Entry::Later => "BaseEventLoop.call_later",
            Entry::At => "BaseEventLoop.call_at",
        }
    }

    fn described(self, py: Python<'_>) -> &'static str {
        named_in_errors(py, self.qualified_name())
    }

    /// The parameters before `*args`, in order.
    fn params(self) -> &'static [&'static str] {
        match self {
            Entry::Soon | Entry::SoonThreadsafe => &["callback"],
            Entry::Later => &["delay", "callback"],
            Entry::At => &["when", "callback"],
        }
    }
}

fn missing_error(py: Python<'_>, entry: Entry, missing: &[&str]) -> PyErr {
    let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
    let list = match quoted.as_slice() {
        [one] => one.clone(),
        [first, second] => format!("{first} and {second}"),
        _ => quoted.join(", "),
    };
    let plural = if missing.len() == 1 {
        "argument"
    } else {
        "arguments"
    };
    PyTypeError::new_err(format!(
        "{}() missing {} required positional {plural}: {list}",
        entry.described(py),
        missing.len()
    ))
}

/// Positional arguments `args[..nargs]` and keyword values `args[nargs..]` named by `kwnames`,
/// sorted into the parameters, `*args` and `context`.
unsafe fn call_impl(
    py: Python<'_>,
    entry: Entry,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY (whole function): CPython passes `slf` checked against the descriptor's type
    // (LoopCore), `nargs` positional and len(kwnames) keyword values in `args`, all borrowed.
    let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>();
    let nargs = nargs as usize;
    if let (Entry::Soon | Entry::SoonThreadsafe, true) = (entry, nargs > 0) {
        let positional = std::slice::from_raw_parts(args, nargs);
        if let Some(context) = context_only(py, positional, kwnames) {
            if let (Entry::Soon, Some(ctx)) = (entry, context) {
                if queue_task_call(py, &slf, positional, ctx) {
                    return Ok(py.None());
                }
            }
            return soon_simple(py, entry, &slf, positional, context);
        }
    }
    let params = entry.params();
    let mut values: [Option<Bound<'_, PyAny>>; 2] = [None, None];
    for (i, slot) in values.iter_mut().take(params.len().min(nargs)).enumerate() {
        *slot = Some(Bound::from_borrowed_ptr(py, *args.add(i)));
    }
    let extra = std::slice::from_raw_parts(args, nargs)
        .get(params.len()..)
        .unwrap_or_default();
    let mut context = None;
    if !kwnames.is_null() {
        let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
        for (i, name) in names.iter().enumerate() {
            let name = name.cast_into::<PyString>()?;
            let value = Bound::from_borrowed_ptr(py, *args.add(nargs + i));
            let name = name.to_str()?;
            if name == "context" {
                context = Some(value.unbind());
                continue;
            }
            let Some(index) = params.iter().position(|p| *p == name) else {
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected keyword argument '{name}'",
                    entry.described(py)
                )));
            };
            if values[index].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{name}'",
                    entry.described(py)
                )));
            }
            values[index] = Some(value);
        }
    }
    let missing: Vec<&str> = params
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        return Err(missing_error(py, entry, &missing));
    }
    let [first, second] = values;
    let (first, second) = (first.expect("checked above"), second);
    match entry {
        Entry::Soon => {
            let call = packed_call::pack_raw(&first, extra)?.into_bound(py);
            Ok(LoopCore::schedule_soon(&slf, &call, context, "call_soon")?.into_any())
        }
        Entry::SoonThreadsafe => {
            let call = packed_call::pack_raw(&first, extra)?.into_bound(py);
            Ok(LoopCore::call_soon_threadsafe_impl(&slf, &call, context)?.into_any())
        }
        Entry::Later => {
            let call = packed_call::pack_raw(&second.expect("checked above"), extra)?;
            Ok(LoopCore::call_later_impl(&slf, &first, call.bind(py), context)?.into_any())
        }
        Entry::At => {
            let call = packed_call::pack_raw(&second.expect("checked above"), extra)?;
            Ok(LoopCore::call_at_impl(&slf, &first, call.bind(py), context)?.into_any())
        }
    }
}

/// The keyword arguments of a vectorcall, if they are none or `context=` alone (how the C Task and
/// Future, and nearly every caller, call `call_soon`): `Some(None)` for none, `Some(Some(ctx))`
/// for `context=ctx`, None for anything else (left to the general parse and its messages).
///
/// # Safety
/// `args` are the positional arguments and `kwnames` the keyword names of a vectorcall, whose
/// keyword values follow the positional ones in memory.
unsafe fn context_only(
    py: Python<'_>,
    args: &[*mut ffi::PyObject],
    kwnames: *mut ffi::PyObject,
) -> Option<Option<*mut ffi::PyObject>> {
    if kwnames.is_null() {
        return Some(None);
    }
    if ffi::PyTuple_GET_SIZE(kwnames) != 1 {
        return None;
    }
    let name = ffi::PyTuple_GET_ITEM(kwnames, 0);
    if name != pyo3::intern!(py, "context").as_ptr() && !is_task_context_name(name) {
        return None;
    }
    Some(Some(*args.as_ptr().add(args.len())))
}

/// The C Task's and Future's keyword name `"context"`, a string of their own rather than the
/// interned one, kept (with a reference, so that its address stays its own) once seen: comparing
/// its text costs some 80 instructions per task step.
static TASK_CONTEXT_NAME: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());

/// Whether `name` is the string "context".
///
/// # Safety
/// `name` must be a live string; the GIL must be held (it guards `TASK_CONTEXT_NAME`).
unsafe fn is_task_context_name(name: *mut ffi::PyObject) -> bool {
    let known = TASK_CONTEXT_NAME.load(Ordering::Relaxed);
    if name == known {
        return true;
    }
    if ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr()) != 0 {
        return false;
    }
    if known.is_null() {
        ffi::Py_INCREF(name);
        TASK_CONTEXT_NAME.store(name, Ordering::Relaxed);
    }
    true
}

/// `call_soon(callback, *args, context=ctx)` as CPython's C Task and Future make it: queued
/// without a handle if it is a task step or wake-up and the loop allows it (`task_calls.rs`).
///
/// # Safety
/// As `context_only`; `context` is the value it returned.
unsafe fn queue_task_call(
    py: Python<'_>,
    slf: &Bound<'_, LoopCore>,
    args: &[*mut ffi::PyObject],
    context: *mut ffi::PyObject,
) -> bool {
    let [callback, rest @ ..] = args else {
        return false;
    };
    // The callback's type first: it turns away every other callback at once. The lookups of
    // `call_soon_untouched` may allocate (the instance dict), so they run before the state is
    // borrowed: no borrow may span code that can end in a collection's finalizers.
    let Some(call) = TaskCall::recognise(py, *callback, rest, context) else {
        return false;
    };
    if !call_soon_untouched(py, slf) {
        return false;
    }
    let mut st = slf.get().state.borrow_mut(py);
    if st.thread_id.is_none() || st.debug || st.closed {
        return false;
    }
    st.scheduler.push_ready(Ready::Call(call));
    true
}

/// `call_soon`/`call_soon_threadsafe` called as `(callback, *args)`, perhaps with `context=`:
/// scheduled without the general parse (24 of a chained callback's 2,262 instructions, callgrind).
///
/// # Safety
/// As `context_only`; `context` is the value it returned.
unsafe fn soon_simple(
    py: Python<'_>,
    entry: Entry,
    slf: &Bound<'_, LoopCore>,
    args: &[*mut ffi::PyObject],
    context: Option<*mut ffi::PyObject>,
) -> PyResult<Py<PyAny>> {
    let callback = Bound::from_borrowed_ptr(py, args[0]);
    let call = packed_call::pack_raw(&callback, &args[1..])?.into_bound(py);
    let context = context.map(|ctx| Bound::from_borrowed_ptr(py, ctx).unbind());
    let handle = match entry {
        Entry::SoonThreadsafe => LoopCore::call_soon_threadsafe_impl(slf, &call, context)?,
        _ => LoopCore::schedule_soon(slf, &call, context, "call_soon")?,
    };
    Ok(handle.into_any())
}

/// The `call_soon` descriptor `install` put on the loop type (its address).
static OWN_CALL_SOON: OnceLock<usize> = OnceLock::new();

extern "C" {
    /// CPython's attribute lookup through a type's MRO (with its method cache); exported by every
    /// version ferroloop supports, though not declared by pyo3-ffi.
    fn _PyType_Lookup(ty: *mut ffi::PyTypeObject, name: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Whether the C Task reaches this method when it looks up `call_soon` on the loop: neither the
/// loop's class nor the instance overrides it, so no Python code sees what the call returns.
unsafe fn call_soon_untouched(py: Python<'_>, slf: &Bound<'_, LoopCore>) -> bool {
    let name = pyo3::intern!(py, "call_soon").as_ptr();
    let found = _PyType_Lookup(ffi::Py_TYPE(slf.as_ptr()), name);
    if Some(&(found as usize)) != OWN_CALL_SOON.get() {
        return false;
    }
    let dict = ffi::PyObject_GenericGetDict(slf.as_ptr(), ptr::null_mut());
    if dict.is_null() {
        ffi::PyErr_Clear(); // no instance dict: nothing to override with
        return true;
    }
    let overridden = ffi::PyDict_Contains(dict, name);
    ffi::Py_DECREF(dict);
    if overridden < 0 {
        ffi::PyErr_Clear();
    }
    overridden == 0
}

/// The C entry of one of the methods: no Rust panic may unwind into CPython.
unsafe fn fastcall(
    entry: Entry,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = Python::assume_attached();
    call_for_cpython_returning(py, entry.name(), || {
        call_impl(py, entry, slf, args, nargs, kwnames).map(|value| value.into_bound(py))
    })
}

/// One C function per entry point, as CPython's method table needs, each naming its entry.
macro_rules! fastcall_entry {
    ($name:ident, $entry:expr) => {
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            fastcall($entry, slf, args, nargs, kwnames)
        }
    };
}

fastcall_entry!(call_soon_fastcall, Entry::Soon);
fastcall_entry!(call_soon_threadsafe_fastcall, Entry::SoonThreadsafe);
fastcall_entry!(call_later_fastcall, Entry::Later);
fastcall_entry!(call_at_fastcall, Entry::At);

type FastCall = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

const METHODS: [(&std::ffi::CStr, FastCall, &std::ffi::CStr); 4] = [
    (
        c"call_soon",
        call_soon_fastcall,
        c"call_soon(callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible.",
    ),
    (
        c"call_soon_threadsafe",
        call_soon_threadsafe_fastcall,
        c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), but thread-safe.",
    ),
    (
        c"call_later",
        call_later_fastcall,
        c"call_later(delay, callback, *args, context=None)\n--\n\nArrange for a callback to be called after the given delay, in seconds.",
    ),
    (
        c"call_at",
        call_at_fastcall,
        c"call_at(when, callback, *args, context=None)\n--\n\nLike call_later(), but uses an absolute time (loop.time()).",
    ),
];

/// Installs the entry points on the LoopCore type.
pub(crate) fn install(loop_type: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let py = loop_type.py();
    for (name, function, doc) in METHODS {
        // The method table must outlive the type; types live as long as the interpreter.
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFastWithKeywords: function,
            },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: a valid type object and a method table that lives forever.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(loop_type.as_type_ptr(), def))?
        };
        if name == c"call_soon" {
            let _ = OWN_CALL_SOON.set(descr.as_ptr() as usize);
        }
        // The type's own dict, as CPython fills it for its own types.
        // SAFETY: tp_dict of a ready type is a dict.
        unsafe {
            let dict = (*loop_type.as_type_ptr()).tp_dict;
            if ffi::PyDict_SetItemString(dict, name.as_ptr(), descr.as_ptr()) < 0 {
                return Err(PyErr::fetch(py));
            }
        }
    }
    // SAFETY: a ready type whose dict changed: invalidate the method caches.
    unsafe { ffi::PyType_Modified(loop_type.as_type_ptr()) };
    Ok(())
}

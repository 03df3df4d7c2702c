//! `call_soon` as a plain METH_FASTCALL method.
//!
//! It is the loop's hottest entry point: every task step and every future callback comes through
//! it (`loop.call_soon(step, context=ctx)` from C). Going through PyO3's generic argument parser
//! and trampoline cost about 180 instructions per call, 3% of a whole `await asyncio.sleep(0)`
//! round trip (callgrind); this entry parses its one positional, its `*args` and its `context`
//! keyword itself and then shares `LoopCore::schedule_soon` with everything else.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::LoopCore;

/// Positional arguments `args[..nargs]` and keyword values `args[nargs..]` named by `kwnames`.
unsafe fn call_soon_impl(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY (whole function): CPython passes `slf` checked against the descriptor's type
    // (LoopCore), `nargs` positional and len(kwnames) keyword values in `args`, all borrowed.
    let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>();
    let nargs = nargs as usize;
    if nargs == 0 {
        return Err(PyTypeError::new_err(
            "call_soon() missing 1 required positional argument: 'callback'",
        ));
    }
    let callback = Bound::from_borrowed_ptr(py, *args);
    let extra = std::slice::from_raw_parts(args.add(1), nargs - 1)
        .iter()
        .map(|&arg| Bound::from_borrowed_ptr(py, arg));
    let call_args = PyTuple::new(py, extra)?;
    let mut context = None;
    if !kwnames.is_null() {
        let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
        for (i, name) in names.iter().enumerate() {
            let name = name.cast_into::<PyString>()?;
            if name.to_str()? != "context" {
                return Err(PyTypeError::new_err(format!(
                    "call_soon() got an unexpected keyword argument '{name}'"
                )));
            }
            context = Some(Bound::from_borrowed_ptr(py, *args.add(nargs + i)).unbind());
        }
    }
    let handle = LoopCore::schedule_soon(&slf, &callback, &call_args, context, "call_soon")?;
    Ok(handle.into_any())
}

unsafe extern "C" fn call_soon_fastcall(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = Python::assume_attached();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        call_soon_impl(py, slf, args, nargs, kwnames)
    }));
    let err = match outcome {
        Ok(Ok(handle)) => return handle.into_ptr(),
        Ok(Err(err)) => err,
        // No Rust panic may unwind into CPython: it becomes an exception like any other error.
        Err(_) => PyRuntimeError::new_err("internal error in ferroloop's call_soon (a Rust panic)"),
    };
    err.restore(py);
    ptr::null_mut()
}

/// Installs `call_soon` on the LoopCore type.
pub(crate) fn install(loop_type: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let py = loop_type.py();
    // The method table must outlive the type; types live as long as the interpreter.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon_fastcall,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"call_soon(callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible.".as_ptr(),
    }));
    // SAFETY: a valid type object and a method table that lives forever.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(loop_type.as_type_ptr(), def))?
    };
    // The type's own dict, as CPython fills it for its own types; then invalidate caches.
    // SAFETY: tp_dict of a ready type is a dict.
    unsafe {
        let dict = (*loop_type.as_type_ptr()).tp_dict;
        if ffi::PyDict_SetItemString(dict, c"call_soon".as_ptr(), descr.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
        ffi::PyType_Modified(loop_type.as_type_ptr());
    }
    Ok(())
}

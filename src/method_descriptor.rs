//! Native functions installed as methods of Python classes (the stdlib transports' subclasses),
//! for the few methods that run per packet: a method descriptor costs CPython no more than a
//! method of a built-in type, and the function sees `self` as the Python object it is.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Runs a native method for CPython: None, or NULL with the exception set. No Rust panic may
/// unwind into CPython: it becomes a RuntimeError naming `method`.
///
/// # Safety
/// The GIL must be held (CPython calls methods with it held).
pub unsafe fn call_for_cpython(
    py: Python<'_>,
    method: &str,
    body: impl FnOnce() -> PyResult<()>,
) -> *mut ffi::PyObject {
    call_for_cpython_returning(py, method, || body().map(|()| py.None().into_bound(py)))
}

/// `call_for_cpython` for a method that returns an object: a new reference to it, or NULL with
/// the exception set.
///
/// # Safety
/// The GIL must be held (CPython calls methods with it held).
pub unsafe fn call_for_cpython_returning<'py>(
    py: Python<'py>,
    method: &str,
    body: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> *mut ffi::PyObject {
    let err = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value.into_ptr(),
        Ok(Err(err)) => err,
        Err(_) => PyRuntimeError::new_err(format!(
            "internal error in ferroloop's {method} (a Rust panic)"
        )),
    };
    err.restore(py);
    ptr::null_mut()
}

/// Defines `$entry`, a `METH_O` function for `method_descriptor` that runs
/// `$body(py, &self, &arg)` through `call_for_cpython`.
macro_rules! meth_o_entry {
    ($entry:ident, $what:literal, $body:path) => {
        // SAFETY: CPython calls methods with the GIL held, passes `slf` checked against the
        // descriptor's class, and `arg` as a borrowed reference.
        unsafe extern "C" fn $entry(
            slf: *mut pyo3::ffi::PyObject,
            arg: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            let py = pyo3::Python::assume_attached();
            let this = pyo3::Bound::from_borrowed_ptr(py, slf);
            let arg = pyo3::Bound::from_borrowed_ptr(py, arg);
            $crate::method_descriptor::call_for_cpython(py, $what, || $body(py, &this, &arg))
        }
    };
}

/// Defines `$entry`, a `METH_NOARGS` function for `method_descriptor` that runs
/// `$body(py, &self)` through `call_for_cpython`.
macro_rules! meth_noargs_entry {
    ($entry:ident, $what:literal, $body:path) => {
        // SAFETY: CPython calls methods with the GIL held and passes `slf` checked against the
        // descriptor's class.
        unsafe extern "C" fn $entry(
            slf: *mut pyo3::ffi::PyObject,
            _unused: *mut pyo3::ffi::PyObject,
        ) -> *mut pyo3::ffi::PyObject {
            let py = pyo3::Python::assume_attached();
            let this = pyo3::Bound::from_borrowed_ptr(py, slf);
            $crate::method_descriptor::call_for_cpython(py, $what, || $body(py, &this))
        }
    };
}

pub(crate) use {meth_noargs_entry, meth_o_entry};

/// A method descriptor of `cls` for a native function.
pub fn method_descriptor(
    cls: &Bound<'_, PyType>,
    name: &'static CStr,
    meth: ffi::PyMethodDefPointer,
    flags: std::os::raw::c_int,
    doc: &'static CStr,
) -> PyResult<Py<PyAny>> {
    // The method table must outlive the class; the Python modules make each descriptor once.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: meth,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: a valid type object and a method table that lives forever.
    unsafe {
        Bound::from_owned_ptr_or_err(cls.py(), ffi::PyDescr_NewMethod(cls.as_type_ptr(), def))
    }
    .map(Bound::unbind)
}

/// `method_descriptor` for a `METH_O` or `METH_NOARGS` function (from `meth_o_entry` or
/// `meth_noargs_entry`).
pub fn cfunction_descriptor(
    cls: &Bound<'_, PyType>,
    name: &'static CStr,
    meth: ffi::PyCFunction,
    flags: std::os::raw::c_int,
    doc: &'static CStr,
) -> PyResult<Py<PyAny>> {
    method_descriptor(
        cls,
        name,
        ffi::PyMethodDefPointer { PyCFunction: meth },
        flags,
        doc,
    )
}

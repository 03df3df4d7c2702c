//! A callback and its positional arguments held as one reference, as a handle keeps them.
//!
//! With no arguments (most `call_soon` and `call_later` calls) the reference is the callback
//! itself; with some, it is one exact tuple `(callback, *args)`, which costs the same allocation
//! as the arguments' own tuple would. An exact tuple is never callable, so the two forms cannot
//! be mistaken for each other. One slot instead of asyncio's two (`_callback`, `_args`) is what
//! keeps a handle in the 64-byte allocation class (see `handles.rs`).

use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::pyobjects;

/// Packs `callback` with `args`.
pub(crate) fn pack(callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
    // SAFETY: a live tuple's items are live objects, borrowed for the call.
    unsafe {
        let items = std::slice::from_raw_parts(tuple_items(args.as_ptr()), args.len());
        pack_raw(callback, items)
    }
}

/// Packs `callback` with the arguments `args` (borrowed object pointers, as a vectorcall's).
///
/// # Safety
/// Every pointer in `args` must be a live object.
pub(crate) unsafe fn pack_raw(
    callback: &Bound<'_, PyAny>,
    args: &[*mut ffi::PyObject],
) -> PyResult<Py<PyAny>> {
    if args.is_empty() {
        return Ok(callback.clone().unbind());
    }
    let py = callback.py();
    let tuple = Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(args.len() as isize + 1))?;
    let t = tuple.as_ptr();
    ffi::PyTuple_SET_ITEM(t, 0, callback.clone().into_ptr());
    for (i, &arg) in args.iter().enumerate() {
        ffi::Py_INCREF(arg);
        ffi::PyTuple_SET_ITEM(t, i as isize + 1, arg);
    }
    Ok(tuple.unbind())
}

/// The first item of a tuple's item array.
///
/// # Safety
/// `tuple` must be a live tuple.
unsafe fn tuple_items(tuple: *mut ffi::PyObject) -> *const *mut ffi::PyObject {
    (*tuple.cast::<ffi::PyTupleObject>()).ob_item.as_ptr()
}

/// The callback of a packed call.
pub(crate) fn callback<'py>(call: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
    match call.cast_exact::<PyTuple>() {
        // SAFETY: a packed tuple has the callback as its first item.
        Ok(tuple) => unsafe { tuple.get_borrowed_item_unchecked(0) }.to_owned(),
        Err(_) => call.clone(),
    }
}

/// The arguments of a packed call, as a new tuple (the empty one if there are none).
pub(crate) fn args<'py>(call: &Bound<'py, PyAny>) -> Bound<'py, PyTuple> {
    match call.cast_exact::<PyTuple>() {
        Ok(tuple) => tuple.get_slice(1, tuple.len()),
        Err(_) => pyobjects::empty_tuple(call.py()),
    }
}

/// Calls a packed call: a new reference, or NULL with an exception set.
///
/// # Safety
/// `call` must be a live object made by `pack` or `pack_raw`; the GIL must be held.
pub(crate) unsafe fn invoke(call: *mut ffi::PyObject) -> *mut ffi::PyObject {
    if ffi::PyTuple_CheckExact(call) == 0 {
        return ffi::PyObject_CallNoArgs(call);
    }
    let items = tuple_items(call);
    let nargs = ffi::PyTuple_GET_SIZE(call) as usize - 1;
    ffi::PyObject_Vectorcall(*items, items.add(1), nargs, ptr::null_mut())
}

//! The per-packet half of the read pipe transport (subprocess pipes, `connect_read_pipe`).
//!
//! ferroloop's read pipe transport is CPython's own `unix_events._UnixReadPipeTransport`, with
//! its state in its own attributes, except for `_read_ready`: that method is this native
//! function, installed on the Python subclass as a method descriptor of that class. It does what
//! asyncio's does, step for step, but reads into the thread's read buffer instead of asking
//! `os.read` for a fresh 256 KiB bytes object per packet.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use super::calls::{socket_call, with_read_buffer, Io};
use super::sys;
use crate::pyobjects;

/// `_UnixReadPipeTransport._read_ready`.
fn read_ready(py: Python<'_>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let fd: i32 = transport.getattr(intern!(py, "_fileno"))?.extract()?;
    let received = socket_call(py, || {
        with_read_buffer(|buf| sys::read(fd, buf).map(|n| PyBytes::new(py, &buf[..n])))
    });
    let loop_ = transport.getattr(intern!(py, "_loop"))?;
    match received {
        Io::WouldBlock => Ok(()),
        Io::Failed(err) if err.is_instance_of::<PyOSError>(py) => {
            let message = "Fatal read error on pipe transport";
            transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
            Ok(())
        }
        Io::Failed(err) => Err(err),
        Io::Done(data) if !data.as_bytes().is_empty() => {
            let protocol = transport.getattr(intern!(py, "_protocol"))?;
            protocol.call_method1(intern!(py, "data_received"), (data,))?;
            Ok(())
        }
        Io::Done(_) => {
            if loop_.call_method0(intern!(py, "get_debug"))?.is_truthy()? {
                pyobjects::asyncio_logger(py)?
                    .call_method1(intern!(py, "info"), ("%r was closed by peer", transport))?;
            }
            transport.setattr(intern!(py, "_closing"), true)?;
            loop_.call_method1(intern!(py, "_remove_reader"), (fd,))?;
            let protocol = transport.getattr(intern!(py, "_protocol"))?;
            let call_soon = loop_.getattr(intern!(py, "call_soon"))?;
            call_soon.call1((protocol.getattr(intern!(py, "eof_received"))?,))?;
            call_soon.call1((
                transport.getattr(intern!(py, "_call_connection_lost"))?,
                py.None(),
            ))?;
            Ok(())
        }
    }
}

unsafe extern "C" fn read_ready_noargs(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held, and passes `slf` checked against the
    // descriptor's class.
    let py = Python::assume_attached();
    let transport = Bound::from_borrowed_ptr(py, slf);
    let outcome = catch_unwind(AssertUnwindSafe(|| read_ready(py, &transport)));
    let err = match outcome {
        Ok(Ok(())) => return py.None().into_ptr(),
        Ok(Err(err)) => err,
        // No Rust panic may unwind into CPython: it becomes an exception like any other error.
        Err(_) => {
            PyRuntimeError::new_err("internal error in ferroloop's pipe reader (a Rust panic)")
        }
    };
    err.restore(py);
    ptr::null_mut()
}

/// The native `_read_ready`, as a method descriptor of `cls` (a `_UnixReadPipeTransport`
/// subclass) to install as its `_read_ready`.
#[pyfunction]
pub fn pipe_read_ready_method(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    let py = cls.py();
    // The method table must outlive the class; one per call, and the loop module calls it once.
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"_read_ready".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: read_ready_noargs,
        },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"The pipe is readable: one read, handed to the protocol.".as_ptr(),
    }));
    // SAFETY: a valid type object and a method table that lives forever.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(cls.as_type_ptr(), def)) }
        .map(Bound::unbind)
}

//! The per-packet halves of the pipe transports (subprocess pipes, `connect_read_pipe`,
//! `connect_write_pipe`).
//!
//! ferroloop's pipe transports are CPython's own `unix_events._UnixReadPipeTransport` and
//! `_UnixWritePipeTransport`, with their state in their own attributes, except for the methods
//! that run per packet: `_read_ready`, `write` and `_write_ready` are these native functions,
//! installed on the Python subclasses as method descriptors of those classes. Each does what
//! asyncio's does, step for step, on the same attributes; reads go into the thread's read buffer
//! instead of a fresh 256 KiB bytes object per packet.

use pyo3::exceptions::PyOSError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PySequence, PyType};

use super::byte_view::ByteView;
use super::calls::{is_exit, socket_call, Io, LOG_THRESHOLD_FOR_CONNLOST_WRITES};
use super::{read_bytes, sys};
use crate::method_descriptor::{cfunction_descriptor, meth_noargs_entry, meth_o_entry};
use crate::pyobjects;

/// `_UnixReadPipeTransport._read_ready`.
fn read_ready(py: Python<'_>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let fd: i32 = transport.getattr(intern!(py, "_fileno"))?.extract()?;
    match read_bytes::read_bytes(py, |buf| sys::read(fd, buf), |bufs| sys::readv(fd, bufs)) {
        Io::WouldBlock => Ok(()),
        Io::Failed(err) if err.is_instance_of::<PyOSError>(py) => {
            let message = "Fatal read error on pipe transport";
            transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
            Ok(())
        }
        Io::Failed(err) => Err(err),
        Io::Done(data) if !data.as_bytes().is_empty() => {
            let protocol = transport.getattr(intern!(py, "_protocol"))?;
            read_bytes::hand_over(data, |data| {
                protocol.call_method1(intern!(py, "data_received"), (data,))
            })
            .map(drop)
        }
        Io::Done(_) => {
            let loop_ = transport.getattr(intern!(py, "_loop"))?;
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

/// The stdlib's own `write`, for what the native one leaves to it (see `write`).
fn stdlib_write(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        Ok(py
            .import("asyncio.unix_events")?
            .getattr("_UnixWritePipeTransport")?
            .getattr("write")?
            .unbind())
    })
    .map(|f| f.bind(py).clone())
}

fn conn_lost(transport: &Bound<'_, PyAny>) -> PyResult<i64> {
    transport
        .getattr(intern!(transport.py(), "_conn_lost"))?
        .extract()
}

fn add_conn_lost(transport: &Bound<'_, PyAny>, by: i64) -> PyResult<()> {
    let py = transport.py();
    transport.setattr(intern!(py, "_conn_lost"), conn_lost(transport)? + by)
}

/// `_UnixWritePipeTransport.write`, for bytes and bytearray; anything else (memoryviews, whose
/// length asyncio counts in items, and what its assert refuses) goes to asyncio's own method.
fn write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>()) {
        stdlib_write(py)?.call1((transport, data))?;
        return Ok(());
    }
    let view = ByteView::readable(data)?;
    let bytes = view.as_slice();
    if bytes.is_empty() {
        return Ok(());
    }
    let lost = conn_lost(transport)?;
    if lost != 0 || transport.getattr(intern!(py, "_closing"))?.is_truthy()? {
        if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES as i64 {
            pyobjects::asyncio_logger(py)?.call_method1(
                intern!(py, "warning"),
                ("pipe closed by peer or os.write(pipe, data) raised exception.",),
            )?;
        }
        return add_conn_lost(transport, 1);
    }
    let buffer = transport
        .getattr(intern!(py, "_buffer"))?
        .cast_into::<PyByteArray>()?;
    let mut written = 0;
    if buffer.len() == 0 {
        let fd: i32 = transport.getattr(intern!(py, "_fileno"))?.extract()?;
        match socket_call(py, || sys::write(fd, bytes)) {
            Io::Done(n) => written = n,
            Io::WouldBlock => {}
            Io::Failed(err) if is_exit(py, &err) => return Err(err),
            Io::Failed(err) => {
                add_conn_lost(transport, 1)?;
                let message = "Fatal write error on pipe transport";
                transport
                    .call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
                return Ok(());
            }
        }
        if written == bytes.len() {
            return Ok(());
        }
        let write_ready = transport.getattr(intern!(py, "_write_ready"))?;
        transport
            .getattr(intern!(py, "_loop"))?
            .call_method1(intern!(py, "_add_writer"), (fd, write_ready))?;
    }
    extend(&buffer, &bytes[written..])?;
    transport.call_method0(intern!(py, "_maybe_pause_protocol"))?;
    Ok(())
}

/// `buffer += tail`.
fn extend(buffer: &Bound<'_, PyByteArray>, tail: &[u8]) -> PyResult<()> {
    let old = buffer.len();
    buffer.resize(old + tail.len())?;
    // SAFETY: the bytearray was just resized to hold old + tail.len() bytes, no Python code ran
    // since, and tail does not point into it (it is a view of another object).
    unsafe { buffer.as_bytes_mut()[old..].copy_from_slice(tail) };
    Ok(())
}

/// `_UnixWritePipeTransport._write_ready`.
fn write_ready(py: Python<'_>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let buffer = transport
        .getattr(intern!(py, "_buffer"))?
        .cast_into::<PyByteArray>()?;
    let fd: i32 = transport.getattr(intern!(py, "_fileno"))?.extract()?;
    let loop_ = transport.getattr(intern!(py, "_loop"))?;
    // SAFETY: the bytes are only read by write(2); no Python code runs while they are borrowed.
    let result = socket_call(py, || sys::write(fd, unsafe { buffer.as_bytes() }));
    match result {
        Io::WouldBlock => Ok(()),
        Io::Failed(err) if is_exit(py, &err) => Err(err),
        Io::Failed(err) => {
            buffer.resize(0)?;
            add_conn_lost(transport, 1)?;
            // Removed here: _fatal_error() does not, as the buffer is empty now.
            loop_.call_method1(intern!(py, "_remove_writer"), (fd,))?;
            let message = "Fatal write error on pipe transport";
            transport.call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
            Ok(())
        }
        Io::Done(n) if n == buffer.len() => {
            buffer.resize(0)?;
            loop_.call_method1(intern!(py, "_remove_writer"), (fd,))?;
            transport.call_method0(intern!(py, "_maybe_resume_protocol"))?; // May append.
            if transport.getattr(intern!(py, "_closing"))?.is_truthy()? {
                loop_.call_method1(intern!(py, "_remove_reader"), (fd,))?;
                transport.call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
            }
            Ok(())
        }
        Io::Done(0) => Ok(()),
        Io::Done(n) => {
            buffer.as_any().cast::<PySequence>()?.del_slice(0, n)?;
            Ok(())
        }
    }
}

meth_noargs_entry!(read_ready_noargs, "pipe transport _read_ready", read_ready);
meth_o_entry!(write_o, "pipe transport write", write);
meth_noargs_entry!(
    write_ready_noargs,
    "pipe transport _write_ready",
    write_ready
);

/// The native `_read_ready`, as a method descriptor of `cls` (a `_UnixReadPipeTransport`
/// subclass) to install as its `_read_ready`.
#[pyfunction]
pub fn pipe_read_ready_method(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    cfunction_descriptor(
        cls,
        c"_read_ready",
        read_ready_noargs,
        ffi::METH_NOARGS,
        c"The pipe is readable: one read, handed to the protocol.",
    )
}

/// The native `write` and `_write_ready`, as method descriptors of `cls` (a
/// `_UnixWritePipeTransport` subclass) to install under those names.
#[pyfunction]
pub fn pipe_write_methods(cls: &Bound<'_, PyType>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    Ok((
        cfunction_descriptor(
            cls,
            c"write",
            write_o,
            ffi::METH_O,
            c"Write data to the pipe: at once if nothing is queued, the rest when it is writable.",
        )?,
        cfunction_descriptor(
            cls,
            c"_write_ready",
            write_ready_noargs,
            ffi::METH_NOARGS,
            c"The pipe is writable: write as much of the buffer as it takes.",
        )?,
    ))
}

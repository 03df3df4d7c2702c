//! The first try of the `sock_*` calls, as asyncio makes it: the socket's method (`recv(n)`,
//! `recv_into(buf)`, `send(data)`...), with "not ready" (BlockingIOError, InterruptedError) given
//! as None.
//!
//! In a request-response exchange the first try of a read nearly always finds nothing, and from
//! Python that costs an exception raised and caught: 1,300 ns for a `recv` that finds nothing,
//! against 400 for the system call. So `recv`, `recv_into` and `recvfrom` on a plain
//! `socket.socket` whose method is the C one, the socket non-blocking and open (for `recvfrom`, of
//! the IPv4, IPv6 or Unix family, whose addresses `sockaddr` builds as the socket module does), are
//! made here with the method's own errors (PEP 475 retries, `OSError` from errno); any other socket
//! or method, or arguments the method would treat otherwise (a length of 0 or above `MAX_READ`, not
//! an exact int, a buffer that is not writable), goes to the method itself.

use std::os::fd::RawFd;

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};
use pyo3::{intern, IntoPyObjectExt};

use super::byte_view::BufferView;
use super::calls::{socket_call, sort_python_error, with_read_buffer, MAX_READ};
use super::plain_socket::socket_classes;
use super::{sockaddr, sys};

/// `sock.<method>(*args)`, or None if the socket was not ready.
pub fn sock_try<'py>(
    sock: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if args.len() == 1 {
        let arg = args.get_item(0)?;
        match method.to_str()? {
            "recv" => return try_recv(sock, method, &arg),
            "recv_into" => return try_recv_into(sock, method, &arg),
            "recvfrom" => return try_recvfrom(sock, method, &arg),
            _ => {}
        }
    }
    call_method(sock, method, args)
}

/// `n` if a read of that length can be made here: an exact int from 1 to `MAX_READ`.
fn read_length(n: &Bound<'_, PyAny>) -> Option<usize> {
    let len = n.cast_exact::<PyInt>().ok()?.extract::<usize>().ok()?;
    (1..=MAX_READ).contains(&len).then_some(len)
}

/// The fd and length of a read of `n` bytes that `method` would make, if it can be made here.
fn native_read(
    sock: &Bound<'_, PyAny>,
    method: &Bound<'_, PyString>,
    n: &Bound<'_, PyAny>,
) -> PyResult<Option<(RawFd, usize)>> {
    let Some(len) = read_length(n) else {
        return Ok(None);
    };
    Ok(plain_socket_fd(sock, method)?.map(|fd| (fd, len)))
}

/// `sock.recv(n)`, or None if the socket had nothing to read.
fn try_recv<'py>(
    sock: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
    n: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    let Some((fd, len)) = native_read(sock, method, n)? else {
        return call_method(sock, method, (n,));
    };
    with_read_buffer(|buf| {
        let got = socket_call(py, || sys::recv(fd, &mut buf[..len])).ready()?;
        Ok(got.map(|n| PyBytes::new(py, &buf[..n]).into_any()))
    })
}

/// `sock.recvfrom(n)`, or None if the socket had nothing to read.
fn try_recvfrom<'py>(
    sock: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
    n: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    let read = match native_read(sock, method, n)? {
        Some(read) if has_address_family(sock)? => Some(read),
        _ => None,
    };
    let Some((fd, len)) = read else {
        return call_method(sock, method, (n,));
    };
    with_read_buffer(|buf| {
        let got = socket_call(py, || sys::recv_from(fd, &mut buf[..len])).ready()?;
        got.map(|(n, addr, addr_len)| {
            let address = sockaddr::to_python(py, &addr, addr_len)?;
            (PyBytes::new(py, &buf[..n]), address).into_bound_py_any(py)
        })
        .transpose()
    })
}

/// `sock.recv_into(buf)`, or None if the socket had nothing to read.
fn try_recv_into<'py>(
    sock: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
    buf: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    let Some(fd) = plain_socket_fd(sock, method)? else {
        return call_method(sock, method, (buf,));
    };
    let Ok(mut view) = BufferView::writable(buf) else {
        return call_method(sock, method, (buf,));
    };
    if view.as_mut_slice().is_empty() {
        drop(view);
        return call_method(sock, method, (buf,));
    }
    let got = socket_call(py, || sys::recv(fd, view.as_mut_slice())).ready()?;
    got.map(|n| n.into_bound_py_any(py)).transpose()
}

/// asyncio's first try through the method itself.
fn call_method<'py>(
    sock: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
    args: impl PyCallArgs<'py>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    sort_python_error(sock.py(), sock.call_method1(method, args)).ready()
}

/// The fd of `sock` if its `method` can be made here: `sock` is a `socket.socket` (no subclass),
/// whose class still has the C method, open and non-blocking (timeout 0).
fn plain_socket_fd(
    sock: &Bound<'_, PyAny>,
    method: &Bound<'_, PyString>,
) -> PyResult<Option<RawFd>> {
    let py = sock.py();
    let Some(classes) = socket_classes(py)? else {
        return Ok(None);
    };
    if !classes.has_c_method(sock, method)? {
        return Ok(None);
    }
    let timeout = sock.call_method0(intern!(py, "gettimeout"))?;
    if timeout.is_none() || timeout.extract::<f64>()? != 0.0 {
        return Ok(None);
    }
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    Ok((fd >= 0).then_some(fd))
}

/// Whether `sock` is of a family whose addresses `sockaddr` builds: IPv4, IPv6 or Unix.
fn has_address_family(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Some(classes) = socket_classes(sock.py())? else {
        return Ok(false);
    };
    Ok(matches!(
        classes.family(sock)?,
        libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX
    ))
}

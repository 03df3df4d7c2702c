//! What a socket transport's set-up calls once per connection, done natively where the Python it
//! stands for cost more than the system calls around it.
//!
//! A short connection's set-up in Python cost about 38,000 instructions of the server's 106,000
//! per connection (callgrind, Python 3.11, a new connection per 64-byte echo), and the largest
//! parts were not the loop's work: `base_events._set_nodelay` reads `sock.family` and `sock.type`,
//! properties that make an enum each (some 6,000 instructions apiece); `loop._transports[fd] =
//! transport` runs `WeakValueDictionary.__setitem__` and `KeyedRef`'s Python `__new__` and
//! `__init__`; an IPv4 `getsockname` or `accept` formats its host with glibc's `sprintf`. Each
//! function here does what its Python counterpart does, and hands anything it does not know to
//! it. Measured together (callgrind, server side): 105,900 instructions per connection before,
//! 72,572 after; 1.04x and 1.08x the connections per second (`benchmarks/ab.py`, one and two
//! cores, 8 rounds each).

use std::os::fd::RawFd;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use super::calls::{socket_call, Io};
use super::plain_socket::{socket_classes, SocketClasses};
use super::{sockaddr, sys};
use crate::errors::os_error;
use crate::pyobjects;

/// asyncio's `base_events._set_nodelay(sock)`: TCP_NODELAY on a TCP socket (AF_INET or AF_INET6,
/// SOCK_STREAM and IPPROTO_TCP, as asyncio checks them). On a `socket.socket` whose `setsockopt`
/// is the C one the three are read from the C object; any other socket goes to asyncio's function.
#[pyfunction]
pub fn set_nodelay(sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = sock.py();
    let setsockopt = intern!(py, "setsockopt");
    let Some(classes) =
        socket_classes(py)?.filter(|c| c.has_c_method(sock, setsockopt).unwrap_or(false))
    else {
        pyobjects::asyncio_set_nodelay(py)?.call1((sock,))?;
        return Ok(());
    };
    let (family, kind, proto) = classes.family_type_proto(sock)?;
    if matches!(family, libc::AF_INET | libc::AF_INET6)
        && kind == libc::SOCK_STREAM
        && proto == libc::IPPROTO_TCP
    {
        sock.call_method1(setsockopt, (libc::IPPROTO_TCP, libc::TCP_NODELAY, 1))?;
    }
    Ok(())
}

/// `sock.accept()` for asyncio's `_accept_connection`, on the listening socket a server serves.
/// On a `socket.socket` whose `accept` is the socket module's and `_accept` the C one, it does
/// what that `accept` does: `_accept()`, a `socket.socket` of the listening socket's family, type
/// and protocol around the new fd, made blocking if the listening socket has a timeout and there
/// is no default one; but the three are read from the C object, where the module's `accept` reads
/// the properties that make enums of them. Any other socket's own `accept()`.
#[pyfunction]
pub fn accept_connection<'py>(sock: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = sock.py();
    let Some(classes) = socket_classes(py)? else {
        return sock.call_method0(intern!(py, "accept"));
    };
    let plain_accept = socket_module_accept(py, classes)?;
    let class = sock.get_type();
    if !class.is(classes.plain.bind(py))
        || !plain_accept.is_some_and(|accept| {
            class
                .getattr(intern!(py, "accept"))
                .is_ok_and(|a| a.is(accept))
        })
        || !classes.has_c_method(sock, intern!(py, "_accept"))?
    {
        return sock.call_method0(intern!(py, "accept"));
    }
    let (family, kind, proto) = classes.family_type_proto(sock)?;
    let timeout = sock.call_method0(intern!(py, "gettimeout"))?;
    // `_accept()` is made here for an IPv4 socket that does not wait (timeout 0), where the C
    // one would write the peer's host with sprintf; any other socket's is the C one.
    let (fd, address) =
        if family == libc::AF_INET && timeout.extract::<f64>().is_ok_and(|t| t == 0.0) {
            let listener: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
            accept_ipv4(py, listener)?
        } else {
            sock.call_method0(intern!(py, "_accept"))?.extract()?
        };
    let conn = classes.plain.bind(py).call1((family, kind, proto, fd))?;
    let default_timeout = pyobjects::socket_getdefaulttimeout(py)?.call0()?;
    if default_timeout.is_none() && timeout.is_truthy()? {
        conn.call_method1(intern!(py, "setblocking"), (true,))?;
    }
    (conn, address).into_pyobject(py).map(Bound::into_any)
}

/// The C `_accept()` of a non-blocking IPv4 socket: `accept4` with SOCK_CLOEXEC, retried on EINTR
/// after the signal handlers (PEP 475), its errors and EAGAIN raised as OSErrors from errno; the new
/// fd and the peer's `(host, port)`.
fn accept_ipv4(py: Python<'_>, listener: RawFd) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let accepted = socket_call(py, || sys::accept(listener));
    let (fd, storage, len) = match accepted {
        Io::Done(accepted) => accepted,
        Io::WouldBlock => return Err(os_error(std::io::Error::from_raw_os_error(libc::EAGAIN))),
        Io::Failed(err) => return Err(err),
    };
    match sockaddr::to_python(py, &storage, len) {
        Ok(address) => Ok((fd.into_pyobject(py)?.into_any(), address)),
        Err(err) => {
            // As CPython does when it cannot make the address: the connection is closed.
            // SAFETY: fd was just accepted and is owned here.
            unsafe { libc::close(fd) };
            Err(err)
        }
    }
}

/// `socket.socket.accept` as the socket module defined it, if it is still in the class's dict
/// at the first accept (None if a test or a library replaced it before: then every socket's own
/// `accept` runs).
fn socket_module_accept<'py>(
    py: Python<'py>,
    classes: &SocketClasses,
) -> PyResult<Option<&'py Bound<'py, PyAny>>> {
    static ACCEPT: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let accept = ACCEPT.get_or_try_init(py, || -> PyResult<_> {
        let accept = classes.plain.bind(py).getattr(intern!(py, "accept"))?;
        let module_is_socket = accept
            .getattr(intern!(py, "__module__"))
            .is_ok_and(|m| m.extract::<String>().is_ok_and(|m| m == "socket"));
        let qualname_is_accept = accept
            .getattr(intern!(py, "__qualname__"))
            .is_ok_and(|q| q.extract::<String>().is_ok_and(|q| q == "socket.accept"));
        Ok((module_is_socket && qualname_is_accept).then(|| accept.unbind()))
    })?;
    Ok(accept.as_ref().map(|a| a.bind(py)))
}

/// `transports[fd] = transport` on the loop's `WeakValueDictionary` of transports, as its
/// `__setitem__` does it: pending removals committed (Python 3.9-3.13 defer those made while the
/// mapping is iterated), then a `KeyedRef` to the transport, with the mapping's `_remove` as its
/// callback and `fd` as its key. A mapping of any other class gets its own `__setitem__`.
#[pyfunction]
pub fn register_transport(
    transports: &Bound<'_, PyAny>,
    fd: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = transports.py();
    let (mapping_class, keyed_ref, new_ref) = weakref_classes(py)?;
    if !transports.get_type().is(mapping_class) {
        return transports.set_item(fd, transport);
    }
    if let Ok(pending) = transports.getattr(intern!(py, "_pending_removals")) {
        if pending.is_truthy()? {
            transports.call_method0(intern!(py, "_commit_removals"))?;
        }
    }
    // KeyedRef(ob, callback, key) is `ref.__new__(KeyedRef, ob, callback)` with `key` set; its
    // __init__ only hands the same two arguments to ref.__init__, which checks nothing more.
    let callback = transports.getattr(intern!(py, "_remove"))?;
    let wr = new_ref.call1((keyed_ref, transport, callback))?;
    wr.setattr(intern!(py, "key"), fd)?;
    transports.getattr(intern!(py, "data"))?.set_item(fd, wr)
}

/// `weakref.WeakValueDictionary`, `weakref.KeyedRef` and `weakref.ref.__new__`.
fn weakref_classes(
    py: Python<'_>,
) -> PyResult<(&Bound<'_, PyType>, &Bound<'_, PyType>, &Bound<'_, PyAny>)> {
    static CLASSES: PyOnceLock<(Py<PyType>, Py<PyType>, Py<PyAny>)> = PyOnceLock::new();
    let (mapping, keyed_ref, new_ref) = CLASSES.get_or_try_init(py, || -> PyResult<_> {
        let weakref = py.import("weakref")?;
        Ok((
            weakref
                .getattr("WeakValueDictionary")?
                .cast_into::<PyType>()?
                .unbind(),
            weakref.getattr("KeyedRef")?.cast_into::<PyType>()?.unbind(),
            weakref.getattr("ref")?.getattr("__new__")?.unbind(),
        ))
    })?;
    Ok((mapping.bind(py), keyed_ref.bind(py), new_ref.bind(py)))
}

/// `sock.getsockname()`, or None where that raises OSError (a transport's `sockname`). For a
/// `socket.socket` of the IPv4 family whose `getsockname` is the C one the address is read and
/// built here (its host written without `sprintf`); anything else asks the socket.
#[pyfunction]
pub fn sockname_or_none<'py>(sock: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = sock.py();
    let getsockname = intern!(py, "getsockname");
    if let Some(classes) = socket_classes(py)? {
        if classes.has_c_method(sock, getsockname)? && classes.family(sock)? == libc::AF_INET {
            let fd: i32 = sock.call_method0(intern!(py, "fileno"))?.extract()?;
            return match socket_call(py, || sys::sockname(fd)) {
                Io::Done((storage, len)) => sockaddr::to_python(py, &storage, len),
                Io::Failed(err) if !err.is_instance_of::<pyo3::exceptions::PyOSError>(py) => {
                    Err(err)
                }
                _ => Ok(py.None().into_bound(py)),
            };
        }
    }
    match sock.call_method0(getsockname) {
        Ok(name) => Ok(name),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyOSError>(py) => {
            Ok(py.None().into_bound(py))
        }
        Err(err) => Err(err),
    }
}

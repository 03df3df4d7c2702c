//! The waits of the `sock_*` calls that run per message (`sock_recv`, `sock_recv_into`,
//! `sock_sendall`, and from Python 3.11 `sock_recvfrom`, `sock_recvfrom_into` and `sock_sendto`)
//! once their first try found the socket not ready: asyncio's retries (`_sock_recv` & co.) and its
//! `_sock_read_done`/`_sock_write_done` done callbacks, as native callables.
//!
//! asyncio's wait is an fd callback that retries the call each time the socket is reported, a
//! future it completes, and a done callback on that future that removes the fd callback (also when
//! the future is cancelled). The same objects are made here, in the same order, so callback order,
//! cancellation and errors stay asyncio's; what goes is the Python frames of each message's wait
//! (the retry, the `functools.partial`, the done callback and `remove_reader`). The fd callback is
//! installed edge-triggered, parked when removed (see `core::interests`). The first try itself,
//! with asyncio's checks before it, is `_sock_try`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::LoopCore;
use crate::handles::Handle;
use crate::net::{is_exit, sock_try, sort_python_error, Io};
use crate::pyobjects;

/// How one retry of a socket call ended.
enum Retry<'py> {
    Done(Bound<'py, PyAny>),
    /// Not ready after all: wait for the next report.
    Again,
    Failed(PyErr),
}

impl<'py> Retry<'py> {
    /// The outcome of `call`, sorted as asyncio's retries sort it: SystemExit and
    /// KeyboardInterrupt leave the callback (asyncio re-raises them), anything else fails the
    /// future.
    fn of(py: Python<'py>, call: PyResult<Bound<'py, PyAny>>) -> PyResult<Retry<'py>> {
        match sort_python_error(py, call) {
            Io::Done(value) => Ok(Retry::Done(value)),
            Io::WouldBlock => Ok(Retry::Again),
            Io::Failed(err) if is_exit(py, &err) => Err(err),
            Io::Failed(err) => Ok(Retry::Failed(err)),
        }
    }
}

fn is_done(fut: &Bound<'_, PyAny>) -> PyResult<bool> {
    fut.call_method0(intern!(fut.py(), "done"))?.is_truthy()
}

/// What a retry needs besides its own state: the future it completes, the socket whose method it
/// calls (looked up at each retry, as asyncio does), and the loop and fd to re-arm when a retry
/// finds the socket not ready after all.
struct Wait {
    fut: Py<PyAny>,
    sock: Py<PyAny>,
    core: Py<LoopCore>,
    fd: RawFd,
}

impl Wait {
    /// Waits on: the fd's edge registration reports the socket again if it is ready now, as
    /// asyncio's level-triggered one would on the next poll.
    fn again(&self, py: Python<'_>) {
        // A failure is a closed fd, which no registration reports any more, asyncio's neither.
        let _ = self.core.get().rearm_fd(py, self.fd);
    }

    /// One retry: `call()` (a call of the socket's) unless the future is done already (its
    /// cancellation may be queued from an earlier turn). Gives what the call returned; a call
    /// that failed has failed the future, and one that found the socket not ready waits on (None
    /// for both).
    fn attempt<'py>(
        &self,
        py: Python<'py>,
        call: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let fut = self.fut.bind(py);
        if is_done(fut)? {
            return Ok(None);
        }
        match Retry::of(py, call())? {
            Retry::Done(value) => return Ok(Some(value)),
            Retry::Again => self.again(py),
            Retry::Failed(err) => {
                fut.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?;
            }
        }
        Ok(None)
    }

    fn complete(&self, value: Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        let fut = self.fut.bind(py);
        fut.call_method1(intern!(py, "set_result"), (value,))?;
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        visit.call(&self.sock)?;
        visit.call(&self.core)
    }
}

/// The reader (or writer) of a waiting `sock_recv`, `sock_recv_into`, `sock_recvfrom`,
/// `sock_recvfrom_into` (or `sock_sendto`): `sock.<method>(*args)` each time the socket is
/// reported ready, until it returns.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SockRetry {
    wait: Wait,
    method: Py<PyString>,
    args: Py<PyTuple>,
}

#[pymethods]
impl SockRetry {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let sock = self.wait.sock.bind(py);
        let call = || sock.call_method1(self.method.bind(py), self.args.bind(py));
        match self.wait.attempt(py, call)? {
            Some(value) => self.wait.complete(value),
            None => Ok(()),
        }
    }

    // The future's done callback holds this retry's handle, which holds this: a cycle that the
    // collector must see (the future breaks it), as it sees asyncio's.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.wait.traverse(&visit)?;
        visit.call(&self.args)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let sock = self.wait.sock.bind(py).repr()?;
        Ok(format!("<sock_* wait: {sock}.{}()>", self.method.bind(py)))
    }
}

/// The writer of a waiting `sock_sendall`: sends what is left of `view` each time the socket is
/// reported writable, until all of it is sent.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SockSendAll {
    wait: Wait,
    view: Py<PyAny>,
    /// `len(view)`, as asyncio compares it with the bytes sent.
    len: usize,
    sent: AtomicUsize,
}

#[pymethods]
impl SockSendAll {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let start = self.sent.load(Ordering::Relaxed);
        let sock = self.wait.sock.bind(py);
        let call = || {
            let rest = PySlice::new(py, start as isize, isize::MAX, 1);
            sock.call_method1(intern!(py, "send"), (self.view.bind(py).get_item(rest)?,))
        };
        let Some(n) = self.wait.attempt(py, call)? else {
            return Ok(());
        };
        let sent = start + n.extract::<usize>()?;
        if sent == self.len {
            return self.wait.complete(py.None().into_bound(py));
        }
        // A send that took part of it filled the socket's buffer: the registration reports the
        // socket when the buffer drains.
        self.sent.store(sent, Ordering::Relaxed);
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.wait.traverse(&visit)?;
        visit.call(&self.view)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let sock = self.wait.sock.bind(py).repr()?;
        Ok(format!("<sock_sendall wait: {sock}.send()>"))
    }
}

/// The done callback of a waiting socket call's future: removes its fd callback unless that was
/// replaced since, after asyncio's check that no transport took the fd.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SockWaitDone {
    core: Py<LoopCore>,
    fd: RawFd,
    handle: Py<Handle>,
    reader: bool,
}

#[pymethods]
impl SockWaitDone {
    fn __call__(&self, py: Python<'_>, _fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.handle.get().cancelled() {
            return Ok(());
        }
        let core = self.core.bind(py);
        core.call_method1(intern!(py, "_ensure_fd_no_transport"), (self.fd,))?;
        core.get()
            .remove_fd_callback(py, self.fd, self.reader, false)?;
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        visit.call(&self.handle)
    }

    fn __repr__(&self) -> String {
        let side = if self.reader { "reader" } else { "writer" };
        format!("<remove the sock_* wait's {side} of fd {}>", self.fd)
    }
}

impl LoopCore {
    /// A new future of the loop's, with `make(wait)` installed as `sock`'s (`fd`'s) reader or
    /// writer and the done callback that removes it.
    fn sock_wait<'py>(
        slf: &Bound<'py, LoopCore>,
        sock: &Bound<'py, PyAny>,
        fd: RawFd,
        reader: bool,
        make: impl FnOnce(Wait) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fut = slf.call_method0(intern!(py, "create_future"))?;
        let wait = Wait {
            fut: fut.clone().unbind(),
            sock: sock.clone().unbind(),
            core: slf.clone().unbind(),
            fd,
        };
        // A callable alone is its own packed call (no arguments).
        let callback = make(wait)?;
        let handle = LoopCore::install_fd_callback(slf, fd, Some(sock), &callback, reader, true)?;
        let done = SockWaitDone {
            core: slf.clone().unbind(),
            fd,
            handle,
            reader,
        };
        fut.call_method1(intern!(py, "add_done_callback"), (done,))?;
        Ok(fut.unbind())
    }

    /// See `Interests::rearm`.
    fn rearm_fd(&self, py: Python<'_>, fd: RawFd) -> std::io::Result<()> {
        self.state.borrow(py).interests.rearm(fd)
    }
}

#[pymethods]
impl LoopCore {
    /// asyncio's checks and first try of a `sock_*` call: `_check_ssl_socket`, in debug mode the
    /// non-blocking check, then `sock.<method>(*args)` (`net::sock_try`). What the call returned,
    /// or None if the socket was not ready. Native, with no Python frame of its own: it runs per
    /// message, where the frame and its `*args` cost more than the call when the data is there.
    #[pyo3(signature = (sock, method, *args))]
    fn _sock_try<'py>(
        &self,
        sock: &Bound<'py, PyAny>,
        method: &Bound<'py, PyString>,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = sock.py();
        if let Some(ssl_socket) = pyobjects::ssl_socket_class(py)? {
            if sock.is_instance(&ssl_socket)? {
                return Err(PyTypeError::new_err("Socket cannot be of type SSLSocket"));
            }
        }
        if self.debug(py) && sock.call_method0(intern!(py, "gettimeout"))?.ne(0)? {
            return Err(PyValueError::new_err("the socket must be non-blocking"));
        }
        sock_try(sock, method, args)
    }

    /// The future of a socket call whose first try found `sock` (`fd`) not ready:
    /// `sock.<method>(*args)` completes it once `sock` is readable (`reader`) or writable.
    fn _sock_wait(
        slf: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        reader: bool,
        method: Py<PyString>,
        args: Py<PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        LoopCore::sock_wait(slf, sock, fd, reader, |wait| {
            Ok(Bound::new(py, SockRetry { wait, method, args })?.into_any())
        })
    }

    /// The future of a `sock_sendall` whose first call sent `sent` bytes of `view`: completed
    /// once the rest went out through `sock.send`.
    fn _sock_sendall_wait(
        slf: &Bound<'_, LoopCore>,
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        view: Bound<'_, PyAny>,
        sent: usize,
    ) -> PyResult<Py<PyAny>> {
        let len = view.len()?;
        let view = view.unbind();
        let py = slf.py();
        LoopCore::sock_wait(slf, sock, fd, false, |wait| {
            let write = SockSendAll {
                wait,
                view,
                len,
                sent: sent.into(),
            };
            Ok(Bound::new(py, write)?.into_any())
        })
    }
}

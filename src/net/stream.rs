//! The native half of ferroloop's stream socket transport (TCP and Unix sockets).
//!
//! `ferroloop._transports.SocketTransport` is what protocols see: an `asyncio.Transport` with the
//! private attributes asyncio's own code reads. It owns a `SocketStream`, which holds the
//! connection's state and does all that runs per packet: reading into a buffer that the thread
//! reuses and handing the bytes to the protocol, writing at once and buffering only what the
//! socket did not take, flushing when the socket is writable, flow control at the water marks.
//! Each step follows CPython 3.11's `selector_events._SelectorSocketTransport`, including which
//! errors are fatal and with what message; the comments name the method each one mirrors.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::byte_view::ByteView;
use super::sys;
use crate::core::write_buffer::WriteBuffer;
use crate::errors::os_error;
use crate::event_loop::LoopCore;
use crate::gil::GilCell;
use crate::pyobjects;

/// asyncio's `max_size`: the most one `data_received` call gets.
const MAX_READ: usize = 256 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: usize = 5;

thread_local! {
    /// The recv() target of `data_received` reads. asyncio asks recv() for a fresh 256 KiB bytes
    /// object per read and shrinks it; allocating and freeing that much memory per packet was the
    /// largest cost of its small-message echo. One buffer per thread, copied out per read.
    static READ_BUFFER: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    // Taken out while in use, so that a nested use (none is expected) gets a buffer of its own.
    let mut buf = READ_BUFFER
        .take()
        .unwrap_or_else(|| vec![0u8; MAX_READ].into_boxed_slice());
    let result = f(&mut buf);
    READ_BUFFER.set(Some(buf));
    result
}

/// How a socket call ended, the way asyncio's transports sort the outcomes.
enum Io<T> {
    Done(T),
    /// EAGAIN: asyncio's `except (BlockingIOError, InterruptedError): pass`.
    WouldBlock,
    Failed(PyErr),
}

/// Runs a socket call as CPython's socket module does (PEP 475): on EINTR the signal handlers
/// run, and the call is retried unless one of them raised.
fn socket_call<T>(py: Python<'_>, mut call: impl FnMut() -> io::Result<T>) -> Io<T> {
    loop {
        match call() {
            Ok(value) => return Io::Done(value),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                if let Err(err) = py.check_signals() {
                    return Io::Failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Io::WouldBlock,
            Err(err) => return Io::Failed(os_error(err)),
        }
    }
}

/// asyncio lets these two through every transport callback; anything else is a fatal error.
fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

fn is_buffered(protocol: &Bound<'_, PyAny>) -> PyResult<bool> {
    protocol.is_instance(pyobjects::buffered_protocol_type(protocol.py())?.as_any())
}

struct StreamState {
    /// The loop, the Python transport and the protocol; all three are let go of once
    /// `connection_lost` has run (asyncio sets `_loop` and `_protocol` to None then).
    loop_: Option<Py<LoopCore>>,
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// The protocol is an `asyncio.BufferedProtocol`: reads go into its `get_buffer()` memory.
    buffered: bool,
    /// asyncio's `_conn_lost`: set when `connection_lost` is scheduled, then counts writes after it.
    conn_lost: usize,
    closing: bool,
    /// `pause_reading()` is in effect.
    paused: bool,
    /// `write_eof()` was called.
    eof: bool,
    /// The future `sendfile` waits on for the buffer to drain.
    empty_waiter: Option<Py<PyAny>>,
    buffer: WriteBuffer,
    high_water: usize,
    low_water: usize,
    /// `pause_writing()` was called and `resume_writing()` not yet.
    protocol_paused: bool,
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SocketStream {
    fd: RawFd,
    state: GilCell<StreamState>,
}

impl SocketStream {
    fn loop_<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, LoopCore>> {
        self.state
            .borrow(py)
            .loop_
            .as_ref()
            .map(|l| l.bind(py).clone())
            .ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))
    }

    fn transport<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.state
            .borrow(py)
            .transport
            .as_ref()
            .map(|t| t.bind(py).clone())
            .ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))
    }

    fn debug(&self, py: Python<'_>) -> bool {
        self.loop_(py).is_ok_and(|l| l.get().debug(py))
    }

    /// `logger.debug(message, transport)` when the loop is in debug mode, as asyncio logs.
    fn log_debug(&self, py: Python<'_>, message: &str) -> PyResult<()> {
        if self.debug(py) {
            pyobjects::asyncio_logger(py)?
                .call_method1(intern!(py, "debug"), (message, self.transport(py)?))?;
        }
        Ok(())
    }

    /// `_fatal_error(exc, message)`, reached from an `except BaseException` block: SystemExit and
    /// KeyboardInterrupt propagate instead.
    fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_exit(py, &err) {
            return Err(err);
        }
        self.transport(py)?
            .call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
        Ok(())
    }

    fn start_watching(slf: &Bound<'_, Self>, reader: bool) -> PyResult<()> {
        let py = slf.py();
        let callback = if reader {
            slf.getattr(intern!(py, "_read_ready"))?
        } else {
            slf.getattr(intern!(py, "_write_ready"))?
        };
        let loop_ = slf.get().loop_(py)?;
        LoopCore::add_fd_callback(&loop_, slf.get().fd, &callback, &PyTuple::empty(py), reader)?;
        Ok(())
    }

    fn stop_watching(&self, py: Python<'_>, reader: bool) -> PyResult<()> {
        self.loop_(py)?
            .get()
            .remove_fd_callback(py, self.fd, reader)?;
        Ok(())
    }

    /// This turn's read (or write) left the socket where epoll reports the next change without a
    /// re-arm: it took less than it could, or would have blocked.
    fn settled(&self, py: Python<'_>, reader: bool) {
        if let Ok(loop_) = self.loop_(py) {
            loop_.get().fd_settled(py, self.fd, reader);
        }
    }

    /// `loop.call_soon(transport._call_connection_lost, exc)`.
    fn schedule_connection_lost(&self, py: Python<'_>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let callback = self
            .transport(py)?
            .getattr(intern!(py, "_call_connection_lost"))?;
        self.loop_(py)?
            .call_method1(intern!(py, "call_soon"), (callback, exc))?;
        Ok(())
    }

    fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.state
            .borrow(py)
            .protocol
            .as_ref()
            .map(|p| p.bind(py).clone())
    }

    /// A flow-control call on the protocol (`pause_writing`/`resume_writing`); its errors go to
    /// the exception handler, as `_FlowControlMixin` reports them.
    fn notify_protocol(
        &self,
        py: Python<'_>,
        method: &Bound<'_, pyo3::types::PyString>,
    ) -> PyResult<()> {
        let Some(protocol) = self.protocol(py) else {
            return Ok(());
        };
        let Err(err) = protocol.call_method0(method) else {
            return Ok(());
        };
        if is_exit(py, &err) {
            return Err(err);
        }
        let context = PyDict::new(py);
        context.set_item("message", format!("protocol.{method}() failed"))?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", self.transport(py)?)?;
        context.set_item("protocol", self.protocol(py))?;
        self.loop_(py)?
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// `_FlowControlMixin._maybe_pause_protocol`.
    fn maybe_pause(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.buffer.len() <= st.high_water || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
        }
        self.notify_protocol(py, intern!(py, "pause_writing"))
    }

    /// `_FlowControlMixin._maybe_resume_protocol`.
    fn maybe_resume(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if !st.protocol_paused || st.buffer.len() > st.low_water {
                return Ok(());
            }
            st.protocol_paused = false;
        }
        self.notify_protocol(py, intern!(py, "resume_writing"))
    }

    /// `_read_ready__data_received`.
    fn read_data(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let fd = self.fd;
        let received = socket_call(py, || {
            with_read_buffer(|buf| sys::recv(fd, buf).map(|n| PyBytes::new(py, &buf[..n])))
        });
        match &received {
            Io::Done(data) if data.as_bytes().len() == MAX_READ => {}
            Io::Done(_) | Io::WouldBlock => self.settled(py, true),
            Io::Failed(_) => {}
        }
        match received {
            Io::WouldBlock => Ok(()),
            Io::Failed(err) => self.fatal_error(py, err, "Fatal read error on socket transport"),
            Io::Done(data) if data.as_bytes().is_empty() => self.read_eof(py, protocol),
            Io::Done(data) => match protocol.call_method1(intern!(py, "data_received"), (data,)) {
                Ok(_) => Ok(()),
                Err(err) => self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.data_received() call failed.",
                ),
            },
        }
    }

    /// `_read_ready__get_buffer`: the socket is read straight into the protocol's memory.
    fn read_into_buffer(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffer = protocol
            .call_method1(intern!(py, "get_buffer"), (-1,))
            .and_then(|buf| match buf.len()? {
                0 => Err(PyRuntimeError::new_err(
                    "get_buffer() returned an empty buffer",
                )),
                _ => Ok(buf),
            });
        let buffer = match buffer {
            Ok(buffer) => buffer,
            Err(err) => {
                return self.fatal_error(py, err, "Fatal error: protocol.get_buffer() call failed.")
            }
        };
        let fd = self.fd;
        let received = match ByteView::writable(&buffer) {
            Ok(mut view) => {
                let received = socket_call(py, || sys::recv(fd, view.as_mut_slice()));
                match received {
                    Io::Done(n) if n == view.as_slice().len() => {}
                    Io::Done(_) | Io::WouldBlock => self.settled(py, true),
                    Io::Failed(_) => {}
                }
                received
            }
            Err(err) => Io::Failed(err),
        };
        match received {
            Io::WouldBlock => Ok(()),
            Io::Failed(err) => self.fatal_error(py, err, "Fatal read error on socket transport"),
            Io::Done(0) => self.read_eof(py, protocol),
            Io::Done(n) => match protocol.call_method1(intern!(py, "buffer_updated"), (n,)) {
                Ok(_) => Ok(()),
                Err(err) => self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.buffer_updated() call failed.",
                ),
            },
        }
    }

    /// `_read_ready__on_eof`.
    fn read_eof(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.log_debug(py, "%r received EOF")?;
        let keep_open = match protocol.call_method0(intern!(py, "eof_received")) {
            Ok(keep_open) => keep_open,
            Err(err) => {
                return self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.eof_received() call failed.",
                )
            }
        };
        if keep_open.is_truthy()? {
            // The protocol may still write, but nothing more can be received.
            self.stop_watching(py, true)
        } else {
            self.close(py)
        }
    }

    /// The common tail of `write` and `writelines`: send now if nothing is queued, queue the rest.
    fn send_or_buffer(slf: &Bound<'_, Self>, chunks: &[&[u8]]) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let buffer_was_empty = {
            let mut st = this.state.borrow_mut(py);
            if st.conn_lost > 0 {
                let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.conn_lost += 1;
                drop(st);
                if warn {
                    pyobjects::asyncio_logger(py)?.call_method1(
                        intern!(py, "warning"),
                        ("socket.send() raised exception.",),
                    )?;
                }
                return Ok(());
            }
            st.buffer.is_empty()
        };
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut sent = 0;
        if buffer_was_empty {
            let fd = this.fd;
            let result = socket_call(py, || match chunks {
                [chunk] => sys::send(fd, chunk),
                _ => sys::send_vectored(fd, chunks),
            });
            match result {
                Io::Done(n) => sent = n,
                Io::WouldBlock => {}
                Io::Failed(err) => {
                    return this.fatal_error(py, err, "Fatal write error on socket transport")
                }
            }
            if sent == total {
                return Ok(());
            }
            SocketStream::start_watching(slf, false)?;
        }
        {
            let mut st = this.state.borrow_mut(py);
            let mut skip = sent;
            for chunk in chunks {
                let taken = skip.min(chunk.len());
                skip -= taken;
                st.buffer.extend(&chunk[taken..]);
            }
        }
        this.maybe_pause(py)
    }

    /// asyncio's `WriteTransport.writelines` joins the chunks with `b''.join`, whose error this is.
    fn chunk_views<'py>(list_of_data: &Bound<'py, PyAny>) -> PyResult<Vec<ByteView<'py>>> {
        let mut views = Vec::new();
        for (index, item) in list_of_data.try_iter()?.enumerate() {
            let item = item?;
            let view = ByteView::readable(&item).map_err(|_| {
                let type_name = item
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                PyTypeError::new_err(format!(
                    "sequence item {index}: expected a bytes-like object, {type_name} found"
                ))
            })?;
            views.push(view);
        }
        Ok(views)
    }

    /// The checks `write` makes before looking at the data.
    fn check_writable(&self, py: Python<'_>, method: &str) -> PyResult<()> {
        let st = self.state.borrow(py);
        if st.eof {
            return Err(PyRuntimeError::new_err(format!(
                "Cannot call {method}() after write_eof()"
            )));
        }
        if st.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err(format!(
                "unable to {method}; sendfile is in progress"
            )));
        }
        Ok(())
    }

    /// `_SelectorTransport.close`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
        }
        self.stop_watching(py, true)?;
        let drained = {
            let mut st = self.state.borrow_mut(py);
            let drained = st.buffer.is_empty();
            if drained {
                st.conn_lost += 1;
            }
            drained
        };
        if drained {
            self.stop_watching(py, false)?;
            self.schedule_connection_lost(py, py.None().into_bound(py))?;
        }
        Ok(())
    }
}

#[pymethods]
impl SocketStream {
    #[new]
    fn py_new(
        loop_: &Bound<'_, LoopCore>,
        transport: &Bound<'_, PyAny>,
        fd: RawFd,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let buffered = is_buffered(protocol)?;
        Ok(SocketStream {
            fd,
            state: GilCell::new(StreamState {
                loop_: Some(loop_.clone().unbind()),
                transport: Some(transport.clone().unbind()),
                protocol: Some(protocol.clone().unbind()),
                buffered,
                conn_lost: 0,
                closing: false,
                paused: false,
                eof: false,
                empty_waiter: None,
                buffer: WriteBuffer::default(),
                // asyncio's defaults: 64 KiB, and a quarter of it.
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                protocol_paused: false,
            }),
        })
    }

    /// The reader callback: the socket is readable.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let (protocol, buffered) = {
            let st = self.state.borrow(py);
            match (&st.protocol, st.conn_lost) {
                (Some(protocol), 0) => (protocol.clone_ref(py), st.buffered),
                _ => return Ok(()),
            }
        };
        if buffered {
            self.read_into_buffer(py, protocol.bind(py))
        } else {
            self.read_data(py, protocol.bind(py))
        }
    }

    /// The writer callback (`_write_ready`): the socket can take more of the buffer.
    fn _write_ready(&self, py: Python<'_>) -> PyResult<()> {
        {
            let st = self.state.borrow(py);
            if st.conn_lost > 0 || st.buffer.is_empty() {
                return Ok(());
            }
        }
        let fd = self.fd;
        let result = socket_call(py, || {
            sys::send(fd, self.state.borrow(py).buffer.as_slice())
        });
        let sent = match result {
            Io::WouldBlock => {
                self.settled(py, false);
                return Ok(());
            }
            Io::Failed(err) if is_exit(py, &err) => return Err(err),
            Io::Failed(err) => {
                self.stop_watching(py, false)?;
                self.state.borrow_mut(py).buffer.clear();
                let exc = err.value(py).clone();
                self.fatal_error(py, err, "Fatal write error on socket transport")?;
                let waiter = self
                    .state
                    .borrow(py)
                    .empty_waiter
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                if let Some(waiter) = waiter {
                    waiter.call_method1(py, intern!(py, "set_exception"), (exc,))?;
                }
                return Ok(());
            }
            Io::Done(sent) => sent,
        };
        if sent < self.state.borrow(py).buffer.len() {
            self.settled(py, false);
        }
        self.state.borrow_mut(py).buffer.consume(sent);
        self.maybe_resume(py)?; // The protocol may write more here.
        let (drained, waiter, closing, eof) = {
            let st = self.state.borrow(py);
            (
                st.buffer.is_empty(),
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                st.closing,
                st.eof,
            )
        };
        if !drained {
            return Ok(());
        }
        self.stop_watching(py, false)?;
        if let Some(waiter) = waiter {
            waiter.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        }
        if closing {
            self.transport(py)?
                .call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
        } else if eof {
            sys::shutdown_write(fd).map_err(os_error)?;
        }
        Ok(())
    }

    /// Starts the reader unless the transport was paused or closed in the meantime
    /// (`_SelectorTransport._add_reader`).
    fn start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().is_reading(slf.py()) {
            return Ok(());
        }
        SocketStream::start_watching(slf, true)
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if !(data.is_instance_of::<PyBytes>()
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not '{}'",
                data.get_type().name()?
            )));
        }
        slf.get().check_writable(py, "write")?;
        let view = ByteView::readable(data)?;
        if view.as_slice().is_empty() {
            return Ok(());
        }
        SocketStream::send_or_buffer(slf, &[view.as_slice()])
    }

    /// One vectored send of every chunk when nothing is queued (asyncio 3.11 joins them first).
    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let views = SocketStream::chunk_views(list_of_data)?;
        // From 3.12 on, writelines has checks and messages of its own.
        let method = if py.version_info() >= (3, 12) {
            "writelines"
        } else {
            "write"
        };
        slf.get().check_writable(py, method)?;
        let chunks: Vec<&[u8]> = views
            .iter()
            .map(|v| v.as_slice())
            .filter(|c| !c.is_empty())
            .collect();
        if chunks.is_empty() {
            return Ok(());
        }
        SocketStream::send_or_buffer(slf, &chunks)
    }

    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        let drained = {
            let mut st = self.state.borrow_mut(py);
            if st.closing || st.eof {
                return Ok(());
            }
            st.eof = true;
            st.buffer.is_empty()
        };
        if drained {
            sys::shutdown_write(self.fd).map_err(os_error)?;
        }
        Ok(())
    }

    #[pyo3(name = "close")]
    fn py_close(&self, py: Python<'_>) -> PyResult<()> {
        self.close(py)
    }

    /// `_SelectorTransport._force_close`: drops the buffer, stops reading, and schedules
    /// `connection_lost(exc)`, once.
    fn force_close(&self, py: Python<'_>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let (had_buffer, was_closing) = {
            let mut st = self.state.borrow_mut(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            let had_buffer = !st.buffer.is_empty();
            st.buffer.clear();
            let was_closing = st.closing;
            st.closing = true;
            st.conn_lost += 1;
            (had_buffer, was_closing)
        };
        if had_buffer {
            self.stop_watching(py, false)?;
        }
        if !was_closing {
            self.stop_watching(py, true)?;
        }
        self.schedule_connection_lost(py, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closing
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.state.borrow(py);
        !st.closing && !st.paused
    }

    fn pause_reading(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closing || st.paused {
                return Ok(());
            }
            st.paused = true;
        }
        self.stop_watching(py, true)?;
        self.log_debug(py, "%r pauses reading")
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut st = slf.get().state.borrow_mut(py);
            if st.closing || !st.paused {
                return Ok(());
            }
            st.paused = false;
        }
        SocketStream::start_reading(slf)?;
        slf.get().log_debug(py, "%r resumes reading")
    }

    #[getter]
    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py).map(Bound::unbind)
    }

    #[setter]
    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let buffered = is_buffered(protocol)?;
        let mut st = self.state.borrow_mut(py);
        st.protocol = Some(protocol.clone().unbind());
        st.buffered = buffered;
        Ok(())
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).buffer.len()
    }

    /// Stores limits the Python side has computed and checked as `_FlowControlMixin` does, then
    /// pauses the protocol if the buffer is already above the new high mark.
    fn set_write_buffer_limits(&self, py: Python<'_>, high: usize, low: usize) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            st.high_water = high;
            st.low_water = low;
        }
        self.maybe_pause(py)
    }

    #[getter]
    fn protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).protocol_paused
    }

    #[getter]
    fn empty_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow(py)
            .empty_waiter
            .as_ref()
            .map(|w| w.clone_ref(py))
    }

    /// `_make_empty_waiter`: a future done once everything written has reached the socket.
    fn make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.state.borrow(py).empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = self.loop_(py)?.call_method0(intern!(py, "create_future"))?;
        if self.state.borrow(py).buffer.is_empty() {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        self.state.borrow_mut(py).empty_waiter = Some(waiter.clone().unbind());
        Ok(waiter.unbind())
    }

    fn reset_empty_waiter(&self, py: Python<'_>) {
        self.state.borrow_mut(py).empty_waiter = None;
    }

    /// After `connection_lost`: lets go of the loop, the transport and the protocol.
    fn detach(&self, py: Python<'_>) {
        let mut st = self.state.borrow_mut(py);
        st.loop_ = None;
        st.transport = None;
        st.protocol = None;
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(st) = self.state.try_borrow_for_gc() else {
            return Ok(());
        };
        if let Some(loop_) = &st.loop_ {
            visit.call(loop_)?;
        }
        for obj in [&st.transport, &st.protocol, &st.empty_waiter]
            .into_iter()
            .flatten()
        {
            visit.call(obj)?;
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        let mut st = self.state.borrow_mut(py);
        st.loop_ = None;
        st.transport = None;
        st.protocol = None;
        st.empty_waiter = None;
    }
}

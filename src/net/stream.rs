//! The native half of ferroloop's stream socket transport (TCP and Unix sockets).
//!
//! `ferroloop._transports.SocketTransport` is what protocols see: an `asyncio.Transport` with the
//! private attributes asyncio's own code reads. It owns a `SocketStream`, which holds the
//! connection's state and does all that runs per packet: reading into a buffer that the thread
//! reuses and handing the bytes to the protocol, writing at once and buffering only what the
//! socket did not take, flushing when the socket is writable, flow control at the water marks.
//! Each step follows CPython 3.11's `selector_events._SelectorSocketTransport`, including which
//! errors are fatal and with what message; the comments name the method each one mirrors.

use std::os::fd::RawFd;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::{intern, PyTraverseError, PyVisit};

use super::base::{shared_transport_methods, NativeTransport, TransportBase};
use super::byte_view::{check_bytes_like, BufferView, ByteView, DataCheck};
use super::calls::{is_exit, socket_call, with_read_buffer, Io};
use super::{read_bytes, sys};
use crate::core::write_buffer::WriteBuffer;
use crate::errors::os_error;
use crate::event_loop::LoopCore;
use crate::gil::GilCell;
use crate::pyobjects;
use crate::tls::TlsProtocol;

/// How reads reach the protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// A bytes object per read, to `data_received`.
    Data,
    /// Into the `get_buffer()` memory of an `asyncio.BufferedProtocol`.
    Buffered,
    /// ferroloop's TLS protocol: records go from the read buffer into its TLS object.
    Tls,
}

fn reads_for(protocol: &Bound<'_, PyAny>) -> PyResult<Reads> {
    Ok(if protocol.is_instance_of::<TlsProtocol>() {
        Reads::Tls
    } else if protocol.is_instance(pyobjects::buffered_protocol_type(protocol.py())?.as_any())? {
        Reads::Buffered
    } else {
        Reads::Data
    })
}

struct StreamState {
    reads: Reads,
    /// `write_eof()` was called.
    eof: bool,
    /// The future `sendfile` waits on for the buffer to drain.
    empty_waiter: Option<Py<PyAny>>,
    buffer: WriteBuffer,
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SocketStream {
    base: TransportBase,
    state: GilCell<StreamState>,
}

impl NativeTransport for SocketStream {
    fn base(&self) -> &TransportBase {
        &self.base
    }

    fn buffered_size(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).buffer.len()
    }

    fn clear_buffer(&self, py: Python<'_>) -> bool {
        let mut st = self.state.borrow_mut(py);
        let had = !st.buffer.is_empty();
        st.buffer.clear();
        had
    }

    fn protocol_changed(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let reads = reads_for(protocol)?;
        self.state.borrow_mut(protocol.py()).reads = reads;
        Ok(())
    }
}

shared_transport_methods!(SocketStream);

impl SocketStream {
    /// `_read_ready__data_received`.
    fn read_data(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let fd = self.base.fd;
        match read_bytes::read_bytes(py, |buf| sys::recv(fd, buf), |bufs| sys::readv(fd, bufs)) {
            Io::WouldBlock => Ok(()),
            Io::Failed(err) => {
                self.base
                    .fatal_error(py, err, "Fatal read error on socket transport")
            }
            Io::Done(data) if data.as_bytes().is_empty() => self.read_eof(py, protocol),
            Io::Done(data) => {
                let result = read_bytes::hand_over(data, |data| {
                    protocol.call_method1(intern!(py, "data_received"), (data,))
                });
                match result {
                    Ok(_) => Ok(()),
                    Err(err) => self.base.fatal_error(
                        py,
                        err,
                        "Fatal error: protocol.data_received() call failed.",
                    ),
                }
            }
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
                return self.base.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        let fd = self.base.fd;
        let received = match BufferView::writable(&buffer) {
            Ok(mut view) => socket_call(py, || sys::recv(fd, view.as_mut_slice())),
            Err(err) => Io::Failed(err),
        };
        match received {
            Io::WouldBlock => Ok(()),
            Io::Failed(err) => {
                self.base
                    .fatal_error(py, err, "Fatal read error on socket transport")
            }
            Io::Done(0) => self.read_eof(py, protocol),
            Io::Done(n) => match protocol.call_method1(intern!(py, "buffer_updated"), (n,)) {
                Ok(_) => Ok(()),
                Err(err) => self.base.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.buffer_updated() call failed.",
                ),
            },
        }
    }

    /// `_read_ready__get_buffer` for ferroloop's TLS protocol: the records go from the thread's
    /// read buffer into its TLS object, and the protocol takes it from there.
    fn read_records(&self, py: Python<'_>, protocol: &Bound<'_, TlsProtocol>) -> PyResult<()> {
        let fd = self.base.fd;
        let received = socket_call(py, || {
            with_read_buffer(|buf| {
                sys::recv(fd, buf).map(|n| {
                    (
                        n,
                        (n > 0).then(|| TlsProtocol::feed_records(protocol, &buf[..n])),
                    )
                })
            })
        });
        let fed = match received {
            Io::WouldBlock => return Ok(()),
            Io::Failed(err) => {
                return self
                    .base
                    .fatal_error(py, err, "Fatal read error on socket transport")
            }
            Io::Done((_, None)) => return self.read_eof(py, protocol.as_any()),
            Io::Done((_, Some(fed))) => fed,
        };
        match fed.and_then(|()| TlsProtocol::process_incoming(protocol)) {
            Ok(()) => Ok(()),
            Err(err) => self.base.fatal_error(
                py,
                err,
                "Fatal error: protocol.buffer_updated() call failed.",
            ),
        }
    }

    /// `_read_ready__on_eof`.
    fn read_eof(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.base.log_debug(py, "%r received EOF")?;
        let keep_open = match protocol.call_method0(intern!(py, "eof_received")) {
            Ok(keep_open) => keep_open,
            Err(err) => {
                return self.base.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.eof_received() call failed.",
                )
            }
        };
        if keep_open.is_truthy()? {
            // The protocol may still write, but nothing more can be received.
            self.base.stop_watching(py, true)
        } else {
            self.base.close(py, self.buffered_size(py) == 0)
        }
    }

    /// The common tail of `write` and `writelines`: send now if nothing is queued, queue the rest.
    fn send_or_buffer(slf: &Bound<'_, Self>, chunks: &[&[u8]]) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.base.drop_write_after_loss(py)? {
            return Ok(());
        }
        let buffer_was_empty = this.state.borrow(py).buffer.is_empty();
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut sent = 0;
        if buffer_was_empty {
            let fd = this.base.fd;
            let result = socket_call(py, || match chunks {
                [chunk] => sys::send(fd, chunk),
                _ => sys::send_vectored(fd, chunks),
            });
            match result {
                Io::Done(n) => sent = n,
                Io::WouldBlock => {}
                Io::Failed(err) => {
                    return this
                        .base
                        .fatal_error(py, err, "Fatal write error on socket transport")
                }
            }
            if sent == total {
                return Ok(());
            }
            this.base
                .start_watching(slf.as_any(), intern!(py, "_write_ready"), false)?;
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
        this.base.maybe_pause(py, this.buffered_size(py))
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

    /// `write` of bytes that are already a slice (the TLS protocol's records).
    pub fn write_bytes(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        slf.get().check_writable(slf.py(), "write")?;
        if data.is_empty() {
            return Ok(());
        }
        SocketStream::send_or_buffer(slf, &[data])
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

    /// `write(data)`, for `SocketTransport.write` (see `transport_methods`).
    pub(crate) fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        check_bytes_like(data, DataCheck::StreamWrite)?;
        SocketStream::write_bytes(slf, ByteView::readable(data)?.as_slice())
    }

    /// `writelines(list_of_data)`: one vectored send of every chunk when nothing is queued
    /// (asyncio 3.11 joins them first).
    pub(crate) fn writelines(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
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
        Ok(SocketStream {
            base: TransportBase::new(loop_, transport, fd, protocol),
            state: GilCell::new(StreamState {
                reads: reads_for(protocol)?,
                eof: false,
                empty_waiter: None,
                buffer: WriteBuffer::default(),
            }),
        })
    }

    /// The reader callback: the socket is readable.
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        if self.base.conn_lost(py) {
            return Ok(());
        }
        let Some(protocol) = self.base.protocol(py) else {
            return Ok(());
        };
        let reads = self.state.borrow(py).reads;
        match reads {
            Reads::Data => self.read_data(py, &protocol),
            Reads::Buffered => self.read_into_buffer(py, &protocol),
            Reads::Tls => self.read_records(py, protocol.cast::<TlsProtocol>()?),
        }
    }

    /// The writer callback (`_write_ready`): the socket can take more of the buffer.
    fn _write_ready(&self, py: Python<'_>) -> PyResult<()> {
        if self.base.conn_lost(py) || self.state.borrow(py).buffer.is_empty() {
            return Ok(());
        }
        let fd = self.base.fd;
        let result = socket_call(py, || {
            sys::send(fd, self.state.borrow(py).buffer.as_slice())
        });
        let sent = match result {
            Io::WouldBlock => return Ok(()),
            Io::Failed(err) if is_exit(py, &err) => return Err(err),
            Io::Failed(err) => {
                self.base.stop_watching(py, false)?;
                self.state.borrow_mut(py).buffer.clear();
                let exc = err.value(py).clone();
                self.base
                    .fatal_error(py, err, "Fatal write error on socket transport")?;
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
        self.state.borrow_mut(py).buffer.consume(sent);
        self.base.maybe_resume(py, self.buffered_size(py))?; // The protocol may write more here.
        let (drained, waiter, eof) = {
            let st = self.state.borrow(py);
            (
                st.buffer.is_empty(),
                st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                st.eof,
            )
        };
        if !drained {
            return Ok(());
        }
        self.base.stop_watching(py, false)?;
        if let Some(waiter) = waiter {
            waiter.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        }
        if self.base.is_closing(py) {
            self.base.call_connection_lost(py)?;
        } else if eof {
            sys::shutdown_write(fd).map_err(os_error)?;
        }
        Ok(())
    }

    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        if self.base.is_closing(py) {
            return Ok(());
        }
        let drained = {
            let mut st = self.state.borrow_mut(py);
            if st.eof {
                return Ok(());
            }
            st.eof = true;
            st.buffer.is_empty()
        };
        if drained {
            sys::shutdown_write(self.base.fd).map_err(os_error)?;
        }
        Ok(())
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
        let waiter = self
            .base
            .loop_(py)?
            .call_method0(intern!(py, "create_future"))?;
        if self.state.borrow(py).buffer.is_empty() {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        self.state.borrow_mut(py).empty_waiter = Some(waiter.clone().unbind());
        Ok(waiter.unbind())
    }

    fn reset_empty_waiter(&self, py: Python<'_>) {
        self.state.borrow_mut(py).empty_waiter = None;
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.base.traverse(&visit)?;
        if let Some(st) = self.state.try_borrow_for_gc() {
            if let Some(waiter) = &st.empty_waiter {
                visit.call(waiter)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self, py: Python<'_>) {
        self.base.clear(py);
        self.state.borrow_mut(py).empty_waiter = None;
    }
}

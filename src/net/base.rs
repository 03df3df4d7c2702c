//! What the native transports share, after CPython's `_SelectorTransport` and
//! `_FlowControlMixin`: the links to the loop, the Python transport and the protocol; closing and
//! `connection_lost` bookkeeping; pausing reads; the write buffer's water marks; error reports.
//! The write buffer itself is each transport's own (bytes for streams, datagrams for UDP), so
//! the methods that depend on it take its size or a way to empty it.

use std::os::fd::RawFd;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::calls::{is_exit, LOG_THRESHOLD_FOR_CONNLOST_WRITES};
use crate::event_loop::LoopCore;
use crate::gil::GilCell;
use crate::pyobjects;

struct Shared {
    /// The loop, the Python transport and the protocol; all three are let go of once
    /// `connection_lost` has run (asyncio sets `_loop` and `_protocol` to None then).
    loop_: Option<Py<LoopCore>>,
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// asyncio's `_conn_lost`: set when `connection_lost` is scheduled, then counts writes after it.
    conn_lost: usize,
    closing: bool,
    /// `pause_reading()` is in effect.
    paused: bool,
    high_water: usize,
    low_water: usize,
    /// `pause_writing()` was called and `resume_writing()` not yet.
    protocol_paused: bool,
}

pub struct TransportBase {
    pub fd: RawFd,
    state: GilCell<Shared>,
}

impl TransportBase {
    pub fn new(
        loop_: &Bound<'_, LoopCore>,
        transport: &Bound<'_, PyAny>,
        fd: RawFd,
        protocol: &Bound<'_, PyAny>,
    ) -> Self {
        TransportBase {
            fd,
            state: GilCell::new(Shared {
                loop_: Some(loop_.clone().unbind()),
                transport: Some(transport.clone().unbind()),
                protocol: Some(protocol.clone().unbind()),
                conn_lost: 0,
                closing: false,
                paused: false,
                // asyncio's defaults: 64 KiB, and a quarter of it.
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                protocol_paused: false,
            }),
        }
    }

    pub fn loop_<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, LoopCore>> {
        self.state
            .borrow(py)
            .loop_
            .as_ref()
            .map(|l| l.bind(py).clone())
            .ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))
    }

    pub fn transport<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.state
            .borrow(py)
            .transport
            .as_ref()
            .map(|t| t.bind(py).clone())
            .ok_or_else(|| PyRuntimeError::new_err("the transport is closed"))
    }

    pub fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.state
            .borrow(py)
            .protocol
            .as_ref()
            .map(|p| p.bind(py).clone())
    }

    pub fn set_protocol(&self, protocol: &Bound<'_, PyAny>) {
        self.state.borrow_mut(protocol.py()).protocol = Some(protocol.clone().unbind());
    }

    /// After `connection_lost`: lets go of any hold on the fd's reader (the socket is closed,
    /// and its fd may be reused), then of the loop, the transport and the protocol.
    pub fn detach(&self, py: Python<'_>) {
        self.release_readable(py);
        let mut st = self.state.borrow_mut(py);
        st.loop_ = None;
        st.transport = None;
        st.protocol = None;
    }

    /// Has the loop run the fd's reader in every turn, polled or not, until `release_readable`
    /// (`LoopCore::hold_readable`): the transport holds data it read ahead of those turns.
    pub fn hold_readable(&self, py: Python<'_>) {
        if let Some(loop_) = &self.state.borrow(py).loop_ {
            loop_.get().hold_readable(py, self.fd);
        }
    }

    pub fn release_readable(&self, py: Python<'_>) {
        if let Some(loop_) = &self.state.borrow(py).loop_ {
            loop_.get().release_readable(py, self.fd);
        }
    }

    pub fn conn_lost(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).conn_lost > 0
    }

    pub fn is_closing(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closing
    }

    /// `pause_reading()` is in effect (asyncio's `_paused`), closing or not.
    pub fn reading_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).paused
    }

    pub fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.state.borrow(py);
        !st.closing && !st.paused
    }

    fn debug(&self, py: Python<'_>) -> bool {
        self.loop_(py).is_ok_and(|l| l.get().debug(py))
    }

    /// `logger.debug(message, transport)` when the loop is in debug mode, as asyncio logs.
    pub fn log_debug(&self, py: Python<'_>, message: &str) -> PyResult<()> {
        if self.debug(py) {
            pyobjects::asyncio_logger(py)?
                .call_method1(intern!(py, "debug"), (message, self.transport(py)?))?;
        }
        Ok(())
    }

    /// `_fatal_error(exc, message)`, reached from an `except BaseException` block: SystemExit and
    /// KeyboardInterrupt propagate instead.
    pub fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_exit(py, &err) {
            return Err(err);
        }
        self.transport(py)?
            .call_method1(intern!(py, "_fatal_error"), (err.into_value(py), message))?;
        Ok(())
    }

    /// Installs `owner.<callback>` as the fd's reader (or writer).
    pub fn start_watching(
        &self,
        owner: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyString>,
        reader: bool,
    ) -> PyResult<()> {
        let py = owner.py();
        let callback = owner.getattr(callback)?;
        LoopCore::add_fd_callback(
            &self.loop_(py)?,
            self.fd,
            None,
            &callback,
            &PyTuple::empty(py),
            reader,
        )?;
        Ok(())
    }

    pub fn stop_watching(&self, py: Python<'_>, reader: bool) -> PyResult<()> {
        self.loop_(py)?
            .get()
            .remove_fd_callback(py, self.fd, reader, false)?;
        Ok(())
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

    /// `transport._call_connection_lost(None)`, now: the buffer drained after `close()`.
    pub fn call_connection_lost(&self, py: Python<'_>) -> PyResult<()> {
        self.transport(py)?
            .call_method1(intern!(py, "_call_connection_lost"), (py.None(),))?;
        Ok(())
    }

    /// The start of `write`/`sendto` once the connection is lost: the data is dropped, and from
    /// the fifth such write on asyncio logs a warning. Returns whether the write was dropped.
    pub fn drop_write_after_loss(&self, py: Python<'_>) -> PyResult<bool> {
        let warn = {
            let mut st = self.state.borrow_mut(py);
            if st.conn_lost == 0 {
                return Ok(false);
            }
            st.conn_lost += 1;
            st.conn_lost > LOG_THRESHOLD_FOR_CONNLOST_WRITES
        };
        if warn {
            pyobjects::asyncio_logger(py)?
                .call_method1(intern!(py, "warning"), ("socket.send() raised exception.",))?;
        }
        Ok(true)
    }

    /// `_SelectorTransport.close`; `drained` says whether the write buffer is empty.
    pub fn close(&self, py: Python<'_>, drained: bool) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
        }
        self.stop_watching(py, true)?;
        if drained {
            self.state.borrow_mut(py).conn_lost += 1;
            self.stop_watching(py, false)?;
            self.schedule_connection_lost(py, py.None().into_bound(py))?;
        }
        Ok(())
    }

    /// `_SelectorTransport._force_close`: drops the write buffer (`clear_buffer` empties it and
    /// says whether it held anything), stops reading, and schedules `connection_lost(exc)`, once.
    pub fn force_close(
        &self,
        py: Python<'_>,
        exc: Bound<'_, PyAny>,
        clear_buffer: impl FnOnce() -> bool,
    ) -> PyResult<()> {
        let was_closing = {
            let mut st = self.state.borrow_mut(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            st.conn_lost += 1;
            std::mem::replace(&mut st.closing, true)
        };
        if clear_buffer() {
            self.stop_watching(py, false)?;
        }
        if !was_closing {
            self.stop_watching(py, true)?;
        }
        self.schedule_connection_lost(py, exc)
    }

    pub fn pause_reading(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if st.closing || st.paused {
                return Ok(());
            }
            st.paused = true;
        }
        // `resume_reading` watches the same socket again: its registration is only parked.
        self.loop_(py)?
            .get()
            .remove_fd_callback(py, self.fd, true, true)?;
        self.log_debug(py, "%r pauses reading")
    }

    /// Installs the reader unless the transport was paused or closed in the meantime
    /// (`_SelectorTransport._add_reader`).
    pub fn start_reading(&self, owner: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.is_reading(owner.py()) {
            return Ok(());
        }
        self.start_watching(owner, intern!(owner.py(), "_read_ready"), true)
    }

    pub fn resume_reading(&self, owner: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = owner.py();
        {
            let mut st = self.state.borrow_mut(py);
            if st.closing || !st.paused {
                return Ok(());
            }
            st.paused = false;
        }
        self.start_reading(owner)?;
        self.log_debug(py, "%r resumes reading")
    }

    /// A flow-control call on the protocol (`pause_writing`/`resume_writing`); its errors go to
    /// the exception handler, as `_FlowControlMixin` reports them.
    fn notify_protocol(&self, py: Python<'_>, method: &Bound<'_, PyString>) -> PyResult<()> {
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

    /// `_FlowControlMixin._maybe_pause_protocol`, for a write buffer of `size` bytes.
    pub fn maybe_pause(&self, py: Python<'_>, size: usize) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if size <= st.high_water || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
        }
        self.notify_protocol(py, intern!(py, "pause_writing"))
    }

    /// `_FlowControlMixin._maybe_resume_protocol`, for a write buffer of `size` bytes.
    pub fn maybe_resume(&self, py: Python<'_>, size: usize) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            if !st.protocol_paused || size > st.low_water {
                return Ok(());
            }
            st.protocol_paused = false;
        }
        self.notify_protocol(py, intern!(py, "resume_writing"))
    }

    /// Stores limits the Python side has computed and checked as `_FlowControlMixin` does, then
    /// pauses the protocol if the buffer (`size` bytes) is already above the new high mark.
    pub fn set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: usize,
        low: usize,
        size: usize,
    ) -> PyResult<()> {
        {
            let mut st = self.state.borrow_mut(py);
            st.high_water = high;
            st.low_water = low;
        }
        self.maybe_pause(py, size)
    }

    pub fn protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).protocol_paused
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(st) = self.state.try_borrow_for_gc() else {
            return Ok(());
        };
        if let Some(loop_) = &st.loop_ {
            visit.call(loop_)?;
        }
        for obj in [&st.transport, &st.protocol].into_iter().flatten() {
            visit.call(obj)?;
        }
        Ok(())
    }

    pub fn clear(&self, py: Python<'_>) {
        self.detach(py);
    }
}

/// What the shared methods need from a transport: its base, and its write buffer.
pub trait NativeTransport {
    fn base(&self) -> &TransportBase;
    /// The write buffer's size, as `get_write_buffer_size()` reports it.
    fn buffered_size(&self, py: Python<'_>) -> usize;
    /// Empties the write buffer; says whether it held anything.
    fn clear_buffer(&self, py: Python<'_>) -> bool;
    /// Called when `set_protocol` gave the transport a new protocol.
    fn protocol_changed(&self, _protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(())
    }
}

/// The Python methods every native transport has, each the `_SelectorTransport` method of the
/// same name (the Python transport class forwards to them).
macro_rules! shared_transport_methods {
    ($ty:ty) => {
        #[pyo3::pymethods]
        impl $ty {
            fn start_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::net::base::NativeTransport::base(slf.get()).start_reading(slf.as_any())
            }

            fn is_closing(&self, py: pyo3::Python<'_>) -> bool {
                self.base().is_closing(py)
            }

            fn is_reading(&self, py: pyo3::Python<'_>) -> bool {
                self.base().is_reading(py)
            }

            fn pause_reading(&self, py: pyo3::Python<'_>) -> pyo3::PyResult<()> {
                self.base().pause_reading(py)
            }

            fn resume_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::net::base::NativeTransport::base(slf.get()).resume_reading(slf.as_any())
            }

            fn close(&self, py: pyo3::Python<'_>) -> pyo3::PyResult<()> {
                self.base().close(py, self.buffered_size(py) == 0)
            }

            fn force_close(
                &self,
                py: pyo3::Python<'_>,
                exc: pyo3::Bound<'_, pyo3::PyAny>,
            ) -> pyo3::PyResult<()> {
                self.base().force_close(py, exc, || self.clear_buffer(py))
            }

            #[getter]
            fn get_protocol(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                self.base().protocol(py).map(pyo3::Bound::unbind)
            }

            #[setter]
            fn set_protocol(&self, protocol: &pyo3::Bound<'_, pyo3::PyAny>) -> pyo3::PyResult<()> {
                self.base().set_protocol(protocol);
                self.protocol_changed(protocol)
            }

            fn get_write_buffer_size(&self, py: pyo3::Python<'_>) -> usize {
                self.buffered_size(py)
            }

            /// Limits the Python side has computed and checked as `_FlowControlMixin` does.
            fn set_write_buffer_limits(
                &self,
                py: pyo3::Python<'_>,
                high: usize,
                low: usize,
            ) -> pyo3::PyResult<()> {
                self.base()
                    .set_write_buffer_limits(py, high, low, self.buffered_size(py))
            }

            #[getter]
            fn protocol_paused(&self, py: pyo3::Python<'_>) -> bool {
                self.base().protocol_paused(py)
            }

            #[getter]
            fn reading_paused(&self, py: pyo3::Python<'_>) -> bool {
                self.base().reading_paused(py)
            }

            /// After `connection_lost`: lets go of the loop, the transport and the protocol.
            fn detach(&self, py: pyo3::Python<'_>) {
                self.base().detach(py)
            }
        }
    };
}

pub(crate) use shared_transport_methods;

//! What the stream transport calls on the TLS protocol: `connection_made` and
//! `connection_lost`, records in (through `get_buffer`/`buffer_updated`, or straight from
//! ferroloop's own stream transport), EOF, and the stream's flow control of writes.

use pyo3::exceptions::{PyAssertionError, PyConnectionResetError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyMemoryView, PySlice};

use super::protocol::{is_exception, TlsProtocol};
use super::states::{AppState, SslState};
use crate::net::{SocketStream, MAX_READ};
use crate::pyobjects;

impl TlsProtocol {
    /// Records that came in, from the stream transport's read buffer: the first half of what
    /// `buffer_updated` does with `get_buffer()` memory, without the copy into that memory.
    /// `process_incoming` is the second half.
    pub fn feed_records(slf: &Bound<'_, Self>, records: &[u8]) -> PyResult<()> {
        let py = slf.py();
        let feed = slf.get().tls.borrow(py).calls.feed.clone_ref(py);
        // SAFETY: the view lives only for this call and is released before `records` goes away;
        // MemoryBIO.write copies the bytes.
        let view = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                pyo3::ffi::PyMemoryView_FromMemory(
                    records.as_ptr() as *mut std::os::raw::c_char,
                    records.len() as pyo3::ffi::Py_ssize_t,
                    pyo3::ffi::PyBUF_READ,
                ),
            )?
        };
        let written = feed.call1(py, (&view,));
        view.call_method0(intern!(py, "release"))?;
        written.map(drop)
    }

    /// The tail of `buffer_updated`: records are in, move the state machine.
    pub fn process_incoming(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()) {
            SslState::DoHandshake => Self::_do_handshake(slf),
            SslState::Wrapped => Self::_do_read(slf),
            SslState::Flushing => Self::_do_flush(slf),
            SslState::Shutdown => Self::_do_shutdown(slf),
            SslState::Unwrapped => Ok(()),
        }
    }
}

#[pymethods]
impl TlsProtocol {
    /// `connection_made`: the stream is connected; the handshake starts.
    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let stream = match transport.getattr_opt(intern!(py, "_core"))? {
            Some(core) => core.cast_into::<SocketStream>().ok().map(Bound::unbind),
            None => None,
        };
        {
            let mut tls = slf.get().tls.borrow_mut(py);
            tls.transport = Some(transport.clone().unbind());
            tls.stream = stream;
        }
        Self::_start_handshake(slf)
    }

    /// `connection_lost`.
    fn connection_lost(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let drain = {
            let mut tls = this.tls.borrow_mut(py);
            tls.write_backlog.clear();
            tls.conn_lost += 1;
            tls.calls.drain.clone_ref(py)
        };
        drain.call0(py)?;
        this.mark_app_transport_closed(py)?;
        let notify = {
            let mut tls = this.tls.borrow_mut(py);
            let notify = tls.state != SslState::DoHandshake
                && matches!(tls.app_state, AppState::ConMade | AppState::Eof);
            if notify {
                tls.app_state = AppState::ConLost;
            }
            notify
        };
        if notify {
            let connection_lost = this
                .app_protocol(py)
                .getattr(intern!(py, "connection_lost"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (connection_lost, &exc))?;
        }
        this.set_state(py, SslState::Unwrapped)?;
        {
            let mut tls = this.tls.borrow_mut(py);
            tls.transport = None;
            tls.stream = None;
            tls.app_transport = None;
            tls.app_protocol = None;
            tls.app_buffer = None;
        }
        this._wakeup_waiter(py, exc)?;
        let (shutdown, handshake) = {
            let mut tls = this.tls.borrow_mut(py);
            (
                tls.shutdown_timeout_handle.take(),
                tls.handshake_timeout_handle.take(),
            )
        };
        Self::cancel_handle(py, shutdown)?;
        Self::cancel_handle(py, handshake)
    }

    /// `get_buffer`, for transports other than ferroloop's own (which call `feed`).
    fn get_buffer(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let want = match n.extract::<i64>() {
            Ok(want) if want > 0 && want <= MAX_READ as i64 => want as usize,
            _ => MAX_READ,
        };
        let mut tls = self.tls.borrow_mut(py);
        if let Some((buffer, view)) = &tls.ssl_buffer {
            if buffer.bind(py).len() >= want {
                return Ok(view.clone_ref(py));
            }
        }
        let buffer = PyByteArray::new_with(py, want.max(MAX_READ), |_| Ok(()))?;
        let view = PyMemoryView::from(&buffer)?.into_any().unbind();
        tls.ssl_buffer = Some((buffer.unbind(), view.clone_ref(py)));
        Ok(view)
    }

    /// `buffer_updated`: `nbytes` of records are in `get_buffer()`'s memory.
    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: isize) -> PyResult<()> {
        let py = slf.py();
        let (incoming, view) = {
            let tls = slf.get().tls.borrow(py);
            let view = match &tls.ssl_buffer {
                Some((_, view)) => view.clone_ref(py),
                None => return Err(PyRuntimeError::new_err("get_buffer() was not called")),
            };
            (tls.incoming.clone_ref(py), view)
        };
        let records = view.bind(py).get_item(PySlice::new(py, 0, nbytes, 1))?;
        incoming.call_method1(py, intern!(py, "write"), (records,))?;
        Self::process_incoming(slf)
    }

    /// `eof_received`: the peer closed its end of the stream.
    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let this = slf.get();
        this.tls.borrow_mut(py).eof_received = true;
        let result = (|| -> PyResult<Option<bool>> {
            if this.debug(py)? {
                pyobjects::asyncio_logger(py)?
                    .call_method1(intern!(py, "debug"), ("%r received EOF", slf))?;
            }
            match this.state(py) {
                SslState::DoHandshake => {
                    let reset = py.get_type::<PyConnectionResetError>();
                    Self::_on_handshake_complete(slf, Some(reset.into_any()))?;
                }
                SslState::Wrapped => {
                    this.set_state(py, SslState::Flushing)?;
                    if this.tls.borrow(py).app_reading_paused {
                        return Ok(Some(true));
                    }
                    Self::_do_flush(slf)?;
                }
                SslState::Flushing => {
                    Self::_do_write(slf)?;
                    this.set_state(py, SslState::Shutdown)?;
                    Self::_do_shutdown(slf)?;
                }
                SslState::Shutdown => Self::_do_shutdown(slf)?,
                SslState::Unwrapped => {}
            }
            Ok(None)
        })();
        match result {
            Err(err) if is_exception(py, &err) => {
                this.transport(py).call_method0(intern!(py, "close"))?;
                Err(err)
            }
            other => other,
        }
    }

    /// `pause_writing`: the stream's buffer is over its high-water mark.
    fn pause_writing(&self, py: Python<'_>) -> PyResult<()> {
        let mut tls = self.tls.borrow_mut(py);
        if tls.ssl_writing_paused {
            return Err(PyAssertionError::new_err(()));
        }
        tls.ssl_writing_paused = true;
        Ok(())
    }

    /// `resume_writing`: the stream's buffer drained; send what the TLS object has made since.
    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut tls = slf.get().tls.borrow_mut(slf.py());
            if !tls.ssl_writing_paused {
                return Err(PyAssertionError::new_err(()));
            }
            tls.ssl_writing_paused = false;
        }
        Self::_process_outgoing(slf)
    }
}

//! Application data through the TLS object: writes go into the backlog, then into the TLS object,
//! whose records go to the stream; records from the stream are decrypted and handed to the
//! application. `sslproto`'s "Outgoing flow" and "Incoming flow".

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PySlice};

use super::protocol::{is_again, is_exception, TlsProtocol};
use super::states::{AppState, SslState};
use crate::net::{is_exit, SocketStream, LOG_THRESHOLD_FOR_CONNLOST_WRITES, MAX_READ};
use crate::pyobjects;

/// `len(data)`, as asyncio counts the backlog.
fn py_len(data: &Bound<'_, PyAny>) -> PyResult<i64> {
    match data.cast::<PyBytes>() {
        Ok(bytes) => Ok(bytes.as_bytes().len() as i64),
        Err(_) => Ok(data.len()? as i64),
    }
}

impl TlsProtocol {
    /// The head of `_write_appdata`: in the closing states writes are dropped, and logged from
    /// the fifth on. True if `data` may be queued.
    fn accepts_app_data(&self, py: Python<'_>) -> PyResult<bool> {
        let mut tls = self.tls.borrow_mut(py);
        if tls.state.takes_app_data() {
            return Ok(true);
        }
        let log = tls.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
        tls.conn_lost += 1;
        drop(tls);
        if log {
            pyobjects::asyncio_logger(py)?
                .call_method1(intern!(py, "warning"), ("SSL connection is closed",))?;
        }
        Ok(false)
    }

    fn queue_app_data(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let size = py_len(data)?;
        let mut tls = self.tls.borrow_mut(data.py());
        tls.write_backlog.push_back(data.clone().unbind());
        tls.write_buffer_size += size;
        Ok(())
    }

    /// The tail of `_write_appdata`: once wrapped, the backlog goes into the TLS object.
    fn write_backlog_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().state(py) != SslState::Wrapped {
            return Ok(());
        }
        let written = Self::_do_write(slf);
        Self::fatal_error_if(slf, written, is_exception, "Fatal error on SSL protocol")
    }

    /// `_write_appdata((data,))`, for the application transport's `write`.
    pub fn write_app_data(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !slf.get().accepts_app_data(slf.py())? {
            return Ok(());
        }
        slf.get().queue_app_data(data)?;
        Self::write_backlog_now(slf)
    }

    /// Sends `records` down the stream: natively to ferroloop's own stream transport.
    fn send_records(&self, py: Python<'_>, records: &Bound<'_, PyBytes>) -> PyResult<()> {
        let stream = self.tls.borrow(py).stream.as_ref().map(|o| o.clone_ref(py));
        match stream {
            Some(stream) => SocketStream::write_bytes(stream.bind(py), records.as_bytes()),
            None => {
                self.transport(py)
                    .call_method1(intern!(py, "write"), (records,))?;
                Ok(())
            }
        }
    }

    /// Whether a `read` now could only raise SSLWantReadError: no records wait in the incoming
    /// BIO and the TLS object holds no decrypted bytes. (It reads a record at a time, so what
    /// it holds beyond that is at most part of a record, which needs more bytes anyway.)
    fn nothing_to_read(&self, py: Python<'_>) -> PyResult<bool> {
        if self._get_read_buffer_size(py)? != 0 {
            return Ok(false);
        }
        let pending = self.tls.borrow(py).calls.pending.clone_ref(py);
        Ok(pending.call0(py)?.extract::<usize>(py)? == 0)
    }

    /// `_do_read__copied`: decrypted data goes to `data_received` in one bytes object.
    ///
    /// asyncio reads until the TLS object raises SSLWantReadError; building that exception
    /// (message formatting, OpenSSL's error queue) cost more than a small record's decryption,
    /// so the loop stops without the read that could only raise it.
    fn read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let read = this.tls.borrow(py).calls.read.clone_ref(py);
        let mut chunks: Vec<Bound<'_, PyBytes>> = Vec::new();
        let mut close_notify = false;
        loop {
            match read.call1(py, (MAX_READ,)) {
                Ok(chunk) => {
                    let chunk = chunk.into_bound(py).cast_into::<PyBytes>()?;
                    if chunk.as_bytes().is_empty() {
                        close_notify = true;
                        break;
                    }
                    chunks.push(chunk);
                    if this.nothing_to_read(py)? {
                        break;
                    }
                }
                Err(err) if is_again(py, &err) => break,
                Err(err) => return Err(err),
            }
        }
        let data = match chunks.len() {
            0 => None,
            1 => chunks.pop(),
            _ => {
                let total = chunks.iter().map(|c| c.as_bytes().len()).sum();
                Some(PyBytes::new_with(py, total, |out| {
                    let mut at = 0;
                    for chunk in &chunks {
                        let bytes = chunk.as_bytes();
                        out[at..at + bytes.len()].copy_from_slice(bytes);
                        at += bytes.len();
                    }
                    Ok(())
                })?)
            }
        };
        if let Some(data) = data {
            this.app_protocol(py)
                .call_method1(intern!(py, "data_received"), (data,))?;
        }
        if close_notify {
            Self::_call_eof_received(slf)?;
            Self::_start_shutdown(slf)?;
        }
        Ok(())
    }

    /// `_do_read__buffered`: decrypted data goes straight into the application's buffer.
    fn read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (read, methods) = {
            let tls = this.tls.borrow(py);
            (
                tls.calls.read.clone_ref(py),
                tls.app_buffer
                    .as_ref()
                    .map(|(a, b)| (a.clone_ref(py), b.clone_ref(py))),
            )
        };
        let Some((get_buffer, buffer_updated)) = methods else {
            return Ok(());
        };
        let pending = this._get_read_buffer_size(py)?;
        let buf = get_buffer.call1(py, (pending,))?.into_bound(py);
        let wants = buf.len()? as isize;
        let mut offset: isize = 0;
        let mut count: isize = 1;
        let outcome = (|| -> PyResult<()> {
            count = read.call1(py, (wants, &buf))?.extract(py)?;
            if count <= 0 {
                return Ok(());
            }
            offset = count;
            while offset < wants {
                let rest = buf.get_item(PySlice::new(py, offset, isize::MAX, 1))?;
                count = read.call1(py, (wants - offset, rest))?.extract(py)?;
                if count <= 0 {
                    return Ok(());
                }
                offset += count;
            }
            // The buffer is full: more may be waiting in the TLS object.
            let do_read = slf.getattr(intern!(py, "_do_read"))?;
            this.loop_(py)
                .call_method1(intern!(py, "call_soon"), (do_read,))?;
            Ok(())
        })();
        match outcome {
            Err(err) if !is_again(py, &err) => return Err(err),
            _ => {}
        }
        if offset > 0 {
            buffer_updated.call1(py, (offset,))?;
        }
        if count == 0 {
            Self::_call_eof_received(slf)?;
            Self::_start_shutdown(slf)?;
        }
        Ok(())
    }
}

#[pymethods]
impl TlsProtocol {
    /// `_write_appdata`.
    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !slf.get().accepts_app_data(slf.py())? {
            return Ok(());
        }
        for data in list_of_data.try_iter()? {
            slf.get().queue_app_data(&data?)?;
        }
        Self::write_backlog_now(slf)
    }

    /// Queues `data` without writing it: what asyncio's test hook
    /// `_SSLProtocolTransport._test__append_write_backlog` does to the backlog deque.
    fn _append_write_backlog(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.queue_app_data(data)
    }

    /// `_do_write`: as much of the backlog as the TLS object takes, then its records out.
    pub(super) fn _do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let write = this.tls.borrow(py).calls.write.clone_ref(py);
        loop {
            let Some(data) = this
                .tls
                .borrow(py)
                .write_backlog
                .front()
                .map(|o| o.clone_ref(py))
            else {
                break;
            };
            let data = data.into_bound(py);
            let count: i64 = match write.call1(py, (&data,)) {
                Ok(count) => count.extract(py)?,
                Err(err) if is_again(py, &err) => break,
                Err(err) => return Err(err),
            };
            let data_len = py_len(&data)?;
            if count < data_len {
                let rest = data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?;
                let mut tls = this.tls.borrow_mut(py);
                if let Some(front) = tls.write_backlog.front_mut() {
                    *front = rest.unbind();
                }
                tls.write_buffer_size -= count;
            } else {
                let mut tls = this.tls.borrow_mut(py);
                tls.write_backlog.pop_front();
                tls.write_buffer_size -= data_len;
            }
        }
        Self::_process_outgoing(slf)
    }

    /// `_process_outgoing`: the TLS object's records go down the stream unless it is paused.
    pub(super) fn _process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let drain = {
            let tls = this.tls.borrow(py);
            (!tls.ssl_writing_paused).then(|| tls.calls.drain.clone_ref(py))
        };
        if let Some(drain) = drain {
            let records = drain.call0(py)?.into_bound(py).cast_into::<PyBytes>()?;
            if !records.as_bytes().is_empty() {
                this.send_records(py, &records)?;
            }
        }
        Self::_control_app_writing(slf)
    }

    /// `_do_read`.
    pub(super) fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.state(py).reads_app_data() {
            return Ok(());
        }
        let result = (|| -> PyResult<()> {
            let (paused, buffered) = {
                let tls = this.tls.borrow(py);
                (tls.app_reading_paused, tls.app_buffer.is_some())
            };
            if !paused {
                if buffered {
                    Self::read_buffered(slf)?;
                } else {
                    Self::read_copied(slf)?;
                }
                if this.tls.borrow(py).write_backlog.is_empty() {
                    Self::_process_outgoing(slf)?;
                } else {
                    Self::_do_write(slf)?;
                }
            }
            Self::_control_ssl_reading(slf)
        })();
        Self::fatal_error_if(slf, result, is_exception, "Fatal error on SSL protocol")
    }

    /// `_call_eof_received`: the application learns of the peer's close_notify, once.
    pub(super) fn _call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let result = (|| -> PyResult<()> {
            {
                let mut tls = this.tls.borrow_mut(py);
                if tls.app_state != AppState::ConMade {
                    return Ok(());
                }
                tls.app_state = AppState::Eof;
            }
            let keep_open = this
                .app_protocol(py)
                .call_method0(intern!(py, "eof_received"))?;
            if keep_open.is_truthy()? {
                pyobjects::asyncio_logger(py)?.call_method1(
                    intern!(py, "warning"),
                    ("returning true from eof_received() has no effect when using ssl",),
                )?;
            }
            Ok(())
        })();
        // asyncio lets only SystemExit and KeyboardInterrupt through here.
        let not_exit = |py: Python<'_>, err: &PyErr| !is_exit(py, err);
        Self::fatal_error_if(slf, result, not_exit, "Error calling eof_received()")
    }
}

//! Flow control in both directions, as `sslproto` does it: the application is paused when the
//! backlog plus the TLS object's unsent records reach the write high-water mark; the stream is
//! paused when records not yet decrypted reach the read high-water mark; and the application's
//! own `pause_reading` holds decrypted data back.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::protocol::{Mark, TlsProtocol};
use super::states::SslState;
use crate::net::is_exit;
use crate::pyobjects;

/// asyncio's rule for both directions: a side is paused when `size` reaches the high mark and
/// resumed when it falls to the low one. Flips `paused` and returns `Some(true)` to pause,
/// `Some(false)` to resume, `None` when nothing changes.
fn crossing(size: f64, high: &Mark, low: &Mark, paused: &mut bool) -> Option<bool> {
    if size >= high.value && !*paused {
        *paused = true;
        Some(true)
    } else if size <= low.value && *paused {
        *paused = false;
        Some(false)
    } else {
        None
    }
}

impl TlsProtocol {
    fn pending(&self, py: Python<'_>, outgoing: bool) -> PyResult<i64> {
        let bio = {
            let tls = self.tls.borrow(py);
            if outgoing {
                tls.outgoing.clone_ref(py)
            } else {
                tls.incoming.clone_ref(py)
            }
        };
        bio.getattr(py, intern!(py, "pending"))?.extract(py)
    }

    /// Calls the application's `pause_writing` or `resume_writing`; a failure goes to the
    /// exception handler.
    fn tell_app(slf: &Bound<'_, Self>, method: &Bound<'_, pyo3::types::PyString>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let err = match this.app_protocol(py).call_method0(method) {
            Ok(_) => return Ok(()),
            Err(err) if is_exit(py, &err) => return Err(err),
            Err(err) => err,
        };
        let context = PyDict::new(py);
        context.set_item(
            intern!(py, "message"),
            format!("protocol.{method}() failed"),
        )?;
        context.set_item(intern!(py, "exception"), err.into_value(py))?;
        context.set_item(intern!(py, "transport"), this.app_transport(py))?;
        context.set_item(intern!(py, "protocol"), slf)?;
        this.loop_(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }
}

#[pymethods]
impl TlsProtocol {
    /// `_control_app_writing`.
    pub(super) fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = this._get_write_buffer_size(py)? as f64;
        let pause = {
            let mut tls = this.tls.borrow_mut(py);
            let tls = &mut *tls;
            crossing(
                size,
                &tls.outgoing_high,
                &tls.outgoing_low,
                &mut tls.app_writing_paused,
            )
        };
        match pause {
            Some(true) => Self::tell_app(slf, intern!(py, "pause_writing")),
            Some(false) => Self::tell_app(slf, intern!(py, "resume_writing")),
            None => Ok(()),
        }
    }

    /// `_get_write_buffer_size`: the backlog and the records not yet sent.
    pub(super) fn _get_write_buffer_size(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.pending(py, true)? + self.tls.borrow(py).write_buffer_size)
    }

    /// `_set_write_buffer_limits`.
    #[pyo3(signature = (high=None, low=None))]
    fn _set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (high, low) = Self::marks(py, high, low, "FLOW_CONTROL_HIGH_WATER_SSL_WRITE")?;
        let mut tls = self.tls.borrow_mut(py);
        tls.outgoing_high = high;
        tls.outgoing_low = low;
        Ok(())
    }

    /// `_pause_reading`: the application paused; decrypted data waits.
    fn _pause_reading(&self, py: Python<'_>) {
        self.tls.borrow_mut(py).app_reading_paused = true;
    }

    /// `_resume_reading`: what waited is delivered at the next turn.
    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut tls = slf.get().tls.borrow_mut(py);
            if !tls.app_reading_paused {
                return Ok(());
            }
            tls.app_reading_paused = false;
        }
        let resume = slf.getattr(intern!(py, "_resume_app_reading"))?;
        slf.get()
            .loop_(py)
            .call_method1(intern!(py, "call_soon"), (resume,))?;
        Ok(())
    }

    /// The callback `_resume_reading` schedules (a closure in `sslproto`).
    fn _resume_app_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py()) {
            SslState::Wrapped => Self::_do_read(slf),
            SslState::Flushing => Self::_do_flush(slf),
            SslState::Shutdown => Self::_do_shutdown(slf),
            _ => Ok(()),
        }
    }

    /// `_control_ssl_reading`.
    pub(super) fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = this._get_read_buffer_size(py)? as f64;
        let pause = {
            let mut tls = this.tls.borrow_mut(py);
            let tls = &mut *tls;
            crossing(
                size,
                &tls.incoming_high,
                &tls.incoming_low,
                &mut tls.ssl_reading_paused,
            )
        };
        let method = match pause {
            Some(true) => intern!(py, "pause_reading"),
            Some(false) => intern!(py, "resume_reading"),
            None => return Ok(()),
        };
        this.transport(py).call_method0(method)?;
        Ok(())
    }

    /// `_set_read_buffer_limits`.
    #[pyo3(signature = (high=None, low=None))]
    fn _set_read_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let (high, low) = Self::marks(py, high, low, "FLOW_CONTROL_HIGH_WATER_SSL_READ")?;
        let mut tls = self.tls.borrow_mut(py);
        tls.incoming_high = high;
        tls.incoming_low = low;
        Ok(())
    }

    /// `_get_read_buffer_size`: records received and not yet decrypted.
    pub(super) fn _get_read_buffer_size(&self, py: Python<'_>) -> PyResult<i64> {
        self.pending(py, false)
    }

    #[getter(_outgoing_high_water)]
    fn outgoing_high_water(&self, py: Python<'_>) -> Py<PyAny> {
        self.tls.borrow(py).outgoing_high.obj.clone_ref(py)
    }

    #[getter(_outgoing_low_water)]
    fn outgoing_low_water(&self, py: Python<'_>) -> Py<PyAny> {
        self.tls.borrow(py).outgoing_low.obj.clone_ref(py)
    }

    #[getter(_incoming_high_water)]
    fn incoming_high_water(&self, py: Python<'_>) -> Py<PyAny> {
        self.tls.borrow(py).incoming_high.obj.clone_ref(py)
    }

    #[getter(_incoming_low_water)]
    fn incoming_low_water(&self, py: Python<'_>) -> Py<PyAny> {
        self.tls.borrow(py).incoming_low.obj.clone_ref(py)
    }

    #[getter(_app_reading_paused)]
    fn app_reading_paused(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).app_reading_paused
    }

    #[getter(_app_writing_paused)]
    fn app_writing_paused(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).app_writing_paused
    }

    #[getter(_ssl_reading_paused)]
    fn ssl_reading_paused(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).ssl_reading_paused
    }

    #[getter(_ssl_writing_paused)]
    fn ssl_writing_paused(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).ssl_writing_paused
    }

    #[getter(_write_buffer_size)]
    fn write_buffer_size(&self, py: Python<'_>) -> i64 {
        self.tls.borrow(py).write_buffer_size
    }
}

impl TlsProtocol {
    /// `sslproto.add_flowcontrol_defaults(high, low, constants.<kb_constant>)`.
    pub(super) fn marks(
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
        kb_constant: &str,
    ) -> PyResult<(Mark, Mark)> {
        let kb = pyobjects::asyncio_constants(py)?.getattr(kb_constant)?;
        let (hi, lo): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            pyobjects::sslproto_add_flowcontrol_defaults(py)?
                .call1((high, low, kb))?
                .extract()?;
        Ok((Mark::new(&hi)?, Mark::new(&lo)?))
    }
}

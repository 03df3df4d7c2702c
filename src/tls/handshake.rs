//! The ends of a TLS session: the handshake, with its timeout, and the shutdown (flushing, then
//! close_notify), with its own; and the abort. `sslproto`'s "Handshake flow" and "Shutdown flow".

use pyo3::exceptions::{PyConnectionAbortedError, PyTimeoutError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use super::protocol::{is_again, is_exception, is_ssl_error, TlsProtocol};
use super::states::{AppState, SslState};
use crate::pyobjects;

#[pymethods]
impl TlsProtocol {
    /// `_start_handshake`.
    pub(super) fn _start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let loop_ = this.loop_(py);
        let start_time = if this.debug(py)? {
            pyobjects::asyncio_logger(py)?
                .call_method1(intern!(py, "debug"), ("%r starts SSL handshake", slf))?;
            Some(loop_.call_method0(intern!(py, "time"))?.extract()?)
        } else {
            None
        };
        this.tls.borrow_mut(py).handshake_start_time = start_time;
        this.set_state(py, SslState::DoHandshake)?;
        let timeout = this.tls.borrow(py).handshake_timeout.clone_ref(py);
        let handle = loop_.call_method1(
            intern!(py, "call_later"),
            (
                timeout,
                slf.getattr(intern!(py, "_check_handshake_timeout"))?,
            ),
        )?;
        this.tls.borrow_mut(py).handshake_timeout_handle = Some(handle.unbind());
        Self::_do_handshake(slf)
    }

    /// `_check_handshake_timeout`.
    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().state(py) != SslState::DoHandshake {
            return Ok(());
        }
        let timeout = slf.get().tls.borrow(py).handshake_timeout.clone_ref(py);
        let message = format!(
            "SSL handshake is taking longer than {} seconds: aborting the connection",
            timeout.bind(py).str()?
        );
        let exc = PyConnectionAbortedError::new_err(message).into_value(py);
        Self::_fatal_error(slf, exc.bind(py), "Fatal error on transport")
    }

    /// `_do_handshake`.
    pub(super) fn _do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let do_handshake = slf.get().tls.borrow(py).calls.do_handshake.clone_ref(py);
        match do_handshake.call0(py) {
            Ok(_) => Self::_on_handshake_complete(slf, None),
            Err(err) if is_again(py, &err) => Self::_process_outgoing(slf),
            Err(err) if is_ssl_error(py, &err) => Self::_on_handshake_complete(
                slf,
                Some(err.into_value(py).into_bound(py).into_any()),
            ),
            Err(err) => Err(err),
        }
    }

    /// `_on_handshake_complete`: `handshake_exc` is None, an exception, or an exception class.
    #[pyo3(signature = (handshake_exc))]
    pub(super) fn _on_handshake_complete(
        slf: &Bound<'_, Self>,
        handshake_exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.tls.borrow_mut(py).handshake_timeout_handle.take();
        Self::cancel_handle(py, handle)?;
        let sslobj = this.tls.borrow(py).sslobj.clone_ref(py);
        let sslobj = sslobj.bind(py);
        let peercert = match handshake_exc {
            None => this
                .set_state(py, SslState::Wrapped)
                .and_then(|()| sslobj.call_method0(intern!(py, "getpeercert"))),
            // `raise handshake_exc`: a class is instantiated.
            Some(exc) if exc.is_instance_of::<PyType>() => Err(PyErr::from_value(exc.call0()?)),
            Some(exc) => Err(PyErr::from_value(exc)),
        };
        let peercert = match peercert {
            Ok(peercert) => peercert,
            Err(err) if is_exception(py, &err) => {
                this.set_state(py, SslState::Unwrapped)?;
                let message = if err.is_instance(py, pyobjects::ssl_certificate_error(py)?.as_any())
                {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                let exc = err.into_value(py).into_bound(py).into_any();
                Self::_fatal_error(slf, &exc, message)?;
                return this._wakeup_waiter(py, Some(exc));
            }
            Err(err) => return Err(err),
        };
        if this.debug(py)? {
            let start: f64 = this.tls.borrow(py).handshake_start_time.unwrap_or(f64::NAN);
            let now: f64 = this
                .loop_(py)
                .call_method0(intern!(py, "time"))?
                .extract()?;
            pyobjects::asyncio_logger(py)?.call_method1(
                intern!(py, "debug"),
                ("%r: SSL handshake took %.1f ms", slf, (now - start) * 1e3),
            )?;
        }
        let info = PyDict::new(py);
        info.set_item(intern!(py, "peercert"), peercert)?;
        info.set_item(
            intern!(py, "cipher"),
            sslobj.call_method0(intern!(py, "cipher"))?,
        )?;
        info.set_item(
            intern!(py, "compression"),
            sslobj.call_method0(intern!(py, "compression"))?,
        )?;
        info.set_item(intern!(py, "ssl_object"), sslobj)?;
        this.tls
            .borrow(py)
            .extra
            .bind(py)
            .update(info.as_mapping())?;
        let call_connection_made = {
            let mut tls = this.tls.borrow_mut(py);
            let first = tls.app_state == AppState::Init;
            if first {
                tls.app_state = AppState::ConMade;
            }
            first
        };
        if call_connection_made {
            let app_transport = Self::_get_app_transport(slf)?;
            this.app_protocol(py)
                .call_method1(intern!(py, "connection_made"), (app_transport,))?;
        }
        this._wakeup_waiter(py, None)?;
        Self::_do_read(slf)
    }

    /// `_start_shutdown`: the application closed its transport.
    pub(super) fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let state = this.state(py);
        if matches!(
            state,
            SslState::Flushing | SslState::Shutdown | SslState::Unwrapped
        ) {
            return Ok(());
        }
        this.mark_app_transport_closed(py)?;
        if state == SslState::DoHandshake {
            return this._abort(py, None);
        }
        this.set_state(py, SslState::Flushing)?;
        Self::start_shutdown_timeout(slf)?;
        Self::_do_flush(slf)
    }

    /// Arms `_check_shutdown_timeout` after `ssl_shutdown_timeout`.
    fn start_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let timeout = this.tls.borrow(py).shutdown_timeout.clone_ref(py);
        let handle = this.loop_(py).call_method1(
            intern!(py, "call_later"),
            (
                timeout,
                slf.getattr(intern!(py, "_check_shutdown_timeout"))?,
            ),
        )?;
        this.tls.borrow_mut(py).shutdown_timeout_handle = Some(handle.unbind());
        Ok(())
    }

    /// `_check_shutdown_timeout`.
    fn _check_shutdown_timeout(&self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.state(py), SslState::Flushing | SslState::Shutdown) {
            let exc = PyTimeoutError::new_err("SSL shutdown timed out").into_value(py);
            self.transport(py)
                .call_method1(intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    /// `_do_flush`: what is left to read is read, then close_notify goes out.
    pub(super) fn _do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::_do_read(slf)?;
        slf.get().set_state(slf.py(), SslState::Shutdown)?;
        Self::_do_shutdown(slf)
    }

    /// `_do_shutdown`.
    pub(super) fn _do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (eof_received, sslobj) = {
            let tls = slf.get().tls.borrow(py);
            (tls.eof_received, tls.sslobj.clone_ref(py))
        };
        let unwrapped = if eof_received {
            Ok(())
        } else {
            sslobj.call_method0(py, intern!(py, "unwrap")).map(drop)
        };
        match unwrapped {
            Err(err) if is_again(py, &err) => Self::_process_outgoing(slf),
            Err(err) if is_ssl_error(py, &err) => {
                Self::_on_shutdown_complete(slf, Some(err.into_value(py).into_bound(py).into_any()))
            }
            Err(err) => Err(err),
            Ok(()) => {
                Self::_process_outgoing(slf)?;
                Self::_call_eof_received(slf)?;
                Self::_on_shutdown_complete(slf, None)
            }
        }
    }

    /// `_on_shutdown_complete`. After a clean shutdown the timeout stays armed (or is armed, when
    /// the peer began the shutdown) until `connection_lost`: the stream's `close` flushes its
    /// buffer first, which a peer that does not read delays forever (asyncio 3.14; before, the
    /// timeout was cancelled here and such a connection never ended).
    fn _on_shutdown_complete(
        slf: &Bound<'_, Self>,
        shutdown_exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match shutdown_exc {
            Some(exc) if exc.is_truthy()? => {
                let handle = this.tls.borrow_mut(py).shutdown_timeout_handle.take();
                Self::cancel_handle(py, handle)?;
                Self::_fatal_error(slf, &exc, "Fatal error on transport")
            }
            _ => {
                if this.tls.borrow(py).shutdown_timeout_handle.is_none() {
                    Self::start_shutdown_timeout(slf)?;
                }
                let close = this.transport(py).getattr(intern!(py, "close"))?;
                this.loop_(py)
                    .call_method1(intern!(py, "call_soon"), (close,))?;
                Ok(())
            }
        }
    }

    /// `_abort`: the stream is closed at once, with `exc` if given (3.12's `_abort(exc)`;
    /// 3.11's takes none and aborts).
    #[pyo3(signature = (exc=None))]
    pub(super) fn _abort(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        self.set_state(py, SslState::Unwrapped)?;
        let Some(transport) = self
            .tls
            .borrow(py)
            .transport
            .as_ref()
            .map(|o| o.clone_ref(py))
        else {
            return Ok(());
        };
        match exc {
            None => transport.call_method0(py, intern!(py, "abort"))?,
            Some(exc) => transport.call_method1(py, intern!(py, "_force_close"), (exc,))?,
        };
        Ok(())
    }
}

//! `TlsProtocol`: CPython 3.11's `asyncio.sslproto.SSLProtocol`, natively.
//!
//! It sits between a stream transport and the application's protocol. TLS itself is Python's
//! `ssl` module: an `ssl.SSLObject` over two `ssl.MemoryBIO`s, made by the user's `SSLContext`,
//! so every context setting applies unchanged. What is native is everything around it: the state
//! machine, feeding records in and taking them out, the application's write backlog, and both
//! directions of flow control. The state lives in Rust fields; the attributes that asyncio's
//! `_SSLProtocolTransport` (the application's transport) reads are getters.
//!
//! This file holds the state, its construction and collection, and what the application's side
//! uses once per connection; `stream_events.rs` holds what the stream transport calls,
//! `handshake.rs`, `records.rs` and `flow.rs` the rest. Each method carries the name of the
//! `sslproto` method it mirrors, and takes the same steps in the same order, with the same
//! exceptions caught and the same messages.

use std::collections::VecDeque;

use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::states::{AppState, SslState};
use crate::gil::GilCell;
use crate::net::{SocketStream, MAX_READ};
use crate::pyobjects;

/// A flow-control mark: the object the user gave (returned as it is by the getters) and its value
/// for comparisons with buffer sizes.
pub(super) struct Mark {
    pub obj: Py<PyAny>,
    pub value: f64,
}

impl Mark {
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Mark {
            obj: obj.clone().unbind(),
            value: obj.extract()?,
        })
    }
}

/// The methods that run per record, bound once instead of looked up by name per call.
///
/// The TLS object's are those of the `SSLObject`'s own `_ssl._SSLSocket` when the context makes
/// plain `ssl.SSLObject`s (whose `read`, `write`, `pending` and `do_handshake` only forward to
/// it), else the object's own, so that a custom `sslobject_class` is honoured.
pub(super) struct RecordCalls {
    pub read: Py<PyAny>,
    pub write: Py<PyAny>,
    pub pending: Py<PyAny>,
    pub do_handshake: Py<PyAny>,
    /// `incoming.write`: records in.
    pub feed: Py<PyAny>,
    /// `outgoing.read`: records out.
    pub drain: Py<PyAny>,
}

impl RecordCalls {
    fn new(
        sslobj: &Bound<'_, PyAny>,
        incoming: &Bound<'_, PyAny>,
        outgoing: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let py = sslobj.py();
        let ssl_io = if sslobj.get_type().is(&pyobjects::ssl_object_type(py)?) {
            sslobj.getattr(intern!(py, "_sslobj"))?
        } else {
            sslobj.clone()
        };
        let method = |obj: &Bound<'_, PyAny>, name| obj.getattr(name).map(Bound::unbind);
        Ok(RecordCalls {
            read: method(&ssl_io, intern!(py, "read"))?,
            write: method(&ssl_io, intern!(py, "write"))?,
            pending: method(&ssl_io, intern!(py, "pending"))?,
            do_handshake: method(&ssl_io, intern!(py, "do_handshake"))?,
            feed: method(incoming, intern!(py, "write"))?,
            drain: method(outgoing, intern!(py, "read"))?,
        })
    }

    fn all(&self) -> [&Py<PyAny>; 6] {
        [
            &self.read,
            &self.write,
            &self.pending,
            &self.do_handshake,
            &self.feed,
            &self.drain,
        ]
    }
}

/// One `SSLProtocol`'s state.
pub(super) struct Tls {
    pub loop_: Option<Py<PyAny>>,
    pub sslcontext: Py<PyAny>,
    pub server_side: bool,
    pub server_hostname: Option<Py<PyAny>>,
    pub extra: Py<PyDict>,
    pub incoming: Py<PyAny>,
    pub outgoing: Py<PyAny>,
    pub sslobj: Py<PyAny>,
    pub calls: RecordCalls,
    pub handshake_timeout: Py<PyAny>,
    pub shutdown_timeout: Py<PyAny>,
    /// `get_buffer()`'s memory and its view, made on first use: the native stream transport
    /// feeds records from its own read buffer instead.
    pub ssl_buffer: Option<(Py<PyByteArray>, Py<PyAny>)>,

    pub state: SslState,
    pub app_state: AppState,
    pub waiter: Option<Py<PyAny>>,
    pub app_protocol: Option<Py<PyAny>>,
    /// The application protocol's `get_buffer` and `buffer_updated`, if it is a BufferedProtocol.
    pub app_buffer: Option<(Py<PyAny>, Py<PyAny>)>,
    pub app_transport: Option<Py<PyAny>>,
    pub app_transport_created: bool,
    pub transport: Option<Py<PyAny>>,
    /// The native half of the transport, when it is ferroloop's own stream transport: records are
    /// then written to it without going through Python.
    pub stream: Option<Py<SocketStream>>,

    /// Application data not yet taken by the TLS object, and the sum of its `len()`s.
    pub write_backlog: VecDeque<Py<PyAny>>,
    pub write_buffer_size: i64,
    pub conn_lost: usize,
    pub eof_received: bool,

    pub ssl_writing_paused: bool,
    pub ssl_reading_paused: bool,
    pub app_reading_paused: bool,
    pub app_writing_paused: bool,
    pub incoming_high: Mark,
    pub incoming_low: Mark,
    pub outgoing_high: Mark,
    pub outgoing_low: Mark,

    pub handshake_start_time: Option<f64>,
    pub handshake_timeout_handle: Option<Py<PyAny>>,
    pub shutdown_timeout_handle: Option<Py<PyAny>>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct TlsProtocol {
    pub(super) tls: GilCell<Tls>,
}

fn bound<'py>(py: Python<'py>, obj: &Option<Py<PyAny>>) -> Bound<'py, PyAny> {
    match obj {
        Some(obj) => obj.bind(py).clone(),
        None => py.None().into_bound(py),
    }
}

/// asyncio's `SSLAgainErrors`: the TLS object needs more records (or hit EOF mid-record).
pub(super) fn is_again(py: Python<'_>, err: &PyErr) -> bool {
    pyobjects::ssl_want_read_error(py).is_ok_and(|t| err.is_instance(py, &t))
        || pyobjects::ssl_syscall_error(py).is_ok_and(|t| err.is_instance(py, &t))
}

pub(super) fn is_ssl_error(py: Python<'_>, err: &PyErr) -> bool {
    pyobjects::ssl_error(py).is_ok_and(|t| err.is_instance(py, &t))
}

/// asyncio's `except Exception:`.
pub(super) fn is_exception(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyException>(py)
}

/// A timeout argument: the default constant if None, else a positive number.
fn timeout_arg<'py>(
    py: Python<'py>,
    value: Option<Bound<'py, PyAny>>,
    name: &str,
    default: &Bound<'py, pyo3::types::PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    match value {
        None => pyobjects::asyncio_constants(py)?.getattr(default),
        Some(value) if value.le(0)? => Err(PyValueError::new_err(format!(
            "{name} should be a positive number, got {value}"
        ))),
        Some(value) => Ok(value),
    }
}

impl TlsProtocol {
    pub(super) fn loop_<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        bound(py, &self.tls.borrow(py).loop_)
    }

    pub(super) fn debug(&self, py: Python<'_>) -> PyResult<bool> {
        self.loop_(py)
            .call_method0(intern!(py, "get_debug"))?
            .is_truthy()
    }

    /// `self._transport`, None included (asyncio calls its methods regardless and lets the
    /// AttributeError speak).
    pub(super) fn transport<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        bound(py, &self.tls.borrow(py).transport)
    }

    pub(super) fn app_protocol<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        bound(py, &self.tls.borrow(py).app_protocol)
    }

    pub(super) fn state(&self, py: Python<'_>) -> SslState {
        self.tls.borrow(py).state
    }

    /// `_set_state`.
    pub(super) fn set_state(&self, py: Python<'_>, next: SslState) -> PyResult<()> {
        let mut tls = self.tls.borrow_mut(py);
        if !tls.state.may_become(next) {
            return Err(PyRuntimeError::new_err(format!(
                "cannot switch state from SSLProtocolState.{} to SSLProtocolState.{}",
                tls.state.name(),
                next.name()
            )));
        }
        tls.state = next;
        Ok(())
    }

    /// asyncio's `except <caught> as ex: self._fatal_error(ex, message)` around `result`.
    pub(super) fn fatal_error_if(
        slf: &Bound<'_, Self>,
        result: PyResult<()>,
        caught: fn(Python<'_>, &PyErr) -> bool,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        match result {
            Err(err) if caught(py, &err) => {
                let exc = err.into_value(py).into_bound(py).into_any();
                Self::_fatal_error(slf, &exc, message)
            }
            other => other,
        }
    }

    /// `self._app_transport._closed = True`, if there is one.
    pub(super) fn mark_app_transport_closed(&self, py: Python<'_>) -> PyResult<()> {
        match self.app_transport(py) {
            Some(transport) => transport.setattr(py, intern!(py, "_closed"), true),
            None => Ok(()),
        }
    }

    /// Cancels and forgets a timeout handle.
    pub(super) fn cancel_handle(py: Python<'_>, handle: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(handle) = handle {
            handle.call_method0(py, intern!(py, "cancel"))?;
        }
        Ok(())
    }
}

#[pymethods]
impl TlsProtocol {
    /// asyncio's read size for the TLS object.
    #[classattr]
    fn max_size() -> usize {
        MAX_READ
    }

    #[new]
    #[pyo3(signature = (
        loop_, app_protocol, sslcontext, waiter, server_side=false, server_hostname=None,
        call_connection_made=true, ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        loop_: &Bound<'_, PyAny>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: &Bound<'_, PyAny>,
        waiter: Option<Bound<'_, PyAny>>,
        server_side: bool,
        server_hostname: Option<Bound<'_, PyAny>>,
        call_connection_made: bool,
        ssl_handshake_timeout: Option<Bound<'_, PyAny>>,
        ssl_shutdown_timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let handshake_timeout = timeout_arg(
            py,
            ssl_handshake_timeout,
            "ssl_handshake_timeout",
            intern!(py, "SSL_HANDSHAKE_TIMEOUT"),
        )?;
        let shutdown_timeout = timeout_arg(
            py,
            ssl_shutdown_timeout,
            "ssl_shutdown_timeout",
            intern!(py, "SSL_SHUTDOWN_TIMEOUT"),
        )?;
        let sslcontext = if sslcontext.is_truthy()? {
            sslcontext.clone()
        } else {
            pyobjects::sslproto_create_transport_context(py)?
                .call1((server_side, server_hostname.as_ref()))?
        };
        let server_hostname = match server_hostname {
            Some(name) if name.is_truthy()? && !server_side => Some(name.unbind()),
            _ => None,
        };
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "sslcontext"), &sslcontext)?;
        let incoming = pyobjects::ssl_memory_bio(py)?.call0()?;
        let outgoing = pyobjects::ssl_memory_bio(py)?.call0()?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "server_side"), server_side)?;
        kwargs.set_item(intern!(py, "server_hostname"), server_hostname.as_ref())?;
        let sslobj = sslcontext.call_method(
            intern!(py, "wrap_bio"),
            (&incoming, &outgoing),
            Some(&kwargs),
        )?;
        let calls = RecordCalls::new(&sslobj, &incoming, &outgoing)?;
        let (incoming_high, incoming_low) =
            Self::marks(py, None, None, "FLOW_CONTROL_HIGH_WATER_SSL_READ")?;
        let (outgoing_high, outgoing_low) =
            Self::marks(py, None, None, "FLOW_CONTROL_HIGH_WATER_SSL_WRITE")?;
        let app_buffer = Self::app_buffer_methods(app_protocol)?;
        Ok(TlsProtocol {
            tls: GilCell::new(Tls {
                loop_: Some(loop_.clone().unbind()),
                sslcontext: sslcontext.unbind(),
                server_side,
                server_hostname,
                extra: extra.unbind(),
                incoming: incoming.unbind(),
                outgoing: outgoing.unbind(),
                sslobj: sslobj.unbind(),
                calls,
                handshake_timeout: handshake_timeout.unbind(),
                shutdown_timeout: shutdown_timeout.unbind(),
                ssl_buffer: None,
                state: SslState::Unwrapped,
                app_state: if call_connection_made {
                    AppState::Init
                } else {
                    AppState::ConMade
                },
                waiter: waiter.map(Bound::unbind),
                app_protocol: Some(app_protocol.clone().unbind()),
                app_buffer,
                app_transport: None,
                app_transport_created: false,
                transport: None,
                stream: None,
                write_backlog: VecDeque::new(),
                write_buffer_size: 0,
                conn_lost: 0,
                eof_received: false,
                ssl_writing_paused: false,
                ssl_reading_paused: false,
                app_reading_paused: false,
                app_writing_paused: false,
                incoming_high,
                incoming_low,
                outgoing_high,
                outgoing_low,
                handshake_start_time: None,
                handshake_timeout_handle: None,
                shutdown_timeout_handle: None,
            }),
        })
    }

    /// `_set_app_protocol`.
    fn _set_app_protocol(&self, app_protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let app_buffer = Self::app_buffer_methods(app_protocol)?;
        let mut tls = self.tls.borrow_mut(app_protocol.py());
        tls.app_protocol = Some(app_protocol.clone().unbind());
        tls.app_buffer = app_buffer;
        Ok(())
    }

    /// `_wakeup_waiter`.
    #[pyo3(signature = (exc=None))]
    pub(super) fn _wakeup_waiter(
        &self,
        py: Python<'_>,
        exc: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(waiter) = self.tls.borrow_mut(py).waiter.take() else {
            return Ok(());
        };
        let waiter = waiter.bind(py);
        if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            match exc {
                Some(exc) => waiter.call_method1(intern!(py, "set_exception"), (exc,))?,
                None => waiter.call_method1(intern!(py, "set_result"), (py.None(),))?,
            };
        }
        Ok(())
    }

    /// `_get_app_transport`: made once, of the Python class's `_app_transport_class`.
    pub(super) fn _get_app_transport(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(transport) = &this.tls.borrow(py).app_transport {
            return Ok(transport.clone_ref(py));
        }
        if this.tls.borrow(py).app_transport_created {
            return Err(PyRuntimeError::new_err(
                "Creating _SSLProtocolTransport twice",
            ));
        }
        let transport = slf
            .getattr(intern!(py, "_app_transport_class"))?
            .call1((this.loop_(py), slf))?
            .unbind();
        let mut tls = this.tls.borrow_mut(py);
        tls.app_transport = Some(transport.clone_ref(py));
        tls.app_transport_created = true;
        Ok(transport)
    }

    /// `_get_extra_info`.
    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (extra, transport) = {
            let tls = self.tls.borrow(py);
            (
                tls.extra.clone_ref(py),
                tls.transport.as_ref().map(|o| o.clone_ref(py)),
            )
        };
        if let Some(value) = extra.bind(py).get_item(name)? {
            return Ok(value.unbind());
        }
        match transport {
            Some(transport) => {
                transport.call_method1(py, intern!(py, "get_extra_info"), (name, default))
            }
            None => Ok(default.map_or_else(|| py.None(), Bound::unbind)),
        }
    }

    /// `_is_transport_closing` (3.12.8+ and 3.13.1+, where `_SSLProtocolTransport.is_closing`
    /// also asks whether the stream under it is closing).
    fn _is_transport_closing(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let transport = self
            .tls
            .borrow(py)
            .transport
            .as_ref()
            .map(|t| t.clone_ref(py));
        match transport {
            Some(transport) => transport.call_method0(py, intern!(py, "is_closing")),
            None => Ok(false.into_pyobject(py)?.to_owned().into_any().unbind()),
        }
    }

    /// `_fatal_error`: closes the stream with `exc` and reports it as asyncio does.
    #[pyo3(signature = (exc, message="Fatal error on transport"))]
    pub(super) fn _fatal_error(
        slf: &Bound<'_, Self>,
        exc: &Bound<'_, PyAny>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let transport = this.transport(py);
        if transport.is_truthy()? {
            transport.call_method1(intern!(py, "_force_close"), (exc,))?;
        }
        if exc.is_instance_of::<PyOSError>() {
            if this.debug(py)? {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "exc_info"), exc)?;
                pyobjects::asyncio_logger(py)?.call_method(
                    intern!(py, "debug"),
                    ("%r: %s", slf, message),
                    Some(&kwargs),
                )?;
            }
        } else if !exc.is_instance(pyobjects::cancelled_error(py)?.as_any())? {
            let context = PyDict::new(py);
            context.set_item(intern!(py, "message"), message)?;
            context.set_item(intern!(py, "exception"), exc)?;
            context.set_item(intern!(py, "transport"), this.transport(py))?;
            context.set_item(intern!(py, "protocol"), slf)?;
            this.loop_(py)
                .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(tls) = self.tls.try_borrow_for_gc() else {
            return Ok(());
        };
        for obj in [
            &tls.sslcontext,
            tls.extra.as_any(),
            &tls.incoming,
            &tls.outgoing,
            &tls.sslobj,
            &tls.handshake_timeout,
            &tls.shutdown_timeout,
            &tls.incoming_high.obj,
            &tls.incoming_low.obj,
            &tls.outgoing_high.obj,
            &tls.outgoing_low.obj,
        ] {
            visit.call(obj)?;
        }
        for obj in tls.calls.all() {
            visit.call(obj)?;
        }
        for obj in [
            &tls.loop_,
            &tls.server_hostname,
            &tls.waiter,
            &tls.app_protocol,
            &tls.app_transport,
            &tls.transport,
            &tls.handshake_timeout_handle,
            &tls.shutdown_timeout_handle,
        ]
        .into_iter()
        .flatten()
        {
            visit.call(obj)?;
        }
        if let Some(stream) = &tls.stream {
            visit.call(stream)?;
        }
        if let Some((get_buffer, buffer_updated)) = &tls.app_buffer {
            visit.call(get_buffer)?;
            visit.call(buffer_updated)?;
        }
        if let Some((buffer, view)) = &tls.ssl_buffer {
            visit.call(buffer)?;
            visit.call(view)?;
        }
        for data in &tls.write_backlog {
            visit.call(data)?;
        }
        Ok(())
    }

    /// Breaks the cycles through the loop, the transports, the application and the handles.
    fn __clear__(&self, py: Python<'_>) {
        let mut tls = self.tls.borrow_mut(py);
        tls.loop_ = None;
        tls.waiter = None;
        tls.app_protocol = None;
        tls.app_buffer = None;
        tls.app_transport = None;
        tls.transport = None;
        tls.stream = None;
        tls.handshake_timeout_handle = None;
        tls.shutdown_timeout_handle = None;
        tls.write_backlog.clear();
    }
}

impl TlsProtocol {
    /// The application protocol's buffer methods, if it is an `asyncio.BufferedProtocol`.
    fn app_buffer_methods(
        app_protocol: &Bound<'_, PyAny>,
    ) -> PyResult<Option<(Py<PyAny>, Py<PyAny>)>> {
        let py = app_protocol.py();
        if !app_protocol.hasattr(intern!(py, "get_buffer"))?
            || !app_protocol.is_instance(pyobjects::buffered_protocol_type(py)?.as_any())?
        {
            return Ok(None);
        }
        Ok(Some((
            app_protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
            app_protocol
                .getattr(intern!(py, "buffer_updated"))?
                .unbind(),
        )))
    }
}

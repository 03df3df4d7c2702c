//! The private attributes of `sslproto.SSLProtocol` that asyncio's code, tests and debuggers
//! read, as read-only properties over the native state.

use pyo3::prelude::*;

use super::protocol::TlsProtocol;
use crate::pyobjects;

macro_rules! object_getters {
    ($($name:literal => $getter:ident: $field:ident),* $(,)?) => {
        #[pymethods]
        impl TlsProtocol {
            $(
                #[getter($name)]
                fn $getter(&self, py: Python<'_>) -> Py<PyAny> {
                    self.tls.borrow(py).$field.clone_ref(py).into_any()
                }
            )*
        }
    };
}

macro_rules! optional_getters {
    ($($name:literal => $getter:ident: $field:ident),* $(,)?) => {
        #[pymethods]
        impl TlsProtocol {
            $(
                #[getter($name)]
                pub(super) fn $getter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                    self.tls.borrow(py).$field.as_ref().map(|o| o.clone_ref(py))
                }
            )*
        }
    };
}

object_getters! {
    "_sslcontext" => sslcontext: sslcontext,
    "_extra" => extra: extra,
    "_incoming" => incoming: incoming,
    "_outgoing" => outgoing: outgoing,
    "_sslobj" => sslobj: sslobj,
    "_ssl_handshake_timeout" => ssl_handshake_timeout: handshake_timeout,
    "_ssl_shutdown_timeout" => ssl_shutdown_timeout: shutdown_timeout,
}

optional_getters! {
    "_loop" => loop_attr: loop_,
    "_server_hostname" => server_hostname: server_hostname,
    "_waiter" => waiter: waiter,
    "_app_protocol" => app_protocol_attr: app_protocol,
    "_app_transport" => app_transport: app_transport,
    "_transport" => transport_attr: transport,
    "_handshake_timeout_handle" => handshake_timeout_handle: handshake_timeout_handle,
    "_shutdown_timeout_handle" => shutdown_timeout_handle: shutdown_timeout_handle,
}

#[pymethods]
impl TlsProtocol {
    #[getter(_server_side)]
    fn server_side(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).server_side
    }

    #[getter(_conn_lost)]
    fn conn_lost(&self, py: Python<'_>) -> usize {
        self.tls.borrow(py).conn_lost
    }

    #[getter(_eof_received)]
    fn eof_received_attr(&self, py: Python<'_>) -> bool {
        self.tls.borrow(py).eof_received
    }

    #[getter(_handshake_start_time)]
    fn handshake_start_time(&self, py: Python<'_>) -> Option<f64> {
        self.tls.borrow(py).handshake_start_time
    }

    /// `_state`, as the member of `sslproto.SSLProtocolState`.
    #[getter(_state)]
    fn state_attr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let name = self.state(py).name();
        pyobjects::sslproto_state(py)?.getattr(name)
    }

    /// `_app_state`, as the member of `sslproto.AppProtocolState`.
    #[getter(_app_state)]
    fn app_state_attr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let name = self.tls.borrow(py).app_state.name();
        pyobjects::sslproto_app_state(py)?.getattr(name)
    }
}

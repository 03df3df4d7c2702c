//! The application transport's `write`. The transport is asyncio's own
//! `sslproto._SSLProtocolTransport` (subclassed in `ferroloop._tls`), whose methods forward to
//! the protocol; `write` is the one that runs per message, so it is native: asyncio's checks,
//! then the protocol's `_write_appdata` without a Python frame or a tuple in between.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyTuple, PyType};

use super::protocol::TlsProtocol;
use crate::method_descriptor::{cfunction_descriptor, meth_o_entry};

/// `_SSLProtocolTransport.write`.
fn write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        return Err(PyTypeError::new_err(format!(
            "data: expecting a bytes-like instance, got {}",
            data.get_type().name()?
        )));
    }
    if !data.is_truthy()? {
        return Ok(());
    }
    let protocol = transport.getattr(intern!(py, "_ssl_protocol"))?;
    match protocol.cast::<TlsProtocol>() {
        Ok(protocol) => TlsProtocol::write_app_data(protocol, data),
        // Not ours (or None after close): asyncio's call, and its error.
        Err(_) => {
            let one = PyTuple::new(py, [data])?;
            protocol.call_method1(intern!(py, "_write_appdata"), (one,))?;
            Ok(())
        }
    }
}

meth_o_entry!(write_o, "TLS transport write", write);

/// The native `write`, as a method descriptor of `cls` (an `_SSLProtocolTransport` subclass).
#[pyfunction]
pub fn tls_write_method(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    cfunction_descriptor(
        cls,
        c"write",
        write_o,
        ffi::METH_O,
        c"Write data to the transport: encrypted at once, sent as the stream allows.",
    )
}

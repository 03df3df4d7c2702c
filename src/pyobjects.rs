//! Python objects the native code looks up once: stdlib helpers used on cold paths (reprs, error
//! reports, debug mode) so that their output is exactly the stdlib's.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

fn import_attr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok(py.import(module)?.getattr(name)?.unbind()))
        .map(|obj| obj.bind(py).clone())
}

macro_rules! cached_attr {
    ($fn_name:ident, $module:literal, $name:literal) => {
        pub fn $fn_name(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            import_attr(py, &CELL, $module, $name)
        }
    };
}

cached_attr!(
    format_callback_source,
    "asyncio.format_helpers",
    "_format_callback_source"
);
cached_attr!(extract_stack, "asyncio.format_helpers", "extract_stack");
cached_attr!(getframe, "sys", "_getframe");
cached_attr!(coroutines_iscoroutine, "asyncio.coroutines", "iscoroutine");
/// What asyncio's `_check_callback` asks: `asyncio.coroutines._iscoroutinefunction` from Python 3.14,
/// which deprecates the public name (calling it warns), and `iscoroutinefunction` before.
pub fn coroutines_iscoroutinefunction(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let coroutines = py.import("asyncio.coroutines")?;
        coroutines
            .getattr("_iscoroutinefunction")
            .or_else(|_| coroutines.getattr("iscoroutinefunction"))
            .map(Bound::unbind)
    })
    .map(|obj| obj.bind(py).clone())
}
cached_attr!(thread_get_ident, "threading", "get_ident");
cached_attr!(asyncio_set_nodelay, "asyncio.base_events", "_set_nodelay");
cached_attr!(socket_getdefaulttimeout, "socket", "getdefaulttimeout");

cached_attr!(asyncio_logger, "asyncio.log", "logger");
cached_attr!(selector_key, "selectors", "SelectorKey");

fn cached_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    Ok(import_attr(py, cell, module, name)?.cast_into::<PyType>()?)
}

macro_rules! cached_type {
    ($fn_name:ident, $module:literal, $name:literal) => {
        pub fn $fn_name(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            cached_type(py, &CELL, $module, $name)
        }
    };
}

cached_type!(task_type, "asyncio", "Task");
// Whose `write` and `sendto` check data first: asked for the error they raise (`byte_view`).
cached_type!(
    selector_socket_transport,
    "asyncio.selector_events",
    "_SelectorSocketTransport"
);
cached_type!(
    selector_datagram_transport,
    "asyncio.selector_events",
    "_SelectorDatagramTransport"
);
cached_type!(future_type, "asyncio", "Future");
cached_type!(
    buffered_protocol_type,
    "asyncio.protocols",
    "BufferedProtocol"
);
cached_attr!(base_events_module, "asyncio", "base_events");
/// `ssl.SSLSocket`, which the `sock_*` calls refuse, or None where asyncio has no ssl module: read
/// at each call, as asyncio's `_check_ssl_socket` reads `base_events.ssl` and its `SSLSocket`
/// (tests patch either).
pub fn ssl_socket_class(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let ssl = base_events_module(py)?.getattr(intern!(py, "ssl"))?;
    if ssl.is_none() {
        return Ok(None);
    }
    ssl.getattr(intern!(py, "SSLSocket")).map(Some)
}

// What asyncio's TLS protocol (`asyncio.sslproto`, 3.11+) uses from the ssl module and asyncio.
cached_type!(ssl_error, "ssl", "SSLError");
cached_type!(ssl_want_read_error, "ssl", "SSLWantReadError");
cached_type!(ssl_syscall_error, "ssl", "SSLSyscallError");
cached_type!(ssl_certificate_error, "ssl", "CertificateError");
cached_type!(ssl_memory_bio, "ssl", "MemoryBIO");
cached_type!(ssl_object_type, "ssl", "SSLObject");
cached_type!(cancelled_error, "asyncio.exceptions", "CancelledError");
cached_type!(sslproto_state, "asyncio.sslproto", "SSLProtocolState");
cached_type!(sslproto_app_state, "asyncio.sslproto", "AppProtocolState");
cached_attr!(
    sslproto_create_transport_context,
    "asyncio.sslproto",
    "_create_transport_context"
);
cached_attr!(
    sslproto_add_flowcontrol_defaults,
    "asyncio.sslproto",
    "add_flowcontrol_defaults"
);
cached_attr!(asyncio_constants, "asyncio", "constants");
// Async generators (`event_loop/asyncgens.rs`): the set asyncio keeps them in, and asyncio's hook.
cached_type!(weak_set_type, "weakref", "WeakSet");
pub fn base_asyncgen_firstiter_hook(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let base = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
        Ok(base.getattr("_asyncgen_firstiter_hook")?.unbind())
    })
    .map(|obj| obj.bind(py).clone())
}

/// `()`: the arguments of most callbacks. `PyTuple::empty` calls `PyTuple_New(0)` each time; this is
/// one reference count increment, 13 fewer instructions per chained `call_soon` (callgrind).
pub fn empty_tuple(py: Python<'_>) -> Bound<'_, PyTuple> {
    static CELL: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    CELL.get_or_init(py, || PyTuple::empty(py).unbind())
        .bind(py)
        .clone()
}

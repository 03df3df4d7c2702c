//! Python objects the native code looks up once: stdlib helpers used on cold paths (reprs, error
//! reports, debug mode) so that their output is exactly the stdlib's.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

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
cached_attr!(
    coroutines_iscoroutinefunction,
    "asyncio.coroutines",
    "iscoroutinefunction"
);
cached_attr!(thread_get_ident, "threading", "get_ident");

pub fn task_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(import_attr(py, &CELL, "asyncio", "Task")?.cast_into::<PyType>()?)
}

pub fn future_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(import_attr(py, &CELL, "asyncio", "Future")?.cast_into::<PyType>()?)
}

cached_attr!(asyncio_logger, "asyncio.log", "logger");

pub fn buffered_protocol_type(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    Ok(import_attr(py, &CELL, "asyncio.protocols", "BufferedProtocol")?.cast_into::<PyType>()?)
}

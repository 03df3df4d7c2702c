//! Errors as Python sees them. OS errors: `OSError(errno, strerror)`, which Python turns into the
//! matching subclass (`PermissionError`, `BlockingIOError`...) with `.errno` set, as the stdlib
//! raises them. Argument errors: the function named as the running CPython names it.

use std::ffi::CStr;
use std::io;

use pyo3::exceptions::PyOSError;
use pyo3::{PyErr, Python};

pub fn os_error(err: io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a NUL-terminated string; the GIL serialises
            // callers, so the static buffer is not overwritten while it is copied.
            let message = unsafe { CStr::from_ptr(libc::strerror(code)) }
                .to_string_lossy()
                .into_owned();
            PyOSError::new_err((code, message))
        }
        None => PyErr::from(err),
    }
}

/// A function as CPython's argument errors name it: `Class.method` from Python 3.10 on, the bare
/// method name before.
pub fn named_in_errors<'a>(py: Python<'_>, qualified: &'a str) -> &'a str {
    if py.version_info() >= (3, 10) {
        qualified
    } else {
        qualified.rsplit('.').next().unwrap_or(qualified)
    }
}

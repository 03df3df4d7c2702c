//! OS errors as Python sees them: `OSError(errno, strerror)`, which Python turns into the matching
//! subclass (`PermissionError`, `BlockingIOError`...) with `.errno` set, as the stdlib raises them.

use std::ffi::CStr;
use std::io;

use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

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

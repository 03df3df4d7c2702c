//! How the native transports make socket calls and sort their outcomes, as asyncio does.

use std::cell::Cell;
use std::io;

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;

use crate::errors::os_error;

/// asyncio's `max_size`: the most one read hands to the protocol.
pub const MAX_READ: usize = 256 * 1024;

thread_local! {
    /// The recv() target of reads that hand the protocol a bytes object. asyncio asks recv() for
    /// a fresh 256 KiB bytes object per read and shrinks it; allocating and freeing that much
    /// memory per packet was the largest cost of its small-message echo. One buffer per thread,
    /// copied out per read.
    static READ_BUFFER: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

pub fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    // Taken out while in use, so that a nested use (none is expected) gets a buffer of its own.
    let mut buf = READ_BUFFER
        .take()
        .unwrap_or_else(|| vec![0u8; MAX_READ].into_boxed_slice());
    let result = f(&mut buf);
    READ_BUFFER.set(Some(buf));
    result
}

/// How a socket call ended, the way asyncio's transports sort the outcomes.
pub enum Io<T> {
    Done(T),
    /// EAGAIN: asyncio's `except (BlockingIOError, InterruptedError): pass`.
    WouldBlock,
    Failed(PyErr),
}

/// Runs a socket call as CPython's socket module does (PEP 475): on EINTR the signal handlers
/// run, and the call is retried unless one of them raised.
pub fn socket_call<T>(py: Python<'_>, mut call: impl FnMut() -> io::Result<T>) -> Io<T> {
    loop {
        match call() {
            Ok(value) => return Io::Done(value),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                if let Err(err) = py.check_signals() {
                    return Io::Failed(err);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Io::WouldBlock,
            Err(err) => return Io::Failed(os_error(err)),
        }
    }
}

/// asyncio lets these two through every transport callback; anything else is a fatal error.
pub fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

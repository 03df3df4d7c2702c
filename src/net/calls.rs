//! How the native transports make socket calls and sort their outcomes, as asyncio does.

use std::cell::Cell;
use std::io;

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;

use crate::errors::os_error;

/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`: writes after the connection is lost
/// are logged from this one on.
pub const LOG_THRESHOLD_FOR_CONNLOST_WRITES: usize = 5;

/// asyncio's `max_size`: the most one read hands to the protocol (stream and pipe reads stop a
/// little short of it: `read_bytes::STREAM_READ`).
pub const MAX_READ: usize = 256 * 1024;

thread_local! {
    /// The recv() target of reads that hand the protocol a bytes object. asyncio asks recv() for
    /// a fresh 256 KiB bytes object per read and shrinks it; allocating and freeing that much
    /// memory per packet was the largest cost of its small-message echo. One buffer per thread,
    /// copied out per read (or, for stream and pipe reads of a repeated length, only what did not
    /// fit the bytes object read into first: `read_bytes`).
    static READ_BUFFER: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// A new read buffer, after letting glibc's malloc adapt to blocks a few times the read size.
///
/// glibc serves blocks above its mmap threshold (128 KiB at start) with their own mmap, and
/// freeing such a block raises the threshold to fit it and the heap's trim threshold to twice
/// that (mallopt(3): the dynamic mmap threshold). asyncio's own reads do that on their first
/// packet: recv(256 KiB) allocates and frees one. The native reads allocate no such block, so the
/// threshold stayed low, the read buffer got a mapping of its own, and the 100 KiB echo ran at
/// half speed (12k against 23k round trips per second, the latter also reached by starting Python
/// with MALLOC_MMAP_THRESHOLD_ raised). A block of just the read size was not enough either: a
/// streams echo of full reads holds three such blocks in one turn (the read, StreamReader's
/// buffer, the bytes `read()` returns), freeing them left more than the trim threshold free at
/// the heap's top, and every read gave memory back to the kernel and faulted it in again (512 MiB
/// echoed: 343 `brk` calls and 13,240 page faults, against 30 and 3,400 with the block below).
/// So the block freed first is four times the read size: glibc then keeps up to 2 MiB free at
/// the heap's top. Other allocators ignore it.
fn new_read_buffer() -> Box<[u8]> {
    // black_box: an allocation freed unused would otherwise be optimised away.
    drop(std::hint::black_box(vec![0u8; 4 * MAX_READ]));
    vec![0u8; MAX_READ].into_boxed_slice()
}

pub fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    // Taken out while in use, so that a nested use (none is expected) gets a buffer of its own.
    let mut buf = READ_BUFFER.take().unwrap_or_else(new_read_buffer);
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

impl<T> Io<T> {
    /// The value, None if the call found the socket not ready, or the error.
    pub fn ready(self) -> PyResult<Option<T>> {
        match self {
            Io::Done(value) => Ok(Some(value)),
            Io::WouldBlock => Ok(None),
            Io::Failed(err) => Err(err),
        }
    }
}

/// A Python call's error sorted like a socket call's: BlockingIOError and InterruptedError are
/// asyncio's "try again later".
pub fn sort_python_error<T>(py: Python<'_>, result: PyResult<T>) -> Io<T> {
    match result {
        Ok(value) => Io::Done(value),
        Err(err)
            if err.is_instance_of::<PyBlockingIOError>(py)
                || err.is_instance_of::<PyInterruptedError>(py) =>
        {
            Io::WouldBlock
        }
        Err(err) => Io::Failed(err),
    }
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

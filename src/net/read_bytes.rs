//! The bytes objects reads hand to protocols, made again from the last one that nobody kept.
//!
//! Every `data_received` (and `datagram_received`) gets a new bytes object, as asyncio gives it,
//! and most protocols let go of it before they return: they copy it (asyncio's StreamReader), send
//! it on (an echo, a proxy) or parse it. A bytes object of 1 KiB is too large for pymalloc and for
//! glibc's per-thread cache, so making one and freeing it cost about 600 of the 2,900 instructions
//! a 1 KiB echo took (callgrind). So when a protocol returns and the read's own reference is the
//! only one left, the object is kept, and the next read of the same length rewrites it and hands it
//! out again. With no other reference, nobody can see it change: an object that is referenced
//! anywhere else (a list, a frame of a traceback, a memoryview) has a higher count and is left
//! alone. This needs the GIL, which ferroloop keeps on even in a free-threaded build (`gil.rs`).

use std::cell::Cell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

thread_local! {
    /// The last bytes object a protocol let go of. One per thread, so it costs at most one read's
    /// size, whatever the number of connections.
    static SPARE: Cell<Option<Py<PyBytes>>> = const { Cell::new(None) };
}

/// A bytes object holding `data`: the spare if it is that long, else a new one.
pub fn bytes_of<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    if let Some(spare) = SPARE.take() {
        let spare = spare.into_bound(py);
        if spare.as_bytes().len() == data.len() {
            // SAFETY: the spare is referenced by nothing but this function (see `hand_over`), so
            // its contents may change; `data.len()` bytes fit, its length being that. Its cached
            // hash is reset, as it no longer describes the contents.
            unsafe {
                let object = spare.as_ptr().cast::<ffi::PyBytesObject>();
                // ob_shash: deprecated for readers, still the cache (3.9-3.14).
                #[allow(deprecated)]
                {
                    (*object).ob_shash = -1;
                }
                let contents = ffi::PyBytes_AsString(spare.as_ptr()).cast::<u8>();
                std::ptr::copy_nonoverlapping(data.as_ptr(), contents, data.len());
            }
            return spare;
        }
    }
    PyBytes::new(py, data)
}

/// Hands `data`, which `bytes_of` made, to `deliver` (the protocol's callback), then keeps it for
/// the next read if `deliver` left no reference to it behind.
pub fn hand_over<'py, R>(
    data: Bound<'py, PyBytes>,
    deliver: impl FnOnce(&Bound<'py, PyBytes>) -> R,
) -> R {
    let result = deliver(&data);
    // SAFETY: a live object, read with the GIL held. (Lengths 0 and 1 are CPython's shared
    // singletons, never the last reference.)
    if unsafe { ffi::Py_REFCNT(data.as_ptr()) } == 1 {
        // The spare it replaces, if any, is freed here: a bytes object runs no code when freed.
        SPARE.set(Some(data.unbind()));
    }
    result
}

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
//!
//! Stream and pipe reads go further: they read straight into the spare's memory, with the read
//! buffer after it for whatever more comes (`readv`), so a read of the spare's length, the usual
//! case for a peer that sends records of one size, costs no copy at all.

use std::cell::Cell;
use std::io::{self, IoSliceMut};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::calls::{socket_call, with_read_buffer, Io, MAX_READ};

thread_local! {
    /// The last bytes object a protocol let go of. One per thread, so it costs at most one read's
    /// size, whatever the number of connections.
    static SPARE: Cell<Option<Py<PyBytes>>> = const { Cell::new(None) };
    /// Whether the last stream or pipe read had the spare's length: only then does the next one
    /// go straight into the spare (`read_bytes`).
    static LENGTH_REPEATED: Cell<bool> = const { Cell::new(false) };
}

/// The spare's contents, to be written.
///
/// # Safety
/// `spare` must be the spare, just taken out of `SPARE`: referenced by nothing else (see
/// `hand_over`), so that nobody can see its contents change.
unsafe fn contents_mut<'a>(spare: &'a mut Bound<'_, PyBytes>) -> &'a mut [u8] {
    let len = spare.as_bytes().len();
    // SAFETY: a bytes object's contents are `len` bytes at `PyBytes_AsString`.
    unsafe { std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(spare.as_ptr()).cast(), len) }
}

/// Hands out the spare after its contents were rewritten: its cached hash no longer describes
/// them, so it is reset.
fn rewritten(spare: Bound<'_, PyBytes>) -> Bound<'_, PyBytes> {
    // SAFETY: the spare is referenced by nothing else (`contents_mut`).
    unsafe {
        let object = spare.as_ptr().cast::<ffi::PyBytesObject>();
        // ob_shash: deprecated for readers, still the cache (3.9-3.14).
        #[allow(deprecated)]
        {
            (*object).ob_shash = -1;
        }
    }
    spare
}

/// A bytes object holding `data`: the spare if it is that long, else a new one.
pub fn bytes_of<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    match SPARE.take().map(|spare| spare.into_bound(py)) {
        Some(mut spare) if spare.as_bytes().len() == data.len() => {
            // SAFETY: just taken out of `SPARE`.
            unsafe { contents_mut(&mut spare) }.copy_from_slice(data);
            rewritten(spare)
        }
        spare => {
            // A spare of another length is freed first, so that the new object can take its
            // memory.
            drop(spare);
            PyBytes::new(py, data)
        }
    }
}

/// The shortest spare that reads go straight into. Reading into two buffers (`readv`) costs more
/// than `recv` into one, about what copying 1-4 KiB costs (a C loop over a socket pair: 448 against
/// 407 ns a read for 1 KiB, 547 against 539 for 4 KiB, 705 against 970 for 16 KiB).
const SHORTEST_READ_INTO_SPARE: usize = 4096;

/// The most one stream or pipe read takes: asyncio's `max_size` (256 KiB) less 2 KiB, so that a
/// full read's bytes object is not a whole number of 4 KiB pages long.
///
/// glibc's memcpy copies 2 KiB to 512 KiB with `rep movsb`, and on this project's AMD EPYC VMs
/// that runs at 2 GB/s instead of 30-40 when the destination lies 8-24 bytes past the source,
/// modulo 4 KiB (a C loop copying 256 KiB at each distance). Blocks of a whole number of pages,
/// side by side on the heap, sit at such distances: StreamReader's `feed_data` copies each read
/// into its bytearray, and `read()` slices that into another, and with 256 KiB reads the 64 MiB
/// streams echo spent most of its time in those two copies (perf: 24% of the server's samples in
/// memcpy, against uvloop's 8%, whose reads are of 256,000 bytes; the same StreamReader fed one
/// bytes object again and again moved 1.7 GB/s at 256 KiB, 11.7 at this size). Reading less at a
/// time is asyncio's behaviour still: a read takes what the socket holds, up to some size.
const STREAM_READ: usize = MAX_READ - 2048;

/// One read of up to `STREAM_READ` bytes as a bytes object.
///
/// Once a length repeats, and while the spare is at least `SHORTEST_READ_INTO_SPARE` bytes and
/// short of `STREAM_READ`, `read_vectored` reads into the spare's memory first, then the read buffer:
/// a read of the spare's length hands out the spare itself, any other is copied into a new object
/// and the spare freed. Otherwise `read` reads into the read buffer and `bytes_of` copies it out.
///
/// Measured on the 64 MiB echo (benchmarks/worker.py, old and new build alternating, 8 rounds):
/// keeping the spare after a read of another length left two large objects alive in turn, and
/// glibc's heap shrank and grew: 52,815 page faults against 5,998 (one core, 256 MiB). On
/// two cores, reading full-size reads into the spare too ran at 0.967x and 0.943x (both orders;
/// two runs of the same build differ by up to 3%), for a cause not found; and without waiting for
/// a length to repeat, so that reads of changing lengths went into the spare and missed, 0.973x.
/// Resizing the spare in place for a read of another length (`_PyBytes_Resize`, as `sock.recv`
/// does) gives the heap the same churn: 90,791 page faults against 8,936 (two cores, 1 GiB).
/// As it is: 1.001x there (one core: 0.976x and 0.997x); the 100 KiB echo 1.16x on one core,
/// its streams twin 1.07x.
/// With reads of `STREAM_READ`, full reads into the spare too read 0.923x on one core (ahead in 1
/// of 6 rounds) and 1.069x on two (6 of 6; `benchmarks/ab.py`, 2026-12-07): still not taken.
pub fn read_bytes<'py>(
    py: Python<'py>,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
    mut read_vectored: impl FnMut(&mut [IoSliceMut<'_>]) -> io::Result<usize>,
) -> Io<Bound<'py, PyBytes>> {
    let spare = SPARE.take().map(|spare| spare.into_bound(py));
    let spare_len = spare.as_ref().map_or(0, |spare| spare.as_bytes().len());
    let mut spare = match spare {
        Some(spare)
            if LENGTH_REPEATED.get()
                && (SHORTEST_READ_INTO_SPARE..STREAM_READ).contains(&spare_len) =>
        {
            spare
        }
        spare => {
            keep(spare, ());
            return socket_call(py, || {
                with_read_buffer(|buf| {
                    read(&mut buf[..STREAM_READ]).map(|n| {
                        LENGTH_REPEATED.set(n == spare_len);
                        bytes_of(py, &buf[..n])
                    })
                })
            });
        }
    };
    with_read_buffer(|buf| {
        let tail = &mut buf[..STREAM_READ - spare_len];
        let read = {
            // SAFETY: just taken out of `SPARE`.
            let head = unsafe { contents_mut(&mut spare) };
            socket_call(py, || {
                read_vectored(&mut [IoSliceMut::new(head), IoSliceMut::new(tail)])
            })
        };
        let n = match read {
            Io::Done(n) if n == spare_len => return Io::Done(rewritten(spare)),
            Io::Done(n) => n,
            Io::WouldBlock => return keep(Some(spare), Io::WouldBlock),
            Io::Failed(err) => return keep(Some(spare), Io::Failed(err)),
        };
        LENGTH_REPEATED.set(false);
        let in_spare = n.min(spare_len);
        let made = PyBytes::new_with(py, n, |contents| {
            contents[..in_spare].copy_from_slice(&spare.as_bytes()[..in_spare]);
            contents[in_spare..].copy_from_slice(&tail[..n - in_spare]);
            Ok(())
        });
        made.map_or_else(Io::Failed, Io::Done)
    })
}

/// Puts `spare` back for the next read, and returns `outcome`.
fn keep<T>(spare: Option<Bound<'_, PyBytes>>, outcome: T) -> T {
    if let Some(spare) = spare {
        SPARE.set(Some(spare.unbind()));
    }
    outcome
}

/// Hands `data`, which `bytes_of` or `read_bytes` made, to `deliver` (the protocol's callback), then
/// keeps it for the next read if `deliver` left no reference to it behind.
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

//! Borrowed byte views of Python objects: `bytes` read in place, the rest through the buffer
//! protocol (`PyBUF_SIMPLE`, as the socket module's `y*` and `w*` arguments ask for it), and
//! asyncio's check of what a transport may be given to send.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use crate::pyobjects;

/// The transport method whose data check `check_bytes_like` makes.
#[derive(Clone, Copy)]
pub enum DataCheck {
    StreamWrite,
    DatagramSendto,
}

/// The check asyncio's socket transports make in `write` and `sendto`. The error is the one the
/// stdlib's own method raises for the same data (its check comes first, before `self` is used),
/// so its wording follows the running Python's: 3.14 rewords `write`'s, not `sendto`'s.
pub fn check_bytes_like(data: &Bound<'_, PyAny>, check: DataCheck) -> PyResult<()> {
    if data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>()
    {
        return Ok(());
    }
    let py = data.py();
    let (class, method) = match check {
        DataCheck::StreamWrite => (pyobjects::selector_socket_transport(py)?, "write"),
        DataCheck::DatagramSendto => (pyobjects::selector_datagram_transport(py)?, "sendto"),
    };
    match class.getattr(method)?.call1((py.None(), data)) {
        Err(err) if err.is_instance_of::<PyTypeError>(py) => Err(err),
        // Not refused by the type check there (a stdlib that moved it after a use of `self`,
        // which fails on None otherwise): asyncio's wording before 3.14.
        _ => Err(PyTypeError::new_err(format!(
            "data argument must be a bytes-like object, not '{}'",
            data.get_type().name()?
        ))),
    }
}

/// Memory lent through the buffer protocol, released when dropped.
pub struct BufferView<'py> {
    view: Box<MaybeUninit<ffi::Py_buffer>>,
    _owner: PhantomData<Bound<'py, PyAny>>,
}

impl<'py> BufferView<'py> {
    fn get(obj: &Bound<'py, PyAny>, flags: std::os::raw::c_int) -> PyResult<Self> {
        let mut view = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // SAFETY: obj is live; on success the view is filled in and released in Drop.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), flags) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(BufferView {
            view,
            _owner: PhantomData,
        })
    }

    /// A writable view, e.g. of the memory a `BufferedProtocol` hands out.
    pub fn writable(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Self::get(obj, ffi::PyBUF_WRITABLE)
    }

    fn raw(&self) -> &ffi::Py_buffer {
        // SAFETY: initialised by a successful PyObject_GetBuffer in `get`.
        unsafe { self.view.assume_init_ref() }
    }

    fn as_slice(&self) -> &[u8] {
        let raw = self.raw();
        if raw.len == 0 {
            return &[];
        }
        // SAFETY: a simple buffer is `len` contiguous bytes at `buf`, alive until released.
        unsafe { std::slice::from_raw_parts(raw.buf as *const u8, raw.len as usize) }
    }

    /// The view's memory for writing; only for views made by `writable`.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let raw = self.raw();
        if raw.len == 0 {
            return &mut [];
        }
        // SAFETY: a writable simple buffer is `len` contiguous bytes at `buf`, alive until released,
        // and this view is the only Rust reference to it.
        unsafe { std::slice::from_raw_parts_mut(raw.buf as *mut u8, raw.len as usize) }
    }
}

impl Drop for BufferView<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled in by PyObject_GetBuffer; the 'py lifetime proves the GIL.
        unsafe { ffi::PyBuffer_Release(self.view.as_mut_ptr()) }
    }
}

/// The bytes of a bytes-like object, for reading.
///
/// A `bytes` object, what nearly every write hands over, is immutable and is read in place:
/// getting and releasing a buffer for it (the boxed `Py_buffer` included) cost about 230 of the
/// 5,900 instructions an HTTP keep-alive request took (callgrind). Anything else (a bytes
/// subclass, which may export its buffer its own way, bytearray, memoryview) lends its memory
/// through the buffer protocol, as the socket module's `y*` asks for it.
pub enum ByteView<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(BufferView<'py>),
}

impl<'py> ByteView<'py> {
    pub fn readable(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        match obj.cast_exact::<PyBytes>() {
            Ok(bytes) => Ok(ByteView::Bytes(bytes.clone())),
            Err(_) => BufferView::get(obj, ffi::PyBUF_SIMPLE).map(ByteView::Buffer),
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            ByteView::Bytes(bytes) => bytes.as_bytes(),
            ByteView::Buffer(view) => view.as_slice(),
        }
    }
}

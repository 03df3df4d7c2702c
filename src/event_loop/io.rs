//! `_add_reader`, `_remove_reader`, `_add_writer`, `_remove_writer`: level-triggered fd callbacks.
//! The public `add_reader` & co. are asyncio's own (they first check that no transport owns the fd).

use std::os::fd::RawFd;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::{FdCallbacks, LoopCore};
use crate::errors::os_error;
use crate::handles::Handle;
use crate::packed_call;

/// A selector key's events mask (EVENT_READ 1, EVENT_WRITE 2), reader and writer.
type SelectorKey = (u8, Option<Py<Handle>>, Option<Py<Handle>>);

/// An fd from an int or an object with `fileno()`, with `selectors`' errors for bad ones.
pub(crate) fn fileobj_to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let fd: i64 = if fileobj.is_instance_of::<PyInt>() {
        fileobj.extract()?
    } else {
        fileobj
            .call_method0("fileno")
            .and_then(|n| n.extract::<i64>())
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    fileobj.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?
    };
    if fd < 0 || fd > i64::from(i32::MAX) {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(fd as RawFd)
}

impl LoopCore {
    /// Calls `callback(*args)` whenever `fd` is readable (or writable), replacing the fd's
    /// previous reader (or writer).
    pub(crate) fn add_fd_callback(
        slf: &Bound<'_, LoopCore>,
        fd: RawFd,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        reader: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_not_inherited()?;
        // asyncio runs no callback checks for fd callbacks, debug mode or not: no method name.
        let call = packed_call::pack(callback, args)?.into_bound(py);
        let handle = Py::new(py, LoopCore::new_handle(slf, &call, None, None)?)?;
        let replaced = {
            let mut st = this.state.borrow_mut(py);
            let st = &mut *st;
            let (read, write) = st.interests.get(fd);
            let (read, write) = if reader { (true, write) } else { (read, true) };
            st.interests.set(fd, read, write).map_err(os_error)?;
            let slot = st.fd_callbacks.entry(fd).or_default();
            let slot = if reader {
                &mut slot.reader
            } else {
                &mut slot.writer
            };
            slot.replace(handle.clone_ref(py))
        };
        if let Some(old) = replaced {
            Handle::cancel_bound(old.bind(py))?;
        }
        Ok(handle)
    }

    /// Stops calling `fd`'s reader (or writer); returns whether one was installed.
    pub(crate) fn remove_fd_callback(
        &self,
        py: Python<'_>,
        fd: RawFd,
        reader: bool,
    ) -> PyResult<bool> {
        let removed = {
            let mut st = self.state.borrow_mut(py);
            if st.closed {
                return Ok(false);
            }
            let st = &mut *st;
            let Some(slot) = st.fd_callbacks.get_mut(&fd) else {
                return Ok(false);
            };
            let removed = if reader {
                slot.reader.take()
            } else {
                slot.writer.take()
            };
            let FdCallbacks {
                reader: r,
                writer: w,
            } = slot;
            let (read, write) = (r.is_some(), w.is_some());
            if !read && !write {
                st.fd_callbacks.remove(&fd);
            }
            // In a forked child the epoll set is the parent's: only the bookkeeping changes.
            if !self.is_inherited_through_fork() {
                st.interests.set(fd, read, write).map_err(os_error)?;
            }
            removed
        };
        match removed {
            Some(handle) => {
                Handle::cancel_bound(handle.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[pymethods]
impl LoopCore {
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, LoopCore>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        LoopCore::add_fd_callback(slf, fileobj_to_fd(fd)?, callback, args, true)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, LoopCore>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        LoopCore::add_fd_callback(slf, fileobj_to_fd(fd)?, callback, args, false)
    }

    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        let fd = fileobj_to_fd(fd)?;
        self.remove_fd_callback(py, fd, true)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        let fd = fileobj_to_fd(fd)?;
        self.remove_fd_callback(py, fd, false)
    }

    /// What the loop watches `fd` for, as a selector key would say it: (events mask, reader
    /// handle, writer handle), or None. Transports' reprs read it through `loop._selector`.
    fn _fd_key(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<SelectorKey>> {
        let fd = fileobj_to_fd(fd)?;
        let st = self.state.borrow(py);
        Ok(st.fd_callbacks.get(&fd).map(|cbs| {
            let reader = cbs.reader.as_ref().map(|h| h.clone_ref(py));
            let writer = cbs.writer.as_ref().map(|h| h.clone_ref(py));
            // selectors.EVENT_READ is 1, EVENT_WRITE is 2.
            let mask = u8::from(reader.is_some()) | (u8::from(writer.is_some()) << 1);
            (mask, reader, writer)
        }))
    }
}

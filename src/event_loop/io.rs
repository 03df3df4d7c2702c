//! `_add_reader`, `_remove_reader`, `_add_writer`, `_remove_writer`: level-triggered fd callbacks.
//! The public `add_reader` & co. are asyncio's own (they first check that no transport owns the fd).

use std::cell::RefMut;
use std::os::fd::RawFd;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple, PyWeakrefMethods, PyWeakrefReference};

use super::{FdCallbacks, LoopCore, LoopState};
use crate::core::interests::Watch;
use crate::errors::os_error;
use crate::handles::Handle;
use crate::packed_call;
use crate::pyobjects;

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
    /// The fd `fileobj` names, found as selectors find it: from the object itself, or, when it
    /// no longer gives a valid fd (a socket closed while watched), among the objects fds were
    /// registered through, by identity; else the first error stands.
    fn registered_fd(&self, fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
        let err = match fileobj_to_fd(fileobj) {
            Ok(fd) => return Ok(fd),
            Err(err) => err,
        };
        let py = fileobj.py();
        let st = self.state.borrow(py);
        st.fd_callbacks
            .iter()
            .find(|(_, cbs)| cbs.fileobj.as_ref().is_some_and(|o| o.is(fileobj)))
            .map(|(&fd, _)| fd)
            .ok_or(err)
    }

    /// Calls `callback(*args)` whenever `fd` is readable (or writable), replacing the fd's
    /// previous reader (or writer). `fileobj` is the object the caller named the fd with (None
    /// for a number): like a selector key's, the one the fd was first registered through.
    pub(crate) fn add_fd_callback(
        slf: &Bound<'_, LoopCore>,
        fd: RawFd,
        fileobj: Option<&Bound<'_, PyAny>>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        reader: bool,
    ) -> PyResult<Py<Handle>> {
        // asyncio runs no callback checks for fd callbacks, debug mode or not: no method name.
        let call = packed_call::pack(callback, args)?.into_bound(slf.py());
        LoopCore::install_fd_callback(slf, fd, fileobj, &call, reader, false)
    }

    /// Installs `call` (a callback packed with its arguments) as `fd`'s reader (or writer),
    /// asking for an edge-triggered watch if `edge` (see `core::interests`): for callers that
    /// try the fd before they wait, and so need no report of what was there.
    pub(super) fn install_fd_callback(
        slf: &Bound<'_, LoopCore>,
        fd: RawFd,
        fileobj: Option<&Bound<'_, PyAny>>,
        call: &Bound<'_, PyAny>,
        reader: bool,
        edge: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_not_inherited()?;
        let handle = Py::new(py, LoopCore::new_handle(slf, call, None, None)?)?;
        let replaced = {
            let mut st = this.state.borrow_mut(py);
            let (read, write) = st.interests.get(fd);
            let (read, write) = if reader { (true, write) } else { (read, true) };
            // Edge-triggered only while every callback of the fd asks for it.
            let other_edge = st.fd_callbacks.get(&fd).is_none_or(|cbs| {
                if reader {
                    cbs.writer.is_none() || cbs.writer_edge
                } else {
                    cbs.reader.is_none() || cbs.reader_edge
                }
            });
            let watch = Watch {
                read,
                write,
                edge: edge && other_edge,
            };
            let same_file = st
                .parked_files
                .remove(&fd)
                .and_then(|file| file.bind(py).upgrade())
                .is_some_and(|file| fileobj.is_some_and(|obj| obj.is(&file)));
            let mut st = watch_fd(st, fd, watch, same_file)?;
            let generation = st.interests.generation(fd).unwrap_or_default();
            let cbs = st.fd_callbacks.entry(fd).or_insert_with(|| FdCallbacks {
                fileobj: fileobj.map(|o| o.clone().unbind()),
                ..FdCallbacks::default()
            });
            cbs.generation = generation;
            let slot = if reader {
                cbs.reader_edge = edge;
                &mut cbs.reader
            } else {
                cbs.writer_edge = edge;
                &mut cbs.writer
            };
            slot.replace(handle.clone_ref(py))
        };
        if let Some(old) = replaced {
            Handle::cancel_bound(old.bind(py))?;
        }
        Ok(handle)
    }

    /// Stops calling `fd`'s reader (or writer); returns whether one was installed. `pausing`:
    /// the caller will install one again for the same file (`Interests::pause`).
    pub(crate) fn remove_fd_callback(
        &self,
        py: Python<'_>,
        fd: RawFd,
        reader: bool,
        pausing: bool,
    ) -> PyResult<bool> {
        let mut st = self.state.borrow_mut(py);
        if st.closed {
            return Ok(false);
        }
        let Some(cbs) = st.fd_callbacks.get_mut(&fd) else {
            return Ok(false);
        };
        let watch = if reader {
            Watch {
                read: false,
                write: cbs.writer.is_some(),
                edge: cbs.writer_edge,
            }
        } else {
            Watch {
                read: cbs.reader.is_some(),
                write: false,
                edge: cbs.reader_edge,
            }
        };
        // In a forked child the epoll set is the parent's: only the bookkeeping changes.
        if !self.is_inherited_through_fork() {
            if pausing && !watch.read && !watch.write {
                st.interests.pause(fd);
            } else {
                st = watch_fd(st, fd, watch, false)?;
            }
        }
        let Some(cbs) = st.fd_callbacks.get_mut(&fd) else {
            return Ok(false);
        };
        let removed = if reader {
            cbs.reader.take()
        } else {
            cbs.writer.take()
        };
        let unwatched = if watch.read || watch.write {
            None
        } else {
            st.fd_callbacks.remove(&fd)
        };
        // A parked registration is watched again without a system call by a `sock_*` call on
        // the same file object (a weak reference: the loop must not keep a socket alive).
        let parked_file = unwatched
            .as_ref()
            .filter(|_| st.interests.is_parked(fd))
            .and_then(|cbs| cbs.fileobj.as_ref())
            .and_then(|obj| PyWeakrefReference::new(obj.bind(py)).ok());
        if let Some(file) = parked_file {
            st.parked_files.insert(fd, file.unbind());
        }
        drop(st);
        // Released outside the borrow: dropping a file object may run Python code.
        drop(unwatched);
        match removed {
            Some(handle) => {
                Handle::cancel_bound(handle.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs `fd`'s reader in every turn, polled or not, until `release_readable`: its transport
    /// holds data it took from the kernel ahead of the turns that hand it over.
    pub(crate) fn hold_readable(&self, py: Python<'_>, fd: RawFd) {
        let mut st = self.state.borrow_mut(py);
        if !st.held_readable.contains(&fd) {
            st.held_readable.push(fd);
        }
    }

    /// Ends `hold_readable`: the transport holds nothing more, or lets go of the fd.
    pub(crate) fn release_readable(&self, py: Python<'_>, fd: RawFd) {
        self.state
            .borrow_mut(py)
            .held_readable
            .retain(|&held| held != fd);
    }
}

/// Watches `fd` as `watch` says (`same_file`: see `Interests::set_watch`), and hands the
/// borrowed state back. When the kernel refuses a change, the fd is forgotten, as selectors
/// unregister a key they failed to modify: its callbacks are released after the borrow ends
/// (releasing them may run Python code).
fn watch_fd(
    mut st: RefMut<'_, LoopState>,
    fd: RawFd,
    watch: Watch,
    same_file: bool,
) -> PyResult<RefMut<'_, LoopState>> {
    match st.interests.set_watch(fd, watch, same_file) {
        Ok(()) => Ok(st),
        Err(err) => {
            let forgotten = st.fd_callbacks.remove(&fd);
            drop(st);
            drop(forgotten);
            Err(os_error(err))
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
        let fd_number = slf.get().registered_fd(fd)?;
        LoopCore::add_fd_callback(slf, fd_number, named(fd), callback, args, true)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, LoopCore>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let fd_number = slf.get().registered_fd(fd)?;
        LoopCore::add_fd_callback(slf, fd_number, named(fd), callback, args, false)
    }

    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        let fd = self.registered_fd(fd)?;
        self.remove_fd_callback(py, fd, true, false)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        let fd = self.registered_fd(fd)?;
        self.remove_fd_callback(py, fd, false, false)
    }

    /// The `selectors.SelectorKey` a selector would hold for `fd` (fileobj, fd, events mask,
    /// (reader, writer)), or None. `loop._selector` and transports' reprs read it.
    fn _fd_key<'py>(&self, fd: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = fd.py();
        let fd = self.registered_fd(fd)?;
        let key = {
            let st = self.state.borrow(py);
            let Some(cbs) = st.fd_callbacks.get(&fd) else {
                return Ok(None);
            };
            let reader = cbs.reader.as_ref().map(|h| h.clone_ref(py));
            let writer = cbs.writer.as_ref().map(|h| h.clone_ref(py));
            // selectors.EVENT_READ is 1, EVENT_WRITE is 2.
            let mask = u8::from(reader.is_some()) | (u8::from(writer.is_some()) << 1);
            let fileobj = match &cbs.fileobj {
                Some(obj) => obj.clone_ref(py).into_bound(py),
                None => fd.into_pyobject(py)?.into_any(),
            };
            (fileobj, fd, mask, (reader, writer))
        };
        pyobjects::selector_key(py)?.call1(key).map(Some)
    }
}

/// The object a caller named an fd with, kept as a selector key's `fileobj`; None for a number.
fn named<'a, 'py>(fileobj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyAny>> {
    (!fileobj.is_instance_of::<PyInt>()).then_some(fileobj)
}

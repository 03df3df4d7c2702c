//! Telling a plain `socket.socket` from anything else, and reading what its C object holds.
//!
//! Native code may stand in for a socket method (a `recv`, a `getsockname`) only where the call
//! would have reached the C method of `_socket.socket`: on an object of exactly `socket.socket`,
//! whose class still has that method. And `socket.socket.family`/`.type` are Python properties
//! that make an enum on every read (thousands of instructions under Python 3.11), while the C
//! object holds plain ints, which are read here through `_socket.socket`'s member descriptors.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

/// The classes a socket is checked against, and the C object's members.
pub struct SocketClasses {
    /// `socket.socket`, found among the subclasses of `_socket.socket` rather than read from the
    /// `socket` module, whose attribute tests patch: asyncssh's replace it with a function.
    pub plain: Py<PyType>,
    /// `_socket.socket`, whose methods the native calls stand for.
    c: Py<PyType>,
    /// Its `family`, `type` and `proto` members.
    family: Py<PyAny>,
    kind: Py<PyAny>,
    proto: Py<PyAny>,
}

impl SocketClasses {
    /// Whether `sock` is a `socket.socket` (no subclass) whose class's `method` is still the C one.
    pub fn has_c_method(
        &self,
        sock: &Bound<'_, PyAny>,
        method: &Bound<'_, PyString>,
    ) -> PyResult<bool> {
        let py = sock.py();
        let class = sock.get_type();
        Ok(class.is(self.plain.bind(py))
            && class.getattr(method)?.is(&self.c.bind(py).getattr(method)?))
    }

    /// The C socket's `family`, `type` and `proto` (what `socket.socket`'s properties would
    /// turn into enums).
    pub fn family_type_proto(&self, sock: &Bound<'_, PyAny>) -> PyResult<(i32, i32, i32)> {
        let py = sock.py();
        Ok((
            member_value(self.family.bind(py), sock)?.extract()?,
            member_value(self.kind.bind(py), sock)?.extract()?,
            member_value(self.proto.bind(py), sock)?.extract()?,
        ))
    }

    pub fn family(&self, sock: &Bound<'_, PyAny>) -> PyResult<i32> {
        member_value(self.family.bind(sock.py()), sock)?.extract()
    }
}

/// `descr.__get__(obj)` through the descriptor's slot, without a method-wrapper.
fn member_value<'py>(
    descr: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    // SAFETY: both objects are live; a member descriptor's type has tp_descr_get, which takes the
    // descriptor, the instance and its type, and returns a new reference or NULL with an error set.
    unsafe {
        let get = (*ffi::Py_TYPE(descr.as_ptr()))
            .tp_descr_get
            .expect("a member descriptor has __get__");
        Bound::from_owned_ptr_or_err(
            py,
            get(
                descr.as_ptr(),
                obj.as_ptr(),
                ffi::Py_TYPE(obj.as_ptr()).cast(),
            ),
        )
    }
}

/// The classes, taken at the first use; None (nothing made natively) if `_socket.socket` is not
/// a class or has no `socket.socket` subclass.
pub fn socket_classes(py: Python<'_>) -> PyResult<Option<&SocketClasses>> {
    static CLASSES: PyOnceLock<Option<SocketClasses>> = PyOnceLock::new();
    let classes = CLASSES.get_or_try_init(py, || -> PyResult<_> {
        py.import("socket")?; // where `socket.socket` is defined
        let Ok(c) = py
            .import("_socket")?
            .getattr("socket")?
            .cast_into::<PyType>()
        else {
            return Ok(None);
        };
        for class in c.call_method0(intern!(py, "__subclasses__"))?.try_iter()? {
            let Ok(class) = class?.cast_into::<PyType>() else {
                continue;
            };
            if class.module()?.to_cow()? == "socket" && class.qualname()?.to_cow()? == "socket" {
                return Ok(Some(SocketClasses {
                    plain: class.unbind(),
                    family: c.getattr(intern!(py, "family"))?.unbind(),
                    kind: c.getattr(intern!(py, "type"))?.unbind(),
                    proto: c.getattr(intern!(py, "proto"))?.unbind(),
                    c: c.unbind(),
                }));
            }
        }
        Ok(None)
    })?;
    Ok(classes.as_ref())
}

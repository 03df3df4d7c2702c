//! The methods called per message, `SocketTransport.write`/`writelines`,
//! `DatagramTransport.sendto` and both transports' `is_closing` (asyncio's `StreamWriter.drain`
//! asks it before every wait), as native method descriptors of those Python classes
//! (`ferroloop._transports`). A Python method forwarding to the native core cost a Python frame
//! per message; a descriptor costs CPython what a method of a built-in type does. It reaches the
//! core in the transport's `_core` slot, read at the slot's offset: looking the attribute up by
//! name cost about 220 instructions per message (callgrind), a fifth of what `write` costs.

use std::ffi::CStr;
use std::sync::OnceLock;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyString, PyTuple, PyType};
use pyo3::PyClass;

use super::base::NativeTransport;
use super::{DatagramSocket, SocketStream};
use crate::errors::named_in_errors;
use crate::method_descriptor::{
    call_for_cpython, call_for_cpython_returning, cfunction_descriptor, meth_o_entry,
    method_descriptor,
};

/// Where the transports keep their native core: the offset of the `_core` slot in their objects.
static CORE_OFFSET: OnceLock<isize> = OnceLock::new();

/// The offset of `cls`'s `_core` slot, which must be a slot (`__slots__`) holding an object.
fn core_slot_offset(cls: &Bound<'_, PyType>) -> PyResult<isize> {
    let py = cls.py();
    let descr = cls.getattr(intern!(py, "_core"))?;
    let member_type = &raw mut ffi::PyMemberDescr_Type;
    if descr.get_type().as_ptr() != member_type.cast::<ffi::PyObject>() {
        return Err(PyTypeError::new_err(format!(
            "{}._core must be a slot (__slots__)",
            cls.name()?
        )));
    }
    // SAFETY: an object of exactly PyMemberDescr_Type is a PyMemberDescrObject, whose d_member
    // points at a PyMemberDef (pyo3-ffi types it as a PyGetSetDef before 3.11; CPython does not).
    let member = unsafe {
        &*(*descr.as_ptr().cast::<ffi::PyMemberDescrObject>())
            .d_member
            .cast::<ffi::PyMemberDef>()
    };
    if member.type_code != ffi::Py_T_OBJECT_EX {
        return Err(PyTypeError::new_err(format!(
            "{}._core must be a slot holding an object",
            cls.name()?
        )));
    }
    Ok(member.offset)
}

/// Checks, before making method descriptors for `cls`, that its objects keep their core where the
/// descriptors read it (the first class checked sets the place). Slots are inherited at their
/// offset, so the objects of every subclass of `cls` keep it there too.
fn check_core_slot(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let offset = core_slot_offset(cls)?;
    if *CORE_OFFSET.get_or_init(|| offset) != offset {
        return Err(PyTypeError::new_err(format!(
            "{}._core is not where the other transports keep it",
            cls.name()?
        )));
    }
    Ok(())
}

/// The native core of a ferroloop transport (its `_core` slot).
fn core<'py, T: PyClass>(
    py: Python<'py>,
    transport: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, T>> {
    Ok(core_object(py, transport)?.cast_into::<T>()?)
}

/// What the transport's `_core` slot holds.
///
/// `transport` must be an instance of a class `check_core_slot` accepted: the method descriptors
/// made for such a class are called only with such instances (CPython checks `self`).
fn core_object<'py>(py: Python<'py>, transport: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let Some(&offset) = CORE_OFFSET.get() else {
        // No descriptor is made before the offset is set (`check_core_slot`).
        return Err(PyTypeError::new_err("no transport class has been checked"));
    };
    // SAFETY: per the contract above, the object holds an object pointer (or NULL while unset)
    // at `offset`, as CPython's member descriptor reads it.
    let item = unsafe {
        *transport
            .as_ptr()
            .cast::<u8>()
            .offset(offset)
            .cast::<*mut ffi::PyObject>()
    };
    if item.is_null() {
        // Unset: the AttributeError that reading the attribute gives.
        return Err(transport
            .getattr(intern!(py, "_core"))
            .err()
            .unwrap_or_else(|| PyTypeError::new_err("transport._core is unset")));
    }
    // SAFETY: a live object the transport holds a reference to, borrowed while it is held.
    Ok(unsafe { Bound::from_borrowed_ptr(py, item) })
}

fn write(py: Python<'_>, transport: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    SocketStream::write(&core(py, transport)?, data)
}

fn writelines(
    py: Python<'_>,
    transport: &Bound<'_, PyAny>,
    list_of_data: &Bound<'_, PyAny>,
) -> PyResult<()> {
    SocketStream::writelines(&core(py, transport)?, list_of_data)
}

meth_o_entry!(write_o, "SocketTransport.write", write);
meth_o_entry!(writelines_o, "SocketTransport.writelines", writelines);

/// The native `write` and `writelines`, as method descriptors of `cls` (`SocketTransport`).
#[pyfunction]
pub fn socket_transport_methods(cls: &Bound<'_, PyType>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    check_core_slot(cls)?;
    Ok((
        cfunction_descriptor(
            cls,
            c"write",
            write_o,
            ffi::METH_O,
            c"Write data to the transport: sent at once if nothing is queued, the rest as the \
              socket takes it.",
        )?,
        cfunction_descriptor(
            cls,
            c"writelines",
            writelines_o,
            ffi::METH_O,
            c"Write a list (or any iterable) of data to the transport, in one vectored send.",
        )?,
    ))
}

const SENDTO: &str = "DatagramTransport.sendto";

/// `sendto(data, addr=None)`'s arguments, with the errors CPython gives a Python method of that
/// signature.
///
/// # Safety
/// `args` holds `nargs` positional arguments followed by one per name in `kwnames` (None or a
/// tuple of strings), all borrowed: METH_FASTCALL | METH_KEYWORDS's calling convention.
unsafe fn sendto_arguments<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    if nargs > 2 {
        return Err(PyTypeError::new_err(format!(
            "{}() takes from 2 to 3 positional arguments but {} were given",
            named_in_errors(py, SENDTO),
            nargs + 1
        )));
    }
    let arg = |i: usize| Bound::from_borrowed_ptr(py, *args.add(i));
    let mut slots = [None, None];
    for (i, slot) in slots.iter_mut().enumerate().take(nargs) {
        *slot = Some(arg(i));
    }
    if !kwnames.is_null() {
        let names = Bound::from_borrowed_ptr(py, kwnames).cast_into::<PyTuple>()?;
        for (k, name) in names.iter().enumerate() {
            let name = name.cast_into::<PyString>()?;
            let i = match name.to_str()? {
                "data" => 0,
                "addr" => 1,
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "{}() got an unexpected keyword argument '{other}'",
                        named_in_errors(py, SENDTO)
                    )))
                }
            };
            if slots[i].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{}() got multiple values for argument '{}'",
                    named_in_errors(py, SENDTO),
                    name.to_str()?
                )));
            }
            slots[i] = Some(arg(nargs + k));
        }
    }
    let [data, addr] = slots;
    let data = data.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{}() missing 1 required positional argument: 'data'",
            named_in_errors(py, SENDTO)
        ))
    })?;
    Ok((data, addr))
}

// SAFETY: CPython calls methods with the GIL held, passes `slf` checked against the descriptor's
// class and the arguments by METH_FASTCALL | METH_KEYWORDS's convention.
unsafe extern "C" fn sendto_fastcall(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let py = Python::assume_attached();
    let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
    call_for_cpython(py, "DatagramTransport.sendto", || {
        let (data, addr) = sendto_arguments(py, args, nargs, kwnames)?;
        let transport = Bound::from_borrowed_ptr(py, slf);
        DatagramSocket::sendto(&core(py, &transport)?, &data, addr)
    })
}

/// The native `sendto`, as a method descriptor of `cls` (`DatagramTransport`).
#[pyfunction]
pub fn datagram_sendto_method(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    check_core_slot(cls)?;
    const DOC: &CStr = c"Send data to addr (or to the connected peer): at once if nothing is \
                         queued, else when the socket is writable.";
    method_descriptor(
        cls,
        c"sendto",
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: sendto_fastcall,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        DOC,
    )
}

/// `is_closing()`, for either kind of transport.
fn is_closing(py: Python<'_>, transport: &Bound<'_, PyAny>) -> PyResult<bool> {
    let core = core_object(py, transport)?;
    if let Ok(stream) = core.cast::<SocketStream>() {
        return Ok(stream.get().base().is_closing(py));
    }
    Ok(core.cast::<DatagramSocket>()?.get().base().is_closing(py))
}

// SAFETY: CPython calls methods with the GIL held and passes `slf` checked against the
// descriptor's class.
unsafe extern "C" fn is_closing_noargs(
    slf: *mut ffi::PyObject,
    _unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let py = Python::assume_attached();
    call_for_cpython_returning(py, "transport is_closing", || {
        let transport = Bound::from_borrowed_ptr(py, slf);
        Ok(PyBool::new(py, is_closing(py, &transport)?)
            .to_owned()
            .into_any())
    })
}

/// The native `is_closing`, as a method descriptor of `cls` (the base of both transports).
#[pyfunction]
pub fn is_closing_method(cls: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    check_core_slot(cls)?;
    cfunction_descriptor(
        cls,
        c"is_closing",
        is_closing_noargs,
        ffi::METH_NOARGS,
        c"Return True if the transport is closing or closed.",
    )
}

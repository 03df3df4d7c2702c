//! A loop whose `time` was replaced. asyncio's turn and `call_later` read the clock through
//! `self.time()`, so a test that patches `loop.time` (`unittest.mock.patch.object(loop,
//! "time")`, as aiohttp's own suite does) or a subclass with its own `time()` moves the loop's
//! timers. The native turn reads the monotonic clock itself, and goes through `self.time()` only
//! once another `time` has been seen: at set-up (`_check_clock`) and on every write or deletion
//! of an attribute named `time`. The common case costs the turn one flag test.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::PyTypeInfo;

use super::LoopCore;
use crate::core::clock;

#[derive(Default)]
pub(super) struct ClockSource {
    /// The instance has an attribute `time` of its own.
    on_instance: bool,
    /// `self.time` is not LoopCore's: the time comes from calling it.
    replaced: bool,
}

impl LoopCore {
    /// What `self.time()` returns, if `time` was replaced; else None, and the caller reads the
    /// monotonic clock when (and only if) it needs it. Inlined, so that the common case is the
    /// flag test alone: as a call, twice per turn, it cost the call_soon chain 40 instructions
    /// per callback (callgrind).
    #[inline]
    pub(super) fn replaced_time<'py>(
        slf: &Bound<'py, LoopCore>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !slf.get().state.borrow(slf.py()).clock.replaced {
            return Ok(None);
        }
        LoopCore::call_replaced_time(slf).map(Some)
    }

    #[cold]
    #[inline(never)]
    fn call_replaced_time<'py>(slf: &Bound<'py, LoopCore>) -> PyResult<Bound<'py, PyAny>> {
        slf.call_method0(intern!(slf.py(), "time"))
    }

    fn note_time_attribute(
        slf: &Bound<'_, LoopCore>,
        name: &Bound<'_, PyString>,
        on_instance: bool,
    ) -> PyResult<()> {
        if name.to_str()? == "time" {
            slf.get().state.borrow_mut(slf.py()).clock.on_instance = on_instance;
            LoopCore::_check_clock(slf)?;
        }
        Ok(())
    }
}

/// `object.__setattr__(obj, name, value)`, or `object.__delattr__(obj, name)` for a null value.
fn generic_setattr(
    obj: &Bound<'_, PyAny>,
    name: &Bound<'_, PyString>,
    value: *mut ffi::PyObject,
) -> PyResult<()> {
    // SAFETY: obj and name are live objects; value is a live object or null (deletion), as
    // PyObject_GenericSetAttr takes them.
    if unsafe { ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value) } < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

#[pymethods]
impl LoopCore {
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    /// Looks again at whether `self.time` is LoopCore's own (the loop's `__init__` calls it).
    fn _check_clock(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let py = slf.py();
        let name = intern!(py, "time");
        let inherited = slf
            .get_type()
            .getattr(name)?
            .is(LoopCore::type_object(py).getattr(name)?);
        let mut st = slf.get().state.borrow_mut(py);
        st.clock.replaced = st.clock.on_instance || !inherited;
        Ok(())
    }

    fn __setattr__(
        slf: &Bound<'_, LoopCore>,
        name: &Bound<'_, PyString>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        generic_setattr(slf, name, value.as_ptr())?;
        LoopCore::note_time_attribute(slf, name, true)
    }

    fn __delattr__(slf: &Bound<'_, LoopCore>, name: &Bound<'_, PyString>) -> PyResult<()> {
        generic_setattr(slf, name, std::ptr::null_mut())?;
        LoopCore::note_time_attribute(slf, name, false)
    }
}

//! asyncio's `_asyncgen_firstiter_hook`, native. Python calls it when an async generator takes its
//! first step on a running loop: each `async with` over a `contextlib.asynccontextmanager`, each
//! `async for` over an async generator function (websockets' `send` makes one per message). The
//! loop keeps the generator in `_asyncgens`, a `weakref.WeakSet`, for `shutdown_asyncgens`.
//!
//! asyncio's hook is two Python calls, itself and `WeakSet.add`; here the weak reference goes
//! straight into the WeakSet's `data`, with the WeakSet's own `_remove` as its callback, which is
//! what `WeakSet.add` puts there. Before Python 3.14 `WeakSet.add` first makes the removals that
//! waited for an iteration to end (`_pending_removals`; 3.14's WeakSet iterates over a copy and
//! has none). asyncio's own hook runs instead after `shutdown_asyncgens` (for its warning), while
//! removals wait, and if `_asyncgens` is something else than a WeakSet.
//!
//! `_asyncgens` and `_asyncgens_shutdown_called` are the loop's own attributes (getters and setters
//! here), so the hook reads them without an attribute lookup, and the WeakSet's `data`, `_remove`
//! and `_pending_removals` are read once, when `_asyncgens` is set: a WeakSet sets them in
//! `__init__` and its methods only change what they hold.

use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySet, PyWeakrefReference};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::LoopCore;
use crate::pyobjects;

/// The loop's `_asyncgens` and `_asyncgens_shutdown_called`, as asyncio's `__init__` and
/// `shutdown_asyncgens` set them.
#[derive(Default)]
pub(super) struct AsyncGenState {
    /// `_asyncgens` (None until set), and its parts if it is a plain WeakSet.
    set: Option<Py<PyAny>>,
    parts: Option<WeakSetParts>,
    /// The truth of `_asyncgens_shutdown_called`, which asyncio sets to False, then True.
    shutdown_called: bool,
}

impl AsyncGenState {
    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.set)?;
        if let Some(parts) = &self.parts {
            parts.traverse(visit)?;
        }
        Ok(())
    }
}

/// What the hook uses of one `weakref.WeakSet`.
struct WeakSetParts {
    data: Py<PySet>,
    remove: Py<PyAny>,
    /// None from Python 3.14, whose WeakSet has no pending removals.
    pending_removals: Option<Py<PyList>>,
}

impl WeakSetParts {
    /// The parts of `set` if it is a plain WeakSet whose pending removals are a list.
    fn of(set: &Bound<'_, PyAny>) -> PyResult<Option<WeakSetParts>> {
        let py = set.py();
        if !set.get_type().is(pyobjects::weak_set_type(py)?) {
            return Ok(None);
        }
        let pending_removals = match set.getattr_opt(intern!(py, "_pending_removals"))? {
            None => None,
            Some(pending) => match pending.cast_into_exact::<PyList>() {
                Ok(list) => Some(list.unbind()),
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(WeakSetParts {
            data: set
                .getattr(intern!(py, "data"))?
                .cast_into::<PySet>()?
                .unbind(),
            remove: set.getattr(intern!(py, "_remove"))?.unbind(),
            pending_removals,
        }))
    }

    fn clone_ref(&self, py: Python<'_>) -> WeakSetParts {
        WeakSetParts {
            data: self.data.clone_ref(py),
            remove: self.remove.clone_ref(py),
            pending_removals: self
                .pending_removals
                .as_ref()
                .map(|list| list.clone_ref(py)),
        }
    }

    /// Adds a weak reference to `agen`, as `WeakSet.add` does, unless removals wait (false).
    fn add(&self, agen: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = agen.py();
        if let Some(pending) = &self.pending_removals {
            if !pending.bind(py).is_empty() {
                return Ok(false);
            }
        }
        let reference = PyWeakrefReference::new_with(agen, self.remove.bind(py))?;
        self.data.bind(py).add(reference)?;
        Ok(true)
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.data)?;
        visit.call(&self.remove)?;
        visit.call(&self.pending_removals)
    }
}

#[pymethods]
impl LoopCore {
    fn _asyncgen_firstiter_hook(
        slf: &Bound<'_, LoopCore>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        // Cloned out of the state: making the weak reference can run a garbage collection, and
        // with it any Python code.
        let parts = {
            let st = slf.get().state.borrow(py);
            let gens = &st.asyncgens;
            (!gens.shutdown_called)
                .then(|| gens.parts.as_ref().map(|parts| parts.clone_ref(py)))
                .flatten()
        };
        if let Some(parts) = parts {
            if parts.add(agen)? {
                return Ok(());
            }
        }
        pyobjects::base_asyncgen_firstiter_hook(py)?.call1((slf, agen))?;
        Ok(())
    }

    #[getter(_asyncgens)]
    fn get_asyncgens(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let set = slf
            .get()
            .state
            .borrow(py)
            .asyncgens
            .set
            .as_ref()
            .map(|set| set.clone_ref(py));
        set.ok_or_else(|| missing_attribute(slf, "_asyncgens"))
    }

    #[setter(_asyncgens)]
    fn set_asyncgens(&self, value: Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        let parts = WeakSetParts::of(&value)?;
        let replaced = {
            let mut st = self.state.borrow_mut(py);
            let gens = &mut st.asyncgens;
            (
                gens.set.replace(value.unbind()),
                std::mem::replace(&mut gens.parts, parts),
            )
        };
        // Let go of after the borrow: freeing a WeakSet may run Python code.
        drop(replaced);
        Ok(())
    }

    /// Kept as its truth, as `_debug` is.
    #[getter(_asyncgens_shutdown_called)]
    fn get_asyncgens_shutdown_called(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).asyncgens.shutdown_called
    }

    #[setter(_asyncgens_shutdown_called)]
    fn set_asyncgens_shutdown_called(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let called = value.is_truthy()?;
        self.state.borrow_mut(value.py()).asyncgens.shutdown_called = called;
        Ok(())
    }
}

/// The error of reading an attribute not set yet, as Python words it.
fn missing_attribute(obj: &Bound<'_, LoopCore>, name: &str) -> PyErr {
    let class = obj
        .get_type()
        .name()
        .map_or_else(|_| "EventLoop".to_owned(), |n| n.to_string());
    PyAttributeError::new_err(format!("'{class}' object has no attribute '{name}'"))
}

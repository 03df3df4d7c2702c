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
//! The WeakSet's `data`, `_remove` and `_pending_removals` are read once per WeakSet, not once per
//! generator: a WeakSet sets them in `__init__` and its methods only change what they hold. They
//! are kept with the WeakSet itself, whose identity tells whether `_asyncgens` still names it.

use pyo3::prelude::*;
use pyo3::types::{PyList, PySet, PyWeakrefReference};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::LoopCore;
use crate::pyobjects;

/// What the hook uses of one `weakref.WeakSet`.
pub(super) struct WeakSetParts {
    /// The WeakSet: held, so that no other object can take its address while it is compared.
    set: Py<PyAny>,
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
            set: set.clone().unbind(),
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
            set: self.set.clone_ref(py),
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

    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.set)?;
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
        let gens = slf.getattr(intern!(py, "_asyncgens"))?;
        let shutdown = slf.getattr(intern!(py, "_asyncgens_shutdown_called"))?;
        if !shutdown.is_truthy()? {
            if let Some(parts) = slf.get().asyncgens_parts(&gens)? {
                if parts.add(agen)? {
                    return Ok(());
                }
            }
        }
        pyobjects::base_asyncgen_firstiter_hook(py)?.call1((slf, agen))?;
        Ok(())
    }
}

impl LoopCore {
    /// The parts of `gens`, the loop's `_asyncgens`: those kept if it is the WeakSet they were
    /// read from, else read and kept; None if it is not a plain WeakSet.
    fn asyncgens_parts(&self, gens: &Bound<'_, PyAny>) -> PyResult<Option<WeakSetParts>> {
        let py = gens.py();
        let kept = self
            .state
            .borrow(py)
            .asyncgens
            .as_ref()
            .map(|parts| parts.clone_ref(py));
        if let Some(parts) = kept.filter(|parts| parts.set.is(gens)) {
            return Ok(Some(parts));
        }
        let parts = WeakSetParts::of(gens)?;
        let replaced = {
            let mut st = self.state.borrow_mut(py);
            std::mem::replace(
                &mut st.asyncgens,
                parts.as_ref().map(|parts| parts.clone_ref(py)),
            )
        };
        // Let go of after the borrow: freeing a WeakSet may run Python code.
        drop(replaced);
        Ok(parts)
    }
}

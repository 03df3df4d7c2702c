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

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PySet, PyWeakrefReference};

use super::LoopCore;
use crate::pyobjects;

#[pymethods]
impl LoopCore {
    fn _asyncgen_firstiter_hook(
        slf: &Bound<'_, LoopCore>,
        agen: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let gens = slf.getattr(intern!(py, "_asyncgens"))?;
        let shutdown = slf.getattr(intern!(py, "_asyncgens_shutdown_called"))?;
        let removals_wait = || -> PyResult<bool> {
            match gens.getattr_opt(intern!(py, "_pending_removals"))? {
                Some(pending) => pending.is_truthy(),
                None => Ok(false),
            }
        };
        if shutdown.is_truthy()?
            || !gens.get_type().is(pyobjects::weak_set_type(py)?)
            || removals_wait()?
        {
            pyobjects::base_asyncgen_firstiter_hook(py)?.call1((slf, agen))?;
            return Ok(());
        }
        let data = gens.getattr(intern!(py, "data"))?.cast_into::<PySet>()?;
        let remove = gens.getattr(intern!(py, "_remove"))?;
        data.add(PyWeakrefReference::new_with(agen, remove)?)
    }
}

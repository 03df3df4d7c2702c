//! `create_task`, `create_future` and the task factory: tasks are CPython's own `asyncio.Task`.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::LoopCore;
use crate::pyobjects;

/// Python 3.13 forwards any keyword of `create_task` to the task factory or to `Task`.
fn forwards_all_kwargs(py: Python<'_>) -> bool {
    py.version_info() >= (3, 13)
}

fn set_task_name(task: &Bound<'_, PyAny>, name: &Bound<'_, PyAny>) -> PyResult<()> {
    if name.is_none() {
        return Ok(());
    }
    let py = task.py();
    match py.import("asyncio.tasks")?.getattr("_set_task_name") {
        Ok(helper) => helper.call1((task, name)).map(|_| ()),
        Err(_) => task.call_method1("set_name", (name,)).map(|_| ()),
    }
}

#[pymethods]
impl LoopCore {
    #[pyo3(signature = (coro, *, name=None, context=None, **kwargs))]
    fn create_task(
        slf: &Bound<'_, LoopCore>,
        coro: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        let factory = this
            .state
            .borrow(py)
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py));
        let name = name.filter(|n| !n.is_none());
        let context = context.filter(|c| !c.is_none());
        let extra = PyDict::new(py);
        if let Some(kwargs) = kwargs {
            if !forwards_all_kwargs(py) {
                let key = kwargs.keys().get_item(0)?;
                return Err(PyTypeError::new_err(format!(
                    "create_task() got an unexpected keyword argument {}",
                    key.repr()?
                )));
            }
            extra.update(kwargs.as_mapping())?;
        }
        if let Some(context) = context {
            extra.set_item("context", context)?;
        }
        let task = match factory {
            None => {
                extra.set_item("loop", slf)?;
                if let Some(name) = name {
                    extra.set_item("name", name)?;
                }
                // asyncio deletes its own create_task frame from a debug-mode task's creation
                // stack; this create_task is native and leaves no frame, so nothing is deleted.
                pyobjects::task_type(py)?.call((coro,), Some(&extra))?
            }
            Some(factory) => {
                if forwards_all_kwargs(py) {
                    if let Some(name) = name {
                        extra.set_item("name", name)?;
                    }
                    factory.bind(py).call((slf, coro), Some(&extra))?
                } else {
                    let kw = (!extra.is_empty()).then_some(&extra);
                    let task = factory.bind(py).call((slf, coro), kw)?;
                    if let Some(name) = name {
                        set_task_name(&task, name)?;
                    }
                    task
                }
            }
        };
        Ok(task.unbind())
    }

    fn create_future(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let future = pyobjects::future_type(py)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("loop", slf)?;
        Ok(future.call(PyTuple::empty(py), Some(&kwargs))?.unbind())
    }

    fn set_task_factory(&self, py: Python<'_>, factory: Py<PyAny>) -> PyResult<()> {
        let factory = (!factory.is_none(py)).then_some(factory);
        if let Some(f) = &factory {
            if !f.bind(py).is_callable() {
                return Err(PyTypeError::new_err(
                    "task factory must be a callable or None",
                ));
            }
        }
        let old = std::mem::replace(&mut self.state.borrow_mut(py).task_factory, factory);
        drop(old);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow(py)
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py))
    }
}

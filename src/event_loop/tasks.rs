//! `create_task`, `create_future` and the task factory: tasks are CPython's own `asyncio.Task`.

use pyo3::exceptions::PyTypeError;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use super::LoopCore;
use crate::errors::named_in_errors;
use crate::pyobjects;

/// From Python 3.13.3, `create_task` forwards any keyword to the task factory or to `Task`
/// (gh-128307; 3.13.0-3.13.2 take `name` and `context` only).
fn forwards_all_kwargs(py: Python<'_>) -> bool {
    py.version_info() >= (3, 13, 3)
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

/// The keyword names of `Task(coro, loop=..., [name=...], [context=...])`, made once per combination.
fn keyword_names(py: Python<'_>, name: bool, context: bool) -> &Bound<'_, PyTuple> {
    static NAMES: [PyOnceLock<Py<PyTuple>>; 4] = [const { PyOnceLock::new() }; 4];
    let index = usize::from(name) | (usize::from(context) << 1);
    NAMES[index]
        .get_or_init(py, || {
            let mut names = vec!["loop"];
            if name {
                names.push("name");
            }
            if context {
                names.push("context");
            }
            PyTuple::new(py, names).expect("a tuple of str").unbind()
        })
        .bind(py)
}

/// `callable(*values[..npositional], **dict(zip(names, values[npositional..])))` without the
/// dict. The values are borrowed pointers that the caller keeps alive for the call.
fn vectorcall<'py>(
    callable: &Bound<'py, PyAny>,
    values: &[*mut ffi::PyObject],
    npositional: usize,
    names: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    debug_assert_eq!(values.len() - npositional, names.len());
    // SAFETY: live borrowed references, and one keyword name per value after the positional ones.
    unsafe {
        Bound::from_owned_ptr_or_err(
            callable.py(),
            ffi::PyObject_Vectorcall(
                callable.as_ptr(),
                values.as_ptr(),
                npositional,
                names.as_ptr(),
            ),
        )
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
        if factory.is_none() && kwargs.is_none() {
            // The common case, called once per task: a vectorcall with keyword names, no dict.
            // asyncio deletes its own create_task frame from a debug-mode task's creation stack;
            // this create_task is native and leaves no frame, so nothing is deleted.
            let task_type = pyobjects::task_type(py)?;
            let mut values = [
                coro.as_ptr(),
                slf.as_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            ];
            let mut len = 2;
            for value in [name, context].into_iter().flatten() {
                values[len] = value.as_ptr();
                len += 1;
            }
            let names = keyword_names(py, name.is_some(), context.is_some());
            return Ok(vectorcall(task_type.as_any(), &values[..len], 1, names)?.unbind());
        }
        let extra = PyDict::new(py);
        if let Some(kwargs) = kwargs {
            if !forwards_all_kwargs(py) {
                let key = kwargs.keys().get_item(0)?;
                return Err(PyTypeError::new_err(format!(
                    "{}() got an unexpected keyword argument {}",
                    named_in_errors(py, "BaseEventLoop.create_task"),
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
        let names = keyword_names(py, false, false);
        Ok(vectorcall(future.as_any(), &[slf.as_ptr()], 0, names)?.unbind())
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

//! The native base of `ferroloop.EventLoop`: everything that runs per callback, per timer and per
//! I/O event. The Python subclass (`python/ferroloop/_loop.py`) adds what runs once per loop or
//! per call of a rare API: `run_forever`'s set-up, executors, `shutdown_asyncgens`, error reports.
//!
//! Handles and the garbage collector. Handles must be visible to the collector (a fired timer
//! whose callback is a bound method of its owner is a cycle), but a million queued callbacks
//! would make every collection walk a million handles. So a handle made by `call_soon`,
//! `call_later` or `call_at` while the loop runs is untracked while it sits in the scheduler,
//! where exactly one slot owns it; while the loop runs it is reachable anyway, and its traverse
//! (`gc.rs`) skips the queue. When the loop stops, every queued handle that someone else also
//! holds is tracked again, so that the collector sees those references; the rest are owned by
//! their slot alone, and the loop's traverse visits their references itself, on their behalf,
//! the loop included, so that an unclosed loop dropped with callbacks still queued is collected
//! (and warned about) as asyncio's is. Handles queued while the loop is stopped stay tracked.
//! The moment the queue lets go of a handle (it ran, was dropped at close) or it is cancelled,
//! it is tracked again if anyone else still holds it. Handles of `add_reader`/`add_writer`,
//! which the loop holds in two places at once, are always tracked.
//!
//! The context copy each handle makes (asyncio copies the current context per callback) would
//! undo that: a million queued callbacks' contexts survived young collections into the oldest
//! generation and set off full collections that walked them all (11 of them took 435 ms of an
//! 869 ms fan-out of 1M callbacks). So a handle queued behind many others holds only the copied
//! variables, an immutable mapping it shares with the caller's context, and makes its Context
//! when it runs (`context_vars.rs`).

mod asyncgens;
mod clock_source;
mod exit;
mod fastcall;
mod gc;
mod io;
mod schedule;
mod sock_waits;
mod task_calls;
mod tasks;
pub(crate) mod threadsafe;
mod turn;

use clock_source::ClockSource;
pub use exit::close_exit_gate;
pub use task_calls::_register_task_calls;
use task_calls::Ready;

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use pyo3::{PyTraverseError, PyVisit};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::core::fork;
use crate::core::poller::{self, Interests, LoopWaker, Poller, Readiness};
use crate::core::scheduler::Scheduler;
use crate::errors::os_error;
use crate::gil::GilCell;
use crate::handles::Handle;

/// The callbacks `add_reader`/`add_writer` installed for one fd.
#[derive(Default)]
struct FdCallbacks {
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    /// The file object (not an int) the fd was registered through: a selector key's `fileobj`,
    /// found by identity once the object has no fd any more (a closed socket).
    fileobj: Option<Py<PyAny>>,
    /// Whether the reader (writer) is a `sock_*` call's, which asks for an edge-triggered watch.
    reader_edge: bool,
    writer_edge: bool,
    /// The generation of the fd's registration (see `Interests::generation`).
    generation: u32,
}

struct LoopState {
    scheduler: Scheduler<Py<Handle>, Ready>,
    interests: Interests,
    /// By fd, with FxHash: fds are small integers the kernel hands out, and SipHash, std's
    /// default, cost about 100 instructions per readiness event (callgrind).
    fd_callbacks: FxHashMap<RawFd, FdCallbacks>,
    /// Weak references to the file objects of the fds whose edge registration is parked (see
    /// `core::interests`): a `sock_*` call that waits on the same object again finds it there.
    parked_files: FxHashMap<RawFd, Py<PyWeakrefReference>>,
    /// Fds whose transport holds data it has already taken from the kernel (datagrams read in a
    /// batch, handed over one per turn): their reader runs in the next turn whether or not the
    /// poll reports them, as it would if the data were still queued in the kernel.
    held_readable: Vec<RawFd>,
    /// `_asyncgens` and `_asyncgens_shutdown_called`, which the async generator hook reads.
    asyncgens: asyncgens::AsyncGenState,
    /// Scratch buffer the poller fills each turn, kept to avoid an allocation per turn.
    events: Vec<Readiness>,
    closed: bool,
    stopping: bool,
    debug: bool,
    /// `threading.get_ident()` of the thread running the loop, or None when it is not running.
    thread_id: Option<Py<PyAny>>,
    /// Queued `call_soon_threadsafe` handles whose cancel waits for a running callback (by
    /// address; see `threadsafe`), and the one whose callback runs now.
    threadsafe_queued: FxHashSet<usize>,
    running_threadsafe: Option<threadsafe::Running>,
    task_factory: Option<Py<PyAny>>,
    /// Where the turn and `call_later` read the time (see `clock_source`).
    clock: ClockSource,
}

#[pyclass(frozen, subclass, module = "ferroloop._ferroloop")]
pub struct LoopCore {
    state: GilCell<LoopState>,
    /// Only the thread running the loop blocks on it; the lock is never contended. None once
    /// the loop is closed: its epoll instance and signal pipe are let go of then, as asyncio's
    /// close() closes its selector, not when the loop object is freed.
    poller: Mutex<Option<Poller>>,
    waker: LoopWaker,
    /// The fork generation the loop was made in (see `core::fork`).
    fork_generation: u64,
}

impl LoopState {
    /// The held fds whose reader is installed and not cancelled, with that reader.
    fn held_readers(&self) -> impl Iterator<Item = (RawFd, &Py<Handle>)> {
        self.held_readable.iter().filter_map(|fd| {
            let reader = self.fd_callbacks.get(fd)?.reader.as_ref()?;
            (!reader.get().cancelled()).then_some((*fd, reader))
        })
    }

    /// Everything queued, taken out of the scheduler (to be let go of by `release_queued`).
    fn take_queued(&mut self) -> (Vec<Ready>, Vec<Py<Handle>>) {
        self.threadsafe_queued.clear();
        self.scheduler.clear()
    }
}

/// Lets go of what was taken out of the scheduler without running it.
fn release_queued(py: Python<'_>, (ready, timers): (Vec<Ready>, Vec<Py<Handle>>)) {
    let handles = ready.into_iter().filter_map(|entry| match entry {
        Ready::Handle(handle) => Some(handle),
        Ready::Call(_) => None,
    });
    for handle in handles.chain(timers) {
        Handle::leave_queue(handle.bind(py));
    }
}

/// Finishes the LoopCore type once PyO3 has made it: entry points that PyO3 cannot express as
/// cheaply as CPython's own calling convention.
pub(crate) fn finish_type(loop_type: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    fastcall::install(loop_type)
}

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

impl LoopCore {
    pub(crate) fn debug(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).debug
    }

    pub(crate) fn timer_handle_cancelled(&self, py: Python<'_>) {
        self.state.borrow_mut(py).scheduler.timer_cancelled();
    }

    /// True in a process forked after the loop was made: its poller and waker belong to the
    /// parent, so the loop must neither run nor touch them.
    pub(crate) fn is_inherited_through_fork(&self) -> bool {
        self.fork_generation != fork::generation()
    }

    pub(crate) fn check_not_inherited(&self) -> PyResult<()> {
        if self.is_inherited_through_fork() {
            return Err(PyRuntimeError::new_err(
                "this event loop was created before fork() and belongs to the parent process",
            ));
        }
        Ok(())
    }

    /// When the loop stops running: tracks every queued handle that someone besides the queue
    /// holds (a timer kept by its owner, a sleeping coroutine's handle). From here on the loop's
    /// walk sees through untracked handles, which is exact only for a handle one slot owns: a
    /// reference the collector cannot see from elsewhere would let it clear a loop that is
    /// still reachable through that handle.
    fn track_shared_handles(&self, py: Python<'_>) {
        let st = self.state.borrow(py);
        let ready = st.scheduler.iter_ready().filter_map(Ready::handle);
        for handle in ready.chain(st.scheduler.iter_timers()) {
            // SAFETY: reading the reference count of a live object.
            if !Handle::is_tracked(handle) && unsafe { pyo3::ffi::Py_REFCNT(handle.as_ptr()) } > 1 {
                Handle::track(handle.bind(py));
            }
        }
    }

    fn check_closed(&self, py: Python<'_>) -> PyResult<()> {
        if self.state.borrow(py).closed {
            return Err(closed_error());
        }
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        _args: &Bound<'_, pyo3::types::PyTuple>,
        _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let (poller, interests, waker) = poller::new().map_err(os_error)?;
        Ok(LoopCore {
            state: GilCell::new(LoopState {
                scheduler: Scheduler::new(),
                interests,
                fd_callbacks: FxHashMap::default(),
                parked_files: FxHashMap::default(),
                held_readable: Vec::new(),
                asyncgens: asyncgens::AsyncGenState::default(),
                events: Vec::with_capacity(64),
                closed: false,
                stopping: false,
                debug: false,
                thread_id: None,
                threadsafe_queued: FxHashSet::default(),
                running_threadsafe: None,
                task_factory: None,
                clock: ClockSource::default(),
            }),
            poller: Mutex::new(Some(poller)),
            waker,
            fork_generation: fork::generation(),
        })
    }

    fn is_closed(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closed
    }

    fn is_running(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).thread_id.is_some()
    }

    fn get_debug(&self, py: Python<'_>) -> bool {
        self.debug(py)
    }

    #[getter(_debug)]
    fn get_debug_attr(&self, py: Python<'_>) -> bool {
        self.debug(py)
    }

    /// asyncio's `set_debug` stores whatever it is given (`set_debug(0)` is common); the loop
    /// keeps its truth value.
    #[setter(_debug)]
    fn set_debug_attr(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let debug = value.is_truthy()?;
        self.state.borrow_mut(value.py()).debug = debug;
        Ok(())
    }

    #[getter(_closed)]
    fn get_closed_attr(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).closed
    }

    #[getter(_stopping)]
    fn get_stopping(&self, py: Python<'_>) -> bool {
        self.state.borrow(py).stopping
    }

    #[setter(_stopping)]
    fn set_stopping(&self, py: Python<'_>, value: bool) {
        self.state.borrow_mut(py).stopping = value;
    }

    #[getter(_thread_id)]
    fn get_thread_id(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state
            .borrow(py)
            .thread_id
            .as_ref()
            .map(|t| t.clone_ref(py))
    }

    #[setter(_thread_id)]
    fn set_thread_id(&self, py: Python<'_>, value: Option<Py<PyAny>>) {
        let value = value.filter(|v| !v.is_none(py));
        let stops = value.is_none();
        let old = std::mem::replace(&mut self.state.borrow_mut(py).thread_id, value);
        drop(old);
        if stops {
            self.track_shared_handles(py);
        }
    }

    /// The fd `run_forever` hands to `signal.set_wakeup_fd` in the main thread, so that a signal
    /// arriving just before the poll blocks still wakes it (`core::poller::SignalPipe`).
    fn _signal_wakeup_fd(&self) -> PyResult<RawFd> {
        self.check_not_inherited()?;
        let mut poller = self
            .poller
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("This event loop is already running"))?;
        let poller = poller.as_mut().ok_or_else(closed_error)?;
        poller.signal_wakeup_fd().map_err(os_error)
    }

    #[getter(_timer_cancelled_count)]
    fn timer_cancelled_count(&self, py: Python<'_>) -> usize {
        self.state.borrow(py).scheduler.cancelled_timers()
    }

    /// How many callbacks wait in the ready queue and how many timers in the heap (for tests and
    /// introspection; asyncio's `len(loop._ready)`, `len(loop._scheduled)`).
    fn _queue_sizes(&self, py: Python<'_>) -> (usize, usize) {
        let st = self.state.borrow(py);
        (st.scheduler.ready_len(), st.scheduler.timers_len())
    }

    fn stop(&self, py: Python<'_>) {
        self.state.borrow_mut(py).stopping = true;
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Runs with the GIL held; a state borrowed at that moment is skipped, not trusted.
        let Some(st) = self.state.try_borrow_for_gc() else {
            return Ok(());
        };
        for callbacks in st.fd_callbacks.values() {
            visit.call(&callbacks.reader)?;
            visit.call(&callbacks.writer)?;
            visit.call(&callbacks.fileobj)?;
        }
        visit.call(&st.task_factory)?;
        st.asyncgens.traverse(&visit)?;
        gc::walk_queue(&st, &mut |obj: &Py<PyAny>| visit.call(obj))
    }

    fn __clear__(&self, py: Python<'_>) {
        let (queued, callbacks, factory, asyncgens) = {
            let mut st = self.state.borrow_mut(py);
            (
                st.take_queued(),
                std::mem::take(&mut st.fd_callbacks),
                st.task_factory.take(),
                std::mem::take(&mut st.asyncgens),
            )
        };
        release_queued(py, queued);
        drop((callbacks, factory, asyncgens));
    }

    /// Marks the loop closed, drops every queued callback, timer and fd watch, and closes the
    /// epoll instance, the waker's eventfd and the signal pipe. The Python `close()` does the
    /// checks and the executor shutdown around it.
    fn _close_core(&self, py: Python<'_>) {
        let (queued, callbacks) = {
            let mut st = self.state.borrow_mut(py);
            st.closed = true;
            let queued = st.take_queued();
            st.interests.close();
            let callbacks = std::mem::take(&mut st.fd_callbacks);
            let parked = std::mem::take(&mut st.parked_files);
            st.held_readable.clear();
            (queued, (callbacks, parked))
        };
        // A loop that is not running holds no lock on its poller. (In a forked child these fds
        // are copies: closing them leaves the parent's alone.)
        if let Ok(mut poller) = self.poller.try_lock() {
            drop(poller.take());
        }
        self.waker.close();
        // Released outside the borrow: dropping a callback may run arbitrary Python code.
        release_queued(py, queued);
        drop(callbacks);
    }
}

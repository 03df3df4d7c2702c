//! The loop's traverse: the queued handles.
//!
//! A handle queued by `call_soon`/`call_later`/`call_at` while the loop runs is untracked while
//! it waits; once the loop stops, such a handle is held by its queue slot alone (see "Handles and
//! the garbage collector" in `mod.rs`), so the loop visits its referents on its behalf.
//!
//! While the loop runs, the walk is skipped. A running loop is reachable from outside the
//! collector's view (the running-loop thread-local, the `run_forever` frame), so whatever its
//! queue references is reachable through it anyway: not visiting those references leaves them
//! counted as referenced from outside, which is the same verdict, reached without walking every
//! queued callback in every full collection. The walk matters for a loop that is not running,
//! which may be garbage: an unclosed loop dropped with callbacks queued is then collected.

use pyo3::prelude::*;

use super::{LoopState, Ready};
use crate::handles::Handle;

/// Visits the queued handles, or the referents of the untracked ones on their behalf.
pub(super) fn walk_queue<E>(
    st: &LoopState,
    visit: &mut impl FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    if st.thread_id.is_some() {
        return Ok(());
    }
    for entry in st.scheduler.iter_ready() {
        match entry {
            Ready::Handle(handle) => walk_handle(handle, visit)?,
            Ready::Call(call) => call.walk_referents(visit)?,
        }
    }
    for handle in st.scheduler.iter_timers() {
        walk_handle(handle, visit)?;
    }
    Ok(())
}

/// A queued handle: visited if tracked, else its referents on its behalf.
fn walk_handle<E>(
    handle: &Py<Handle>,
    visit: &mut impl FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    if Handle::is_tracked(handle) {
        visit(handle.as_any())
    } else {
        handle.get().walk_referents(visit)
    }
}

//! The loop's side of interpreter exit on Python 3.9 to 3.13 (`core/exit_gate.rs`).

use std::time::Duration;

use pyo3::prelude::*;

use crate::core::exit_gate::GATE;

/// How long the exit waits for loops of other threads that are running callbacks to get to their
/// poll. A turn's callbacks take far less; a callback that blocks must not hold the exit up long.
const BUSY_LOOPS_WAIT: Duration = Duration::from_millis(500);

/// `ferroloop`'s `atexit` callback: from now on, a loop of another thread that returns from its
/// poll parks for good instead of asking for the GIL. Waits, with the GIL let go, for the loops
/// that are running callbacks to get to their poll; returns whether they all did in time.
#[pyfunction]
pub fn close_exit_gate(py: Python<'_>) -> bool {
    py.detach(|| GATE.close(BUSY_LOOPS_WAIT))
}

//! State shared between the loop's methods, guarded by the interpreter lock instead of a mutex.
//!
//! Every method of the loop runs with the GIL held, and callbacks re-enter the loop (a callback
//! calls `call_soon`), so the loop's state is borrowed briefly and never across a Python call.
//! PyO3 needs `Sync` pyclasses; the GIL is what makes these accesses exclusive, which is why the
//! module declares `gil_used`: a free-threaded interpreter keeps the GIL on while ferroloop is loaded.

use std::cell::{Ref, RefCell, RefMut};

use pyo3::Python;

pub struct GilCell<T>(RefCell<T>);

// SAFETY: the cell is only reached through `borrow`/`borrow_mut`, which require a `Python` token,
// i.e. the GIL; the module is marked `gil_used`, so no two threads hold such a token at once.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        GilCell(RefCell::new(value))
    }

    #[inline]
    pub fn borrow<'a>(&'a self, _py: Python<'_>) -> Ref<'a, T> {
        self.0.borrow()
    }

    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> RefMut<'a, T> {
        self.0.borrow_mut()
    }
}

impl<T> GilCell<T> {
    /// For `__traverse__`, which gets no `Python` token but runs with the GIL held: the state if
    /// it is not being mutated.
    pub fn try_borrow_for_gc(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}

//! State shared between the loop's methods, guarded by the interpreter lock instead of a mutex.
//!
//! Every method of the loop runs with the GIL held, and callbacks re-enter the loop (a callback
//! calls `call_soon`), so the loop's state is borrowed briefly and never across a Python call.
//! PyO3 needs `Sync` pyclasses; the GIL is what makes these accesses exclusive, which is why the
//! module declares `gil_used`: a free-threaded interpreter keeps the GIL on while ferroloop is loaded.

use std::cell::{Ref, RefCell, RefMut, UnsafeCell};

use pyo3::{Py, Python};

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

/// One optional reference, guarded by the GIL like `GilCell`, without a borrow flag: it is only
/// ever read as a new reference or replaced whole, so no borrow of it is ever live. A handle holds
/// three of these, and the flag it saves on each keeps the handle in a smaller allocation class.
pub struct GilSlot<T>(UnsafeCell<Option<Py<T>>>);

// SAFETY: the slot is only reached through methods that take a `Python` token (or, for the
// collector, run with the GIL held); the module is `gil_used`, so these never overlap.
unsafe impl<T> Sync for GilSlot<T> {}

impl<T> GilSlot<T> {
    pub fn new(value: Option<Py<T>>) -> Self {
        GilSlot(UnsafeCell::new(value))
    }

    /// A new reference to what the slot holds. Taking a reference runs no Python code, so nothing
    /// can replace the value while it is read.
    #[inline]
    pub fn get(&self, py: Python<'_>) -> Option<Py<T>> {
        // SAFETY: GIL held (the token); no reference into the slot outlives this call.
        unsafe { (*self.0.get()).as_ref().map(|v| v.clone_ref(py)) }
    }

    /// Puts `value` in the slot and gives back what it held, for the caller to drop once the
    /// slot is consistent again: a destructor may run Python code that reaches this slot.
    #[inline]
    pub fn replace(&self, _py: Python<'_>, value: Option<Py<T>>) -> Option<Py<T>> {
        // SAFETY: GIL held (the token); the swap runs no Python code.
        unsafe { std::mem::replace(&mut *self.0.get(), value) }
    }

    #[inline]
    pub fn take(&self, py: Python<'_>) -> Option<Py<T>> {
        self.replace(py, None)
    }

    /// For `__traverse__`, which gets no `Python` token but runs with the GIL held and calls no
    /// Python code while it looks.
    ///
    /// # Safety
    /// The GIL must be held, and the slot must not be replaced while the reference is alive.
    #[inline]
    pub unsafe fn peek(&self) -> Option<&Py<T>> {
        // SAFETY: as the caller promises.
        unsafe { (*self.0.get()).as_ref() }
    }

    /// For `Drop`, which holds the object exclusively: what the slot held, leaving it empty.
    pub fn take_exclusive(&mut self) -> Option<Py<T>> {
        self.0.get_mut().take()
    }
}

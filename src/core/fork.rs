//! Fork detection. A forked child inherits the parent's epoll instance and eventfd as shared
//! kernel objects: a child that registered or removed an fd on an inherited loop would change the
//! parent's watch set, and its wake-ups would wake the parent. Every fork in a child bumps a
//! process-wide generation; a loop remembers the generation it was made in and refuses to run or
//! touch its poller in any other. The child also recounts the exit gate's busy loops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Runs in the child right after fork(): atomic operations and a read of a thread-local
    // without initializer or destructor are async-signal-safe.
    GENERATION.fetch_add(1, Ordering::SeqCst);
    super::exit_gate::GATE.after_fork_in_child();
}

/// Registers the fork handler (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// How many forks separate this process from the one that loaded the module.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_in_the_child_bumps_the_generation() {
        install();
        let before = generation();
        after_fork_in_child();
        assert_eq!(generation(), before + 1);
    }
}

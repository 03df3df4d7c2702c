//! The registration half of the poller: which fds the epoll instance watches, for what, and how.
//!
//! Most fds are watched level-triggered, as asyncio's `EpollSelector` watches them: a reader that
//! leaves data unread is reported again. A watch that stops is taken off the instance at once
//! (`EPOLL_CTL_DEL`), since a level-triggered registration left behind would report its fd for as
//! long as the fd stays readable, even after the fd is closed if another process or a `dup` keeps
//! the file open, and then could not be taken off any more: `epoll_ctl` names the file by a number
//! that no longer leads to it. A caller that pauses a watch it will resume on the same file can
//! have it parked instead, made edge-triggered for nothing (`pause`).
//!
//! Watches asked for edge-triggered (`Watch::edge`: those of the `sock_*` calls, which try the
//! socket before they wait) are kept on the instance when they stop, *parked*: a `sock_recv` loop
//! removes its reader after each message and adds it again for the next one, two `epoll_ctl` calls
//! per message that a parked registration saves. A parked registration reports at most one event
//! per edge, whatever happens to its file, so one left behind costs a wake-up per new edge, never
//! a busy loop. Its first event takes it off the instance (nobody waits on it any more); so does
//! a watch of the same number that the caller cannot vouch for (`same_file`: the number may have
//! been closed and opened again), which modifies it and, when the kernel answers that the number
//! now names another file, registers that file anew.
//!
//! Each registration carries a generation beside its fd in the event's data, so that events of a
//! registration left behind for a file closed under it are told apart from those of the file the
//! number names now (`generation`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use mio::Registry;
use rustc_hash::FxHashMap;

/// What an fd is to be watched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watch {
    pub read: bool,
    pub write: bool,
    /// Edge-triggered, parked when the watch stops (see the module's comment).
    pub edge: bool,
}

impl Watch {
    pub fn level(read: bool, write: bool) -> Self {
        Watch {
            read,
            write,
            edge: false,
        }
    }

    fn any(self) -> bool {
        self.read || self.write
    }

    /// The epoll bits, as mio would ask for them (but `EPOLLET` only for an edge watch).
    fn epoll_bits(self) -> u32 {
        let mut bits = 0;
        if self.read {
            bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            bits |= libc::EPOLLOUT as u32;
        }
        if self.edge {
            bits |= libc::EPOLLET as u32;
        }
        bits
    }
}

/// An fd's registration on the epoll instance.
#[derive(Debug, Clone, Copy)]
struct Registration {
    /// What the instance watches the fd for (kept while parked).
    kernel: Watch,
    /// False while parked: nobody waits on the fd.
    wanted: bool,
    generation: u32,
}

/// The epoll event data of fd `fd` registered in `generation`.
fn event_data(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// The fd and generation an event's data names.
pub fn from_event_data(data: u64) -> (RawFd, u32) {
    (data as u32 as RawFd, (data >> 32) as u32)
}

pub struct Interests {
    /// mio's handle on the epoll instance (a duplicate of its fd), through which fds are
    /// registered; None once closed.
    registry: Option<Registry>,
    registered: FxHashMap<RawFd, Registration>,
    next_generation: u32,
}

impl Interests {
    pub fn new(registry: Registry) -> Self {
        Interests {
            registry: Some(registry),
            registered: FxHashMap::default(),
            next_generation: 0,
        }
    }

    /// What `fd` is watched for: (read, write); (false, false) while parked.
    pub fn get(&self, fd: RawFd) -> (bool, bool) {
        match self.registered.get(&fd) {
            Some(r) if r.wanted => (r.kernel.read, r.kernel.write),
            _ => (false, false),
        }
    }

    pub fn is_watched(&self, fd: RawFd) -> bool {
        self.registered.get(&fd).is_some_and(|r| r.wanted)
    }

    pub fn is_parked(&self, fd: RawFd) -> bool {
        self.registered.get(&fd).is_some_and(|r| !r.wanted)
    }

    /// The generation of `fd`'s registration: an event of another is not one of the fd's now.
    pub fn generation(&self, fd: RawFd) -> Option<u32> {
        self.registered.get(&fd).map(|r| r.generation)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, watch: Watch, generation: u32) -> io::Result<()> {
        let Some(registry) = &self.registry else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let mut event = libc::epoll_event {
            events: watch.epoll_bits(),
            u64: event_data(fd, generation),
        };
        // SAFETY: the registry's fd is mio's live epoll instance; event is a valid epoll_event.
        if unsafe { libc::epoll_ctl(registry.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&mut self, fd: RawFd, watch: Watch) -> io::Result<()> {
        let generation = self.next_generation;
        self.ctl(libc::EPOLL_CTL_ADD, fd, watch, generation)?;
        self.next_generation = generation.wrapping_add(1);
        let registration = Registration {
            kernel: watch,
            wanted: true,
            generation,
        };
        self.registered.insert(fd, registration);
        Ok(())
    }

    /// Watches `fd` for exactly (read, write), level-triggered; (false, false) stops watching it.
    /// Registration errors (a closed fd, a regular file) come back as the OS reported them.
    pub fn set(&mut self, fd: RawFd, read: bool, write: bool) -> io::Result<()> {
        self.set_watch(fd, Watch::level(read, write), false)
    }

    /// Watches `fd` as `watch` says; a watch of nothing stops watching it (parks an edge
    /// registration). `same_file`: the caller knows that `fd` names the file it named when its
    /// registration was parked, which then needs no system call to watch again.
    pub fn set_watch(&mut self, fd: RawFd, watch: Watch, same_file: bool) -> io::Result<()> {
        let Some(old) = self.registered.get(&fd).copied() else {
            return if watch.any() {
                self.add(fd, watch)
            } else {
                Ok(())
            };
        };
        if !watch.any() {
            self.stop(fd, old, false);
            return Ok(());
        }
        if old.kernel == watch && (old.wanted || same_file) {
            self.registered.insert(
                fd,
                Registration {
                    wanted: true,
                    ..old
                },
            );
            return Ok(());
        }
        match self.ctl(libc::EPOLL_CTL_MOD, fd, watch, old.generation) {
            Ok(()) => {
                let registration = Registration {
                    kernel: watch,
                    wanted: true,
                    generation: old.generation,
                };
                self.registered.insert(fd, registration);
                Ok(())
            }
            // A parked registration's number was closed (leaving the instance with its file, or
            // not) and opened again: the file it names now is registered anew.
            Err(err) if !old.wanted && err.raw_os_error() == Some(libc::ENOENT) => {
                self.registered.remove(&fd);
                self.add(fd, watch)
            }
            Err(err) => {
                // As selectors unregister a key they failed to modify: the fd was closed
                // (EBADF), or closed and its number opened again (ENOENT).
                self.registered.remove(&fd);
                Err(err)
            }
        }
    }

    /// Stops watching `fd` for a caller that will watch the same file again (a transport that
    /// pauses reading, as stream flow control does after every large read): a level
    /// registration is parked too, modified to `EPOLLET` alone rather than taken off. Parked so,
    /// it reports nothing but the edge of an error or a hang-up (which epoll always reports), so
    /// one left behind costs at most a wake-up, as an edge one does. Watching the fd again is an
    /// `EPOLL_CTL_MOD`, which also finds out whether the number still names that file. On this
    /// VM a `DEL` and an `ADD` of a TCP socket cost 2.3 us, two `MOD`s 0.95.
    pub fn pause(&mut self, fd: RawFd) {
        if let Some(old) = self.registered.get(&fd).copied() {
            self.stop(fd, old, true);
        }
    }

    /// Stops watching `fd`, registered as `old`: parks an edge registration, and a level one if
    /// `park_level`; takes any other off the instance.
    fn stop(&mut self, fd: RawFd, old: Registration, park_level: bool) {
        if !old.wanted {
            return;
        }
        let parked = Watch {
            edge: true,
            ..Watch::default()
        };
        let kernel = if old.kernel.edge {
            old.kernel
        } else if park_level
            && self
                .ctl(libc::EPOLL_CTL_MOD, fd, parked, old.generation)
                .is_ok()
        {
            parked
        } else {
            self.registered.remove(&fd);
            // The fd may already be closed, which removed it from epoll: nothing to undo then.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, Watch::default(), 0);
            return;
        };
        let registration = Registration {
            kernel,
            wanted: false,
            generation: old.generation,
        };
        self.registered.insert(fd, registration);
    }

    /// Asks an edge registration of `fd` to report what is ready now, as a level-triggered one
    /// would on the next poll: for a caller that was woken, tried, and found nothing (a socket
    /// method that said "not ready" while the socket was). Nothing to do for a level one.
    pub fn rearm(&self, fd: RawFd) -> io::Result<()> {
        match self.registered.get(&fd) {
            Some(r) if r.wanted && r.kernel.edge => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, r.kernel, r.generation)
            }
            _ => Ok(()),
        }
    }

    /// Called for an event that no callback waits for: a parked registration of `generation` is
    /// taken off the instance, so that it wakes the loop no more. Says whether one was.
    pub fn drop_parked(&mut self, fd: RawFd, generation: u32) -> bool {
        let parked = self
            .registered
            .get(&fd)
            .is_some_and(|r| !r.wanted && r.generation == generation);
        if parked {
            self.registered.remove(&fd);
            // A number closed since (EBADF) or naming another file now (ENOENT): nothing to undo.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, Watch::default(), 0);
        }
        parked
    }

    /// Closes this handle on the epoll instance and forgets every fd; registering fails with
    /// EBADF from then on. The instance itself goes when the poller is dropped too, taking the
    /// registrations with it, so none is removed one by one (nor should be in a forked child,
    /// whose epoll set is still the parent's).
    pub fn close(&mut self) {
        self.registry = None;
        self.registered.clear();
    }
}

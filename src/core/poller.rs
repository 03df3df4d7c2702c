//! Readiness polling on mio, with asyncio's level-triggered contract on top of epoll's edges.
//!
//! mio registers every fd edge-triggered. asyncio's `add_reader` is level-triggered: a reader that
//! leaves data unread is called again next turn. After a turn has dispatched an fd's callbacks, the
//! fd is re-armed (`EPOLL_CTL_MOD`), which makes the kernel report it again if it is still ready;
//! an fd that was drained stays quiet. One syscall per dispatched fd, none for idle ones.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

const WAKER_TOKEN: Token = Token(usize::MAX);
const EVENTS_CAPACITY: usize = 1024;

/// What a poll reported for one fd, mapped the way `selectors.EpollSelector` maps epoll bits:
/// any bit but "writable" wakes the reader, any bit but "readable" wakes the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
    /// An error, or the peer shut down or hung up: a state that lasts, which no later edge
    /// announces again (see `Interests::settled`).
    pub closed: bool,
}

/// The blocking half: owned by whichever thread runs the loop.
pub struct Poller {
    poll: Poll,
    events: Events,
}

/// The registration half: which fds are watched for what, and which need re-arming.
pub struct Interests {
    registry: Registry,
    watched: HashMap<RawFd, (bool, bool)>,
    /// Fds dispatched since the last poll, with what is still to re-arm.
    rearm: HashMap<RawFd, Rearm>,
}

/// An fd dispatched this turn: which directions still need a re-arm, and whether its event
/// carried a lasting condition (then it is re-armed whatever its callbacks did).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Rearm {
    read: bool,
    write: bool,
    closed: bool,
}

/// Wakes a blocked poll from any thread, with at most one write per sleep.
pub struct LoopWaker {
    waker: Waker,
    polling: AtomicBool,
    pending: AtomicBool,
}

pub fn new() -> io::Result<(Poller, Interests, LoopWaker)> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
    Ok((
        Poller {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
        },
        Interests {
            registry,
            watched: HashMap::new(),
            rearm: HashMap::new(),
        },
        LoopWaker {
            waker,
            polling: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        },
    ))
}

fn interest(read: bool, write: bool) -> Option<Interest> {
    match (read, write) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

impl Poller {
    /// Blocks until an event, a wake-up or the timeout (`None`: no timeout), and appends what
    /// became ready to `out`. The timeout is rounded up to whole milliseconds, as epoll takes it.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        self.poll.poll(&mut self.events, timeout)?;
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            let other_than_write = event.is_readable()
                || event.is_error()
                || event.is_read_closed()
                || event.is_write_closed()
                || event.is_priority();
            let other_than_read = event.is_writable()
                || event.is_error()
                || event.is_read_closed()
                || event.is_write_closed();
            out.push(Readiness {
                fd: event.token().0 as RawFd,
                read: other_than_write,
                write: other_than_read,
                closed: event.is_error() || event.is_read_closed() || event.is_write_closed(),
            });
        }
        Ok(())
    }
}

impl Interests {
    /// What `fd` is watched for: (read, write).
    pub fn get(&self, fd: RawFd) -> (bool, bool) {
        self.watched.get(&fd).copied().unwrap_or((false, false))
    }

    pub fn is_watched(&self, fd: RawFd) -> bool {
        self.watched.contains_key(&fd)
    }

    /// Watches `fd` for exactly (read, write); (false, false) stops watching it.
    /// Registration errors (a closed fd, a regular file) come back as the OS reported them.
    pub fn set(&mut self, fd: RawFd, read: bool, write: bool) -> io::Result<()> {
        // Registering anew re-arms the fd as well.
        self.rearm.remove(&fd);
        let old = self.watched.get(&fd).copied();
        match (old, interest(read, write)) {
            (None, None) => Ok(()),
            (None, Some(i)) => {
                self.registry
                    .register(&mut SourceFd(&fd), Token(fd as usize), i)?;
                self.watched.insert(fd, (read, write));
                Ok(())
            }
            (Some(_), Some(i)) => {
                self.registry
                    .reregister(&mut SourceFd(&fd), Token(fd as usize), i)?;
                self.watched.insert(fd, (read, write));
                Ok(())
            }
            (Some(_), None) => {
                self.watched.remove(&fd);
                // The fd may already be closed, which removed it from epoll: nothing to undo then.
                let _ = self.registry.deregister(&mut SourceFd(&fd));
                Ok(())
            }
        }
    }

    /// Notes that `fd`'s reader and/or writer were queued this turn, so it is re-armed before the
    /// next poll.
    pub fn dispatched(&mut self, fd: RawFd, read: bool, write: bool, closed: bool) {
        let entry = self.rearm.entry(fd).or_default();
        entry.read |= read;
        entry.write |= write;
        entry.closed |= closed;
    }

    /// Notes that `fd`'s reader (or writer) left the fd where the kernel reports the next change
    /// on its own: it read less than it asked for, or the socket took less than it was given, or
    /// the call would have blocked. New data (or free space) is a new edge, so that direction
    /// needs no re-arm. An EOF, hang-up or error that came with this turn's event is not: it
    /// stays, and only a re-arm reports it again, so such an fd is always re-armed.
    pub fn settled(&mut self, fd: RawFd, read: bool) {
        let Some(entry) = self.rearm.get_mut(&fd) else {
            return;
        };
        if entry.closed {
            return;
        }
        if read {
            entry.read = false;
        } else {
            entry.write = false;
        }
        if !entry.read && !entry.write {
            self.rearm.remove(&fd);
        }
    }

    /// Re-arms the fds dispatched since the last poll that are still watched and not settled.
    pub fn rearm(&mut self) {
        for (fd, _) in self.rearm.drain() {
            if let Some(&(read, write)) = self.watched.get(&fd) {
                if let Some(i) = interest(read, write) {
                    // A failure means the fd was closed under us; the user's remove_* cleans up.
                    let _ = self
                        .registry
                        .reregister(&mut SourceFd(&fd), Token(fd as usize), i);
                }
            }
        }
    }

    pub fn watched_fds(&self) -> Vec<RawFd> {
        self.watched.keys().copied().collect()
    }
}

impl LoopWaker {
    /// Called (with the interpreter lock held) just before the loop blocks, and after it wakes.
    pub fn set_polling(&self, polling: bool) {
        self.polling.store(polling, Ordering::SeqCst);
        if !polling {
            self.pending.store(false, Ordering::SeqCst);
        }
    }

    /// Wakes the loop if it is blocked or about to block; a loop that is running callbacks will
    /// look at its ready queue before it blocks again, so it needs no wake-up.
    pub fn wake(&self) -> io::Result<()> {
        if self.polling.load(Ordering::SeqCst) && !self.pending.swap(true, Ordering::SeqCst) {
            self.waker.wake()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid two-element array.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        (fds[0], fds[1])
    }

    fn write_byte(fd: RawFd) {
        // SAFETY: writing one byte from a valid buffer.
        assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
    }

    fn read_all(fd: RawFd) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid buffer of the given size.
        while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// A poller watching the read end of a pipe that holds one byte, after the poll that reported
    /// it: (poller, interests, read end, write end, the poll's events).
    fn polled_readable_pipe() -> (Poller, Interests, RawFd, RawFd, Vec<Readiness>) {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        write_byte(w);
        let mut out = vec![];
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        (poller, interests, r, w, out)
    }

    #[test]
    fn undrained_reader_is_reported_again_after_rearm() {
        let (mut poller, mut interests, r, w, mut out) = polled_readable_pipe();
        assert_eq!(
            out,
            vec![Readiness {
                fd: r,
                read: true,
                write: false,
                closed: false,
            }]
        );
        interests.dispatched(r, true, false, false);
        interests.rearm();
        out.clear();
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert_eq!(
            out.len(),
            1,
            "level-triggered: still readable, so reported again"
        );
        read_all(r);
        interests.dispatched(r, true, false, false);
        interests.rearm();
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "drained fd must stay quiet");
        interests.set(r, false, false).unwrap();
        assert!(!interests.is_watched(r));
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn a_settled_reader_is_not_rearmed_but_new_data_still_reports() {
        let (mut poller, mut interests, r, w, mut out) = polled_readable_pipe();
        assert_eq!(out.len(), 1);
        interests.dispatched(r, true, false, false);
        read_all(r);
        interests.settled(r, true);
        assert!(interests.rearm.is_empty(), "nothing left to re-arm");
        interests.rearm();
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
        write_byte(w);
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1, "new data is a new edge");
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn settling_one_direction_keeps_the_other_to_rearm() {
        let (_poller, mut interests, _waker) = new().unwrap();
        interests.dispatched(5, true, true, false);
        interests.settled(5, true);
        assert_eq!(
            interests.rearm.get(&5),
            Some(&Rearm {
                read: false,
                write: true,
                closed: false
            })
        );
        interests.settled(5, false);
        assert!(interests.rearm.is_empty());
    }

    #[test]
    fn an_fd_whose_event_carried_eof_is_rearmed_even_if_settled() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        write_byte(w);
        // SAFETY: closing the write end this test opened: data and EOF arrive before the poll.
        unsafe { libc::close(w) };
        let mut out = vec![];
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert!(out[0].closed, "the event carries the hang-up");
        interests.dispatched(r, true, false, out[0].closed);
        read_all(r);
        interests.settled(r, true);
        interests.rearm();
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert_eq!(out.len(), 1, "the lasting EOF is reported again");
        // SAFETY: closing the read end this test opened.
        unsafe { libc::close(r) };
    }

    #[test]
    fn registering_a_closed_fd_fails_with_ebadf() {
        let (_poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        let err = interests.set(r, true, false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(!interests.is_watched(r));
    }

    #[test]
    fn waker_interrupts_an_unbounded_poll() {
        let (mut poller, _interests, waker) = new().unwrap();
        let waker = Arc::new(waker);
        waker.set_polling(true);
        let remote = Arc::clone(&waker);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            remote.wake().unwrap();
        });
        let start = Instant::now();
        let mut out = vec![];
        poller.poll(None, &mut out).unwrap();
        waker.set_polling(false);
        t.join().unwrap();
        assert!(out.is_empty());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn no_wake_write_while_not_polling() {
        let (mut poller, _interests, waker) = new().unwrap();
        waker.wake().unwrap();
        let mut out = vec![];
        let start = Instant::now();
        poller
            .poll(Some(Duration::from_millis(30)), &mut out)
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "a wake while busy must not leave a stale wake-up"
        );
    }
}

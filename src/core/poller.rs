//! Readiness polling on an epoll instance, level-triggered like asyncio's `EpollSelector`.
//!
//! asyncio's `add_reader` is level-triggered: a reader that leaves data unread is called again next
//! turn. mio registers every fd edge-triggered, so fds are registered here with `epoll_ctl` on
//! mio's epoll instance, without `EPOLLET`; mio still does the polling, the event parsing and the
//! waker. (Edge-triggered registration needed an `EPOLL_CTL_MOD` re-arm after every dispatch to
//! behave this way: one syscall per event, which level-triggered epoll does not need.)
//!
//! What level-triggered epoll costs instead is one more poll of each fd it reported, at the next
//! `epoll_wait`. A build with every fd edge-triggered (not correct as it stood: a read that left a
//! FIN behind got no second edge) measured what leaving it out is worth: on HTTP keep-alive with
//! the server and wrk on two cores, 2.7% of the server's CPU per request and no throughput
//! (210,565 against 210,482 requests/s, 5 alternating runs each); 0.96x on TCP echo 1 KiB.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};
use rustc_hash::FxHashMap;

use super::idle_spin::IdleSpin;

const WAKER_TOKEN: Token = Token(usize::MAX);
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const EVENTS_CAPACITY: usize = 1024;

/// What a poll reported for one fd, mapped the way `selectors.EpollSelector` maps epoll bits:
/// any bit but "writable" wakes the reader, any bit but "readable" wakes the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

/// The blocking half: owned by whichever thread runs the loop.
pub struct Poller {
    poll: Poll,
    events: Events,
    signal_pipe: Option<SignalPipe>,
    idle_spin: IdleSpin,
}

/// A pipe for CPython's `signal.set_wakeup_fd`, whose read end the poll watches.
///
/// A signal interrupts `epoll_wait` only if it arrives while the loop is blocked in it; one that
/// arrives just before (after the loop last ran the Python signal handlers) only trips CPython's
/// flag, and the loop would sleep until its next timer with the handler not run: a second Ctrl-C
/// ignored for the length of an `asyncio.sleep`, one time in a hundred in our tests. CPython's C
/// handler also writes the signal number to the wakeup fd, whenever it arrives and whichever
/// thread takes it; with the read end watched, the poll returns at once. It is drained here, and
/// the loop runs the handlers before it blocks again.
struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid two-element array; on success both are new fds we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just made, owned by nothing else.
        unsafe {
            Ok(SignalPipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            })
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a valid buffer of the given size from our non-blocking fd.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
    }
}

/// The registration half: which fds are watched for what.
pub struct Interests {
    /// mio's handle on the epoll instance (a duplicate of its fd), through which fds are
    /// registered; None once closed.
    registry: Option<Registry>,
    watched: FxHashMap<RawFd, (bool, bool)>,
}

/// Wakes a blocked poll from any thread, with at most one write per sleep.
pub struct LoopWaker {
    /// The eventfd the poll watches; None once closed. Locked only to write a wake-up (at most
    /// once per sleep) or to close it, so another thread's wake cannot meet a closed fd.
    waker: Mutex<Option<Waker>>,
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
            signal_pipe: None,
            idle_spin: IdleSpin::from_env(),
        },
        Interests {
            registry: Some(registry),
            watched: FxHashMap::default(),
        },
        LoopWaker {
            waker: Mutex::new(Some(waker)),
            polling: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        },
    ))
}

/// The epoll bits for watching (read, write), as mio would ask for them but without `EPOLLET`.
fn epoll_bits(read: bool, write: bool) -> u32 {
    let mut bits = 0;
    if read {
        bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if write {
        bits |= libc::EPOLLOUT as u32;
    }
    bits
}

impl Poller {
    /// Blocks until an event, a wake-up or the timeout (`None`: no timeout), and appends what
    /// became ready to `out`. The timeout is rounded up to whole milliseconds, as epoll takes it.
    /// A wait that may block polls first for as long as `IdleSpin` says.
    pub fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            self.poll.poll(&mut self.events, timeout)?;
        } else {
            let poll = &mut self.poll;
            let events = &mut self.events;
            self.idle_spin.wait(timeout, |timeout| {
                poll.poll(events, timeout)?;
                Ok(!events.is_empty())
            })?;
        }
        for event in self.events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            if event.token() == SIGNAL_TOKEN {
                if let Some(pipe) = &self.signal_pipe {
                    pipe.drain();
                }
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
            });
        }
        Ok(())
    }
}

impl Poller {
    /// The fd to hand to `signal.set_wakeup_fd` (see `SignalPipe`): made and watched on first use.
    pub fn signal_wakeup_fd(&mut self) -> io::Result<RawFd> {
        if let Some(pipe) = &self.signal_pipe {
            return Ok(pipe.write.as_raw_fd());
        }
        let pipe = SignalPipe::new()?;
        let read = pipe.read.as_raw_fd();
        self.poll.registry().register(
            &mut mio::unix::SourceFd(&read),
            SIGNAL_TOKEN,
            mio::Interest::READABLE,
        )?;
        let write = pipe.write.as_raw_fd();
        self.signal_pipe = Some(pipe);
        Ok(write)
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

    fn ctl(&self, op: libc::c_int, fd: RawFd, bits: u32) -> io::Result<()> {
        let Some(registry) = &self.registry else {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        };
        let mut event = libc::epoll_event {
            events: bits,
            u64: fd as u64,
        };
        // SAFETY: the registry's fd is mio's live epoll instance; event is a valid epoll_event.
        if unsafe { libc::epoll_ctl(registry.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for exactly (read, write); (false, false) stops watching it.
    /// Registration errors (a closed fd, a regular file) come back as the OS reported them.
    pub fn set(&mut self, fd: RawFd, read: bool, write: bool) -> io::Result<()> {
        let old = self.watched.get(&fd).copied();
        match (old, read || write) {
            (None, false) => Ok(()),
            (None, true) => {
                self.ctl(libc::EPOLL_CTL_ADD, fd, epoll_bits(read, write))?;
                self.watched.insert(fd, (read, write));
                Ok(())
            }
            (Some(was), true) if was == (read, write) => Ok(()),
            (Some(_), true) => {
                if let Err(err) = self.ctl(libc::EPOLL_CTL_MOD, fd, epoll_bits(read, write)) {
                    // As selectors unregister a key they failed to modify: the fd was closed
                    // (EBADF), or closed and its number opened again (ENOENT).
                    self.watched.remove(&fd);
                    return Err(err);
                }
                self.watched.insert(fd, (read, write));
                Ok(())
            }
            (Some(_), false) => {
                self.watched.remove(&fd);
                // The fd may already be closed, which removed it from epoll: nothing to undo then.
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                Ok(())
            }
        }
    }

    /// Closes this handle on the epoll instance and forgets every fd; registering fails with
    /// EBADF from then on. The instance itself goes when the poller is dropped too, taking the
    /// registrations with it, so none is removed one by one (nor should be in a forked child,
    /// whose epoll set is still the parent's).
    pub fn close(&mut self) {
        self.registry = None;
        self.watched.clear();
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
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(waker) = waker.as_ref() {
                waker.wake()?;
            }
        }
        Ok(())
    }

    /// Closes the eventfd; a wake from then on does nothing.
    pub fn close(&self) {
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(waker);
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

    #[test]
    fn an_undrained_reader_is_reported_again_and_a_drained_one_is_quiet() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        write_byte(w);
        let mut out = vec![];
        poller
            .poll(Some(Duration::from_millis(100)), &mut out)
            .unwrap();
        assert_eq!(
            out,
            vec![Readiness {
                fd: r,
                read: true,
                write: false,
            }]
        );
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert_eq!(
            out.len(),
            1,
            "level-triggered: still readable, so reported again"
        );
        read_all(r);
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "a drained fd stays quiet");
        interests.set(r, false, false).unwrap();
        assert!(!interests.is_watched(r));
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn eof_is_reported_for_as_long_as_the_reader_watches() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        // SAFETY: closing the write end this test opened.
        unsafe { libc::close(w) };
        for _ in 0..2 {
            let mut out = vec![];
            poller
                .poll(Some(Duration::from_millis(100)), &mut out)
                .unwrap();
            assert_eq!(out.len(), 1);
            assert!(out[0].read, "a hang-up wakes the reader");
        }
        // SAFETY: closing the read end this test opened.
        unsafe { libc::close(r) };
    }

    #[test]
    fn changing_what_is_watched() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(w, false, true).unwrap();
        let mut out = vec![];
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert_eq!(
            out,
            vec![Readiness {
                fd: w,
                read: false,
                write: true
            }]
        );
        interests.set(w, false, false).unwrap();
        out.clear();
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty(), "no longer watched");
        interests.set(r, true, false).unwrap();
        interests.set(r, true, true).unwrap();
        assert_eq!(interests.get(r), (true, true));
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn a_number_closed_while_watched_and_opened_again_is_forgotten_when_changed() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        interests.set(r, true, false).unwrap();
        let (r2, w2) = pipe();
        // SAFETY: fds this test opened. dup2 closes the watched file (which leaves the epoll set
        // with it) and opens another under its number in one step, so no other test's fd is hit.
        unsafe {
            assert_eq!(libc::dup2(r2, r), r);
            libc::close(r2);
        }
        let err = interests.set(r, true, true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert!(
            !interests.is_watched(r),
            "forgotten, as selectors forget the key"
        );
        interests.set(r, true, false).unwrap();
        write_byte(w2);
        let mut out = vec![];
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert_eq!(
            out,
            vec![Readiness {
                fd: r,
                read: true,
                write: false
            }]
        );
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
            libc::close(w2);
        }
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
    fn a_byte_on_the_signal_wakeup_fd_interrupts_an_unbounded_poll_and_is_drained() {
        let (mut poller, _interests, _waker) = new().unwrap();
        let fd = poller.signal_wakeup_fd().unwrap();
        assert_eq!(poller.signal_wakeup_fd().unwrap(), fd, "made once");
        write_byte(fd);
        let start = Instant::now();
        let mut out = vec![];
        poller.poll(None, &mut out).unwrap();
        assert!(out.is_empty(), "not an fd callback's event");
        assert!(start.elapsed() < Duration::from_secs(5));
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        assert!(out.is_empty());
        write_byte(fd);
        let again = Instant::now();
        poller.poll(Some(Duration::from_secs(5)), &mut out).unwrap();
        assert!(
            again.elapsed() < Duration::from_secs(2),
            "drained, so reported anew"
        );
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
    fn closed_interests_refuse_registrations_and_a_closed_waker_does_nothing() {
        let (_poller, mut interests, waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        interests.close();
        assert!(!interests.is_watched(r));
        let err = interests.set(w, false, true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        waker.close();
        waker.set_polling(true);
        waker.wake().unwrap();
        // SAFETY: closing fds this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
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

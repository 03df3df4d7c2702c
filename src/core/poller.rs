//! Readiness polling on an epoll instance, level-triggered like asyncio's `EpollSelector`.
//!
//! asyncio's `add_reader` is level-triggered: a reader that leaves data unread is called again next
//! turn. mio registers every fd edge-triggered, so fds are registered with `epoll_ctl` on mio's
//! epoll instance by `Interests` (interests.rs), without `EPOLLET` but for the `sock_*` calls' own
//! watches; mio still does the polling, the event parsing and the waker. (Edge-triggered
//! registration needed an `EPOLL_CTL_MOD` re-arm after every dispatch to behave this way: one
//! syscall per event, which level-triggered epoll does not need.)
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

use mio::{Events, Poll, Token, Waker};

use super::idle_spin::IdleSpin;
use super::interests::from_event_data;
pub use super::interests::Interests;

const WAKER_TOKEN: Token = Token(usize::MAX);
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
const EVENTS_CAPACITY: usize = 1024;

/// What a poll reported for one fd, mapped the way `selectors.EpollSelector` maps epoll bits:
/// any bit but "writable" wakes the reader, any bit but "readable" wakes the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    /// The generation of the registration that reported it (see `Interests::generation`).
    pub generation: u32,
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
        Interests::new(registry),
        LoopWaker {
            waker: Mutex::new(Some(waker)),
            polling: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        },
    ))
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
            let (fd, generation) = from_event_data(event.token().0 as u64);
            out.push(Readiness {
                fd,
                generation,
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
    use crate::core::interests::Watch;
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
                generation: 0,
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
        close_all(&[r, w]);
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
                generation: 0,
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
        close_all(&[r, w]);
    }

    #[test]
    fn a_number_closed_while_watched_and_opened_again_is_forgotten_when_changed() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        interests.set(r, true, false).unwrap();
        // The watched file leaves the epoll set with its number.
        let w2 = reopen(r);
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
                generation: 1,
                read: true,
                write: false
            }]
        );
        close_all(&[r, w, w2]);
    }

    const EDGE_READ: Watch = Watch {
        read: true,
        write: false,
        edge: true,
    };

    /// The (fd, generation) of each event one poll reports.
    fn poll_now(poller: &mut Poller) -> Vec<(RawFd, u32)> {
        let mut out = vec![];
        poller.poll(Some(Duration::ZERO), &mut out).unwrap();
        out.iter().map(|ev| (ev.fd, ev.generation)).collect()
    }

    fn close_all(fds: &[RawFd]) {
        for &fd in fds {
            // SAFETY: closing fds the calling test opened.
            unsafe { libc::close(fd) };
        }
    }

    /// Closes `fd`'s file and opens another pipe's read end under its number, in one step (so no
    /// other test's fd is hit); returns that pipe's write end.
    fn reopen(fd: RawFd) -> RawFd {
        let (r2, w2) = pipe();
        // SAFETY: fds the calling test opened; dup2 closes `fd`'s file and reuses the number.
        unsafe {
            assert_eq!(libc::dup2(r2, fd), fd);
            libc::close(r2);
        }
        w2
    }

    #[test]
    fn an_edge_watch_that_stops_is_parked_and_kept_for_the_same_file() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set_watch(r, EDGE_READ, false).unwrap();
        write_byte(w);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        assert!(
            poll_now(&mut poller).is_empty(),
            "edge-triggered: reported once"
        );
        interests.set_watch(r, Watch::default(), false).unwrap();
        assert!(interests.is_parked(r) && !interests.is_watched(r));
        assert_eq!(interests.get(r), (false, false));
        interests.set_watch(r, EDGE_READ, true).unwrap();
        assert!(interests.is_watched(r));
        write_byte(w);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)], "the same registration");
        // A level watch of the same fd is a change of registration: its events are reported
        // for as long as the data stays.
        interests.set(r, true, false).unwrap();
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        close_all(&[r, w]);
    }

    #[test]
    fn a_parked_number_closed_and_opened_again_is_registered_anew() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set_watch(r, EDGE_READ, false).unwrap();
        interests.set_watch(r, Watch::default(), false).unwrap();
        let w2 = reopen(r);
        interests.set_watch(r, EDGE_READ, false).unwrap();
        write_byte(w2);
        assert_eq!(poll_now(&mut poller), vec![(r, 1)]);
        assert_eq!(interests.generation(r), Some(1));
        close_all(&[r, w, w2]);
    }

    #[test]
    fn events_of_a_registration_left_behind_with_its_file_are_not_current() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        // SAFETY: a duplicate of a pipe end this test opened: it keeps the file open.
        let kept = unsafe { libc::dup(r) };
        interests.set_watch(r, EDGE_READ, false).unwrap();
        interests.set_watch(r, Watch::default(), false).unwrap();
        let w2 = reopen(r);
        interests.set(r, true, false).unwrap();
        write_byte(w);
        let events = poll_now(&mut poller);
        assert_eq!(
            events,
            vec![(r, 0)],
            "the old file's registration, left behind"
        );
        assert_eq!(interests.generation(r), Some(1));
        write_byte(w2);
        assert_eq!(poll_now(&mut poller), vec![(r, 1)]);
        close_all(&[r, w, w2, kept]);
    }

    #[test]
    fn an_event_for_a_parked_registration_takes_it_off() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set_watch(r, EDGE_READ, false).unwrap();
        interests.set_watch(r, Watch::default(), false).unwrap();
        write_byte(w);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        assert!(!interests.drop_parked(r, 1), "not its generation");
        assert!(interests.drop_parked(r, 0));
        assert!(!interests.is_parked(r));
        write_byte(w);
        assert!(poll_now(&mut poller).is_empty(), "off the instance");
        interests.set_watch(r, EDGE_READ, true).unwrap();
        assert_eq!(poll_now(&mut poller), vec![(r, 1)], "registered anew");
        close_all(&[r, w]);
    }

    #[test]
    fn a_paused_level_watch_is_parked_quiet_and_watched_again_as_it_was() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        write_byte(w);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        interests.pause(r);
        assert!(interests.is_parked(r) && !interests.is_watched(r));
        assert!(
            poll_now(&mut poller).is_empty(),
            "still readable, but nobody waits"
        );
        interests.set(r, true, false).unwrap();
        assert_eq!(poll_now(&mut poller), vec![(r, 0)], "the same registration");
        assert_eq!(poll_now(&mut poller), vec![(r, 0)], "level-triggered again");
        close_all(&[r, w]);
    }

    #[test]
    fn a_paused_level_watch_reports_a_hang_up_once() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        interests.pause(r);
        close_all(&[w]);
        assert_eq!(poll_now(&mut poller), vec![(r, 0)]);
        assert!(poll_now(&mut poller).is_empty(), "an edge, reported once");
        assert!(interests.drop_parked(r, 0));
        close_all(&[r]);
    }

    #[test]
    fn a_paused_number_closed_and_opened_again_is_registered_anew() {
        let (mut poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        interests.pause(r);
        let w2 = reopen(r);
        interests.set(r, true, false).unwrap();
        write_byte(w2);
        assert_eq!(poll_now(&mut poller), vec![(r, 1)]);
        close_all(&[r, w, w2]);
    }

    #[test]
    fn pausing_a_watch_whose_fd_was_closed_forgets_it() {
        let (_poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        interests.set(r, true, false).unwrap();
        close_all(&[r, w]);
        interests.pause(r);
        assert!(!interests.is_parked(r) && !interests.is_watched(r));
    }

    #[test]
    fn registering_a_closed_fd_fails_with_ebadf() {
        let (_poller, mut interests, _waker) = new().unwrap();
        let (r, w) = pipe();
        close_all(&[r, w]);
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
        close_all(&[r, w]);
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

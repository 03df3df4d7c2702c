//! The socket calls of the native transports, as thin `io::Result` wrappers over libc.
//!
//! Sends pass `MSG_NOSIGNAL`: a peer that went away gives EPIPE, never SIGPIPE, even in a host
//! program that did not ignore SIGPIPE the way the Python interpreter does at start-up.

use std::io::{self, IoSliceMut};
use std::os::fd::RawFd;

fn check(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `read(2)`, for pipes and character devices.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `readv(2)`: one read, filling `bufs` in turn; on a socket the same as `recv` without flags.
pub fn readv(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: IoSliceMut has the layout of iovec (std's documented guarantee), and each is valid
    // for writes of its length.
    check(unsafe { libc::readv(fd, bufs.as_mut_ptr().cast(), count) })
}

/// `write(2)`, for pipes and character devices.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    check(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
}

/// One `sendmsg` of the slices, in order (at most IOV_MAX of them; the caller sends the rest later).
pub fn send_vectored(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    const IOV_MAX: usize = 1024;
    let iov: Vec<libc::iovec> = bufs
        .iter()
        .take(IOV_MAX)
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: a zeroed msghdr is valid; it points at iov, which outlives the call, and each iovec
    // points at a slice the caller keeps alive.
    let ret = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
    };
    check(ret)
}

/// A call that writes a socket address, given a zeroed buffer for it (CPython zeroes its own too):
/// the call's result, the address and its length.
fn with_address(
    call: impl FnOnce(*mut libc::sockaddr, *mut libc::socklen_t) -> libc::ssize_t,
) -> io::Result<(usize, libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ret = check(call((&raw mut addr).cast(), &mut len))?;
    Ok((ret, addr, len))
}

/// One datagram and the address it came from (zeroed storage and length 0 if it had none).
pub fn recv_from(
    fd: RawFd,
    buf: &mut [u8],
) -> io::Result<(usize, libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: buf is valid for writes of buf.len() bytes; recvfrom writes at most `len` bytes of
    // the address buffer.
    with_address(|addr, len| unsafe {
        libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), 0, addr, len)
    })
}

/// A connection from a listening socket (`accept4` with SOCK_CLOEXEC, as CPython's `_accept`):
/// its fd and the peer's address.
pub fn accept(fd: RawFd) -> io::Result<(RawFd, libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: accept4 writes at most `len` bytes of the address buffer.
    let (conn, addr, len) = with_address(|addr, len| unsafe {
        libc::accept4(fd, addr, len, libc::SOCK_CLOEXEC) as libc::ssize_t
    })?;
    Ok((conn as RawFd, addr, len))
}

/// The socket's own address.
pub fn sockname(fd: RawFd) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: getsockname writes at most `len` bytes of the address buffer.
    let (_, addr, len) =
        with_address(|addr, len| unsafe { libc::getsockname(fd, addr, len) as libc::ssize_t })?;
    Ok((addr, len))
}

/// The most datagrams one `recv_many` takes: the datagram transport's 256 KiB read buffer holds
/// 4 IP datagrams, and these arrays are zeroed on every call.
pub const MAX_BATCH: usize = 4;

/// What one `recv_many` took: for the n-th datagram, its length within its slot and its sender.
pub struct Batch {
    room: usize,
    count: usize,
    lens: [usize; MAX_BATCH],
    addrs: [libc::sockaddr_storage; MAX_BATCH],
    addr_lens: [libc::socklen_t; MAX_BATCH],
}

impl Batch {
    pub fn len(&self) -> usize {
        self.count
    }

    /// How many datagrams the batch had room for.
    pub fn room(&self) -> usize {
        self.room
    }

    /// The n-th datagram's length, sender and sender's length.
    pub fn get(&self, n: usize) -> (usize, &libc::sockaddr_storage, libc::socklen_t) {
        (self.lens[n], &self.addrs[n], self.addr_lens[n])
    }
}

/// Up to `MAX_BATCH` datagrams in one `recvmmsg`, the n-th into the n-th `slot`-byte part of `buf`
/// (as many as `buf` has room for). Returns at once with those already queued, as the socket is
/// non-blocking (EAGAIN when none is). An error met after the first datagram is kept by the
/// kernel for the next call.
pub fn recv_many(fd: RawFd, buf: &mut [u8], slot: usize) -> io::Result<Batch> {
    let count = (buf.len() / slot).min(MAX_BATCH);
    type Raw = (
        [libc::iovec; MAX_BATCH],
        [libc::mmsghdr; MAX_BATCH],
        [libc::sockaddr_storage; MAX_BATCH],
    );
    // SAFETY: all-zero iovecs, mmsghdrs and sockaddr_storages are valid values.
    let (mut iov, mut msgs, addrs): Raw = unsafe { std::mem::zeroed() };
    let mut batch = Batch {
        room: count,
        count: 0,
        lens: [0; MAX_BATCH],
        addrs,
        addr_lens: [0; MAX_BATCH],
    };
    for (i, part) in buf.chunks_exact_mut(slot).take(count).enumerate() {
        iov[i] = libc::iovec {
            iov_base: part.as_mut_ptr().cast(),
            iov_len: slot,
        };
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = (&mut batch.addrs[i] as *mut libc::sockaddr_storage).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = &mut iov[i];
        hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at live iovecs (each at its own part of buf) and
    // address storages, all of which outlive the call.
    let ret = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            0,
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    batch.count = ret as usize;
    for (i, msg) in msgs[..batch.count].iter().enumerate() {
        batch.lens[i] = msg.msg_len as usize;
        batch.addr_lens[i] = msg.msg_hdr.msg_namelen;
    }
    Ok(batch)
}

pub fn send_to(
    fd: RawFd,
    buf: &[u8],
    addr: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of buf.len() bytes; addr holds `len` initialised bytes.
    check(unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            (addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes no pointers.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn vectored_send_keeps_order_and_recv_sees_eof_after_shutdown() {
        let (a, b) = UnixStream::pair().unwrap();
        let n = send_vectored(a.as_raw_fd(), &[b"ab", b"", b"cde"]).unwrap();
        assert_eq!(n, 5);
        assert_eq!(send(a.as_raw_fd(), b"f").unwrap(), 1);
        shutdown_write(a.as_raw_fd()).unwrap();
        let mut buf = [0u8; 16];
        let n = recv(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"abcdef");
        assert_eq!(
            recv(b.as_raw_fd(), &mut buf).unwrap(),
            0,
            "EOF after shutdown"
        );
    }

    #[test]
    fn a_datagram_arrives_with_its_sender_address() {
        use std::net::UdpSocket;
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"ping", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let (n, addr, len) = recv_from(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        assert_eq!(i32::from(addr.ss_family), libc::AF_INET);
        assert_eq!(send_to(b.as_raw_fd(), b"pong", &addr, len).unwrap(), 4);
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"pong"[..], b.local_addr().unwrap()));
    }

    fn port_of(addr: &libc::sockaddr_storage) -> u16 {
        assert_eq!(i32::from(addr.ss_family), libc::AF_INET);
        // SAFETY: an AF_INET address, as just checked, fits a sockaddr_in.
        let sin = unsafe { &*(addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        u16::from_be(sin.sin_port)
    }

    #[test]
    fn recv_many_takes_what_is_queued_in_order_with_each_sender() {
        use std::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(b"", to).unwrap();
        a.send_to(b"three", to).unwrap();
        let mut buf = vec![0u8; 4 * 8];
        let batch = recv_many(rx.as_raw_fd(), &mut buf, 8).unwrap();
        assert_eq!(batch.len(), 3);
        let got: Vec<(&[u8], u16)> = (0..batch.len())
            .map(|i| {
                let (len, addr, _) = batch.get(i);
                (&buf[i * 8..i * 8 + len], port_of(addr))
            })
            .collect();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        assert_eq!(got, [(&b"one"[..], pa), (b"", pb), (b"three", pa)]);
        let err = recv_many(rx.as_raw_fd(), &mut buf, 8).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn recv_many_takes_no_more_than_the_buffer_has_slots_for_nor_max_batch() {
        use std::net::UdpSocket;
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let queued = MAX_BATCH + 5;
        for i in 0..queued {
            tx.send_to(&[i as u8], rx.local_addr().unwrap()).unwrap();
        }
        let mut big = vec![0u8; (MAX_BATCH + 1) * 4];
        let first = recv_many(rx.as_raw_fd(), &mut big, 4).unwrap();
        assert_eq!((first.len(), first.room()), (MAX_BATCH, MAX_BATCH));
        let mut small = vec![0u8; 2 * 4 + 3];
        let counts: Vec<usize> = (0..3)
            .map(|_| recv_many(rx.as_raw_fd(), &mut small, 4).unwrap().len())
            .collect();
        assert_eq!(counts, [2, 2, 1]);
        assert_eq!(usize::from(small[0]), queued - 1, "the last datagram, last");
    }

    #[test]
    fn send_to_a_closed_peer_is_epipe_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send(a.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }
}

//! The ceiling of the echo rows: a single-threaded mio echo server with no Python in it, loaded by
//! the same client as the loops. Each read is written back at once; what the socket does not take
//! is kept, and the connection reads nothing more until it is sent (a server that read until the
//! socket would block before writing, and moved its unsent bytes forward after each partial
//! write, echoed the 64 MiB bulk transfer at two thirds of ferroloop's rate). It waits for events
//! as ferroloop's poller does, polling before it blocks while recent waits were short
//! (`idle_spin`): a server that slept in every wait was slower on two cores than ferroloop with
//! that policy.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::idle_spin::IdleSpin;

const LISTENER: Token = Token(0);

struct Connection<S> {
    stream: S,
    /// Read but not yet sent: `pending[sent..]`.
    pending: Vec<u8>,
    sent: usize,
    /// The peer finished sending: close once everything read has been echoed.
    eof: bool,
}

impl<S: Read + Write> Connection<S> {
    fn new(stream: S) -> Self {
        Connection {
            stream,
            pending: Vec::new(),
            sent: 0,
            eof: false,
        }
    }

    /// Echoes until the socket has nothing more to read or takes nothing more; an error ends the
    /// connection.
    fn echo(&mut self, buf: &mut [u8]) -> io::Result<()> {
        while self.flush()? && !self.eof {
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let written = write_some(&mut self.stream, &buf[..n])?;
            self.pending.extend_from_slice(&buf[written..n]);
        }
        Ok(())
    }

    /// Sends what is pending; says whether all of it went.
    fn flush(&mut self) -> io::Result<bool> {
        self.sent += write_some(&mut self.stream, &self.pending[self.sent..])?;
        if self.sent < self.pending.len() {
            return Ok(false);
        }
        self.pending.clear();
        self.sent = 0;
        Ok(true)
    }

    fn finished(&self) -> bool {
        self.eof && self.pending.is_empty()
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut impl Write, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match stream.write(&data[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

pub fn serve(addr: &str) -> io::Result<()> {
    let mut listener = TcpListener::bind(addr.parse().map_err(io::Error::other)?)?;
    println!("{{\"port\": {}}}", listener.local_addr()?.port());
    io::stdout().flush()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<Token, Connection<TcpStream>> = HashMap::new();
    let mut next = 1usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut idle_spin = IdleSpin::from_env();
    loop {
        idle_spin.wait(None, |timeout| {
            poll.poll(&mut events, timeout)?;
            Ok(!events.is_empty())
        })?;
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            conns.insert(token, Connection::new(stream));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let token = event.token();
            let Some(conn) = conns.get_mut(&token) else {
                continue;
            };
            let failed = conn.echo(&mut buf).is_err();
            if failed || conn.finished() {
                conns.remove(&token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Connection;
    use std::io::{self, Read, Write};

    /// A socket whose peer sent `incoming`, and that takes at most `room` bytes per write call
    /// and `window` before it would block.
    struct Socket {
        incoming: Vec<u8>,
        read_at: usize,
        room: usize,
        window: usize,
        out: Vec<u8>,
    }

    impl Read for Socket {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.incoming.len() - self.read_at);
            buf[..n].copy_from_slice(&self.incoming[self.read_at..self.read_at + n]);
            self.read_at += n;
            Ok(n)
        }
    }

    impl Write for Socket {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let n = data.len().min(self.room).min(self.window);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.window -= n;
            self.out.extend_from_slice(&data[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn echoes_every_byte_in_order_through_partial_writes() {
        let incoming: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let socket = Socket {
            incoming: incoming.clone(),
            read_at: 0,
            room: 7_000,
            window: 30_000,
            out: Vec::new(),
        };
        let mut conn = Connection::new(socket);
        let mut buf = vec![0u8; 16 * 1024];
        while !conn.finished() {
            conn.echo(&mut buf).unwrap();
            // Held bytes stop the reading: what is read beyond the socket's window stays unread.
            assert!(conn.pending.len() <= buf.len());
            conn.stream.window = 30_000;
        }
        assert_eq!(conn.stream.out, incoming);
    }
}

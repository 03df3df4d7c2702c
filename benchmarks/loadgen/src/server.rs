//! The ceiling of the echo rows: a single-threaded mio echo server with no Python in it, loaded by
//! the same client as the loops. Reads until the socket would block, writes what it can and keeps
//! the rest until the socket is writable again. It waits for events as ferroloop's poller does,
//! polling before it blocks while recent waits were short (`idle_spin`): a server that slept in
//! every wait was slower on two cores than ferroloop with that policy.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::idle_spin::IdleSpin;

const LISTENER: Token = Token(0);

struct Connection {
    stream: TcpStream,
    pending: Vec<u8>,
    /// The peer finished sending: close once everything read has been echoed.
    eof: bool,
}

pub fn serve(addr: &str) -> io::Result<()> {
    let mut listener = TcpListener::bind(addr.parse().map_err(io::Error::other)?)?;
    println!("{{\"port\": {}}}", listener.local_addr()?.port());
    io::stdout().flush()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<Token, Connection> = HashMap::new();
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
                            conns.insert(
                                token,
                                Connection {
                                    stream,
                                    pending: Vec::new(),
                                    eof: false,
                                },
                            );
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
            let mut closed = false;
            if event.is_readable() {
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            conn.eof = true;
                            break;
                        }
                        Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
            }
            while !conn.pending.is_empty() {
                match conn.stream.write(&conn.pending) {
                    Ok(n) => {
                        conn.pending.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed || (conn.eof && conn.pending.is_empty()) {
                conns.remove(&token);
            }
        }
    }
}

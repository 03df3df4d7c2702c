//! Echo load generator: `conns` connections, each in its own thread, each sending a `size`-byte
//! message and reading the whole echo back before sending the next, for `seconds`. Prints one JSON
//! line with the round trips completed and the time they took. Blocking sockets and one thread per
//! connection keep the client simple and cheap next to any Python server it measures.
//!
//! usage: ferroloop-loadgen tcp HOST:PORT | unix PATH  CONNS SIZE SECONDS

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(kind: &str, addr: &str) -> std::io::Result<Box<dyn Stream>> {
    match kind {
        "tcp" => {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        "unix" => Ok(Box::new(UnixStream::connect(addr)?)),
        other => Err(std::io::Error::other(format!("unknown transport {other}"))),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!(
            "usage: {} tcp HOST:PORT | unix PATH  CONNS SIZE SECONDS",
            args[0]
        );
        std::process::exit(2);
    }
    let (kind, addr) = (args[1].clone(), args[2].clone());
    let conns: usize = args[3].parse().expect("CONNS");
    let size: usize = args[4].parse().expect("SIZE");
    let seconds: f64 = args[5].parse().expect("SECONDS");

    let stop = Arc::new(AtomicBool::new(false));
    let round_trips = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            let (kind, addr) = (kind.clone(), addr.clone());
            let (stop, round_trips) = (Arc::clone(&stop), Arc::clone(&round_trips));
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut stream = connect(&kind, &addr)?;
                let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
                let mut echo = vec![0u8; size];
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&message)?;
                    stream.read_exact(&mut echo)?;
                    if echo != message {
                        return Err(std::io::Error::other("echo differs from what was sent"));
                    }
                    round_trips.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        if let Err(e) = w.join().expect("worker thread panicked") {
            errors.push(e.to_string());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !errors.is_empty() {
        eprintln!("loadgen errors: {errors:?}");
        std::process::exit(1);
    }
    println!(
        "{{\"round_trips\": {}, \"seconds\": {elapsed:.6}, \"conns\": {conns}, \"size\": {size}}}",
        round_trips.load(Ordering::Relaxed)
    );
}

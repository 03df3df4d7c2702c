//! The clients: blocking sockets, one thread per connection, verifying every byte they get back.

use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn connect(kind: &str, addr: &str) -> io::Result<Box<dyn Stream>> {
    match kind {
        "tcp" => {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        "unix" => Ok(Box::new(UnixStream::connect(addr)?)),
        "tls" => Ok(Box::new(crate::tls::connect(addr)?)),
        "ws" => Ok(Box::new(crate::ws::connect(addr)?)),
        other => Err(io::Error::other(format!("unknown transport {other}"))),
    }
}

fn parse<T: std::str::FromStr>(value: &str, what: &str) -> io::Result<T> {
    value
        .parse()
        .map_err(|_| io::Error::other(format!("bad {what}: {value}")))
}

/// Runs `work` on `threads` threads for `seconds`, counting what each call reports.
fn run_for<F>(threads: usize, seconds: f64, work: F) -> io::Result<(u64, f64)>
where
    F: Fn(usize, &AtomicBool, &AtomicU64) -> io::Result<()> + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (work, stop, count) = (Arc::clone(&work), Arc::clone(&stop), Arc::clone(&count));
            std::thread::spawn(move || work(i, &stop, &count))
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| io::Error::other("worker thread panicked"))??;
    }
    Ok((count.load(Ordering::Relaxed), start.elapsed().as_secs_f64()))
}

pub fn echo(args: &[String]) -> io::Result<()> {
    let (kind, addr) = (args[0].clone(), args[1].clone());
    let conns: usize = parse(&args[2], "CONNS")?;
    let size: usize = parse(&args[3], "SIZE")?;
    let seconds: f64 = parse(&args[4], "SECONDS")?;
    let (round_trips, elapsed) = run_for(conns, seconds, move |i, stop, count| {
        let mut stream = connect(&kind, &addr)?;
        let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
        // What goes out and what must come back: the message itself, or its WebSocket frames.
        let (message, expected) = if kind == "ws" {
            crate::ws::echo_frames(&message)
        } else {
            (message.clone(), message)
        };
        let mut echo = vec![0u8; expected.len()];
        while !stop.load(Ordering::Relaxed) {
            stream.write_all(&message)?;
            stream.read_exact(&mut echo)?;
            if echo != expected {
                return Err(io::Error::other("echo differs from what was sent"));
            }
            count.fetch_add(1, Ordering::Relaxed);
        }
        if kind == "ws" {
            crate::ws::close(&mut stream)?;
        }
        Ok(())
    })?;
    println!("{{\"round_trips\": {round_trips}, \"seconds\": {elapsed:.6}, \"conns\": {conns}, \"size\": {size}}}");
    Ok(())
}

/// Connection churn: each thread opens a connection, makes one echo round trip on it and closes
/// it, again and again; the count is of connections.
pub fn connect_each(args: &[String]) -> io::Result<()> {
    let addr = args[1].clone();
    let threads: usize = parse(&args[2], "CONNS")?;
    let size: usize = parse(&args[3], "SIZE")?;
    let seconds: f64 = parse(&args[4], "SECONDS")?;
    let (connections, elapsed) = run_for(threads, seconds, move |i, stop, count| {
        let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
        let mut echo = vec![0u8; size];
        while !stop.load(Ordering::Relaxed) {
            let mut stream = TcpStream::connect(&addr)?;
            stream.set_nodelay(true)?;
            stream.write_all(&message)?;
            stream.read_exact(&mut echo)?;
            if echo != message {
                return Err(io::Error::other("echo differs from what was sent"));
            }
            count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })?;
    println!("{{\"connections\": {connections}, \"seconds\": {elapsed:.6}, \"conns\": {threads}, \"size\": {size}}}");
    Ok(())
}

pub fn udp(args: &[String]) -> io::Result<()> {
    let addr = args[1].clone();
    let sockets: usize = parse(&args[2], "CONNS")?;
    let size: usize = parse(&args[3], "SIZE")?;
    let seconds: f64 = parse(&args[4], "SECONDS")?;
    let lost = Arc::new(AtomicU64::new(0));
    let lost_in = Arc::clone(&lost);
    let (round_trips, elapsed) = run_for(sockets, seconds, move |i, stop, count| {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(&addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
        let mut reply = vec![0u8; size + 1];
        while !stop.load(Ordering::Relaxed) {
            socket.send(&message)?;
            match socket.recv(&mut reply) {
                Ok(n) if reply[..n] == message[..] => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => return Err(io::Error::other("reply differs from what was sent")),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    lost_in.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })?;
    let lost = lost.load(Ordering::Relaxed);
    println!("{{\"round_trips\": {round_trips}, \"lost\": {lost}, \"seconds\": {elapsed:.6}, \"sockets\": {sockets}, \"size\": {size}}}");
    Ok(())
}

pub fn bulk(args: &[String]) -> io::Result<()> {
    let mib: usize = parse(&args[2], "MIB")?;
    let stream = TcpStream::connect(&args[1])?;
    let mut writer = stream.try_clone()?;
    let chunk: Vec<u8> = (0..1 << 20).map(|j| (j % 251) as u8).collect();
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> io::Result<()> {
        for _ in 0..mib {
            writer.write_all(&chunk)?;
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut reader = stream;
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0usize;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for (k, &b) in buf[..n].iter().enumerate() {
            if b != ((received + k) % (1 << 20) % 251) as u8 {
                return Err(io::Error::other("bulk echo differs from what was sent"));
            }
        }
        received += n;
    }
    sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    let elapsed = start.elapsed().as_secs_f64();
    if received != mib << 20 {
        return Err(io::Error::other(format!(
            "got {received} bytes back of {}",
            mib << 20
        )));
    }
    println!("{{\"bytes\": {received}, \"seconds\": {elapsed:.6}}}");
    Ok(())
}
